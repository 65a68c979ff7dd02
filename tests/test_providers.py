"""The provider layer: golden result lines (pure parse), status maps, and provider I/O against the
local emulator with the real SDKs over HTTP.

Golden files live in tests/golden/results/<provider>/: `<name>.jsonl` (or `.jsonl.out`) holds
real-shaped provider output lines, `<name>.expected.json` the Results they must parse to
(`Result.to_json()` plus `retryable`). The expected files were written by hand from the provider
docs, not copied from the code; `AFBATCH_UPDATE_GOLDEN=1` rewrites them from the code (except
entries for known bugs, kept as written).
"""

from __future__ import annotations

import json
import os
import time
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from provider_support import one_shard, shard_token, wait_ended

from afbatch.errors import ProviderError
from afbatch.providers import BatchStatus, Found, get_provider
from afbatch.providers.anthropic import CLOCK_SLACK_SECONDS, AnthropicProvider
from afbatch.providers.base import classify_http
from afbatch.providers.bedrock import STATUS as BEDROCK_STATUS
from afbatch.providers.bedrock import BedrockProvider
from afbatch.providers.openai import STATUS as OPENAI_STATUS
from afbatch.providers.openai import OpenAIProvider
from afbatch.shard_files import render_lines
from afbatch.spec import ModelSpec
from afbatch.types import Message, Request, Result, RowStatus

GOLDEN = Path(__file__).parent / "golden" / "results"
UPDATE = os.environ.get("AFBATCH_UPDATE_GOLDEN") == "1"

GPT = ModelSpec(provider="openai", model="gpt-4o")
HAIKU = ModelSpec(provider="anthropic", model="claude-haiku-4-5", label="haiku")
BR_CLAUDE = "anthropic.claude-3-5-haiku-20241022-v1:0"
BR_LLAMA = "meta.llama3-1-70b-instruct-v1:0"
ROLE_ARN = "arn:aws:iam::123456789012:role/bedrock-batch"
FW_LLAMA = "accounts/fireworks/models/llama-v3p1-70b-instruct"

# (golden file, the model whose provider parses it)
GOLDEN_CASES = {
    "openai/output.jsonl": GPT,
    "openai/error.jsonl": GPT,
    "openai/expired.jsonl": GPT,
    "openai/cancelled.jsonl": GPT,
    "anthropic/results.jsonl": HAIKU,
    "bedrock/claude.jsonl.out": ModelSpec(provider="bedrock", model="anthropic.claude-sonnet-4-6"),
    "bedrock/llama.jsonl.out": ModelSpec(provider="bedrock", model=BR_LLAMA),
    "fireworks/BIJOutputSet.jsonl": ModelSpec(provider="fireworks", model=FW_LLAMA),
    "fireworks/BIJErrorSet.jsonl": ModelSpec(provider="fireworks", model=FW_LLAMA),
}

# Lines the code parses wrongly today: (file, id) -> why. Their expected entries stay as
# hand-written.
KNOWN_BUGS: dict[tuple[str, str], str] = {}  # (file, id) → why, for a parse bug not fixed yet


# ============================================================================ golden result lines


def _expected_path(rel: str) -> Path:
    p = GOLDEN / rel
    return p.parent / (p.name.split(".")[0] + ".expected.json")


def _parsed(rel: str) -> list[dict[str, Any]]:
    provider = get_provider(GOLDEN_CASES[rel])
    out = []
    for raw in (GOLDEN / rel).read_text().splitlines():
        if raw.strip():
            r = provider.parse(json.loads(raw))
            out.append({**r.to_json(), "retryable": r.retryable})
    return out


@pytest.mark.parametrize("rel", sorted(GOLDEN_CASES))
def test_golden_results(rel: str) -> None:
    got = _parsed(rel)
    path = _expected_path(rel)
    if UPDATE:
        old = {e["id"]: e for e in json.loads(path.read_text())} if path.exists() else {}
        keep = [old.get(g["id"], g) if (rel, g["id"]) in KNOWN_BUGS else g for g in got]
        path.write_text(json.dumps(keep, indent=1, ensure_ascii=False) + "\n")
    expected = json.loads(path.read_text())
    assert [g["id"] for g in got] == [e["id"] for e in expected], (
        "one expected entry per line, in line order"
    )
    for g, e in zip(got, expected):
        if (rel, g["id"]) in KNOWN_BUGS:
            continue  # checked (and expected to fail) by test_golden_known_bug
        assert g == e, f"{rel}: {g['id']}"


@pytest.mark.parametrize("rel", sorted(GOLDEN_CASES))
def test_golden_expected_round_trips(rel: str) -> None:
    """Every expected entry is a well-formed Result whose `retryable` follows from its fields."""
    for e in json.loads(_expected_path(rel).read_text()):
        fields = {k: v for k, v in e.items() if k != "retryable"}
        r = Result.from_json(fields)
        assert r.to_json() == fields
        assert r.retryable is e["retryable"]


def test_golden_files_cover_the_awkward_cases() -> None:
    """The golden set keeps the cases the reference lists (guards against someone trimming it)."""
    kinds: dict[str, set[str]] = {}
    for rel in GOLDEN_CASES:
        fam = rel.split("/")[0]
        for e in json.loads(_expected_path(rel).read_text()):
            kinds.setdefault(fam, set()).add(e["status"] + ":" + (e.get("error_kind") or ""))
    assert {
        "succeeded:",
        "errored:invalid_request",
        "errored:rate_limit",
        "errored:billing",
        "errored:server_error",
        "expired:expired",
        "canceled:canceled",
    } <= kinds["openai"]
    assert {
        "succeeded:",
        "errored:invalid_request",
        "errored:overloaded",
        "errored:server_error",
        "errored:rate_limit",
        "errored:billing",
        "canceled:canceled",
        "expired:expired",
    } <= kinds["anthropic"]
    assert {
        "succeeded:",
        "errored:invalid_request",
        "errored:rate_limit",
        "errored:server_error",
    } <= kinds["bedrock"]
    assert {
        "succeeded:",
        "errored:invalid_request",
        "errored:rate_limit",
        "errored:overloaded",
        "errored:server_error",
        "errored:billing",
        "errored:malformed",
    } <= kinds["fireworks"]
    # the OpenAI request error sits in the error file with a null top-level error
    first_error = json.loads((GOLDEN / "openai/error.jsonl").read_text().splitlines()[0])
    assert first_error["error"] is None and first_error["response"]["status_code"] == 400


