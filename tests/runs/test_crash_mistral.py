"""Crash matrix for a generation model on Mistral (tests/runs/test_crash.py's helpers): SIGKILL
`afbatch run` at each step of submit and collect, resume, and compare with an uninterrupted run;
and a create whose answer is lost, which the retry must find by its token instead of sending again.

The scripted model answers with the text after the "<" prefill; the emulated Mistral puts the
prefix in front of it, as Mistral does, so the table must equal the one the same script gives.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from afbatch import manifest as mf
from afbatch.emulator import Emulator
from afbatch.runner import Run
from afbatch.store import LocalStore
from runs.conftest import ROOT, fast, write_job
from runs.test_crash import _afbatch, _env, _no_duplicates, _table
from runs.test_run_scripted import JOB, PROMPTS, Scripted

pytest.importorskip("mistralai.client")

ANTHROPIC_MODEL = 'provider = "anthropic"\nmodel = "claude-haiku-4-5"\nlabel = "toy"\n'
MISTRAL_MODEL = 'provider = "mistral"\nmodel = "mistral-large-latest"\nlabel = "toy"\n'
Reference = tuple[pd.DataFrame, Counter]
STEPS = [
    "after-claim",
    "after-create",
    "after-submitted",
    "after-ended",
    "after-results-written",
    "after-collected",
    "after-create:3",
]


def _job(folder: Path) -> Path:
    (folder / "d.csv").write_text("goal\n" + "\n".join(PROMPTS) + "\n")
    body = JOB.replace("{mode}", "auto")
    assert ANTHROPIC_MODEL in body
    return write_job(folder, body.replace(ANTHROPIC_MODEL, MISTRAL_MODEL))


@pytest.fixture(scope="module")
def reference(moto_s3: str, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    """The same experiment, uninterrupted, on its own emulator."""
    import shutil

    folder = tmp_path_factory.mktemp("reference-mistral")
    for f in ("user_template.txt", "helpful_only_cot.txt"):
        (folder / f).write_bytes((ROOT / "prompts" / f).read_bytes())
    shutil.copytree(ROOT / "prompts" / "judges", folder / "judges")
    mp = pytest.MonkeyPatch()
    try:
        with Emulator(Scripted()) as emu:
            for k, v in emu.env().items():
                mp.setenv(k, v)
            run, _ = Run.create(LocalStore(folder / "store"), str(_job(folder)))
            fast(run)
            assert {c[0] for c in emu.created} == {"mistral", "openai"}
            return _table(run), Counter(cid for _, _, cid in emu.calls)
    finally:
        mp.undo()


def test_the_reference_reads_the_script_as_anthropic_does(
    reference: Reference, emu: Emulator, workdir: Path
) -> None:
    """The echoed prefix is not doubled: the same script gives the same conversations as on
    Anthropic (whose answers hold the continuation only)."""
    emu.responder = Scripted()
    (workdir / "d.csv").write_text("goal\n" + "\n".join(PROMPTS) + "\n")
    run, _ = Run.create(
        LocalStore(workdir / "store"), str(write_job(workdir, JOB.replace("{mode}", "auto")))
    )
    fast(run)
    cols = [
        "turns",
        "status",
        "failure_reason",
        "final_output",
        "proxy_compliant",
        "judge_refused",
        "af_verdict",
    ]
    want = _table(run)[cols].sort_values(["final_output", "turns"]).reset_index(drop=True)
    got = reference[0][cols].sort_values(["final_output", "turns"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
def test_kill_at_every_step_then_resume(
    emu: Emulator, workdir: Path, reference: Reference, step: str
) -> None:
    emu.responder = Scripted()
    job = _job(workdir)
    store_dir = workdir / "store"
    args = ["run", str(job), "--store", str(store_dir), "--yes", "--poll", "0"]
    crashed = _afbatch(args, _env(emu, AFBATCH_CRASH_AT=step), workdir)
    assert crashed.returncode == -9, f"the run was not killed at {step}: {crashed.stderr[-2000:]}"
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
    emu: Emulator, workdir: Path, reference: Reference
) -> None:
    """The first Mistral job is made, but a gateway loses the answer (HTTP 502 after the work):
    the retry finds the job by the token in its metadata."""
    emu.responder = Scripted()
    emu.faults.http("mistral", "POST", r"^/mistral/v1/batch/jobs$", 502, after=True)
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, str(_job(workdir)))
    fast(run)
    assert emu.faults.fired == [("mistral", "POST", "/mistral/v1/batch/jobs", 502)]
    _no_duplicates(store, emu)
    first = next(b for p, b, *_ in emu.created if p == "mistral")
    assert any(s.batch_id == first for s in run.manifest().shards.values())  # adopted
    want_table, want_calls = reference
    assert Counter(cid for _, _, cid in emu.calls) == want_calls
    pd.testing.assert_frame_equal(_table(run), want_table)
