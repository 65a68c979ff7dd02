"""The Gemini API provider: golden request and result lines (pure), both state vocabularies, and
its I/O against the emulator with the real google-genai SDK over HTTP.

The expected result files in tests/golden/results/gemini/ were written by hand from the Gemini API
reference (GenerateContentResponse, UsageMetadata, google.rpc.Status), not from the code.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from provider_support import one_shard, shard_token, wait_ended

from afbatch.compile import first_requests
from afbatch.errors import ProviderError
from afbatch.pricing import load_prices
from afbatch.providers import BatchStatus, Found, gemini, get_provider
from afbatch.providers.base import read_line
from afbatch.providers.gemini import STATUS, GeminiProvider, normalise
from afbatch.shard_files import render_lines
from afbatch.spec import ModelSpec, load_job
from afbatch.types import Message, Request, Result, RowStatus

GOLDEN = Path(__file__).parent / "golden"
FLASH = ModelSpec(provider="gemini", model="gemini-2.5-flash", label="gemini-flash")
SECRET = "AIzaSy-test-SECRET-0123456789abcdefghij"


# ============================================================================ pure halves


def test_golden_request_lines() -> None:
    """The golden job's first round for a Gemini model: `{key, request}` lines, the system prompt
    as system_instruction, no prefill (Gemini takes none), generation_config from the job."""
    from afbatch.grid import load_grid

    grid = load_grid(load_job(GOLDEN / "job" / "job.toml"))
    provider = get_provider(FLASH)
    lines = [
        line.decode()
        for _, line in render_lines(provider, first_requests(grid, FLASH, load_prices()))
    ]
    path = GOLDEN / "requests" / "gemini-flash.jsonl"
    assert lines == path.read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"key", "request"}
    assert set(first["request"]) == {"contents", "system_instruction", "generation_config"}
    assert first["request"]["generation_config"] == {"max_output_tokens": 1000, "temperature": 0.0}
    assert [c["role"] for c in first["request"]["contents"]] == ["user"]  # no trailing model turn


def test_later_turns_are_model_turns() -> None:
    req = Request(
        id="c0-t2",
        model=FLASH,
        system=None,
        max_tokens=5,
        temperature=None,
        messages=(Message("user", "q"), Message("assistant", "a"), Message("user", "<NEXT/>")),
    )
    line = get_provider(FLASH).render(req)
    assert [c["role"] for c in line["request"]["contents"]] == ["user", "model", "user"]
    assert "system_instruction" not in line["request"]
    assert line["request"]["generation_config"] == {"max_output_tokens": 5}


def _parsed(rel: str) -> list[Result]:
    provider = get_provider(FLASH)
    raw = (GOLDEN / "results" / "gemini" / rel).read_bytes().splitlines()
    return [provider.parse(read_line(line)) for line in raw if line.strip()]


def test_golden_results() -> None:
    expected = json.loads((GOLDEN / "results" / "gemini" / "results.expected.json").read_text())
    got = [{**r.to_json(), "retryable": r.retryable} for r in _parsed("results.jsonl")]
    assert [g["id"] for g in got] == [e["id"] for e in expected]
    for g, e in zip(got, expected):
        assert g == e, g["id"]
    kinds = {e["status"] + ":" + (e.get("error_kind") or "") for e in expected}
    assert {
        "succeeded:",
        "errored:invalid_request",
        "errored:rate_limit",
        "errored:overloaded",
        "errored:server_error",
        "errored:billing",
        "errored:auth",
        "canceled:canceled",
    } <= kinds


def test_golden_expected_round_trips() -> None:
    for e in json.loads((GOLDEN / "results" / "gemini" / "results.expected.json").read_text()):
        fields = {k: v for k, v in e.items() if k != "retryable"}
        r = Result.from_json(fields)
        assert r.to_json() == fields and r.retryable is e["retryable"]


def test_golden_malformed_lines_become_errored_rows() -> None:
    expected = json.loads((GOLDEN / "results" / "gemini" / "malformed.expected.json").read_text())
    got = _parsed("malformed.jsonl")
    assert len(got) == len(expected)
    for r, want in zip(got, expected):
        assert (r.id, r.status.value, r.error_kind, r.retryable) == (
            want["id"],
            want["status"],
            want["error_kind"],
            want["retryable"],
        )
        assert want["reason"] in (r.error_message or "")


def test_snake_case_fields_read_like_camel_case() -> None:
    """The SDK's own dumps use snake_case: the same numbers come out."""
    line = {
        "key": "k",
        "response": {
            "candidates": [{"content": {"parts": [{"text": "hi"}]}, "finish_reason": "STOP"}],
            "usage_metadata": {
                "prompt_token_count": 10,
                "cached_content_token_count": 4,
                "candidates_token_count": 2,
                "thoughts_token_count": 3,
            },
        },
    }
    r = get_provider(FLASH).parse(line)
    assert (r.text, tuple(r.usage), r.stop_reason) == ("hi", (10, 4, 0, 5), "STOP")


