"""The crash matrix and a lost create answer for a generation model on Fireworks, and a Fireworks
model beside an Anthropic one from nothing to the final report.

The scripted experiment of test_run_scripted runs with its model on Fireworks (no prefill: the
scripted texts are sent whole) and the OpenAI judge; `afbatch run` is SIGKILLed at each step of
the first shard's life, resumed, and compared with an uninterrupted run of the same job.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

from afbatch import manifest as mf
from afbatch.cli import cli
from afbatch.emulator import Emulator, Reply
from afbatch.runner import Run
from afbatch.store import LocalStore
from runs.conftest import ROOT, fast, write_job
from runs.test_crash import _afbatch, _env, _no_duplicates, _table
from runs.test_run_flows import HAIKU, SMALL
from runs.test_run_scripted import JOB, PROMPTS, Scripted

FW_MODEL = "accounts/fireworks/models/llama-v3p1-70b-instruct"
ANTHROPIC_BLOCK = (
    'provider = "anthropic"\nmodel = "claude-haiku-4-5"\nlabel = "toy"\ncache = false\n'
)
FW_BLOCK = f'provider = "fireworks"\nmodel = "{FW_MODEL}"\nlabel = "toy"\n'
STEPS = [
    "after-claim",
    "after-create",
    "after-submitted",
    "after-ended",
    "after-results-written",
    "after-collected",
]
JOBS_PATH = r"/fireworks/v1/accounts/[^/]+/batchInferenceJobs$"


class FireworksScripted(Scripted):
    """The scripted model without a prefill: its turns come back whole ("<" included)."""

    def __call__(self, ctx: Any) -> Any:
        got = super().__call__(ctx)
        if ctx.provider == "fireworks" and isinstance(got, Reply):
            return dataclasses.replace(got, text="<" + got.text)
        return got


def _job(folder: Path) -> Path:
    (folder / "d.csv").write_text("goal\n" + "\n".join(PROMPTS) + "\n")
    assert ANTHROPIC_BLOCK in JOB
    return write_job(folder, JOB.replace("{mode}", "auto").replace(ANTHROPIC_BLOCK, FW_BLOCK))


def _fireworks_batches(emu: Emulator) -> list[str]:
    return [b for provider, b, *_ in emu.created if provider == "fireworks"]


@pytest.fixture(scope="module")
def reference(moto_s3: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same experiment, uninterrupted, on its own emulator."""
    import shutil

    folder = tmp_path_factory.mktemp("reference")
    for f in ("user_template.txt", "helpful_only_cot.txt"):
        shutil.copy(ROOT / "prompts" / f, folder / f)
    shutil.copytree(ROOT / "prompts" / "judges", folder / "judges")
    mp = pytest.MonkeyPatch()
    try:
        with Emulator(FireworksScripted()) as emu:
            for k, v in emu.env().items():
                mp.setenv(k, v)
            run, _ = Run.create(LocalStore(folder / "store"), str(_job(folder)))
            fast(run)
            assert _fireworks_batches(emu), "the generation model did not run on Fireworks"
            return _table(run), Counter(cid for _, _, cid in emu.calls)
    finally:
        mp.undo()


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_every_step_then_resume(
    emu: Emulator, workdir: Path, reference: Any, step: str
) -> None:
    emu.responder = FireworksScripted()
    job = _job(workdir)
    store_dir = workdir / "store"
    args = ["run", str(job), "--store", str(store_dir), "--yes", "--poll", "0"]
    crashed = _afbatch(args, _env(emu, AFBATCH_CRASH_AT=step), workdir)
    assert crashed.returncode == -9, f"the run was not killed at {step}: {crashed.stderr[-2000:]}"
    assert [p for p, *_ in emu.created][:1] in ([], ["fireworks"])  # the first shard: Fireworks
    resumed = _afbatch(args, _env(emu), workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "done" in resumed.stdout and "resuming run" in resumed.stderr
    store = LocalStore(store_dir)
    _no_duplicates(store, emu)
    want_table, want_calls = reference
    calls = Counter(cid for _, _, cid in emu.calls)
    assert calls == want_calls, "a row was answered twice, or lost"
    (run_id,) = mf.list_runs(store)
    pd.testing.assert_frame_equal(_table(Run.open(store, run_id)), want_table)


def test_a_lost_create_answer_is_found_not_sent_again(
    emu: Emulator, workdir: Path, reference: Any
) -> None:
    emu.responder = FireworksScripted()
    # The job is created, but its answer is a gateway's page.
    emu.faults.http(
        "fireworks", "POST", JOBS_PATH, 502, body="<html>Bad gateway</html>", after=True
    )
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, str(_job(workdir)))
    fast(run)
    assert emu.faults.pending() == [] and len(emu.faults.fired) == 1
    _no_duplicates(store, emu)
    m = mf.load(store, run.run_id)[0]
    first = emu.created[0][1]
    assert any(s.batch_id == first for s in m.shards.values()), "the found job was not adopted"
    want_table, want_calls = reference
    assert Counter(cid for _, _, cid in emu.calls) == want_calls
    pd.testing.assert_frame_equal(_table(run), want_table)


def test_fireworks_beside_anthropic_from_nothing_to_the_report(
    emu: Emulator, workdir: Path, tmp_path: Path
) -> None:
    fw = f'[[models]]\nprovider = "fireworks"\nmodel = "{FW_MODEL}"\nlabel = "fw-llama"\n'
    job = write_job(workdir, SMALL.format(rows=3, models=HAIKU + fw))
    store = str(tmp_path / "store")
    r = CliRunner().invoke(cli, ["run", str(job), "--store", store, "--yes", "--poll", "0"], obj={})
    assert r.exit_code == 0, r.output + str(r.exception)
    assert "done" in r.stdout and "report.html" in r.stdout
    (run_id,) = mf.list_runs(LocalStore(store))
    report_dir = os.path.join(store, "runs", run_id, "report")
    with open(os.path.join(report_dir, "report.json"), encoding="utf-8") as f:
        data = json.load(f)
    assert {row["model"] for row in data["summary"]} == {"haiku", "fw-llama"}
    assert {m for p, m, _ in emu.calls if p == "fireworks"} == {FW_MODEL}
    conv = pd.read_csv(os.path.join(report_dir, "conversations.csv"))
    fw_rows = conv[conv.model == "fw-llama"]
    assert len(fw_rows) == 3 * 2 * 2 and set(fw_rows.status) <= {"finished", "failed"}
    assert (fw_rows.cost_usd > 0).all()  # priced from the catalog at the batch rate
