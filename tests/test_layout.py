"""Every store key of a run is spelled in afbatch/layout.py alone."""

from pathlib import Path

from afbatch import layout

PACKAGE = Path(__file__).resolve().parents[1] / "afbatch"


def test_no_module_but_layout_spells_a_runs_key():
    spelled = [
        f"{p.relative_to(PACKAGE)}:{n}"
        for p in PACKAGE.rglob("*.py")
        if p.name != "layout.py"
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if "runs/" in line
    ]
    assert spelled == []


def test_keys_name_their_run():
    keys = [
        layout.manifest_key("r1"),
        layout.results_key("r1", "s"),
        layout.part_key("r1", "s", 3),
        layout.report_key("r1", "report.html"),
        layout.conversation_ids_key("r1", "m"),
    ]
    assert {layout.run_of(k) for k in keys} == {"r1"}
    assert layout.part_key("r1", "s", 3).startswith(layout.part_prefix("r1", "s"))
    assert layout.run_of_manifest(layout.manifest_key("r1")) == "r1"
    assert layout.run_of_manifest(layout.results_key("r1", "manifest")) is None
    assert layout.run_of("elsewhere/x") is None