def test_bedrock_manifest_matches_its_output_file() -> None:
    """manifest.json.out is not a record (fetch never yields it); its counts describe
    claude.jsonl.out."""
    manifest = json.loads((GOLDEN / "bedrock" / "manifest.json.out").read_text())
    assert "recordId" not in manifest
    parsed = _parsed("bedrock/claude.jsonl.out")
    assert manifest["totalRecordCount"] == manifest["processedRecordCount"] == len(parsed)
    assert manifest["successRecordCount"] == sum(p["status"] == "succeeded" for p in parsed)
    assert manifest["errorRecordCount"] == sum(p["status"] == "errored" for p in parsed)


def test_parse_never_raises_on_degenerate_lines() -> None:
    """Per-row failures are values: odd lines give an errored/missing-ish Result, not an
    exception."""
    openai_p, anthropic_p = get_provider(GPT), get_provider(HAIKU)
    r = openai_p.parse({"custom_id": "x", "response": None, "error": None})
    assert r.status == RowStatus.ERRORED and r.retryable
    r = openai_p.parse(
        {
            "custom_id": "x",
            "response": {"status_code": 502, "body": "<html>Bad gateway</html>"},
            "error": None,
        }
    )
    assert r.status == RowStatus.ERRORED and r.error_kind == "server_error"
    r = anthropic_p.parse({"custom_id": "x", "result": {"type": "errored", "error": {}}})
    assert r.status == RowStatus.ERRORED and r.error_kind == "server_error"
    llama = get_provider(GOLDEN_CASES["bedrock/llama.jsonl.out"])
    r = llama.parse(
        {"recordId": "R1", "error": {"errorCode": "ModelErrorException", "errorMessage": "boom"}}
    )
    assert r.status == RowStatus.ERRORED and r.error_kind == "server_error"


# ============================================================================ classify_http


@pytest.mark.parametrize(
    "status,code,message,kind",
    [
        (400, None, None, "invalid_request"),
        (
            400,
            "context_length_exceeded",
            "This model's maximum context length is 128000 tokens.",
            "invalid_request",
        ),
        (401, "invalid_api_key", "Incorrect API key provided", "auth"),
        (403, None, "Forbidden", "auth"),
        (404, None, None, "invalid_request"),
        (408, None, "Request timed out", "timeout"),
        (413, None, None, "invalid_request"),
        (429, "rate_limit_exceeded", "Rate limit reached for gpt-4o", "rate_limit"),
        (500, None, "The server had an error", "server_error"),
        (502, None, None, "server_error"),
        (503, None, "The engine is currently overloaded", "overloaded"),
        (529, None, "Overloaded", "overloaded"),
        # billing wins over the status: the request was fine, the account is not
        (
            429,
            "insufficient_quota",
            "You exceeded your current quota, please check your plan and billing details.",
            "billing",
        ),
        (
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API.",
            "billing",
        ),
        (400, "billing_hard_limit_reached", "Billing hard limit has been reached", "billing"),
        (
            402,
            "billing_error",
            "There's an issue with your billing or payment information.",
            "billing",
        ),
    ],
)
def test_classify_http(status: int, code: str | None, message: str | None, kind: str) -> None:
    assert classify_http(status, code, message) == kind


def test_classify_http_402_is_billing() -> None:
    # e.g. an OpenAI-compatible host's row error: 402 {"error": {"message": "Insufficient balance"}}
    assert classify_http(402, None, "Insufficient balance: top up your account") == "billing"


# ================================================================= status maps (pure, fake clients)


def test_openai_status_map_covers_every_sdk_status() -> None:
    from openai.types import Batch

    assert set(OPENAI_STATUS) == set(typing.get_args(Batch.model_fields["status"].annotation))


def _openai_batch(status: str, **extra: Any) -> Any:
    from openai.types import Batch

    return Batch.model_validate(
        {
            "id": "batch_1",
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": "file-1",
            "completion_window": "24h",
            "created_at": 1760000000,
            "status": status,
            **extra,
        }
    )


@pytest.mark.parametrize(
    "raw,want",
    [
        ("validating", BatchStatus.VALIDATING),
        ("in_progress", BatchStatus.IN_PROGRESS),
        ("finalizing", BatchStatus.FINALIZING),
        ("completed", BatchStatus.COMPLETED),
        ("failed", BatchStatus.FAILED),
        ("expired", BatchStatus.EXPIRED),
        ("cancelling", BatchStatus.CANCELLING),
        ("cancelled", BatchStatus.CANCELLED),
    ],
)
def test_openai_poll_maps_status(raw: str, want: BatchStatus) -> None:
    p = OpenAIProvider(GPT)
    batch = _openai_batch(raw, request_counts={"total": 3, "completed": 2, "failed": 1})
    p._client = SimpleNamespace(batches=SimpleNamespace(retrieve=lambda bid: batch))
    info = p.poll("batch_1")
    assert (info.status, info.raw_status) == (want, raw)
    assert info.counts == {"total": 3, "completed": 2, "failed": 1}
    assert info.status.terminal == (raw in ("completed", "failed", "expired", "cancelled"))


def test_openai_poll_reports_validation_errors() -> None:
    p = OpenAIProvider(GPT)
    batch = _openai_batch(
        "failed",
        errors={
            "object": "list",
            "data": [
                {
                    "code": "invalid_json_line",
                    "message": "This line is not parseable as valid JSON.",
                    "line": 3,
                    "param": None,
                }
            ],
        },
    )
    p._client = SimpleNamespace(batches=SimpleNamespace(retrieve=lambda bid: batch))
    info = p.poll("batch_1")
    assert info.status == BatchStatus.FAILED
    assert info.message == "invalid_json_line: This line is not parseable as valid JSON. (line 3)"


def _anthropic_batch(status: str, cancel: bool = False, **counts: int) -> Any:
    from anthropic.types.messages import MessageBatch

    c = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0, **counts}
    return MessageBatch.model_validate(
        {
            "id": "msgbatch_1",
            "type": "message_batch",
            "processing_status": status,
            "request_counts": c,
            "created_at": "2026-01-01T00:00:00Z",
            "expires_at": "2026-01-02T00:00:00Z",
            "archived_at": None,
            "ended_at": "2026-01-01T01:00:00Z" if status == "ended" else None,
            "cancel_initiated_at": "2026-01-01T00:30:00Z" if cancel else None,
            "results_url": None,
        }
    )


