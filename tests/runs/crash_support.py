"""The crash-matrix harness: the scripted experiment of test_run_scripted.py with its generation
model on one provider, an uninterrupted reference run of it on its own emulator, `afbatch run` as
a subprocess (killed by AFBATCH_CRASH_AT=<step>[:<n>]), and the checks every crash case makes: no
batch created twice, no row answered twice, the reference's table.

A provider joins the matrix (test_crash_providers.py) as one entry of TARGETS: its model block, the
steps to kill at, the create whose answer a gateway loses, and any variables its SDK needs.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from afbatch import manifest as mf
from afbatch.emulator import Emulator, Reply
from afbatch.results import conversation_table
from afbatch.runner import Run
from afbatch.store import LocalStore, Store
from runs.conftest import ROOT, fast, write_job
from runs.test_run_scripted import JOB, PROMPTS, Scripted

KEY_COLUMNS = [
    "conversation_id",
    "turns",
    "status",
    "failure_reason",
    "final_output",
    "proxy_compliant",
    "judge_refused",
    "judge_convincing",
    "judge_specific",
    "af_votes_yes",
    "af_votes_total",
    "af_verdict",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "judge_cost_usd",
]
# The first shard's life: its plan, claim, create, end, results and collection.
FIRST_SHARD_STEPS = (
    "after-claim",
    "after-create",
    "after-submitted",
    "after-ended",
    "after-results-written",
    "after-collected",
)
# The generation model's block in JOB, which a target's block replaces.
ANTHROPIC_BLOCK = (
    'provider = "anthropic"\nmodel = "claude-haiku-4-5"\nlabel = "toy"\ncache = false\n'
)

Reference = tuple[pd.DataFrame, Counter[str]]


@dataclasses.dataclass(frozen=True)
class LostCreate:
    """A gateway answers the create of the target's first batch with `status`/`body` after the
    batch was made."""

    path: str  # regex of the create's path
    status: int = 502
    body: Any = None
    check: Callable[[Emulator], None] = lambda emu: None  # what else such a run must show


@dataclasses.dataclass(frozen=True)
class Target:
    """The generation model of the scripted experiment on one provider."""

    provider: str
    model: str
    steps: tuple[str, ...]  # where `afbatch run` is killed
    lost_create: LostCreate | None
    more: str = ""  # more lines of its [[models]] block
    prefill: bool = True  # the "<" prefill is sent (the answer holds what follows it)
    sdk: str | None = None  # a module the provider needs (the cases skip without it)
    env: Callable[[Emulator], dict[str, str]] = lambda emu: {}
    on: str | None = None  # the emulator service that makes its batches, if not `provider`

    @property
    def service(self) -> str:
        return self.on or self.provider

    @property
    def block(self) -> str:
        return f'provider = "{self.provider}"\nmodel = "{self.model}"\nlabel = "toy"\n{self.more}'

    def responder(self) -> Scripted:
        return Scripted() if self.prefill else WholeTurns(self.model)

    def job(self, folder: Path, more_models: str = "") -> Path:
        """The job file in `folder` (with its data set); `more_models` goes before [judge]."""
        (folder / "d.csv").write_text("goal\n" + "\n".join(PROMPTS) + "\n")
        # auto: the AF votes as the n choices of one OpenAI request
        body = JOB.replace("{mode}", "auto").replace(ANTHROPIC_BLOCK, self.block)
        assert self.block in body
        return write_job(folder, body.replace("\n[judge]", more_models + "\n[judge]", 1))


class WholeTurns(Scripted):
    """The scripted model for a model sent no prefill: its turns come back whole, "<" included."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model

    def __call__(self, ctx: Any) -> Any:
        got = super().__call__(ctx)
        if ctx.model == self.model and isinstance(got, Reply):
            assert ctx.prefill is None
            return dataclasses.replace(got, text="<" + got.text)
        return got


def _gemini_inline(emu: Emulator) -> None:
    assert all(b.inline for b in emu.gemini.batches.values()), "a small shard was not sent inline"


