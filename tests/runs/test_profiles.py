"""Switching the protocol profile: a new run whose states are re-derived from the stored answers,
with no generation asked again, and a report that names the profile."""

from __future__ import annotations

import json

from afbatch import report
from afbatch.emulator.demo import DemoRates, DemoResponder
from afbatch.ids import stage_of
from afbatch.results import conversation_table, run_meta
from afbatch.runner import Run
from afbatch.store import LocalStore
from runs.conftest import fast, write_job
from runs.test_run_flows import HAIKU, SMALL


def job(workdir, profile):
    body = SMALL.format(rows=8, models=HAIKU) + f'[protocol]\nprofile = "{profile}"\n'
    return str(write_job(workdir, body, f"{profile}.toml"))


def test_switching_profile_reuses_every_answer_and_the_report_names_it(emu, workdir):
    # scratchpads quoting <OUTPUT></OUTPUT>, answers late: the profiles end conversations apart
    emu.responder = DemoResponder(DemoRates(quote_output=0.8, finish_hazard=(0.4, 0.4, 0.4, 0.4)))
    store = LocalStore(workdir / "store")
    strict, _ = Run.create(store, job(workdir, "strict"))
    assert fast(strict).done
    mark = len(emu.calls)
    notebook, created = Run.create(store, job(workdir, "notebook"))
    assert created and notebook.run_id != strict.run_id
    assert fast(notebook).done
    asked = [cid for _, _, cid in emu.calls[mark:]]
    assert all(stage_of(cid) != "generate" for cid in asked)  # every turn: the strict run's answers
    assert any(stage_of(cid) == "generate" for _, _, cid in emu.calls[:mark])  # (the filter works)

    reopened = Run.open(store, notebook.run_id)
    assert reopened.job.protocol.profile == "notebook"  # the stored job says which rules ran
    a = conversation_table(strict).set_index("conversation_id").sort_index()
    b = conversation_table(reopened).set_index("conversation_id").sort_index()
    assert set(a.profile) == {"strict"} and set(b.profile) == {"notebook"}
    assert (a.turns > b.turns).any()  # a quoted </OUTPUT> ended a notebook conversation early
    assert (b.turns <= a.turns).all()  # and strict never stops before notebook

    meta = run_meta(reopened, reopened.manifest())
    data = json.loads(report.render(b.reset_index(), "json", meta=meta))
    assert data["run"]["protocol"]["profile"] == "notebook"
    for fmt in ("table", "markdown", "html"):
        text = report.render(b.reset_index(), fmt, meta=meta)
        assert "notebook: the published construction" in text