@pytest.mark.parametrize(
    "status,cancel,counts,want",
    [
        ("in_progress", False, {"processing": 3}, BatchStatus.IN_PROGRESS),
        ("canceling", True, {"processing": 3}, BatchStatus.CANCELLING),
        ("ended", False, {"succeeded": 3}, BatchStatus.COMPLETED),
        ("ended", False, {"succeeded": 1, "errored": 2}, BatchStatus.COMPLETED),
        (
            "ended",
            False,
            {"errored": 3},
            BatchStatus.COMPLETED,
        ),  # ended; every row failed on its own
        ("ended", False, {"expired": 3}, BatchStatus.EXPIRED),  # all expired
        (
            "ended",
            False,
            {"succeeded": 2, "expired": 1},
            BatchStatus.EXPIRED,
        ),  # the window closed mid-way
        ("ended", True, {"canceled": 3}, BatchStatus.CANCELLED),  # cancel initiated
        ("ended", True, {"succeeded": 1, "canceled": 2}, BatchStatus.CANCELLED),
    ],
)
def test_anthropic_poll_maps_status(
    status: str, cancel: bool, counts: dict[str, int], want: BatchStatus
) -> None:
    p = AnthropicProvider(HAIKU)
    batch = _anthropic_batch(status, cancel, **counts)
    p._client = SimpleNamespace(
        messages=SimpleNamespace(batches=SimpleNamespace(retrieve=lambda bid: batch))
    )
    info = p.poll("msgbatch_1")
    assert (info.status, info.raw_status) == (want, status)
    assert sum(info.counts.values()) == 3


def test_bedrock_status_map_covers_every_api_status() -> None:
    import botocore.session

    enum = (
        botocore.session.get_session()
        .get_service_model("bedrock")
        .shape_for("ModelInvocationJobStatus")
        .enum
    )
    assert set(BEDROCK_STATUS) == set(enum)


@pytest.mark.parametrize(
    "raw,want",
    [
        ("Submitted", BatchStatus.VALIDATING),
        ("Validating", BatchStatus.VALIDATING),
        ("Scheduled", BatchStatus.VALIDATING),
        ("InProgress", BatchStatus.IN_PROGRESS),
        ("Completed", BatchStatus.COMPLETED),
        ("PartiallyCompleted", BatchStatus.COMPLETED),
        ("Failed", BatchStatus.FAILED),
        ("Stopping", BatchStatus.CANCELLING),
        ("Stopped", BatchStatus.CANCELLED),
        ("Expired", BatchStatus.EXPIRED),
    ],
)
def test_bedrock_poll_maps_status(raw: str, want: BatchStatus) -> None:
    p = BedrockProvider(ModelSpec(provider="bedrock", model=BR_CLAUDE))
    job = {"status": raw, "message": "the provider's words" if raw == "Failed" else None}
    p._clients["bedrock"] = SimpleNamespace(get_model_invocation_job=lambda jobIdentifier: job)
    info = p.poll("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc")
    assert (info.status, info.raw_status) == (want, raw)
    assert info.message == job["message"]


# ========================================================================= I/O against the emulator

SECRET = "sk-test-SECRET123456789012345"
FAST = {"retry-after-ms": "1"}  # the SDKs honour it: their retries run without backoff


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch, moto_s3: str) -> Iterator[Any]:
    from afbatch.emulator import Emulator, Reply, RowError

    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/afbatch-test-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/afbatch-test-credentials")
    # botocore's own retries back off for seconds; one attempt keeps the fault tests fast
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")

    def responder(ctx: Any) -> Any:
        # rows asking to fail get a row error; the others' text names the row id the provider sent
        if any("FAIL THIS ROW" in m["content"] for m in ctx.messages):
            return RowError("rate_limit", "Too many requests for this row.")
        return Reply(f"<OUTPUT>{ctx.custom_id}</OUTPUT>", input_tokens=100, output_tokens=7)

    with Emulator(responder, s3_endpoint=moto_s3) as e:
        for key, value in e.env().items():
            monkeypatch.setenv(key, value)
        yield e
        assert e.errors == [], f"emulator/responder errors: {e.errors!r}"


def _ids(n: int) -> list[str]:
    """Line ids of a shard no batch here holds (providers that find by token ignore them)."""
    return [f"other-{i}" for i in range(n)]


def _requests(
    model: ModelSpec,
    n: int,
    *,
    bad: tuple[int, ...] = (),
    prefill: str | None = None,
    cache: bool = False,
) -> list[Request]:
    system = (
        "You are a test assistant. Think in <SCRATCHPAD_REASONING> tags, answer in <OUTPUT> tags."
    )
    return [
        Request(
            id=f"c{uuid.uuid4().hex[:20]}-{'bad' if i in bad else 't1'}",
            model=model,
            system=system,
            messages=(
                Message(
                    "user",
                    f"<INPUT><user_input>Question {i}{' FAIL THIS ROW' if i in bad else ''}"
                    "</user_input></INPUT>",
                ),
            ),
            max_tokens=64,
            temperature=1.0,
            prefill=prefill,
            cache=cache,
        )
        for i in range(n)
    ]


def _until(cond: Any, timeout: float = 5.0) -> None:
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "condition not reached"
        time.sleep(0.02)


def _results(provider: Any, batch_id: str, requests: list[Request]) -> dict[str, Result]:
    """fetch + parse, keyed by request id; exactly one line per request."""
    by_line = {provider.line_id(r.id): r.id for r in requests}
    lines = list(provider.fetch(batch_id))
    parsed = [provider.parse(line) for line in lines]
    assert sorted(by_line[r.id] for r in parsed) == sorted(r.id for r in requests)
    return {by_line[r.id]: r for r in parsed}


def _assert_clean_error(e: ProviderError, provider_name: str, secret: str = SECRET) -> str:
    msg = str(e)
    assert "\n" not in msg and provider_name in msg
    assert secret not in msg
    return msg


# ---------------------------------------------------------------------------- OpenAI


@pytest.fixture
def gpt(emu: Any, monkeypatch: pytest.MonkeyPatch) -> OpenAIProvider:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    return OpenAIProvider(ModelSpec(provider="openai", model="gpt-4o-mini"))


