"""The crash matrix on every provider of crash_support.TARGETS: SIGKILL `afbatch run` at each of
the target's steps, resume, and compare with an uninterrupted run; and the create whose answer a
gateway loses, which the run must find instead of sending again. Then the cases one provider
has of its own, on the same harness.

The crashes are real: a test hook (AFBATCH_CRASH_AT=<step>[:<n>]) sends SIGKILL to the process the
n-th time it passes <step>. The emulator runs in this test process, so it outlives the killed run
and counts every batch created and every row answered.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from afbatch.emulator import Emulator
from afbatch.providers import gemini
from afbatch.runner import Run
from afbatch.store import LocalStore
from runs.conftest import fast
from runs.crash_support import (
    ANTHROPIC,
    GEMINI,
    MISTRAL,
    TARGETS,
    XAI,
    Target,
    kill_then_resume,
    lost_create_found,
    same_as_reference,
)


def _needs(target: Target) -> pytest.MarkDecorator:
    missing = target.sdk is not None and find_spec(target.sdk.split(".")[0]) is None
    return pytest.mark.skipif(missing, reason=f"{target.sdk} is not installed")


KILLS = [
    pytest.param(t, step, id=f"{t.provider}-{step}", marks=[pytest.mark.slow, _needs(t)])
    for t in TARGETS
    for step in t.steps
]
LOST_CREATES = [
    pytest.param(t, id=t.provider, marks=_needs(t)) for t in TARGETS if t.lost_create is not None
]


@pytest.mark.parametrize(("target", "step"), KILLS)
def test_kill_at_every_step_then_resume(
    emu: Emulator, workdir: Path, crash_reference: Any, target: Target, step: str
) -> None:
    kill_then_resume(target, step, emu, workdir, crash_reference(target))


@pytest.mark.parametrize("target", LOST_CREATES)
def test_a_lost_create_answer_is_found_not_sent_again(
    emu: Emulator,
    workdir: Path,
    crash_reference: Any,
    target: Target,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lost_create_found(target, emu, workdir, crash_reference(target), monkeypatch)
    assert target.lost_create is not None
    target.lost_create.check(emu)


def test_gemini_a_lost_create_answer_for_an_uploaded_shard_is_found(
    emu: Emulator, workdir: Path, crash_reference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As above, with the shards uploaded as a file (as large ones are), not sent inline."""
    monkeypatch.setattr(gemini, "INLINE_MAX_BYTES", 0)
    lost_create_found(GEMINI, emu, workdir, crash_reference(GEMINI), monkeypatch)
    assert emu.gemini.batches and not any(b.inline for b in emu.gemini.batches.values())


@_needs(MISTRAL)
def test_mistral_reads_the_script_as_anthropic_does(crash_reference: Any) -> None:
    """The prefix Mistral echoes is not doubled: the same script gives the same conversations as
    on Anthropic (whose answers hold the continuation only)."""
    cols = [
        "turns",
        "status",
        "failure_reason",
        "final_output",
        "proxy_compliant",
        "judge_refused",
        "af_verdict",
    ]

    def conversations(target: Target) -> pd.DataFrame:
        got = crash_reference(target)[0][cols]
        return got.sort_values(["final_output", "turns"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(conversations(MISTRAL), conversations(ANTHROPIC))


def test_xai_add_refused_midway_the_batch_is_collected_and_the_rest_asked_again(
    emu: Emulator, workdir: Path, crash_reference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard needs several add calls; the second is refused after the first went in. The run
    collects the batch it made (found by name) and asks the requests never added in a later
    shard: every row answered once, the same table as the uninterrupted run."""
    monkeypatch.setattr("afbatch.providers.xai.MAX_ADD_BYTES", 100_000)  # ~3 requests a call
    emu.responder = XAI.responder()
    emu.faults.http("xai", "POST", r"/requests$", delay=0.001)  # the first add goes in
    emu.faults.http("xai", "POST", r"/requests$", 400)  # the second is refused
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, str(XAI.job(workdir)))
    fast(run)
    assert emu.faults.pending() == []
    first_round = [
        s for s in run.manifest().shards.values() if s.provider == "xai" and s.round == 1
    ]
    # the partly filled batch was kept and collected; the rest went in a shard of its own
    assert emu.created[0][1] in {s.batch_id for s in first_round} and len(first_round) >= 2
    same_as_reference(store, emu, crash_reference(XAI))
