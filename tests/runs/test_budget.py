"""--max-cost is a hard cap on what is billed: checked up front against the expected cost, kept
during the run by pacing against true per-shard bounds, a clean stop (exit 3) when it is reached;
and a run cancelled from elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from afbatch import manifest as mf
from afbatch.cli import cli
from afbatch.emulator import Reply
from afbatch.emulator.responders import input_text
from afbatch.errors import BudgetError
from afbatch.manifest import ShardState
from afbatch.results import conversation_table
from afbatch.runner import Run
from afbatch.store import LocalStore
from runs.conftest import ROOT, fast, write_job

SAMPLE = str(ROOT / "jobs" / "sample.toml")
JOB = """
name = "budget"
[dataset]
source = "sample_requests.csv"
first = 4
[prompts]
user_template = "user_template.txt"
[[variants]]
name = "cot"
system_prompt = "helpful_only_cot.txt"
cot = true
[[variants]]
name = "no_cot"
system_prompt = "helpful_only_no_cot.txt"
cot = false
[sampling]
max_tokens = 1000
[[models]]
provider = "anthropic"
model = "claude-haiku-4-5"
label = "haiku"
[[models]]
provider = "openai"
model = "gpt-4o-mini"
label = "mini"
[judge]
compliance_template = "judges/compliance.txt"
af_template = "judges/alignment_faking.txt"
af_votes = 3
[judge.model]
provider = "openai"
model = "gpt-4o-mini"
label = "judge"
"""


def cli_run(*args: str):
    return CliRunner().invoke(cli, list(args), obj={})


def error_line(text: str) -> str:
    """The one error line a failing command ends with (progress and endpoint lines come first)."""
    assert "Traceback" not in text and "please report" not in text
    lines = text.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(x.startswith("error: ") for x in lines) == 1
    return lines[-1]


def answers(emu) -> Counter:
    """How often each request was answered (a judge is asked again after an unparseable reply)."""
    return Counter((p, cid) for p, _, cid in emu.calls)


def baseline(emu, workdir, path: str) -> tuple[float, Counter]:
    """What an uninterrupted, uncapped run of the job costs and answers (in a store of its own)."""
    run, _ = Run.create(LocalStore(workdir / "baseline"), path)
    spent = fast(run).spent_usd
    calls = answers(emu)
    emu.reset()
    return spent, calls


def test_cap_between_expected_and_worst_lets_the_run_finish_paced(emu, workdir):
    uncapped = cli_run("run", SAMPLE, "--store", str(workdir / "free"), "--yes", "--poll", "0")
    assert uncapped.exit_code == 0, uncapped.output
    (rid,) = mf.list_runs(LocalStore(workdir / "free"))
    m0, _ = mf.load(LocalStore(workdir / "free"), rid)
    calls = answers(emu)
    totals = m0.estimate["totals"]
    cap = 2.0
    assert totals["cost_batch_cached_usd"] < cap < totals["cost_worst_usd"]  # the case tested
    assert m0.spent_usd() < cap
    emu.reset()
    r = cli_run(
        "run",
        SAMPLE,
        "--store",
        str(workdir / "capped"),
        "--yes",
        "--poll",
        "0",
        "--max-cost",
        str(cap),
    )
    assert r.exit_code == 0, r.output
    assert "exceeds --max-cost" in r.stderr and "paced" in r.stderr  # said up front
    m, _ = mf.load(LocalStore(workdir / "capped"), rid)
    assert m.spent_usd() <= cap
    assert len(m.shards) > len(m0.shards)  # smaller shards: pacing happened
    assert all(s.cost_usd <= s.bound_usd for s in m.shards.values())
    assert answers(emu) == calls  # each request answered as often as without the cap: nothing twice


def test_cap_reached_mid_run_stops_cleanly_and_a_higher_cap_resumes(emu, workdir):
    path = str(write_job(workdir, JOB))
    unpaced, calls = baseline(emu, workdir, path)
    store = LocalStore(workdir / "store2")
    run, _ = Run.create(store, path, max_cost=unpaced / 3)
    r = cli_run("run", run.run_id, "--store", str(workdir / "store2"), "--poll", "0")
    assert r.exit_code == 3, r.output
    line = error_line(r.stderr)
    assert "--max-cost" in line and "spent" in line and "not sent" in line
    assert f"afbatch run {run.run_id}" in line
    m = run.manifest()
    assert 0 < m.spent_usd() <= unpaced / 3
    assert not any(s.state in mf.SENT for s in m.shards.values())
    # generous: the emulator caches prompts per batch, so each small paced Anthropic batch writes
    # the cache again
    r = cli_run(
        "run",
        run.run_id,
        "--store",
        str(workdir / "store2"),
        "--poll",
        "0",
        "--max-cost",
        str(unpaced * 10),
    )
    assert r.exit_code == 0, r.output
    assert run.manifest().spent_usd() <= unpaced * 10
    conv = conversation_table(run)
    assert conv.conversation_id.is_unique and set(conv.status) <= {"finished", "failed"}
    assert answers(emu) == calls


def test_shards_planned_without_room_are_cut_smaller_instead_of_stopping(emu, workdir):
    path = str(write_job(workdir, JOB))
    _, calls = baseline(emu, workdir, path)
    run, _ = Run.create(LocalStore(workdir / "store"), path)
    assert run.plan() > 0  # planned with no cap: one shard per model, as big as the limits allow
    biggest = max(run.manifest().shards.values(), key=lambda s: s.bound_usd)
    cap = 0.9 * biggest.bound_usd  # that one may never be sent as planned
    st = run.run(max_cost=cap, poll_interval=0, max_interval=0, sleep=lambda s: None)
    assert st.done and st.spent_usd <= cap
    retired = run.manifest().shards[biggest.id]
    assert retired.state == ShardState.CANCELLED and "smaller" in (retired.message or "")
    assert answers(emu) == calls  # its requests were answered once, from the smaller shards


def test_cap_below_the_expected_cost_is_refused_before_anything_exists(emu, workdir):
    r = cli_run("run", SAMPLE, "--store", str(workdir / "s"), "--yes", "--max-cost", "0.5")
    assert r.exit_code == 3
    line = error_line(r.stderr)
    assert "expected cost" in line and "--max-cost $0.50" in line
    assert mf.list_runs(LocalStore(workdir / "s")) == [] and emu.created == []


def test_estimate_with_a_cap_below_the_worst_case_says_so_and_passes():
    r = cli_run("estimate", SAMPLE, "--max-cost", "2", "--format", "json")
    assert r.exit_code == 0, r.output
    totals = json.loads(r.stdout)["totals"]
    assert totals["cost_batch_cached_usd"] < 2 < totals["cost_worst_usd"]
    assert f"worst case ${totals['cost_worst_usd']:,.2f} exceeds --max-cost $2.00" in r.stderr


def test_shard_bound_holds_even_when_every_byte_is_a_token(emu, workdir):
    """A reply billed at the most a request can use (one token per byte of its texts, max_tokens
    out, a cache write) never costs more than its shard's bound, which the cap relies on."""

    def worst(ctx):
        n = len(input_text(ctx).encode())
        # (Anthropic also writes the cache, the dearest input rate)
        return Reply("<OUTPUT>x</OUTPUT>", input_tokens=n, output_tokens=1000)

    emu.responder = worst
    run, _ = Run.create(LocalStore(workdir / "store"), str(write_job(workdir, JOB)))
    fast(run)
    m = run.manifest()
    assert m.spent_usd() > 0
    for s in m.shards.values():
        assert s.cost_usd <= s.bound_usd, s.id


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
@pytest.mark.parametrize("command", ["estimate", "submit", "run", "collect"])
def test_max_cost_must_be_a_finite_positive_amount(command, value, workdir):
    target = "some-run" if command == "collect" else SAMPLE
    extra = ["--yes"] if command in ("submit", "run") else []
    r = cli_run(command, target, "--store", str(workdir / "s"), *extra, "--max-cost", value)
    assert r.exit_code == 2, r.output
    assert "--max-cost" in r.output
    assert not (workdir / "s").exists()