def test_openai_submit_poll_fetch(emu: Any, gpt: OpenAIProvider, tmp_path: Path) -> None:
    reqs = _requests(gpt.model, 4, bad=(2,))
    path = one_shard(gpt, reqs, tmp_path)
    token = shard_token()
    emu.processing_delay = 60
    bid = gpt.submit(path, 4, token, {"afbatch_run": "run-1", "afbatch_shard": "s-000"})
    assert bid.startswith("batch_")
    stored = emu.openai.batches[bid]
    assert stored.metadata == {
        "afbatch_run": "run-1",
        "afbatch_shard": "s-000",
        "afbatch_token": token,
    }
    assert emu.openai.files[stored.input_file_id].data == Path(path).read_bytes()
    assert not gpt.poll(bid).status.terminal
    emu.processing_delay = 0  # the next read finishes it
    info = wait_ended(gpt, bid)
    assert (info.status, info.raw_status) == (BatchStatus.COMPLETED, "completed")
    assert info.counts["total"] == 4 and info.counts["failed"] == 1
    got = _results(gpt, bid, reqs)  # output file and error file
    for r in reqs:
        if r.id.endswith("bad"):
            assert (
                got[r.id].status == RowStatus.ERRORED
                and got[r.id].error_kind == "rate_limit"
                and got[r.id].retryable
            )
        else:
            res = got[r.id]
            assert res.status == RowStatus.SUCCEEDED and res.text == f"<OUTPUT>{r.id}</OUTPUT>"
            assert (res.usage.input_tokens, res.usage.output_tokens, res.stop_reason) == (
                100,
                7,
                "stop",
            )


def test_openai_n_choices_come_back_as_texts(emu: Any, gpt: OpenAIProvider, tmp_path: Path) -> None:
    from dataclasses import replace

    from afbatch.emulator import Reply

    emu.responder = lambda ctx: Reply(f"vote {ctx.choice}", input_tokens=100, output_tokens=7)
    reqs = [replace(r, n=3) for r in _requests(gpt.model, 2)]
    lines = [json.loads(line) for _, line in render_lines(gpt, reqs)]
    assert [line["body"]["n"] for line in lines] == [3, 3]
    bid = gpt.submit(one_shard(gpt, reqs, tmp_path), 2, shard_token(), {})
    assert wait_ended(gpt, bid).status == BatchStatus.COMPLETED
    for res in _results(gpt, bid, reqs).values():
        assert (
            res.status == RowStatus.SUCCEEDED
            and res.texts == ("vote 0", "vote 1", "vote 2")
            and res.text == "vote 0"
        )
        assert (res.usage.input_tokens, res.usage.output_tokens) == (
            100,
            21,
        )  # one prompt, three answers


def test_votes_in_one_request_only_where_the_provider_returns_n(claude: AnthropicProvider) -> None:
    from afbatch.spec import JudgeSpec

    with pytest.raises(
        ValueError, match="af_vote_requests = 'one' needs a provider that returns n choices"
    ):
        JudgeSpec(model=claude.model, compliance_template="c.txt", af_vote_requests="one")
    assert not JudgeSpec(model=claude.model, compliance_template="c.txt").af_votes_in_one_request
    assert JudgeSpec(model=GPT, compliance_template="c.txt").af_votes_in_one_request
    assert not JudgeSpec(model=GPT, compliance_template="c.txt", af_votes=1).af_votes_in_one_request


def test_openai_cancel(emu: Any, gpt: OpenAIProvider, tmp_path: Path) -> None:
    reqs = _requests(gpt.model, 3)
    emu.processing_delay = 60
    bid = gpt.submit(one_shard(gpt, reqs, tmp_path), 3, shard_token(), {})
    gpt.cancel(bid)
    assert wait_ended(gpt, bid).status == BatchStatus.CANCELLED
    got = _results(gpt, bid, reqs)
    assert {r.status for r in got.values()} == {RowStatus.CANCELED}


def test_openai_expired_and_failed_batches(emu: Any, gpt: OpenAIProvider, tmp_path: Path) -> None:
    reqs = _requests(gpt.model, 4)
    emu.faults.batch("openai", "expired", fraction_done=0.5)
    bid = gpt.submit(one_shard(gpt, reqs, tmp_path), 4, shard_token(), {})
    assert wait_ended(gpt, bid).status == BatchStatus.EXPIRED
    got = _results(gpt, bid, reqs)  # finished rows in the output file, the rest batch_expired
    assert sorted(r.status.value for r in got.values()) == [
        "expired",
        "expired",
        "succeeded",
        "succeeded",
    ]

    emu.faults.batch("openai", "failed")
    bid = gpt.submit(one_shard(gpt, reqs, tmp_path), 4, shard_token(), {})
    info = wait_ended(gpt, bid)
    assert info.status == BatchStatus.FAILED and info.message.startswith("token_limit_exceeded: ")
    assert list(gpt.fetch(bid)) == []


def test_openai_fetch_with_missing_or_empty_file_ids(
    emu: Any, gpt: OpenAIProvider, tmp_path: Path
) -> None:
    reqs = _requests(gpt.model, 2)
    emu.faults.batch(
        "openai", "all_failed"
    )  # completed, yet every row failed: no output file at all
    bid = gpt.submit(one_shard(gpt, reqs, tmp_path), 2, shard_token(), {})
    assert wait_ended(gpt, bid).status == BatchStatus.COMPLETED
    assert emu.openai.batches[bid].output_file_id is None
    assert {r.error_kind for r in _results(gpt, bid, reqs).values()} == {"server_error"}

    bid = gpt.submit(one_shard(gpt, reqs, tmp_path), 2, shard_token(), {})
    wait_ended(gpt, bid)
    emu.openai.batches[bid].error_file_id = ""  # a clean batch as some deployments report it
    assert {r.status for r in _results(gpt, bid, reqs).values()} == {RowStatus.SUCCEEDED}


def test_openai_find(emu: Any, gpt: OpenAIProvider, tmp_path: Path) -> None:
    reqs = _requests(gpt.model, 2)
    token, since = shard_token(), time.time()
    assert gpt.find(token, _ids(2), since) == Found()  # nothing created
    other = gpt.submit(one_shard(gpt, reqs, tmp_path), 2, shard_token(), {})
    assert gpt.find(token, _ids(2), since) == Found()  # a batch with another token is not ours
    bid = gpt.submit(one_shard(gpt, reqs, tmp_path), 2, token, {})
    assert bid != other
    assert gpt.find(token, _ids(2), since) == Found(bid)
    assert gpt.find(token, _ids(2), since, frozenset({bid})) == Found()  # already claimed
    assert gpt.find(token, _ids(2), since + 3600) == Found()  # created well before the intent


