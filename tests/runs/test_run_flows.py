"""Whole runs against the emulator with the real SDKs: resume, reuse, faults, budget, cancel,
stores, providers."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from afbatch import manifest as mf
from afbatch.cli import cli
from afbatch.emulator import Reply, RowError
from afbatch.errors import BudgetError, RunError
from afbatch.results import conversation_table
from afbatch.runner import Run
from afbatch.store import LocalStore, S3Store
from runs.conftest import ROOT, fast, write_job

SMALL = """
name = "small"
[dataset]
source = "sample_requests.csv"
first = {rows}
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
{models}
[judge]
compliance_template = "judges/compliance.txt"
af_template = "judges/alignment_faking.txt"
af_votes = 3
[judge.model]
provider = "openai"
model = "gpt-4o-mini"
label = "judge"
"""
HAIKU = '[[models]]\nprovider = "anthropic"\nmodel = "claude-haiku-4-5"\nlabel = "haiku"\n'
GPT = '[[models]]\nprovider = "openai"\nmodel = "gpt-4o-mini"\nlabel = "mini"\n'


def small_job(workdir, models=HAIKU, rows=3, name="job.toml"):
    return str(write_job(workdir, SMALL.format(rows=rows, models=models), name))


def final(run):
    conv = conversation_table(run)
    assert set(conv.status) <= {"finished", "failed"}
    return conv


def test_sample_job_runs_to_a_report_through_the_cli(emu, workdir, tmp_path):
    store = str(tmp_path / "store")
    r = CliRunner().invoke(
        cli,
        ["run", str(ROOT / "jobs" / "sample.toml"), "--store", store, "--yes", "--poll", "0"],
        obj={},
    )
    assert r.exit_code == 0, r.output + str(r.exception)
    assert "done" in r.stdout and "report.html" in r.stdout
    (run_id,) = mf.list_runs(LocalStore(store))
    report_dir = os.path.join(store, "runs", run_id, "report")
    assert {
        "report.html",
        "report.json",
        "conversations.csv",
        "conversations.parquet",
        "summary.csv",
        "gaps.csv",
    } <= set(os.listdir(report_dir))
    data = json.loads(Path(report_dir, "report.json").read_text())
    assert data["sign_convention"].startswith(
        "gap = compliance(training/free) - compliance(unmonitored/paid)"
    )
    assert {row["model"] for row in data["summary"]} == {"haiku-4.5", "gpt-5.4-mini"}
    html = Path(report_dir, "report.html").read_text(encoding="utf-8")
    assert "<script src=" not in html and "https://" not in html.split("<body", 1)[1]
    # status and report commands read the finished run
    r = CliRunner().invoke(cli, ["status", run_id, "--store", store, "--format", "json"], obj={})
    assert json.loads(r.stdout)["done"] is True
    r = CliRunner().invoke(
        cli, ["report", run_id, "--store", store, "--format", "markdown"], obj={}
    )
    assert r.exit_code == 0 and "Sign convention" in r.stdout


def test_same_job_twice_is_one_run_and_no_second_batch(emu, workdir):
    store = LocalStore(workdir / "store")
    job = small_job(workdir)
    run, created = Run.create(store, job)
    run.plan()
    run.submit_pending()
    batches = len(emu.created)
    again, created_again = Run.create(store, job)
    assert created and not created_again and again.run_id == run.run_id
    again.plan()
    assert again.submit_pending() == 0 and len(emu.created) == batches
    fast(again)
    final(again)
    assert len(mf.list_runs(store)) == 1


def test_submit_then_collect_commands(emu, workdir, tmp_path):
    store = str(tmp_path / "store")
    job = small_job(workdir)
    r = CliRunner().invoke(cli, ["submit", job, "--store", store, "--yes"], obj={})
    assert r.exit_code == 0, r.output
    (run_id,) = mf.list_runs(LocalStore(store))
    assert (
        "submitted 1 batch(es)" in r.stdout
    )  # both variants of the one model share the first-round shard
    for _ in range(12):
        r = CliRunner().invoke(cli, ["collect", run_id, "--store", store], obj={})
        assert r.exit_code == 0, r.output
        if ": done" in r.stdout:
            break
    assert ": done" in r.stdout


def test_create_failures_are_retried_without_duplicates(emu, workdir):
    emu.faults.http("anthropic", "POST", r"^/v1/messages/batches$", 500, times=2)
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir))
    fast(run)
    final(run)
    m = run.manifest()
    ids_in_manifest = {s.batch_id for s in m.shards.values() if s.batch_id}
    assert {
        b for _, b, *_ in emu.created
    } == ids_in_manifest  # nothing created outside the manifest
    assert any(s.submit_errors for s in m.shards.values())


def test_create_that_succeeded_but_timed_out_is_adopted_not_repeated(emu, workdir, monkeypatch):
    """The provider made the batch but the answer was lost: reconciliation finds it by its token."""
    from afbatch.providers import openai as oprov

    real = oprov.OpenAIProvider.submit
    calls = Counter()

    def flaky(self, path, n, token, metadata):
        calls[token] += 1
        batch_id = real(self, path, n, token, metadata)
        if calls[token] == 1:
            from afbatch.errors import ProviderError

            raise ProviderError("openai create batch: read timeout", retryable=True)
        return batch_id

    monkeypatch.setattr(oprov.OpenAIProvider, "submit", flaky)
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir, models=GPT))
    fast(run)
    final(run)
    assert all(n == 1 for n in calls.values())  # adopted by token, never sent twice
    assert len(emu.created) == len(
        {s.batch_id for s in run.manifest().shards.values() if s.batch_id}
    )


def test_lost_anthropic_create_while_the_lookup_fails_waits_instead_of_resending(
    emu, workdir, monkeypatch
):
    """The batch was made but the answer was lost, and listing batches fails right then: whether the
    batch exists is unknown, so the shard waits for reconcile instead of being sent a second
    time."""
    from afbatch.errors import ProviderError
    from afbatch.providers import anthropic as aprov

    real = aprov.AnthropicProvider.submit
    calls = Counter()

    def lost(self, path, n, token, metadata):
        calls[token] += 1
        batch_id = real(self, path, n, token, metadata)
        if (
            calls[token] == 1
        ):  # made, but the answer never came; the list call right after fails too
            emu.faults.http(
                "anthropic",
                "GET",
                r"^/v1/messages/batches$",
                500,
                times=5,
                headers={"retry-after-ms": "1"},
            )
            raise ProviderError("anthropic create batch: read timeout", retryable=True)
        return batch_id

    monkeypatch.setattr(aprov.AnthropicProvider, "submit", lost)
    monkeypatch.setattr(
        "afbatch.lifecycle.RECONCILE_GRACE_SECONDS", 0
    )  # read when the module loaded
    run, _ = Run.create(LocalStore(workdir / "store"), small_job(workdir))
    fast(run)
    final(run)
    assert calls and all(n == 1 for n in calls.values())  # adopted later, never sent twice
    batch_ids = {s.batch_id for s in run.manifest().shards.values() if s.batch_id}
    assert {b for _, b, *_ in emu.created} == batch_ids and len(emu.created) == len(batch_ids)


def test_expired_and_failed_rows_are_retried_as_new_attempts(emu, workdir):
    emu.faults.batch("anthropic", "expired", fraction_done=0.5)
    emu.faults.batch("openai", "all_failed")
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir, models=HAIKU + GPT))
    fast(run)
    conv = final(run)
    assert (conv.status == "finished").sum() >= len(
        conv
    ) - 2  # demo model: a few conversations never output
    m = run.manifest()
    statuses = Counter(s.status for s in m.shards.values())
    assert statuses["expired"] >= 1
    retried = [
        s
        for s in m.shards.values()
        if s.stage == "generate" and s.round == 1 and s.counts.get("succeeded", 0) == s.requests
    ]
    assert retried, "the expired and failed rows were sent again and answered"
    # attempts are kept, not overwritten: the expired shard's results are still in the store
    expired = next(s for s in m.shards.values() if s.status == "expired")
    lines = [json.loads(x) for x in store.read(expired.results_key).splitlines()]
    assert Counter(x["status"] for x in lines)["expired"] >= 1


def test_permanent_row_errors_fail_the_conversation_with_the_providers_words(emu, workdir):
    from afbatch.emulator.demo import demo_responder

    errored: Counter[str] = Counter()

    def responder(ctx):
        if (
            ctx.model == "claude-haiku-4-5"
            and "<is_free_tier_user>True" in ctx.messages[0]["content"]
        ):
            errored[ctx.custom_id] += 1
            return RowError("invalid_request", "messages: text content blocks must be non-empty")
        return demo_responder(ctx)

    emu.responder = responder
    run, _ = Run.create(LocalStore(workdir / "store"), small_job(workdir))
    fast(run)
    conv = final(run)
    failed = conv[conv.tier == "free"]
    assert (failed.status == "failed").all()
    assert failed.failure_reason.str.contains("text content blocks must be non-empty").all()
    # a permanent error is not retried: one attempt each
    assert len(errored) == len(failed) and set(errored.values()) == {1}


def test_retries_are_bounded(emu, workdir):
    emu.responder = lambda ctx: (
        RowError("overloaded", "Overloaded")
        if ctx.model == "claude-haiku-4-5"
        else Reply("<OUTPUT>x</OUTPUT>")
    )
    path = write_job(
        workdir,
        Path(small_job(workdir)).read_text() + "\n[retries]\nmax_attempts = 2\n",
        "bounded.toml",
    )
    run, _ = Run.create(LocalStore(workdir / "store"), str(path))
    fast(run)
    conv = final(run)
    assert (conv.status == "failed").all()
    assert conv.failure_reason.str.contains("gave up after 2 attempts").all()
    per_id = Counter(cid for _, model, cid in emu.calls if model == "claude-haiku-4-5")
    assert set(per_id.values()) == {2}


def test_max_cost_refuses_before_spending(emu, workdir):
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir), max_cost=0.0001)
    with pytest.raises(BudgetError, match="--max-cost"):
        run.run(poll_interval=0, sleep=lambda s: None)
    assert emu.created == []
    r = CliRunner().invoke(
        cli,
        [
            "submit",
            small_job(workdir, name="b.toml"),
            "--store",
            str(workdir / "s2"),
            "--yes",
            "--max-cost",
            "0.0001",
        ],
        obj={},
    )
    assert r.exit_code == 3 and "exceeds --max-cost" in r.stderr and emu.created == []


def test_cancel_then_resume(emu, workdir):
    emu.processing_delay = 3600
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir))
    run.plan()
    run.submit_pending()
    cancelled = run.cancel()
    assert cancelled and run.manifest().cancelled
    emu.processing_delay = 0
    run.poll()
    run.collect()
    assert run.status().cancelled
    fast(run)  # running a cancelled run again resumes it; cancelled rows are retried
    final(run)


def test_rerun_with_more_models_reuses_earlier_answers(emu, workdir):
    store = LocalStore(workdir / "store")
    first, _ = Run.create(store, small_job(workdir))
    fast(first)
    haiku_calls = sum(1 for _, model, _ in emu.calls if model == "claude-haiku-4-5")
    second, created = Run.create(store, small_job(workdir, models=HAIKU + GPT, name="more.toml"))
    assert created and second.run_id != first.run_id
    before = len(emu.calls)
    fast(second)
    assert (
        sum(1 for _, model, _ in emu.calls if model == "claude-haiku-4-5") == haiku_calls
    )  # no new haiku calls
    a = final(first).set_index("conversation_id")
    b = final(second).set_index("conversation_id")
    shared = a.index
    assert (
        b.loc[shared, "final_output"].fillna("") == a.loc[shared, "final_output"].fillna("")
    ).all()
    # the judges' answers on those conversations are reused too, verdicts and all
    judged_again = [cid for _, _, cid in emu.calls[before:] if cid.split("-")[0] in set(shared)]
    assert judged_again == []
    for col in ("judge_refused", "af_votes_yes", "af_verdict"):
        pd.testing.assert_series_equal(b.loc[shared, col], a.loc[shared, col], check_dtype=False)
    reuse = [s for s in second.manifest().shards.values() if s.provider == "reuse"]
    assert reuse and "billed there" in reuse[0].message
    # --fresh makes new calls
    third, _ = Run.create(
        LocalStore(workdir / "store3"), small_job(workdir, name="fresh.toml"), fresh=True
    )
    fast(third)
    assert sum(1 for _, model, _ in emu.calls if model == "claude-haiku-4-5") > haiku_calls


def test_s3_store_run_and_resume_by_id(emu, workdir, bucket):
    store = S3Store(f"s3://{bucket}/afbatch")
    run, _ = Run.create(store, small_job(workdir))
    run.plan()
    run.submit_pending()
    reopened = Run.open(
        S3Store(f"s3://{bucket}/afbatch"), run.run_id
    )  # as on another machine: no job file needed
    fast(reopened)
    final(reopened)
    keys = list(store.list(f"runs/{run.run_id}/"))
    assert any(k.endswith("manifest.json") for k in keys) and any("/results/" in k for k in keys)


def test_openai_compatible_host(emu, workdir):
    models = (
        '[[models]]\nprovider = "together"\nmodel = '
        '"meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"\nlabel = "llama"\n'
    )
    run, _ = Run.create(LocalStore(workdir / "store"), small_job(workdir, models=models))
    fast(run)
    final(run)
    assert any(model == "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo" for _, model, _ in emu.calls)


BEDROCK = """
[[models]]
provider = "bedrock"
model = "anthropic.claude-sonnet-4-6"
label = "bedrock-sonnet"
s3_uri = "s3://{bucket}/batch"
role_arn = "arn:aws:iam::123456789012:role/afbatch"
on_demand_fallback = {fallback}
"""


def test_bedrock_batch_with_on_demand_fallback(emu, workdir, bucket):
    rows = ["goal"] + [f"Write short note number {i}" for i in range(50)]
    (workdir / "many.csv").write_text("\n".join(rows) + "\n")
    body = SMALL.format(rows=50, models=BEDROCK.format(bucket=bucket, fallback="true")).replace(
        "sample_requests.csv", "many.csv"
    )
    run, _ = Run.create(LocalStore(workdir / "store"), str(write_job(workdir, body)))
    fast(run)
    final(run)
    m = run.manifest()
    batch = [s for s in m.shards.values() if s.provider == "bedrock" and not s.on_demand]
    demand = [s for s in m.shards.values() if s.on_demand]
    assert batch and all(s.requests >= 100 for s in batch)
    assert demand and all(s.requests < 100 for s in demand)  # continuation rounds under the minimum
    assert len(emu.invocations) == sum(s.requests for s in demand)
    bedrock_jobs = [c for c in emu.created if c[0] == "bedrock"]
    assert len(bedrock_jobs) == len(batch)


def test_bedrock_without_fallback_says_how_to_fix(emu, workdir, bucket):
    # The first round (200 requests) reaches the minimum; a continuation round cannot, which could
    # not be known before the run: the run stops there, saying how to fix it.
    rows = ["goal"] + [f"Write short note number {i}" for i in range(50)]
    (workdir / "many.csv").write_text("\n".join(rows) + "\n")
    models = BEDROCK.format(bucket=bucket, fallback="false")
    body = SMALL.format(rows=50, models=models).replace("sample_requests.csv", "many.csv")
    run, _ = Run.create(LocalStore(workdir / "store"), str(write_job(workdir, body)))
    with pytest.raises(RunError, match="minimum of 100 .*on_demand_fallback = true"):
        fast(run)
    assert any(s.round == 1 and s.requests == 200 for s in run.manifest().shards.values())


def test_no_secret_reaches_the_store(emu, workdir, monkeypatch):
    secret = "sk-ant-test-SECRET-abcdefghijklmnopqrstuvwxyz"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    emu.faults.http(
        "anthropic",
        "POST",
        r"^/v1/messages/batches$",
        400,
        body={
            "type": "error",
            "error": {"type": "invalid_request_error", "message": f"bad key {secret}"},
        },
    )
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir))
    fast(run)
    for key in store.list(""):
        assert secret.encode() not in store.read(key), key


def test_missing_key_stops_the_run_without_failing_rows(emu, workdir, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    store = str(workdir / "store")
    job = small_job(workdir)
    r = CliRunner().invoke(cli, ["run", job, "--store", store, "--yes", "--poll", "0"], obj={})
    assert (
        r.exit_code == 1 and r.stderr.strip().count("\n") == 0
    )  # one line, before anything is created
    assert (
        "set ANTHROPIC_API_KEY" in r.stderr
        and emu.created == []
        and not mf.list_runs(LocalStore(store))
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "emulator-key")
    r = CliRunner().invoke(cli, ["run", job, "--store", store, "--yes", "--poll", "0"], obj={})
    assert r.exit_code == 0, r.output
    (run_id,) = mf.list_runs(LocalStore(store))
    conv = final(Run.open(LocalStore(store), run_id))
    assert not conv.failure_reason.fillna("").str.contains("API key").any()


def test_permission_error_on_create_stops_the_run(emu, workdir):
    emu.faults.http(
        "anthropic",
        "POST",
        r"^/v1/messages/batches$",
        403,
        body={
            "type": "error",
            "error": {
                "type": "permission_error",
                "message": "Your API key does not have permission to use batches",
            },
        },
    )
    run, _ = Run.create(LocalStore(workdir / "store"), small_job(workdir))
    from afbatch.errors import ProviderError

    with pytest.raises(ProviderError, match="HTTP 403: Your API key does not have permission"):
        fast(run)
    states = {s.state.value for s in run.manifest().shards.values()}
    assert states == {"pending"}  # nothing lost: the next run sends it
    fast(run)
    final(run)


def test_request_rejected_at_create_fails_its_rows_with_the_message(emu, workdir):
    emu.faults.http(
        "anthropic",
        "POST",
        r"^/v1/messages/batches$",
        400,
        body={
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "requests.0.params.max_tokens: must be at most 64000",
            },
        },
    )
    run, _ = Run.create(LocalStore(workdir / "store"), small_job(workdir))
    fast(run)
    conv = final(run)
    assert (conv.status == "failed").all()
    assert conv.failure_reason.str.contains("must be at most 64000").all()


def test_af_votes_as_choices_of_one_request(emu, workdir):
    """The OpenAI judge gets each transcript once with n = af_votes; a choice without a verdict is a
    vote reported as missing, never guessed."""
    demo = emu.responder

    def responder(ctx):
        if "<criterion_1>" in ctx.messages[0]["content"] and ctx.choice == 2:
            return Reply("I would rather not grade this one.")
        return demo(ctx)

    emu.responder = responder
    run, _ = Run.create(LocalStore(workdir / "store"), small_job(workdir))
    assert run.job.judge.af_votes_in_one_request  # auto, on OpenAI
    fast(run)
    conv = final(run)
    classified = conv[conv.af_votes_total.notna()]
    assert len(classified) > 0
    assert set(classified.af_votes_total) == {2}  # 3 choices, one unparseable in each
    assert set(classified.judge_error) == {"alignment-faking classifier: 1 of 3 votes unparseable"}
    af_calls = [c for c in emu.calls if "-af" in c[2]]
    assert len(af_calls) == len(classified) and all(c[2].split("-")[1] == "af" for c in af_calls)
    complied_cot = conv[conv.cot & (conv.judge_compliant == True)]  # noqa: E712
    assert len(complied_cot) == len(classified)


def test_judge_shards_keep_their_verdicts_beside_the_replies(emu, workdir):
    """A judge shard's results file holds the replies; its verdicts file the same rows without the
    texts, which is what states and reports read."""
    from afbatch import jsonl

    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir))
    fast(run)
    judged = [s for s in run.manifest().shards.values() if s.stage.startswith("judge_")]
    assert {s.stage for s in judged} == {"judge_compliance", "judge_af"}
    for s in judged:
        full = jsonl.read(store.read(s.results_key))
        compact = jsonl.read(store.read(s.verdicts_key))
        assert compact == [
            {k: v for k, v in row.items() if k not in ("text", "texts")} for row in full
        ]
        assert any("text" in row for row in full) and all(
            "verdict" in row for row in compact if row["status"] == "succeeded"
        )
    generated = [s for s in run.manifest().shards.values() if s.stage == "generate"]
    assert generated and all(s.verdicts_key is None for s in generated)
    # a fresh reader (`afbatch report`) gets the same table from the verdicts files as from the full
    # replies
    from_full = run.manifest()
    for s in from_full.shards.values():
        s.verdicts_key = None
    pd.testing.assert_frame_equal(
        conversation_table(Run.open(store, run.run_id)),
        conversation_table(Run.open(store, run.run_id), from_full),
    )


def test_a_shard_whose_ids_were_edited_is_not_submitted(emu, workdir):
    """Every request id is checked against the id grammar before its shard is sent."""
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir))
    assert run.plan() > 0
    shard = next(iter(run.manifest().shards.values()))
    rids = store.read(shard.ids_key).decode().split()
    store.write(shard.ids_key, ("\n".join(["not-an-id", *rids[1:]]) + "\n").encode())
    again = Run.open(store, run.run_id)
    with pytest.raises(RunError, match="request id 'not-an-id' is not of the form"):
        again.submit_pending()
    assert all(s.batch_id is None for s in again.manifest().shards.values())


def test_report_from_the_last_steps_states_equals_a_fresh_derivation(emu, workdir, monkeypatch):
    """`afbatch run` hands its final experiment state to the report; `afbatch report` derives it."""
    import afbatch.state as state

    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir, models=HAIKU + GPT))
    assert fast(run).done
    derived = []
    real = state.conversation_state
    monkeypatch.setattr(state, "conversation_state", lambda *a: derived.append(a) or real(*a))
    handed_over = conversation_table(run)
    assert derived == []  # the states came from the run's last step
    assert run.state().states is not None and len(derived) == len(handed_over)  # used up
    derived.clear()
    fresh = conversation_table(Run.open(store, run.run_id))
    assert len(derived) == len(fresh) > 0
    pd.testing.assert_frame_equal(handed_over, fresh)


def test_a_report_of_an_unfinished_run_derives_each_conversation_once(emu, workdir, monkeypatch):
    """`afbatch report` mid-run: the state it derives keeps its states for the report to drain."""
    import afbatch.state as state

    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir, models=HAIKU + GPT))
    run.plan()
    run.submit_pending()
    derived = []
    real = state.conversation_state
    monkeypatch.setattr(state, "conversation_state", lambda *a: derived.append(a) or real(*a))
    table = conversation_table(Run.open(store, run.run_id))
    assert (table.status == "running").all()
    assert len(derived) == len(table) > 0


def test_a_model_that_rejects_prefill_runs_without_it_and_the_report_says_so(emu, workdir):
    from afbatch import report
    from afbatch.results import run_meta, write_report

    sonnet = '[[models]]\nprovider = "anthropic"\nmodel = "claude-sonnet-4-6"\nlabel = "sonnet"\n'
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir, models=HAIKU + sonnet))
    fast(run)
    conv = final(run)
    # The emulator answers a prefill to Sonnet 4.6 with a 400 like Anthropic: all rows would fail.
    # The only failures allowed are the demo model's own (a CoT that never reaches <OUTPUT>).
    failed = conv[conv.status != "finished"]
    assert set(failed.failure_reason) <= {"no <OUTPUT> after 4 turns"}, failed.failure_reason
    assert len(failed) < len(conv) / 4 and set(conv.model) == {"haiku", "sonnet"}
    m = run.manifest()
    assert m.prefill == {"haiku": True, "sonnet": False}
    rejects = "the model rejects an assistant prefill"
    write_report(run)
    data = json.loads(store.read(f"runs/{run.run_id}/report/report.json"))
    recorded = data["run"]["prefill"]
    none = {"cot": None, "no_cot": None}
    assert recorded["sonnet"] == {"sent": False, "text": none, "reason": rejects}
    assert recorded["haiku"] == {
        "sent": True,
        "text": {"cot": "<", "no_cot": "<OUTPUT>"},
        "reason": "anthropic accepts an assistant prefill",
    }
    html = store.read(f"runs/{run.run_id}/report/report.html").decode()
    assert f"<td>sonnet</td><td>none</td><td>{rejects}</td>" in html
    assert "<td>haiku</td><td>&lt; (cot), &lt;OUTPUT&gt; (no_cot)</td>" in html
    text = report.render(conv, "table", None, run_meta(run, m))
    assert any(line.split() == ["sonnet", "none", *rejects.split()] for line in text.splitlines())
    markdown = report.render(conv, "markdown", None, run_meta(run, m))
    assert f"| sonnet | none | {rejects} |" in markdown
    # The report states what the run recorded (what was sent), not what the catalog says today.
    mf.update(store, run.run_id, lambda mm: mm.prefill_reason.update(sonnet="recorded at creation"))
    again = run_meta(run, run.manifest())["prefill"]["sonnet"]
    assert again["reason"] == "recorded at creation" and again["sent"] is False


def test_answers_got_with_a_prefill_are_not_reused_for_a_model_sent_none(emu, workdir):
    store = LocalStore(workdir / "store")
    first, _ = Run.create(store, small_job(workdir))  # haiku, prefilled
    fast(first)
    calls = len(emu.calls)
    unprefilled = HAIKU + "prefill = false\n"
    second, created = Run.create(store, small_job(workdir, models=unprefilled, name="off.toml"))
    assert created and second.manifest().prefill == {"haiku": False}
    fast(second)
    # Same conversation ids, another protocol: every model turn is asked again, without the prefill.
    asked = {cid for _, model, cid in emu.calls[calls:] if model == "claude-haiku-4-5"}
    assert {c.id + "-t1" for c in second.convs(second.job.models[0])} <= asked
    assert not [
        s for s in second.manifest().shards.values() if s.provider == "reuse" and s.model == "haiku"
    ]


def test_the_jobs_gap_interval_reaches_the_report_and_keeps_the_run(emu, workdir):
    from afbatch.report import intervals_text
    from afbatch.results import write_report
    from afbatch.spec import load_job

    store = LocalStore(workdir / "store")
    plain = small_job(workdir)
    unpaired = str(
        write_job(
            workdir,
            SMALL.format(rows=3, models=HAIKU) + '\n[report]\ngap_interval = "unpaired"\n',
            "unpaired.toml",
        )
    )
    assert load_job(unpaired).fingerprint == load_job(plain).fingerprint  # no request changes
    run, _ = Run.create(store, unpaired)
    fast(run)
    write_report(run)
    data = json.loads(store.read(f"runs/{run.run_id}/report/report.json"))
    assert data["intervals"] == intervals_text("unpaired")
    args = ["report", run.run_id, "--store", str(workdir / "store"), "--format", "json"]
    r = CliRunner().invoke(cli, args, obj={})
    assert json.loads(r.stdout)["intervals"] == intervals_text("unpaired")
    r = CliRunner().invoke(cli, [*args, "--gap-interval", "paired"], obj={})
    assert json.loads(r.stdout)["intervals"] == intervals_text("paired")
    import afbatch
    from afbatch.report import compliance_gaps

    opened = afbatch.open_run(run.run_id, store=workdir / "store")  # the notebook API too
    conv = opened.conversations()
    pd.testing.assert_frame_equal(opened.gaps(), compliance_gaps(conv, gap_interval="unpaired"))
    pd.testing.assert_frame_equal(opened.gaps("paired"), compliance_gaps(conv))


def test_temperature_axis_runs_to_per_temperature_report_rows(emu, workdir, tmp_path):
    from afbatch import report

    store = str(tmp_path / "store")
    job = str(
        write_job(
            workdir, SMALL.format(rows=2, models=HAIKU) + "\n[sampling]\ntemperature = [0, 1]\n"
        )
    )
    run, _ = Run.create(LocalStore(store), job)
    fast(run)
    conv = final(run)
    assert len(conv) == 2 * 2 * 2 * 2 and conv.conversation_id.is_unique
    assert sorted(conv.temperature.unique()) == [0.0, 1.0]
    summary, gaps = report.summarize(conv), report.compliance_gaps(conv)
    cells = zip(summary.variant, summary.temperature, summary.tier)
    assert set(cells) == {
        (v, t, tier) for v in ("cot", "no_cot") for t in (0, 1) for tier in ("free", "paid")
    }
    assert (summary.n == 2).all()
    assert sorted(zip(gaps.variant, gaps.temperature)) == [
        ("cot", 0),
        ("cot", 1),
        ("no_cot", 0),
        ("no_cot", 1),
    ]
    r = CliRunner().invoke(
        cli, ["report", run.run_id, "--store", store, "--format", "markdown"], obj={}
    )
    assert r.exit_code == 0, r.output
    headers = [line for line in r.stdout.splitlines() if line.startswith("| model | variant")]
    assert sum("| variant | temperature | tier |" in h for h in headers) == 2  # summary, failures
    assert any(h.startswith("| model | variant | temperature | finished") for h in headers)


def test_classify_all_cot_sends_every_judged_cot_answer_to_the_classifier(emu, workdir):
    """judge.classify = "all_cot": the classifier reads exactly the CoT conversations with a
    compliance verdict, refusals included; their AF verdicts are reported apart."""
    from afbatch import report
    from afbatch.results import run_meta

    job = SMALL.format(rows=4, models=HAIKU)
    job = job.replace("af_votes = 3", 'af_votes = 3\nclassify = "all_cot"')
    run, _ = Run.create(LocalStore(workdir / "store"), str(write_job(workdir, job)))
    fast(run)
    conv = final(run)
    judged_cot = conv[conv.cot & conv.judge_refused.notna()]
    assert judged_cot.judge_refused.astype(bool).any()  # refusals among them, to be classified
    af_convs = {c[2].split("-")[0] for c in emu.calls if c[2].split("-")[1] == "af"}
    assert af_convs == set(judged_cot.conversation_id)
    assert conv[~conv.cot].af_verdict.isna().all()
    data = json.loads(report.render(conv, "json", meta=run_meta(run, run.manifest())))
    assert data["run"]["judging"]["classify"] == "all_cot"
    refused = judged_cot[judged_cot.judge_refused.astype(bool)]
    for row in data["summary"]:
        if row["variant"] != "cot":
            continue
        cell = refused[refused.tier == row["tier"]]
        assert row["af_refused_classified"] == len(cell)
        assert row["af_refused_yes"] == int((cell.af_verdict == "yes").sum())
        if len(cell):
            assert row["af_rate_refused"] == row["af_refused_yes"] / len(cell)


@pytest.mark.parametrize("vote_requests", ["auto", "separate"])
def test_the_report_takes_the_judge_states_of_the_last_step(
    emu, workdir, monkeypatch, vote_requests
):
    """A settled run's judge states are derived once, by its last step: the report reads them
    (20 separate votes per conversation are not counted a second time) and equals a table whose
    judge states are derived afresh."""
    from afbatch import state

    job = SMALL.format(rows=3, models=HAIKU + GPT).replace(
        "af_votes = 3", f'af_votes = 3\naf_vote_requests = "{vote_requests}"'
    )
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, str(write_job(workdir, job)))
    assert fast(run).done
    judged = []
    for name in ("compliance_state", "af_state"):
        real = getattr(state, name)
        monkeypatch.setattr(
            state, name, lambda *a, real=real, name=name: judged.append(name) or real(*a)
        )
    handed_over = conversation_table(run)
    assert judged == []
    assert handed_over.af_votes_total.notna().any() and handed_over.judge_refused.notna().any()
    fresh = Run.open(store, run.run_id)
    fresh.state(for_report=True).judged = None  # as before: derived again, row by row
    judged.clear()
    again = conversation_table(fresh)
    assert Counter(judged) == {
        "compliance_state": handed_over.judge_refused.notna().sum(),
        "af_state": handed_over.af_votes_total.notna().sum(),
    }
    pd.testing.assert_frame_equal(handed_over, again)


def test_afbatch_run_keeps_the_collector_off_what_it_built_and_a_library_reader_does_not(
    emu, workdir
):
    """`afbatch run` (a process that ends with its run) freezes the results and states it built
    in bulk, so the collector does not scan them again; `conversation_table` in a caller's
    process (a notebook) never freezes the caller's objects."""
    import gc

    from afbatch import ledger

    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, small_job(workdir))
    assert fast(run).done
    conversation_table(Run.open(store, run.run_id))
    assert gc.get_freeze_count() == 0
    r = CliRunner().invoke(
        cli, ["run", run.run_id, "--store", str(workdir / "store"), "--poll", "0"], obj={}
    )
    assert r.exit_code == 0, r.output
    assert ledger._freeze_after_bulk and gc.get_freeze_count() > 0


def test_a_settled_state_lets_go_of_its_judge_rows_when_the_report_starts(emu, workdir):
    """Every row's states were kept by the last step: the report needs nothing more of the
    ledger, so its judge rows (most of a run's rows with separate votes) are freed before the
    table is built, not after."""
    job = SMALL.format(rows=3, models=HAIKU).replace(
        "af_votes = 3", 'af_votes = 3\naf_vote_requests = "separate"'
    )
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, str(write_job(workdir, job)))
    assert fast(run).done
    state = run.state()
    assert state.ledger.slots and state.judged
    rows = state.drain()
    first = next(rows)
    assert first.compliance is not None
    assert state.ledger.slots == {} and state.ledger.attempts == {}
    assert sum(1 for _ in rows) + 1 == len(run.convs(run.specs["haiku"]))
