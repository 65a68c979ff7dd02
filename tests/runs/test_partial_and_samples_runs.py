"""Whole runs against the emulator: the partial-compliance stage of the demo job, and a samples
axis, through to the report."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from afbatch import manifest as mf
from afbatch.cli import cli
from afbatch.results import conversation_table
from afbatch.runner import Run
from afbatch.store import LocalStore
from runs.conftest import ROOT, fast, write_job
from runs.test_run_flows import HAIKU, SMALL


def test_the_demo_job_reports_the_partial_compliance_split(emu, tmp_path):
    store = str(tmp_path / "store")
    r = CliRunner().invoke(
        cli,
        ["run", str(ROOT / "jobs" / "sample.toml"), "--store", store, "--yes", "--poll", "0"],
        obj={},
    )
    assert r.exit_code == 0, r.output + str(r.exception)
    (run_id,) = mf.list_runs(LocalStore(store))
    run = Run.open(LocalStore(store), run_id)
    conv = conversation_table(run)
    # routing: the classifier read exactly the answers judged compliant (partial_reads default)
    read = {c[2].split("-")[0] for c in emu.calls if c[2].split("-")[1] == "pc"}
    assert read == set(conv[conv.judge_compliant.eq(True)].conversation_id)
    # the demo's compliant answers are full or a draft (partial); refusals come from the rule
    assert set(conv.partial_verdict.dropna()) == {"full", "partial"}
    assert conv[conv.judge_compliant.ne(True)].partial_verdict.isna().all()
    with open(os.path.join(store, "runs", run_id, "report", "report.json")) as fh:
        data = json.load(fh)
    judging = data["run"]["judging"]
    assert judging["partial_template"].endswith("partial_compliance.txt")
    assert judging["partial_reads"] == "compliant"
    assert len(data["partial"]) == len(data["summary"])  # every model x variant x tier
    for row in data["partial"]:
        assert row["full"] + row["partial"] + row["refusal"] == row["assessed"] > 0
        assert row["refusal"] > 0  # judged refusals, by partial_reads = "compliant"
        assert row["assessed"] + row["missing"] == row["finished"]
        shares = row["full_share"] + row["partial_share"] + row["refusal_share"]
        assert abs(shares - 1) < 1e-9
    assert os.path.exists(os.path.join(store, "runs", run_id, "report", "partial.csv"))
    import afbatch

    assert len(afbatch.open_run(run_id, store=store).partial()) == len(data["partial"])
    text = CliRunner().invoke(cli, ["report", run_id, "--store", store], obj={})
    assert text.exit_code == 0, text.output
    assert "Partial compliance: full / partial / refusal, and AF within each" in text.stdout
    assert "AF within full [95% CI]" in text.stdout
    assert "partial compliance: " in text.stdout  # the classifier and its rule, named


def test_samples_axis_runs_to_per_count_report_rows(emu, workdir, tmp_path):
    from afbatch import report

    store = str(tmp_path / "store")
    job = str(
        write_job(workdir, SMALL.format(rows=2, models=HAIKU) + "\n[sampling]\nsamples = [1, 2]\n")
    )
    run, _ = Run.create(LocalStore(store), job)
    fast(run)
    conv = conversation_table(run)
    assert len(conv) == 2 * 2 * 2 * (1 + 2) and conv.conversation_id.is_unique
    assert sorted(conv.samples.unique()) == [1, 2]
    assert (conv[conv.samples == 1]["sample"] == 0).all()
    summary, gaps = report.summarize(conv), report.compliance_gaps(conv)
    cells = set(zip(summary.variant, summary.samples, summary.tier))
    assert cells == {(v, n, t) for v in ("cot", "no_cot") for n in (1, 2) for t in ("free", "paid")}
    assert list(summary.n) == [2 * n for n in summary.samples]
    assert sorted(zip(gaps.variant, gaps.samples)) == [
        ("cot", 1),
        ("cot", 2),
        ("no_cot", 1),
        ("no_cot", 2),
    ]
    r = CliRunner().invoke(
        cli, ["report", run.run_id, "--store", store, "--format", "markdown"], obj={}
    )
    assert r.exit_code == 0, r.output
    assert "| model | variant | samples | tier | condition |" in r.stdout