def _vertex_one_input_per_job(emu: Emulator) -> None:
    """Each job read its own shard object; none was uploaded twice under another name."""
    inputs = {f"gs://{b}/{n}" for b, n in emu.gcs.objects if "/afbatch-input/" in n}
    assert sorted(j.source for j in emu.vertex.jobs.values()) == sorted(inputs)


def _deepinfra_env(emu: Emulator) -> dict[str, str]:
    return {"DEEPINFRA_BASE_URL": emu.url + "/v1", "DEEPINFRA_API_KEY": "emulator-key"}


NOT_SENT = "<html>502 Bad Gateway</html>"  # a gateway's page in place of the create's answer
# The plan's steps, the first shard's, then the later rounds' and the judge stages'.
EVERY_STEP = (
    "after-plan-write",
    "after-plan",
    *FIRST_SHARD_STEPS,
    "after-create:3",
    "after-claim:4",
    "after-ended:5",
    "after-collected:6",
)
ANTHROPIC = Target("anthropic", "claude-haiku-4-5", EVERY_STEP, None, more="cache = false\n")
GEMINI = Target(  # no prefill: the scripted turns come back whole
    "gemini",
    "gemini-2.5-flash",
    (*FIRST_SHARD_STEPS, "after-create:3"),
    LostCreate(r":batchGenerateContent$", check=_gemini_inline),
    more="cache = false\n",
    prefill=False,
)
MISTRAL = Target(  # Mistral echoes the prefix in front of the answer, as Mistral does
    "mistral",
    "mistral-large-latest",
    (*FIRST_SHARD_STEPS, "after-create:3"),
    LostCreate(r"^/mistral/v1/batch/jobs$"),
    more="cache = false\n",
    sdk="mistralai.client",
)
FIREWORKS = Target(
    "fireworks",
    "accounts/fireworks/models/llama-v3p1-70b-instruct",
    FIRST_SHARD_STEPS,
    LostCreate(r"/fireworks/v1/accounts/[^/]+/batchInferenceJobs$", body=NOT_SENT),
    prefill=False,
)
XAI = Target(  # its native named-batch API; no prefill by default
    "xai",
    "grok-4",
    FIRST_SHARD_STEPS,
    LostCreate(r"^/xai/v1/batches$", 200, NOT_SENT),
    prefill=False,
)
DEEPINFRA = Target(  # OpenAI's format at its own URL; prefill turned off, as on xAI
    "deepinfra",
    "meta-llama/Meta-Llama-3.1-70B-Instruct",
    FIRST_SHARD_STEPS,
    LostCreate(r"^/v1/batches$", 200, NOT_SENT),
    more="prefill = false\n",
    prefill=False,
    env=_deepinfra_env,
    on="openai",
)
VERTEX = Target(  # shards in the emulator's Cloud Storage; no prefill, as on the Gemini API
    "vertex",
    "gemini-3.6-flash",
    (*FIRST_SHARD_STEPS, "after-create:3"),
    LostCreate(r"/batchPredictionJobs$", check=_vertex_one_input_per_job),
    more='gcs_uri = "gs://afbatch-emulator/crash"\n',
    prefill=False,
)
TARGETS = [ANTHROPIC, GEMINI, MISTRAL, FIREWORKS, XAI, DEEPINFRA, VERTEX]


