"""The crash cases of OpenAI and Anthropic that are not the shared matrix (test_crash_providers.py):
two Anthropic shards of one size with a crash between their creates, two concurrent `afbatch run`
processes on one S3 run, and Ctrl-C. The harness is crash_support.py's.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from afbatch import manifest as mf
from afbatch.store import LocalStore, S3Store
from runs.crash_support import ANTHROPIC, afbatch, run_env, same_as_reference

# A second Anthropic model: each round of the two models makes two shards of the same request count.
SECOND_MODEL = """
[[models]]
provider = "anthropic"
model = "claude-sonnet-4-5"
label = "toy2"
cache = false"""


def test_crash_after_create_then_a_same_size_shard_fails_to_create(emu, workdir, crash_reference):
    """Two Anthropic shards of one request count. The run is killed just after the first one's
    create; on resume the second one's create is answered HTTP 500 before anything was made, while
    the first one's batch is still processing and (within the reconcile grace) not yet adopted by
    its own shard. The second shard must not take that batch, the first must not be sent again."""
    emu.responder = ANTHROPIC.responder()
    emu.processing_delay = 60  # the crashed create's batch stays in progress until released below
    job = ANTHROPIC.job(workdir, more_models=SECOND_MODEL)
    store_dir = workdir / "store"
    args = ["run", str(job), "--store", str(store_dir), "--yes", "--poll", "0"]
    crashed = afbatch(args, run_env(emu, AFBATCH_CRASH_AT="after-create"), workdir)
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    store = LocalStore(store_dir)
    (run_id,) = mf.list_runs(store)
    shards = mf.load(store, run_id)[0].shards
    (first,) = [s for s in shards.values() if s.state == mf.ShardState.SUBMITTING]
    (second,) = [s for s in shards.values() if s.state == mf.ShardState.PENDING]
    assert first.requests == second.requests and first.model != second.model
    assert len(emu.created) == 1

    # the next create is refused before anything is made
    emu.faults.http("anthropic", "POST", r"^/v1/messages/batches$", 500)
    cmd = [sys.executable, "-m", "afbatch", *args]
    # the grace keeps the first shard unreconciled while the second one is sent
    env = run_env(emu, AFBATCH_RECONCILE_GRACE_SECONDS="8")
    p = subprocess.Popen(
        cmd, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.time() + 60
        while True:  # until the failed create was followed up (adopted something, or left as is)
            after_failure = mf.load(store, run_id)[0].shards[second.id]
            done = after_failure.state != mf.ShardState.SUBMITTING or after_failure.submit_errors
            if emu.faults.fired and done:
                break
            assert time.time() < deadline and p.poll() is None, "the second create was never tried"
            time.sleep(0.05)
        emu.processing_delay = 0  # the first shard's batch ends: its results now tell whose it is
        out, err = p.communicate(timeout=240)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err[-3000:]
    m = mf.load(store, run_id)[0]
    assert m.shards[first.id].batch_id == emu.created[0][1], "the crashed create's batch was taken"
    batch_shards = [s for s in m.shards.values() if s.batch_id and not s.on_demand]
    assert len(emu.created) == len(batch_shards), "more batches were created than shards"
    same_as_reference(store, emu, crash_reference(ANTHROPIC, more_models=SECOND_MODEL))
    # while the batch was processing, the second shard neither took it nor went back to be resent.
    # (Its owner is not checked: a snapshot taken late may catch the live run claiming it again to
    # reconcile, which is legal.)
    assert after_failure.state == mf.ShardState.SUBMITTING and after_failure.batch_id is None
    assert "whether a batch was created is not known" in (after_failure.message or "")


def test_two_concurrent_runs_on_one_s3_run(emu, workdir, crash_reference, bucket):
    emu.responder = ANTHROPIC.responder()
    emu.processing_delay = 0.3
    job = ANTHROPIC.job(workdir)
    url = f"s3://{bucket}/shared"
    args = ["run", str(job), "--store", url, "--yes", "--poll", "0.05"]
    env = run_env(emu)
    results: list[subprocess.CompletedProcess[str]] = []

    def go() -> None:
        results.append(afbatch(args, env, workdir))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    same_as_reference(S3Store(url), emu, crash_reference(ANTHROPIC))


def test_ctrl_c_leaves_the_run_resumable(emu, workdir, crash_reference):
    emu.responder = ANTHROPIC.responder()
    emu.processing_delay = 60  # the first batch stays in progress while we interrupt
    job = ANTHROPIC.job(workdir)
    store_dir = workdir / "store"
    args = ["run", str(job), "--store", str(store_dir), "--yes"]
    p = subprocess.Popen(
        [sys.executable, "-m", "afbatch", *args, "--poll", "0.2"],
        env=run_env(emu),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not emu.created:
        time.sleep(0.1)
    assert emu.created, "nothing was submitted"
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    emu.processing_delay = 0
    resumed = afbatch([*args, "--poll", "0"], run_env(emu), workdir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    same_as_reference(LocalStore(store_dir), emu, crash_reference(ANTHROPIC))