# The SDK's JobState members and the REST resource's BatchState values, each with what it means.
WANT = {
    "UNSPECIFIED": BatchStatus.VALIDATING,
    "QUEUED": BatchStatus.VALIDATING,
    "PENDING": BatchStatus.VALIDATING,
    "RUNNING": BatchStatus.IN_PROGRESS,
    "UPDATING": BatchStatus.IN_PROGRESS,
    "PAUSED": BatchStatus.IN_PROGRESS,
    "CANCELLING": BatchStatus.CANCELLING,
    "SUCCEEDED": BatchStatus.COMPLETED,
    "PARTIALLY_SUCCEEDED": BatchStatus.COMPLETED,
    "FAILED": BatchStatus.FAILED,
    "CANCELLED": BatchStatus.CANCELLED,
    "EXPIRED": BatchStatus.EXPIRED,
}


def test_every_sdk_job_state_is_mapped() -> None:
    from google.genai import types

    states = [s.value for s in types.JobState]
    assert {s.removeprefix("JOB_STATE_") for s in states} <= set(STATUS)
    for s in states:
        assert normalise(s) == WANT[s.removeprefix("JOB_STATE_")], s


@pytest.mark.parametrize("suffix", sorted(WANT))
def test_both_state_vocabularies_normalise_alike(suffix: str) -> None:
    assert normalise(f"JOB_STATE_{suffix}") == normalise(f"BATCH_STATE_{suffix}") == WANT[suffix]


def test_an_unknown_state_is_still_running() -> None:
    assert normalise("BATCH_STATE_SOMETHING_NEW") == BatchStatus.IN_PROGRESS


# ============================================================================ I/O, emulated


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from afbatch.emulator import Emulator, Reply, RowError

    def responder(ctx: Any) -> Any:
        if any("FAIL THIS ROW" in m["content"] for m in ctx.messages):
            return RowError("rate_limit", "Too many requests for this row.")
        return Reply(f"<OUTPUT>{ctx.custom_id}</OUTPUT>", input_tokens=100, output_tokens=7)

    with Emulator(responder) as e:
        for key, value in e.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("GEMINI_API_KEY", SECRET)
        yield e
        assert e.errors == [], f"emulator/responder errors: {e.errors!r}"