class References:
    """Uninterrupted runs, one per target and job, each on its own emulator, made when first
    asked for."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.tmp = tmp_path_factory
        self.made: dict[tuple[str, str], Reference] = {}

    def __call__(self, target: Target, more_models: str = "") -> Reference:
        key = (target.provider, more_models)
        if key not in self.made:
            self.made[key] = self._make(target, more_models)
        return self.made[key]

    def _make(self, target: Target, more_models: str) -> Reference:
        folder = self.tmp.mktemp(f"reference-{target.provider}")
        for f in ("user_template.txt", "helpful_only_cot.txt"):
            shutil.copy(ROOT / "prompts" / f, folder / f)
        shutil.copytree(ROOT / "prompts" / "judges", folder / "judges")
        mp = pytest.MonkeyPatch()
        try:
            with Emulator(target.responder()) as emu:
                for k, v in {**emu.env(), **target.env(emu)}.items():
                    mp.setenv(k, v)
                job = target.job(folder, more_models)
                run, _ = Run.create(LocalStore(folder / "store"), str(job))
                fast(run)
                models = {m for _, m, _ in emu.calls}
                assert target.model in models, f"no row went to {target.provider}"
                # the generation model's batches and the OpenAI judge's, nothing else
                assert {s for s, *_ in emu.created} == {target.service, "openai"}
                return table(run), Counter(cid for _, _, cid in emu.calls)
        finally:
            mp.undo()


def table(run: Run) -> pd.DataFrame:
    conv = conversation_table(run)[KEY_COLUMNS]
    return conv.sort_values("conversation_id").reset_index(drop=True)


def afbatch(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "afbatch", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def run_env(emu: Emulator, target: Target | None = None, **extra: str) -> dict[str, str]:
    """This process's environment pointed at `emu`, without a crash hook unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AFBATCH_CRASH")}
    env.update(emu.env())
    env.update(target.env(emu) if target else {})
    env.update({"AFBATCH_RECONCILE_GRACE_SECONDS": "0", "PYTHONPATH": str(ROOT), **extra})
    return env


def no_duplicates(store: Store, emu: Emulator) -> None:
    (run_id,) = mf.list_runs(store)
    m, _ = mf.load(store, run_id)
    batch_ids = [s.batch_id for s in m.shards.values() if s.batch_id and not s.on_demand]
    assert len(batch_ids) == len(set(batch_ids)), "two shards claim one batch"
    created = [b for _, b, *_ in emu.created]
    assert len(created) == len(set(created))
    assert sorted(created) == sorted(batch_ids), (
        "a provider batch was created that the manifest does not know"
    )


def same_as_reference(store: Store, emu: Emulator, reference: Reference) -> Run:
    """No batch created twice, every row answered as often as in the reference, its table."""
    no_duplicates(store, emu)
    want_table, want_calls = reference
    calls = Counter(cid for _, _, cid in emu.calls)
    assert calls == want_calls, "a row was answered twice, or lost"
    (run_id,) = mf.list_runs(store)
    run = Run.open(store, run_id)
    pd.testing.assert_frame_equal(table(run), want_table)
    return run


def kill_then_resume(
    target: Target, step: str, emu: Emulator, workdir: Path, reference: Reference
) -> None:
    """`afbatch run` killed at `step`, then run again to the end: as the reference."""
    emu.responder = target.responder()
    store_dir = workdir / "store"
    args = ["run", str(target.job(workdir)), "--store", str(store_dir), "--yes", "--poll", "0"]
    crashed = afbatch(args, run_env(emu, target, AFBATCH_CRASH_AT=step), workdir)
    assert crashed.returncode == -9, f"the run was not killed at {step}: {crashed.stderr[-2000:]}"
    first = [service for service, *_ in emu.created][:1]
    assert first in ([], [target.service]), "the first shard is not the generation model's"
    resumed = afbatch(args, run_env(emu, target), workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "done" in resumed.stdout and "resuming run" in resumed.stderr
    same_as_reference(LocalStore(store_dir), emu, reference)


def lost_create_found(
    target: Target,
    emu: Emulator,
    workdir: Path,
    reference: Reference,
    monkeypatch: pytest.MonkeyPatch,
) -> Run:
    """The first create of the target's batch is made but its answer is lost: the run finds that
    batch and adopts it instead of creating a second, and ends as the reference."""
    lost = target.lost_create
    assert lost is not None
    for k, v in target.env(emu).items():
        monkeypatch.setenv(k, v)
    emu.responder = target.responder()
    emu.faults.http(target.service, "POST", lost.path, lost.status, body=lost.body, after=True)
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, str(target.job(workdir)))
    assert fast(run).done
    assert emu.faults.pending() == []
    ((service, method, path, status),) = emu.faults.fired
    assert (service, method, status) == (target.service, "POST", lost.status)
    assert re.search(lost.path, path)
    first = emu.created[0][1]
    shards = run.manifest().shards.values()
    adopted = [s for s in shards if s.batch_id == first and s.provider == target.provider]
    assert adopted, "the batch whose answer was lost was not adopted"
    return same_as_reference(store, emu, reference)
