"""The crash matrix on a Gemini generation model: SIGKILL `afbatch run` at each step of submit and
collect, resume, and compare with an uninterrupted run; and a create whose answer is lost.

The scripted experiment of test_run_scripted.py, with its model on the Gemini API (no prefill: the
scripted turns come back whole) and its judges on OpenAI."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from afbatch import manifest as mf
from afbatch.emulator import Emulator, Reply
from afbatch.providers import gemini
from afbatch.runner import Run
from afbatch.store import LocalStore
from runs.conftest import ROOT, fast, write_job
from runs.test_crash import _afbatch, _env, _no_duplicates, _table
from runs.test_run_scripted import JOB, PROMPTS, Scripted

STEPS = [
    "after-claim",
    "after-create",
    "after-submitted",
    "after-ended",
    "after-results-written",
    "after-collected",
    "after-create:3",
]

GEMINI_MODEL = '''provider = "gemini"
model = "gemini-2.5-flash"
label = "toy"'''


class GeminiScripted(Scripted):
    """The scripted model without the "<" prefill Anthropic is sent: each turn comes back whole."""

    def __call__(self, ctx: Any) -> Any:
        got = super().__call__(ctx)
        if ctx.provider == "gemini" and isinstance(got, Reply):
            assert ctx.prefill is None
            return replace(got, text="<" + got.text)
        return got


def _job(folder: Path) -> Path:
    (folder / "d.csv").write_text("goal\n" + "\n".join(PROMPTS) + "\n")
    body = JOB.replace("{mode}", "auto").replace(
        'provider = "anthropic"\nmodel = "claude-haiku-4-5"\nlabel = "toy"', GEMINI_MODEL
    )
    assert GEMINI_MODEL in body
    return write_job(folder, body)


@pytest.fixture(scope="module")
def reference(moto_s3: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The same experiment, uninterrupted, on its own emulator."""
    import shutil

    folder = tmp_path_factory.mktemp("reference-gemini")
    for f in ("user_template.txt", "helpful_only_cot.txt"):
        (folder / f).write_bytes((ROOT / "prompts" / f).read_bytes())
    shutil.copytree(ROOT / "prompts" / "judges", folder / "judges")
    mp = pytest.MonkeyPatch()
    try:
        with Emulator(GeminiScripted()) as emu:
            for k, v in emu.env().items():
                mp.setenv(k, v)
            run, _ = Run.create(LocalStore(folder / "store"), str(_job(folder)))
            fast(run)
            assert any(p == "gemini" for p, *_ in emu.created)
            return _table(run), Counter(cid for _, _, cid in emu.calls)
    finally:
        mp.undo()


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_every_step_then_resume(
    emu: Emulator, workdir: Path, reference: Any, step: str
) -> None:
    emu.responder = GeminiScripted()
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


@pytest.mark.parametrize("way", ["inline", "file"])
def test_a_lost_create_answer_is_found_not_sent_again(
    emu: Emulator, workdir: Path, reference: Any, way: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first Gemini create makes its batch but a gateway loses the answer: the retry finds the
    batch by the token in its display name instead of creating a second (shards sent inline, or
    uploaded as large ones are)."""
    if way == "file":
        monkeypatch.setattr(gemini, "INLINE_MAX_BYTES", 0)
    emu.responder = GeminiScripted()
    emu.faults.http("gemini", "POST", r":batchGenerateContent$", 502, after=True)
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, str(_job(workdir)))
    fast(run)
    assert emu.faults.pending() == [] and len(emu.faults.fired) == 1
    _no_duplicates(store, emu)
    gemini_batches = [b for p, b, *_ in emu.created if p == "gemini"]
    assert all(b.inline is (way == "inline") for b in emu.gemini.batches.values())
    shards = [s for s in run.manifest().shards.values() if s.provider == "gemini" and s.batch_id]
    assert sorted(gemini_batches) == sorted(s.batch_id for s in shards)
    want_table, want_calls = reference
    assert Counter(cid for _, _, cid in emu.calls) == want_calls
    pd.testing.assert_frame_equal(_table(run), want_table)