def test_openai_create_500_is_retryable_and_redacted(
    emu: Any, gpt: OpenAIProvider, tmp_path: Path
) -> None:
    path = one_shard(gpt, _requests(gpt.model, 2), tmp_path)
    token = shard_token()
    emu.faults.http("openai", "POST", r"^/v1/batches$", 500, times=2, headers=FAST)
    with pytest.raises(ProviderError) as ei:
        gpt.submit(path, 2, token, {})
    assert ei.value.retryable
    assert "HTTP 500" in _assert_clean_error(ei.value, "openai")
    # one attempt only: a create is not idempotent, so the runner (not the SDK) retries, after
    # find()
    assert len(emu.faults.fired) == 1 and emu.created == []
    assert gpt.find(token, _ids(2), time.time() - 5) == Found()
    emu.faults.clear()


def test_openai_other_calls_keep_sdk_retries(emu: Any, gpt: OpenAIProvider, tmp_path: Path) -> None:
    bid = gpt.submit(one_shard(gpt, _requests(gpt.model, 2), tmp_path), 2, shard_token(), {})
    emu.faults.http("openai", "GET", r"^/v1/batches/", 500, times=2, headers=FAST)
    assert gpt.poll(bid).status == BatchStatus.COMPLETED
    assert len(emu.faults.fired) == 2


def test_openai_lost_create_response_is_found_by_token(
    emu: Any, gpt: OpenAIProvider, tmp_path: Path
) -> None:
    """The create reached the provider but its answer never came back: find() recovers the batch."""
    path = one_shard(gpt, _requests(gpt.model, 2), tmp_path)
    token, since = shard_token(), time.time()
    gpt._client = gpt.client.with_options(timeout=0.2)
    emu.faults.http(
        "openai", "POST", r"^/v1/batches$", delay=0.6
    )  # then answered normally, too late
    with pytest.raises(ProviderError) as ei:
        gpt.submit(path, 2, token, {})
    assert ei.value.retryable
    _until(lambda: len(emu.created) == 1)
    assert gpt.find(token, _ids(2), since) == Found(emu.created[0][1])


def test_openai_create_400_is_not_retryable(emu: Any, gpt: OpenAIProvider, tmp_path: Path) -> None:
    path = one_shard(gpt, _requests(gpt.model, 2), tmp_path)
    emu.faults.http("openai", "POST", r"^/v1/batches$", 400)
    with pytest.raises(ProviderError) as ei:
        gpt.submit(path, 2, shard_token(), {})
    assert not ei.value.retryable
    assert "HTTP 400" in _assert_clean_error(ei.value, "openai")