# --- cancel from another process ----------------------------------------------------------------


def test_cancel_from_another_process_stops_the_run_and_run_resumes_it(emu, workdir):
    store = workdir / "store"
    path = str(write_job(workdir, JOB))
    _, calls = baseline(emu, workdir, path)
    emu.processing_delay = 3600  # batches stay in progress until the cancel
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "afbatch"]
    running = subprocess.Popen(
        [*cmd, "run", path, "--store", str(store), "--yes", "--poll", "0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        rid = None
        while time.monotonic() < deadline:
            runs = mf.list_runs(LocalStore(store)) if store.exists() else []
            if runs:
                rid = runs[0]
                m, _ = mf.load(LocalStore(store), rid)
                if any(s.state == ShardState.SUBMITTED for s in m.shards.values()):
                    break
            time.sleep(0.1)
        assert rid is not None
        cancel = subprocess.run(
            [*cmd, "cancel", rid, "--store", str(store)], env=env, capture_output=True, text=True
        )
        assert cancel.returncode == 0, cancel.stderr
        out, err = running.communicate(timeout=60)
    finally:
        if running.poll() is None:
            running.kill()
    assert running.returncode == 4, err
    last = error_line(err)
    assert "cancelled" in last and f"afbatch run {rid}" in last
    assert "endpoint: haiku (anthropic) → " + emu.url in err  # said before anything was sent
    emu.processing_delay = 0
    r = cli_run("run", rid, "--store", str(store), "--poll", "0")
    assert r.exit_code == 0, r.output
    run = Run.open(LocalStore(store), rid)
    conv = conversation_table(run)
    assert conv.conversation_id.is_unique and set(conv.status) <= {"finished", "failed"}
    assert answers(emu) == calls  # the cancelled batches answered nothing; nothing was asked twice


def test_shards_cancelled_before_they_were_sent_are_sent_on_resume(emu, workdir):
    path = str(write_job(workdir, JOB))
    _, calls = baseline(emu, workdir, path)
    run, _ = Run.create(LocalStore(workdir / "store"), path)
    assert run.plan() > 0
    other = Run.open(LocalStore(workdir / "store"), run.run_id)  # e.g. `afbatch cancel` elsewhere
    other.cancel()
    assert {s.state for s in run.manifest().shards.values()} == {ShardState.CANCELLED}
    fast(run)
    conv = conversation_table(run)
    assert set(conv.status) <= {"finished", "failed"} and conv.conversation_id.is_unique
    assert answers(emu) == calls


def test_budget_error_is_raised_by_the_library_not_printed(emu, workdir):
    run, _ = Run.create(LocalStore(workdir / "store"), str(write_job(workdir, JOB)), max_cost=1e-6)
    with pytest.raises(BudgetError, match="--max-cost"):
        fast(run)
    assert emu.created == [] and json.loads(json.dumps(run.manifest().spent_usd())) == 0
