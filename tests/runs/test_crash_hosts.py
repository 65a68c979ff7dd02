"""The crash matrix of tests/runs/test_crash.py with the generation model on xAI (its native
named-batch API) and on DeepInfra (OpenAI's format at its own URL): SIGKILL `afbatch run` at
each submit/collect step, resume, and check that no batch was created twice, no row answered
twice, and the table is the uninterrupted run's. Plus the lost create answer: found, not resent.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from afbatch import manifest as mf
from afbatch.emulator import Emulator, Reply
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
]
ANTHROPIC_MODEL = """[[models]]
provider = "anthropic"
model = "claude-haiku-4-5"
label = "toy"
cache = false
"""
# The generation model per host. Neither sends the "<" prefill here (xAI: not by default;
# DeepInfra: turned off, so that the scripted model sees the same turns on both).
HOSTS = {
    "xai": '[[models]]\nprovider = "xai"\nmodel = "grok-4"\nlabel = "toy"\n',
    "deepinfra": (
        '[[models]]\nprovider = "deepinfra"\nmodel = '
        '"meta-llama/Meta-Llama-3.1-70B-Instruct"\nlabel = "toy"\nprefill = false\n'
    ),
}
GENERATORS = ("grok-4", "meta-llama/Meta-Llama-3.1-70B-Instruct")
CREATE = {"xai": ("xai", r"^/xai/v1/batches$"), "deepinfra": ("openai", r"^/v1/batches$")}


class WithoutPrefill(Scripted):
    """The scripted model, for a model whose turns carry no prefill: it writes the "<" itself."""

    def __call__(self, ctx: Any) -> Any:
        out = super().__call__(ctx)
        if isinstance(out, Reply) and ctx.model in GENERATORS:
            return dataclasses.replace(out, text="<" + out.text)
        return out


def host_env(emu: Emulator) -> dict[str, str]:
    return {"DEEPINFRA_BASE_URL": emu.url + "/v1", "DEEPINFRA_API_KEY": "emulator-key"}


def _job(folder: Path, host: str) -> Path:
    (folder / "d.csv").write_text("goal\n" + "\n".join(PROMPTS) + "\n")
    body = JOB.replace("{mode}", "auto").replace(ANTHROPIC_MODEL, HOSTS[host])
    assert HOSTS[host] in body
    return write_job(folder, body)


@pytest.fixture(scope="module", params=sorted(HOSTS))
def reference(
    request: pytest.FixtureRequest, moto_s3: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Any, Counter[str]]:
    host = request.param
    folder = tmp_path_factory.mktemp(f"reference-{host}")
    for f in ("user_template.txt", "helpful_only_cot.txt"):
        (folder / f).write_bytes((ROOT / "prompts" / f).read_bytes())
    shutil.copytree(ROOT / "prompts" / "judges", folder / "judges")
    mp = pytest.MonkeyPatch()
    try:
        with Emulator(WithoutPrefill()) as emu:
            for k, v in {**emu.env(), **host_env(emu)}.items():
                mp.setenv(k, v)
            run, _ = Run.create(LocalStore(folder / "store"), str(_job(folder, host)))
            fast(run)
            assert {m for _, m, _ in emu.calls} & set(GENERATORS), f"no row went to {host}"
            return host, _table(run), Counter(cid for _, _, cid in emu.calls)
    finally:
        mp.undo()


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_every_step_then_resume(
    emu: Emulator, workdir: Path, reference: Any, step: str
) -> None:
    host, want_table, want_calls = reference
    emu.responder = WithoutPrefill()
    job = _job(workdir, host)
    store_dir = workdir / "store"
    args = ["run", str(job), "--store", str(store_dir), "--yes", "--poll", "0"]
    env = {**_env(emu), **host_env(emu)}
    crashed = _afbatch(args, {**env, "AFBATCH_CRASH_AT": step}, workdir)
    assert crashed.returncode == -9, f"the run was not killed at {step}: {crashed.stderr[-2000:]}"
    resumed = _afbatch(args, env, workdir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "done" in resumed.stdout and "resuming run" in resumed.stderr
    store = LocalStore(store_dir)
    _no_duplicates(store, emu)
    calls = Counter(cid for _, _, cid in emu.calls)
    assert calls == want_calls, "a row was answered twice, or lost"
    (run_id,) = mf.list_runs(store)
    pd.testing.assert_frame_equal(_table(Run.open(store, run_id)), want_table)


def test_lost_create_answer_is_found_not_sent_again(
    emu: Emulator, workdir: Path, reference: Any
) -> None:
    """A gateway mangles the answer to the first create of the host's batch (the batch exists):
    the run finds that batch and sends nothing twice."""
    host, want_table, want_calls = reference
    emu.responder = WithoutPrefill()
    provider, path = CREATE[host]
    emu.faults.http(provider, "POST", path, 200, body="<html>502 Bad Gateway</html>", after=True)
    job = _job(workdir, host)
    store_dir = workdir / "store"
    env = {**_env(emu), **host_env(emu)}
    done = _afbatch(
        ["run", str(job), "--store", str(store_dir), "--yes", "--poll", "0"], env, workdir
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert emu.faults.fired and emu.faults.pending() == []
    _no_duplicates(LocalStore(store_dir), emu)
    assert Counter(cid for _, _, cid in emu.calls) == want_calls
    store = LocalStore(store_dir)
    (run_id,) = mf.list_runs(store)
    pd.testing.assert_frame_equal(_table(Run.open(store, run_id)), want_table)


def test_xai_add_refused_midway_the_batch_is_collected_and_the_rest_asked_again(
    emu: Emulator, workdir: Path, reference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shard needs several add calls; the second is refused after the first went in. The run
    collects the batch it made (found by name) and asks the requests never added in a later
    shard: every row answered once, the same table as the uninterrupted run."""
    host, want_table, want_calls = reference
    if host != "xai":
        pytest.skip("xAI's add calls only")
    monkeypatch.setattr("afbatch.providers.xai.MAX_ADD_BYTES", 100_000)  # ~3 requests a call
    emu.responder = WithoutPrefill()
    emu.faults.http("xai", "POST", r"/requests$", delay=0.001)  # the first add goes in
    emu.faults.http("xai", "POST", r"/requests$", 400)  # the second is refused
    run, _ = Run.create(LocalStore(workdir / "store"), str(_job(workdir, host)))
    fast(run)
    assert emu.faults.pending() == []
    first_round = [
        s for s in run.manifest().shards.values() if s.provider == "xai" and s.round == 1
    ]
    # the partly filled batch was kept and collected; the rest went in a shard of its own
    assert emu.created[0][1] in {s.batch_id for s in first_round} and len(first_round) >= 2
    _no_duplicates(LocalStore(workdir / "store"), emu)
    assert Counter(cid for _, _, cid in emu.calls) == want_calls
    pd.testing.assert_frame_equal(_table(run), want_table)