@pytest.fixture(params=["inline", "file"])
def gem(
    emu: Any, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> GeminiProvider:
    """The provider, sending its (small) shards inline, or through the Files API as large ones."""
    if request.param == "file":
        monkeypatch.setattr(gemini, "INLINE_MAX_BYTES", 0)
    p = get_provider(FLASH)
    assert isinstance(p, GeminiProvider)
    return p


def _requests(n: int, bad: tuple[int, ...] = ()) -> list[Request]:
    return [
        Request(
            id=f"c{uuid.uuid4().hex[:20]}-t1",
            model=FLASH,
            system="Answer in <OUTPUT>.",
            messages=(Message("user", f"Question {i}" + (" FAIL THIS ROW" if i in bad else "")),),
            max_tokens=64,
            temperature=1.0,
        )
        for i in range(n)
    ]


def test_submit_poll_fetch(emu: Any, gem: GeminiProvider, tmp_path: Path) -> None:
    reqs = _requests(4, bad=(2,))
    path = one_shard(gem, reqs, tmp_path)
    token = shard_token()
    emu.processing_delay = 60
    bid = gem.submit(path, 4, token, {"afbatch_run": "r"})
    assert bid.startswith("batches/")
    stored = emu.gemini.batches[bid.removeprefix("batches/")]
    assert stored.display_name == f"afbatch-{token}"
    uploaded = [f for f in emu.gemini.files.values() if not f.generated]
    if stored.inline:  # no upload: the requests, each with its key as metadata
        assert uploaded == [] and [r.source for r in stored.rows] == [{"key": r.id} for r in reqs]
    else:  # the resumable upload
        assert [bytes(f.data) for f in uploaded] == [Path(path).read_bytes()]
    assert stored.inline is (gemini.INLINE_MAX_BYTES > 0)
    assert not gem.poll(bid).status.terminal
    emu.processing_delay = 0
    info = wait_ended(gem, bid)
    assert (info.status, info.raw_status) == (BatchStatus.COMPLETED, "JOB_STATE_SUCCEEDED")
    got = {r.id: r for r in (gem.parse(line) for line in gem.fetch(bid))}
    assert sorted(got) == sorted(r.id for r in reqs)
    for r in reqs:
        res = got[r.id]
        if "FAIL" in r.messages[0].content:
            assert (res.status, res.error_kind, res.retryable) == (
                RowStatus.ERRORED,
                "rate_limit",
                True,
            )
        else:
            assert res.status == RowStatus.SUCCEEDED and res.text == f"<OUTPUT>{r.id}</OUTPUT>"
            assert (res.usage.input_tokens, res.usage.output_tokens, res.stop_reason) == (
                100,
                7,
                "STOP",
            )
    # the emulator saw the key from GEMINI_API_KEY
    assert gem.client._api_client.api_key == SECRET


def test_gemini_api_key_wins_over_google_api_key(
    emu: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK alone would take GOOGLE_API_KEY when both are set; afbatch passes GEMINI_API_KEY."""
    monkeypatch.setenv("GOOGLE_API_KEY", "another-projects-key")
    monkeypatch.setenv("GOOGLE_GENAI_USE_VERTEXAI", "true")
    p = get_provider(FLASH)
    with caplog.at_level(logging.INFO):
        assert p.client._api_client.api_key == SECRET and not p.client._api_client.vertexai
    assert "GOOGLE_API_KEY" not in caplog.text  # the SDK's "using GOOGLE_API_KEY": not so here


def test_endpoint_is_the_emulator(emu: Any, gem: GeminiProvider) -> None:
    assert gem.endpoint() == emu.url + "/gemini"


def test_find_by_display_name(emu: Any, gem: GeminiProvider, tmp_path: Path) -> None:
    reqs = _requests(2)
    token, since = shard_token(), time.time()
    assert gem.find(token, [], since) == Found()
    other = gem.submit(one_shard(gem, reqs, tmp_path), 2, shard_token(), {})
    assert gem.find(token, [], since) == Found()  # another shard's token
    bid = gem.submit(one_shard(gem, reqs, tmp_path), 2, token, {})
    assert bid != other and gem.find(token, [], since) == Found(bid)
    assert gem.find(token, [], since, frozenset({bid})) == Found()  # claimed by another shard


def test_find_reads_every_page(emu: Any, gem: GeminiProvider, tmp_path: Path) -> None:
    token = shard_token()
    mine = gem.submit(one_shard(gem, _requests(1), tmp_path), 1, token, {})
    for _ in range(101):  # newer batches push it to the second page of 100
        gem.submit(one_shard(gem, _requests(1), tmp_path), 1, shard_token(), {})
    assert gem.find(token, [], 0.0) == Found(mine)


def test_create_500_is_not_retried_and_is_retryable(
    emu: Any, gem: GeminiProvider, tmp_path: Path
) -> None:
    path = one_shard(gem, _requests(2), tmp_path)
    token = shard_token()
    emu.faults.http("gemini", "POST", r":batchGenerateContent$", 500, times=2)
    with pytest.raises(ProviderError) as ei:
        gem.submit(path, 2, token, {})
    assert ei.value.retryable and "HTTP 500" in str(ei.value) and SECRET not in str(ei.value)
    assert len(emu.faults.fired) == 1 and emu.created == []  # one attempt: the runner retries
    assert gem.find(token, [], time.time() - 5) == Found()
    emu.faults.clear()


def test_other_calls_keep_sdk_retries(emu: Any, gem: GeminiProvider, tmp_path: Path) -> None:
    bid = gem.submit(one_shard(gem, _requests(1), tmp_path), 1, shard_token(), {})
    emu.faults.http("gemini", "GET", r"/batches/", 503, times=1)
    assert gem.poll(bid).status == BatchStatus.COMPLETED
    assert len(emu.faults.fired) == 1


def test_lost_create_answer_is_found_by_token(
    emu: Any, gem: GeminiProvider, tmp_path: Path
) -> None:
    """The batch was made but a gateway mangled the answer: find() adopts it, nothing is resent."""
    path = one_shard(gem, _requests(2), tmp_path)
    token = shard_token()
    emu.faults.http("gemini", "POST", r":batchGenerateContent$", 502, after=True)
    with pytest.raises(ProviderError) as ei:
        gem.submit(path, 2, token, {})
    assert ei.value.retryable and len(emu.created) == 1
    assert gem.find(token, [], time.time() - 5) == Found(emu.created[0][1])


def test_create_answer_without_a_name_is_retryable(
    emu: Any, gem: GeminiProvider, tmp_path: Path
) -> None:
    path = one_shard(gem, _requests(1), tmp_path)
    emu.faults.http(
        "gemini", "POST", r":batchGenerateContent$", 200, body={"done": False}, after=True
    )
    with pytest.raises(ProviderError, match="may exist") as ei:
        gem.submit(path, 1, shard_token(), {})
    assert ei.value.retryable


def test_unknown_model_is_rejected_not_retried(emu: Any, tmp_path: Path) -> None:
    p = get_provider(ModelSpec(provider="gemini", model="not-a-model", label="x"))
    with pytest.raises(ProviderError) as ei:
        p.submit(one_shard(p, _requests(1), tmp_path), 1, shard_token(), {})
    assert not ei.value.retryable and ei.value.rejects_request and "HTTP 404" in str(ei.value)


def test_error_echoing_the_key_is_redacted(emu: Any, gem: GeminiProvider, tmp_path: Path) -> None:
    body = {
        "error": {
            "code": 400,
            "status": "INVALID_ARGUMENT",
            "message": f"API key not valid: {SECRET}. Please pass a valid API key.",
        }
    }
    emu.faults.http("gemini", "POST", r"/upload/|:batchGenerateContent$", 400, body=body)
    with pytest.raises(ProviderError) as ei:
        gem.submit(one_shard(gem, _requests(1), tmp_path), 1, shard_token(), {})
    msg = str(ei.value)
    assert "API key not valid" in msg and SECRET not in msg and "\n" not in msg
    assert not ei.value.retryable


def test_missing_key_and_missing_sdk(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "not-read")
    with pytest.raises(ProviderError, match="set GEMINI_API_KEY") as ei:
        get_provider(FLASH).ready()
    assert not ei.value.retryable
    for name in ("google", "google.genai"):  # as if the extra were not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ProviderError, match=r"pip install 'afbatch\[gemini\]'"):
        get_provider(FLASH).ready()


def test_cancel(emu: Any, gem: GeminiProvider, tmp_path: Path) -> None:
    emu.processing_delay = 60
    bid = gem.submit(one_shard(gem, _requests(3), tmp_path), 3, shard_token(), {})
    gem.cancel(bid)
    info = wait_ended(gem, bid)
    assert (info.status, info.raw_status) == (BatchStatus.CANCELLED, "JOB_STATE_CANCELLED")
    assert list(gem.fetch(bid)) == []  # cancelled before any row ran: no results file


def test_expired_and_failed_batches(emu: Any, gem: GeminiProvider, tmp_path: Path) -> None:
    emu.faults.batch("gemini", "expired", fraction_done=0.5)
    reqs = _requests(4)
    bid = gem.submit(one_shard(gem, reqs, tmp_path), 4, shard_token(), {})
    assert wait_ended(gem, bid).status == BatchStatus.EXPIRED
    assert len([gem.parse(line) for line in gem.fetch(bid)]) == 2  # what finished is kept
    emu.faults.batch("gemini", "failed")
    bid = gem.submit(one_shard(gem, reqs, tmp_path), 4, shard_token(), {})
    assert wait_ended(gem, bid).status == BatchStatus.FAILED
    assert list(gem.fetch(bid)) == []


def test_a_damaged_output_line_is_one_malformed_row(
    emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(gemini, "INLINE_MAX_BYTES", 0)  # a results file's line
    gem = get_provider(FLASH)
    emu.faults.line("gemini", "garbage_no_id")
    reqs = _requests(3)
    bid = gem.submit(one_shard(gem, reqs, tmp_path), 3, shard_token(), {})
    wait_ended(gem, bid)
    rows = [gem.parse(line) for line in gem.fetch(bid)]
    assert sorted(r.status.value for r in rows) == ["errored", "succeeded", "succeeded"]
    assert [r.error_kind for r in rows if r.status == RowStatus.ERRORED] == ["malformed"]


def test_an_unreachable_endpoint_is_retryable(
    emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", f"http://127.0.0.1:{port}/gemini")
    monkeypatch.setattr(gemini, "ATTEMPTS", 1)  # the SDK's backoff: seconds
    p = get_provider(FLASH)
    with pytest.raises(ProviderError, match="cannot connect") as ei:
        p.poll("batches/abc")
    assert ei.value.retryable


# ============================================================================ prices


def test_gemini_batch_prices_and_long_context_tier() -> None:
    """gemini-2.5-pro (reference table): list 1.25/10 (2.50/15 above 200k prompt tokens), cache
    read 0.125 (0.25 above); batch halves every rate."""
    from afbatch.types import Usage

    price = load_prices().lookup(ModelSpec(provider="gemini", model="gemini-2.5-pro"))
    assert price.batch_rates(200_000) == (0.625, 5.0)
    assert price.batch_rates(200_001) == (1.25, 7.5)
    cost = price.row_cost(False, "5m")
    # 250k prompt, 100k of it cached, 2k output: all at the long-context batch rates
    want = (150_000 * 1.25 + 100_000 * 0.125 + 2_000 * 7.5) / 1e6
    assert cost(Usage(250_000, 100_000, 0, 2_000)) == pytest.approx(want)
    want_short = (50_000 * 0.625 + 100_000 * 0.0625 + 2_000 * 5.0) / 1e6
    assert cost(Usage(150_000, 100_000, 0, 2_000)) == pytest.approx(want_short)


def test_the_estimate_applies_the_long_context_tier_per_request(tmp_path: Path) -> None:
    from afbatch.job_estimate import estimate_job

    for f in (GOLDEN / "job").iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "long.txt").write_text("Think before you answer. " * 50_000)  # ~250k tokens
    (tmp_path / "short.txt").write_text("Answer in <OUTPUT> tags.")
    job = (GOLDEN / "job" / "job.toml").read_text().split("[[variants]]")[0]
    for name in ("long", "short"):
        job += f'[[variants]]\nname = "{name}"\nsystem_prompt = "{name}.txt"\ncot = false\n'
    job += "[sampling]\nmax_tokens = 100\n"
    job += '[[models]]\nprovider = "gemini"\nmodel = "gemini-2.5-pro"\n'
    (tmp_path / "job.toml").write_text(job)
    est = estimate_job(load_job(tmp_path / "job.toml"), load_prices(), by="condition")
    rows = {r.variant: r for r in est.rows if r.stage == "generate" and r.tier == "free"}
    long, short = rows["long"], rows["short"]
    assert long.input_tokens / long.requests > 200_000 > short.input_tokens / short.requests
    for row, (rin, rout) in ((long, (1.25, 7.5)), (short, (0.625, 5.0))):
        want = (row.input_tokens * rin + row.output_tokens_expected * rout) / 1e6
        assert row.cost_batch_usd == pytest.approx(want)


# ============================================================================ inline requests


def test_inline_responses_are_joined_by_their_key_not_their_position() -> None:
    from google.genai import types

    from afbatch.providers.gemini import inline_line

    ok = types.InlinedResponse(
        metadata={"key": "c1-t1"},
        response=types.GenerateContentResponse(
            candidates=[
                types.Candidate(
                    content=types.Content(parts=[types.Part(text="hi")]),
                    finish_reason=types.FinishReason.STOP,
                )
            ],
            usage_metadata=types.GenerateContentResponseUsageMetadata(
                prompt_token_count=12,
                cached_content_token_count=2,
                candidates_token_count=3,
                thoughts_token_count=4,
            ),
        ),
    )
    failed = types.InlinedResponse(
        metadata={"key": "c2-t1"}, error=types.JobError(code=8, message="quota")
    )
    keyless = types.InlinedResponse(response=ok.response)
    p = get_provider(FLASH)
    rows = [p.parse(inline_line(i, r)) for i, r in enumerate([failed, ok, keyless])]
    assert (rows[0].id, rows[0].status, rows[0].error_kind) == (
        "c2-t1",
        RowStatus.ERRORED,
        "rate_limit",
    )
    assert (rows[1].id, rows[1].text, tuple(rows[1].usage), rows[1].stop_reason) == (
        "c1-t1",
        "hi",
        (12, 2, 0, 7),
        "STOP",
    )
    assert (rows[2].id, rows[2].error_kind) == ("", "malformed")  # its request: missing, retried


def test_inline_only_within_one_create_calls_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from afbatch.providers.gemini import inline_requests

    p = get_provider(FLASH)
    path = one_shard(p, _requests(3), tmp_path)
    got = inline_requests(path)
    assert got is not None and [r["metadata"] for r in got] == [
        {"key": json.loads(x)["key"]} for x in Path(path).read_text().splitlines()
    ]
    assert got[0]["config"] == {
        "max_output_tokens": 64,
        "temperature": 1.0,
        "system_instruction": {"parts": [{"text": "Answer in <OUTPUT>."}]},
    }
    size = Path(path).stat().st_size
    monkeypatch.setattr(gemini, "INLINE_MAX_BYTES", size - 1)  # the file itself is too big
    assert inline_requests(path) is None
    # non-ASCII text grows when the SDK escapes it: the escaped JSON is what is measured
    wide = [
        Request(
            id=f"c{i}-t1",
            model=FLASH,
            system=None,
            max_tokens=5,
            temperature=None,
            messages=(Message("user", "雨" * 300),),
        )
        for i in range(3)
    ]
    path = one_shard(p, wide, tmp_path)
    monkeypatch.setattr(gemini, "INLINE_MAX_BYTES", Path(path).stat().st_size + 100)
    assert inline_requests(path) is None