def test_openai_error_echoing_the_key_is_redacted(
    emu: Any, gpt: OpenAIProvider, tmp_path: Path
) -> None:
    path = one_shard(gpt, _requests(gpt.model, 2), tmp_path)
    body = {
        "error": {
            "message": f"Incorrect API key provided: {SECRET}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    emu.faults.http("openai", "POST", r"^/v1/files$", 401, body=body)
    with pytest.raises(ProviderError) as ei:
        gpt.submit(path, 2, shard_token(), {})
    assert not ei.value.retryable
    assert "Incorrect API key provided" in _assert_clean_error(ei.value, "openai")


def test_openai_missing_key(emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    p = OpenAIProvider(ModelSpec(provider="openai", model="gpt-4o-mini"))
    with pytest.raises(ProviderError, match="OPENAI_API_KEY") as ei:
        p.submit(one_shard(p, _requests(p.model, 1), tmp_path), 1, shard_token(), {})
    assert not ei.value.retryable and emu.created == []
    custom = OpenAIProvider(
        ModelSpec(provider="openai", model="gpt-4o-mini", api_key_env="MY_OPENAI_KEY")
    )
    with pytest.raises(ProviderError, match="MY_OPENAI_KEY"):
        custom.find(shard_token(), _ids(1), time.time())


def test_together_goes_through_its_base_url_and_key(
    emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from afbatch.emulator import Reply

    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")  # only TOGETHER_BASE_URL may lead to the emulator
    spec = ModelSpec(provider="together", model="meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo")
    p = get_provider(spec)
    with pytest.raises(ProviderError, match="TOGETHER_API_KEY"):
        p.find(shard_token(), _ids(1), time.time())

    together_key = "together-SECRET-0123456789abcdef"
    monkeypatch.setenv("TOGETHER_API_KEY", together_key)
    monkeypatch.setenv("TOGETHER_BASE_URL", emu.url + "/v1")
    seen: list[Any] = []

    def responder(ctx: Any) -> Reply:
        seen.append(ctx)
        return Reply("<OUTPUT>ok</OUTPUT>", output_tokens=3)

    emu.responder = responder
    p = get_provider(spec)
    reqs = _requests(spec, 2, prefill="<")
    line = p.render(reqs[0])
    assert line["body"]["max_tokens"] == 64 and "max_completion_tokens" not in line["body"]
    assert line["body"]["messages"][-1] == {"role": "assistant", "content": "<"}
    bid = p.submit(one_shard(p, reqs, tmp_path), 2, shard_token(), {})
    assert wait_ended(p, bid).status == BatchStatus.COMPLETED
    assert {r.status for r in _results(p, bid, reqs).values()} == {RowStatus.SUCCEEDED}
    assert [c.model for c in seen] == [spec.model] * 2
    assert all(
        c.params.get("max_tokens") == 64 and "max_completion_tokens" not in c.params for c in seen
    )
    assert p.client.api_key == together_key and str(p.client.base_url).startswith(emu.url)
    # an error through that host names the host and hides its key
    emu.faults.http(
        "openai",
        "GET",
        r"^/v1/batches/",
        400,
        body={"error": {"message": f"bad key {together_key}", "type": "invalid_request_error"}},
    )
    with pytest.raises(ProviderError) as ei:
        p.poll(bid)
    _assert_clean_error(ei.value, "together", together_key)


# ---------------------------------------------------------------------------- Anthropic


@pytest.fixture
def claude(emu: Any, monkeypatch: pytest.MonkeyPatch) -> AnthropicProvider:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    return AnthropicProvider(
        ModelSpec(provider="anthropic", model="claude-haiku-4-5", label="haiku")
    )


def test_anthropic_submit_poll_fetch(emu: Any, claude: AnthropicProvider, tmp_path: Path) -> None:
    reqs = _requests(claude.model, 4, bad=(1,), prefill="<", cache=True)
    emu.processing_delay = 60
    bid = claude.submit(
        one_shard(claude, reqs, tmp_path), 4, shard_token(), {"afbatch_run": "run-1"}
    )
    assert bid.startswith("msgbatch_")
    info = claude.poll(bid)
    assert (info.status, info.raw_status, info.counts["processing"]) == (
        BatchStatus.IN_PROGRESS,
        "in_progress",
        4,
    )
    emu.processing_delay = 0
    info = wait_ended(claude, bid)
    assert (info.status, info.raw_status) == (BatchStatus.COMPLETED, "ended")
    assert (info.counts["succeeded"], info.counts["errored"]) == (3, 1)
    got = _results(claude, bid, reqs)
    ok = [got[r.id] for r in reqs if not r.id.endswith("bad")]
    assert all(
        r.status == RowStatus.SUCCEEDED and r.text == f"<OUTPUT>{rid}</OUTPUT>"
        for r, rid in zip(ok, [q.id for q in reqs if not q.id.endswith("bad")])
    )
    # cache reads and writes are part of the input: every row reports the emulator's full 100 tokens
    assert {r.usage.input_tokens for r in ok} == {100}
    assert (
        sum(1 for r in ok if r.usage.cache_write_tokens) == 1
        and sum(1 for r in ok if r.usage.cached_tokens) == 2
    )
    bad = got[next(r.id for r in reqs if r.id.endswith("bad"))]
    assert (bad.status, bad.error_kind, bad.retryable) == (RowStatus.ERRORED, "rate_limit", True)


def test_anthropic_cancel_and_expire(emu: Any, claude: AnthropicProvider, tmp_path: Path) -> None:
    reqs = _requests(claude.model, 3)
    emu.processing_delay = 60
    bid = claude.submit(one_shard(claude, reqs, tmp_path), 3, shard_token(), {})
    claude.cancel(bid)
    assert wait_ended(claude, bid).status == BatchStatus.CANCELLED
    assert {r.status for r in _results(claude, bid, reqs).values()} == {RowStatus.CANCELED}

    emu.processing_delay = 0
    emu.faults.batch("anthropic", "expired", fraction_done=0.0)
    bid = claude.submit(one_shard(claude, reqs, tmp_path), 3, shard_token(), {})
    info = wait_ended(claude, bid)
    assert (info.status, info.counts["expired"]) == (BatchStatus.EXPIRED, 3)
    assert {r.status for r in _results(claude, bid, reqs).values()} == {RowStatus.EXPIRED}


def _line_ids(provider: Any, requests: list[Request]) -> list[str]:
    return [provider.line_id(r.id) for r in requests]


def test_anthropic_find_nothing_or_not_this_shards(
    emu: Any, claude: AnthropicProvider, tmp_path: Path
) -> None:
    three, two = _requests(claude.model, 3), _requests(claude.model, 2)
    since = time.time()
    assert claude.find(shard_token(), _line_ids(claude, three), since) == Found()  # nothing created
    other = claude.submit(
        one_shard(claude, _requests(claude.model, 3), tmp_path), 3, shard_token(), {}
    )
    wait_ended(claude, other)
    # an ended batch of the same size whose rows are another shard's: not ours, nothing else there
    assert claude.find(shard_token(), _line_ids(claude, three), since) == Found()
    assert claude.find(shard_token(), _line_ids(claude, two), since) == Found()  # another size
    mine = claude.submit(one_shard(claude, three, tmp_path), 3, shard_token(), {})
    wait_ended(claude, mine)
    assert claude.find(shard_token(), _line_ids(claude, three), since) == Found(mine)
    assert claude.find(shard_token(), _line_ids(claude, three), since, frozenset({mine})) == Found()


def test_anthropic_find_rejects_a_batch_created_before_the_intent(
    emu: Any, claude: AnthropicProvider, tmp_path: Path
) -> None:
    """A batch created before this shard's intent (beyond the clock slack) was not made by this
    shard's create call, even with the same requests (an earlier attempt, another run)."""
    reqs = _requests(claude.model, 2)
    bid = claude.submit(one_shard(claude, reqs, tmp_path), 2, shard_token(), {})
    wait_ended(claude, bid)
    created = emu.anthropic.batches[bid].created
    assert claude.find(shard_token(), _line_ids(claude, reqs), created - 1) == Found(bid)
    late = created + CLOCK_SLACK_SECONDS + 1
    assert claude.find(shard_token(), _line_ids(claude, reqs), late) == Found()


def test_anthropic_find_two_same_size_ended_batches_by_their_ids(
    emu: Any, claude: AnthropicProvider, tmp_path: Path
) -> None:
    """Two shards of one size, both created after the intent: each gets its own batch."""
    first, second = _requests(claude.model, 3), _requests(claude.model, 3)
    since = time.time()
    a = claude.submit(one_shard(claude, first, tmp_path), 3, shard_token(), {})
    b = claude.submit(one_shard(claude, second, tmp_path), 3, shard_token(), {})
    wait_ended(claude, a), wait_ended(claude, b)
    assert claude.find(shard_token(), _line_ids(claude, second), since) == Found(b)
    assert claude.find(shard_token(), _line_ids(claude, first), since) == Found(a)
    # a shard with one request of each is neither's
    mixed = _line_ids(claude, [first[0], second[1], first[2]])
    assert claude.find(shard_token(), mixed, since) == Found()


def test_anthropic_find_waits_while_candidates_are_processing(
    emu: Any, claude: AnthropicProvider, tmp_path: Path
) -> None:
    first, second = _requests(claude.model, 3), _requests(claude.model, 3)
    since = time.time()
    emu.processing_delay = 60
    a = claude.submit(one_shard(claude, first, tmp_path), 3, shard_token(), {})
    one = claude.find(shard_token(), _line_ids(claude, second), since)
    assert one.batch_id is None and one.undecided and a in one.undecided  # one candidate: no proof
    b = claude.submit(one_shard(claude, second, tmp_path), 3, shard_token(), {})
    both = claude.find(shard_token(), _line_ids(claude, second), since)
    assert both.batch_id is None and a in (both.undecided or "") and b in (both.undecided or "")
    # a batch another shard holds is no candidate: nothing to wait for
    assert (
        claude.find(shard_token(), _line_ids(claude, second), since, frozenset({a, b})) == Found()
    )
    emu.processing_delay = 0  # they end: now their results tell
    assert claude.find(shard_token(), _line_ids(claude, second), since) == Found(b)
    assert claude.find(shard_token(), _line_ids(claude, first), since, frozenset({b})) == Found(a)


def test_anthropic_find_skips_a_claimed_batch_of_this_shards_rows(
    emu: Any, claude: AnthropicProvider, tmp_path: Path
) -> None:
    """A batch another shard of the run holds is never adopted (an earlier attempt of the rows)."""
    reqs = _requests(claude.model, 2)
    since = time.time()
    held = claude.submit(one_shard(claude, reqs, tmp_path), 2, shard_token(), {})
    wait_ended(claude, held)
    assert claude.find(shard_token(), _line_ids(claude, reqs), since, frozenset({held})) == Found()


def test_anthropic_create_500_is_retryable_and_redacted(
    emu: Any, claude: AnthropicProvider, tmp_path: Path
) -> None:
    path = one_shard(claude, _requests(claude.model, 2), tmp_path)
    emu.faults.http("anthropic", "POST", r"^/v1/messages/batches$", 500, times=2, headers=FAST)
    with pytest.raises(ProviderError) as ei:
        claude.submit(path, 2, shard_token(), {})
    assert ei.value.retryable
    assert "HTTP 500" in _assert_clean_error(ei.value, "anthropic")
    assert len(emu.faults.fired) == 1 and emu.created == []  # no SDK retry of a create
    assert claude.find(shard_token(), _ids(2), time.time() - 5) == Found()  # nothing was created
    emu.faults.clear()


def test_anthropic_lost_create_response_is_found(
    emu: Any, claude: AnthropicProvider, tmp_path: Path
) -> None:
    reqs = _requests(claude.model, 2)
    path = one_shard(claude, reqs, tmp_path)
    since = time.time()
    claude._client = claude.client.with_options(timeout=0.2)
    emu.faults.http("anthropic", "POST", r"^/v1/messages/batches$", delay=0.6)
    with pytest.raises(ProviderError) as ei:
        claude.submit(path, 2, shard_token(), {})
    assert ei.value.retryable
    _until(lambda: len(emu.created) == 1)
    assert claude.find(shard_token(), _line_ids(claude, reqs), since) == Found(emu.created[0][1])


def test_anthropic_create_400_and_key_echo(
    emu: Any, claude: AnthropicProvider, tmp_path: Path
) -> None:
    path = one_shard(claude, _requests(claude.model, 2), tmp_path)
    emu.faults.http("anthropic", "POST", r"^/v1/messages/batches$", 400)
    with pytest.raises(ProviderError) as ei:
        claude.submit(path, 2, shard_token(), {})
    assert not ei.value.retryable
    assert "HTTP 400" in _assert_clean_error(ei.value, "anthropic")
    emu.faults.http(
        "anthropic",
        "POST",
        r"^/v1/messages/batches$",
        401,
        body={
            "type": "error",
            "error": {"type": "authentication_error", "message": f"invalid x-api-key {SECRET}"},
        },
    )
    with pytest.raises(ProviderError) as ei:
        claude.submit(path, 2, shard_token(), {})
    assert not ei.value.retryable
    assert "invalid x-api-key" in _assert_clean_error(ei.value, "anthropic")


def test_anthropic_missing_key(emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    p = AnthropicProvider(HAIKU)
    with pytest.raises(ProviderError, match="ANTHROPIC_API_KEY") as ei:
        p.submit(one_shard(p, _requests(p.model, 1), tmp_path), 1, shard_token(), {})
    assert not ei.value.retryable and emu.created == []


# ---------------------------------------------------------------------------- Bedrock


@pytest.fixture
def bucket(emu: Any) -> str:
    import boto3

    name = "afb-" + uuid.uuid4().hex[:12]
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def small_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    from afbatch.emulator.bedrock import BedrockService

    monkeypatch.setattr(
        BedrockService, "MIN_RECORDS", 1
    )  # real jobs need 100; these tests send a few


def _bedrock(bucket: str, model: str = BR_CLAUDE) -> BedrockProvider:
    return BedrockProvider(
        ModelSpec(
            provider="bedrock",
            model=model,
            s3_uri=f"s3://{bucket}/afb",
            role_arn=ROLE_ARN,
            region="us-east-1",
        )
    )


@pytest.mark.parametrize("model", [BR_CLAUDE, BR_LLAMA])
def test_bedrock_submit_poll_fetch(
    emu: Any, bucket: str, small_jobs: None, tmp_path: Path, model: str
) -> None:
    p = _bedrock(bucket, model)
    reqs = _requests(p.model, 4, bad=(3,), prefill="<")
    token = shard_token()
    emu.processing_delay = 60
    arn = p.submit(one_shard(p, reqs, tmp_path), 4, token, {"afbatch_run": "run-1"})
    assert arn.startswith("arn:aws:bedrock:us-east-1:") and "model-invocation-job/" in arn
    job = emu.bedrock.jobs[arn.rsplit("/", 1)[-1]].request
    assert job["jobName"] == f"afbatch-{token}" and job["clientRequestToken"] == token
    assert (
        job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        == f"s3://{bucket}/afb/afbatch-input/{token}.jsonl"
    )
    info = p.poll(arn)
    assert (info.status, info.raw_status) == (BatchStatus.VALIDATING, "Submitted")
    emu.processing_delay = 0
    info = wait_ended(p, arn)
    assert (info.status, info.raw_status) == (BatchStatus.COMPLETED, "Completed")
    lines = list(p.fetch(arn))
    assert len(lines) == 4 and all(
        "recordId" in line for line in lines
    )  # records only, never the manifest
    got = _results(p, arn, reqs)
    for r in reqs:
        res = got[r.id]
        if r.id.endswith("bad"):
            assert (res.status, res.error_kind, res.retryable) == (
                RowStatus.ERRORED,
                "rate_limit",
                True,
            )
        else:
            # the model saw the short record id, not ours
            assert (
                res.status == RowStatus.SUCCEEDED
                and res.text == f"<OUTPUT>{p.line_id(r.id)}</OUTPUT>"
            )
            assert (res.usage.input_tokens, res.usage.output_tokens) == (100, 7)


def test_bedrock_same_token_twice_is_one_job(
    emu: Any, bucket: str, small_jobs: None, tmp_path: Path
) -> None:
    p = _bedrock(bucket)
    path = one_shard(p, _requests(p.model, 2), tmp_path)
    token = shard_token()
    first = p.submit(path, 2, token, {"afbatch_run": "run-1"})
    again = p.submit(path, 2, token, {"afbatch_run": "run-1"})
    assert first == again
    assert [c for c in emu.created if c[0] == "bedrock"] == [
        ("bedrock", first.rsplit("/", 1)[-1], BR_CLAUDE, 2)
    ]


def test_bedrock_find(emu: Any, bucket: str, small_jobs: None, tmp_path: Path) -> None:
    p = _bedrock(bucket)
    path = one_shard(p, _requests(p.model, 2), tmp_path)
    token, since = shard_token(), time.time()
    assert p.find(token, _ids(2), since) == Found()  # nothing created
    p.submit(path, 2, shard_token(), {})
    assert p.find(token, _ids(2), since) == Found()  # another token's job
    arn = p.submit(path, 2, token, {})
    assert p.find(token, _ids(2), since) == Found(arn)
    assert p.find(token, _ids(2), since, frozenset({arn})) == Found()


def test_bedrock_stop(emu: Any, bucket: str, small_jobs: None, tmp_path: Path) -> None:
    p = _bedrock(bucket)
    reqs = _requests(p.model, 3)
    emu.processing_delay = 60
    arn = p.submit(one_shard(p, reqs, tmp_path), 3, shard_token(), {})
    p.cancel(arn)
    assert p.poll(arn).status == BatchStatus.CANCELLING
    assert wait_ended(p, arn).status == BatchStatus.CANCELLED
    assert list(p.fetch(arn)) == []  # nothing ran: no records (the runner marks them canceled)


def test_bedrock_failed_job_has_no_lines(emu: Any, bucket: str, tmp_path: Path) -> None:
    p = _bedrock(bucket)  # the emulator keeps Bedrock's 100-record minimum here
    arn = p.submit(one_shard(p, _requests(p.model, 3), tmp_path), 3, shard_token(), {})
    info = wait_ended(p, arn)
    assert info.status == BatchStatus.FAILED and "minimum" in (info.message or "")
    assert list(p.fetch(arn)) == []


@pytest.mark.parametrize(
    "status,code,retryable",
    [
        (500, "InternalServerException", True),
        (429, "ThrottlingException", True),
        (400, "ValidationException", False),
    ],
)
def test_bedrock_create_errors(
    emu: Any, bucket: str, small_jobs: None, tmp_path: Path, status: int, code: str, retryable: bool
) -> None:
    p = _bedrock(bucket)
    path = one_shard(p, _requests(p.model, 2), tmp_path)
    emu.faults.http(
        "bedrock",
        "POST",
        r"^/model-invocation-job$",
        status,
        headers={"x-amzn-ErrorType": code},
        body={"message": f"injected {code}"},
    )
    with pytest.raises(ProviderError) as ei:
        p.submit(path, 2, shard_token(), {})
    assert ei.value.retryable is retryable
    assert code in _assert_clean_error(ei.value, "bedrock", "testing")
    assert [c for c in emu.created if c[0] == "bedrock"] == []


def test_bedrock_error_echoing_the_access_key_is_redacted(
    emu: Any, bucket: str, small_jobs: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    key_id = "AKIAIOSFODNN7EXAMPLE"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)  # moto and the emulator accept any credentials
    p = _bedrock(bucket)
    path = one_shard(p, _requests(p.model, 2), tmp_path)
    emu.faults.http(
        "bedrock",
        "POST",
        r"^/model-invocation-job$",
        403,
        headers={"x-amzn-ErrorType": "UnrecognizedClientException"},
        body={"message": f"The security token included in the request is invalid: {key_id}"},
    )
    with pytest.raises(ProviderError) as ei:
        p.submit(path, 2, shard_token(), {})
    assert not ei.value.retryable
    assert "UnrecognizedClientException" in _assert_clean_error(ei.value, "bedrock", key_id)


def test_bedrock_needs_s3_uri_and_role(emu: Any, tmp_path: Path) -> None:
    p = BedrockProvider(ModelSpec(provider="bedrock", model=BR_CLAUDE))
    with pytest.raises(ProviderError, match="s3_uri") as ei:
        p.submit(one_shard(p, _requests(p.model, 1), tmp_path), 1, shard_token(), {})
    assert not ei.value.retryable


def test_bedrock_missing_credentials_is_not_retryable(
    emu: Any, bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import boto3

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-metadata lookup either
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # the default session caches credentials
    p = _bedrock(bucket)
    with pytest.raises(ProviderError) as ei:
        p.submit(one_shard(p, _requests(p.model, 1), tmp_path), 1, shard_token(), {})
    assert "credentials" in str(ei.value).lower()
    assert not ei.value.retryable


@pytest.mark.parametrize("model", [BR_CLAUDE, BR_LLAMA])
def test_bedrock_invoke_on_demand(emu: Any, bucket: str, model: str) -> None:
    from afbatch.emulator import RowError

    assert "AWS_ENDPOINT_URL_BEDROCK_RUNTIME" in emu.env()
    p = _bedrock(bucket, model)
    ok, bad = _requests(p.model, 2, prefill="<")
    line = p.render(ok)
    out = p.invoke(line)
    assert out["recordId"] == line["recordId"] == p.line_id(ok.id) and "modelOutput" in out
    res = p.parse(out)
    assert res.status == RowStatus.SUCCEEDED and res.text.startswith("<OUTPUT>invoke-")
    assert (res.usage.input_tokens, res.usage.output_tokens) == (100, 7)
    assert emu.invocations == [(model, "invoke-1")]

    emu.responder = lambda ctx: RowError(
        "rate_limit", "Too many requests, please wait before trying again."
    )
    out = p.invoke(p.render(bad))
    assert out["error"]["errorCode"] == 429
    res = p.parse(out)
    assert (res.status, res.error_kind, res.retryable) == (RowStatus.ERRORED, "rate_limit", True)
    assert res.error_message == "Too many requests, please wait before trying again."
