"""The Mistral provider: golden result lines (pure parse), rendering, status map, and its I/O
against the local emulator with the real mistralai SDK over HTTP.

Golden files: tests/golden/results/mistral/<name>.jsonl holds real-shaped output/error lines,
<name>.expected.json the Results they must parse to (`Result.to_json()` plus `retryable`), written
by hand from the SDK's models and Mistral's docs, not from the code.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import typing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from provider_support import one_shard, shard_token, wait_ended

from afbatch.errors import ProviderError
from afbatch.grid import load_grid
from afbatch.ids import turn_id
from afbatch.ledger import Ledger, conversation_state
from afbatch.providers import BatchStatus, Found, get_provider
from afbatch.providers.mistral import STATUS, TIMEOUT_HOURS, MistralProvider
from afbatch.providers.registry import capabilities
from afbatch.spec import ModelSpec, load_job
from afbatch.types import Message, Request, Result, RowStatus, Usage

pytest.importorskip("mistralai.client")

GOLDEN = Path(__file__).parent / "golden"
MODEL = ModelSpec(provider="mistral", model="mistral-large-latest", label="mistral-large")
SECRET = "mistral-SECRET-0123456789abcdef"
FAST = {"retry-after-ms": "1"}  # the SDK honours it: its retries run without backoff


# ============================================================================ pure halves


@pytest.mark.parametrize("name", ["output", "error"])
def test_golden_results(name: str) -> None:
    p = MistralProvider(MODEL)
    lines = (GOLDEN / "results" / "mistral" / f"{name}.jsonl").read_text().splitlines()
    got = []
    for raw in lines:
        r = p.parse(json.loads(raw))
        got.append({**r.to_json(), "retryable": r.retryable})
    expected = json.loads((GOLDEN / "results" / "mistral" / f"{name}.expected.json").read_text())
    assert got == expected
    for e in expected:  # every expected entry is a well-formed Result
        fields = {k: v for k, v in e.items() if k != "retryable"}
        assert Result.from_json(fields).to_json() == fields


def test_parse_never_raises_on_degenerate_lines() -> None:
    from afbatch.providers.base import read_line

    p = MistralProvider(MODEL)
    r = p.parse({"custom_id": "x", "response": None, "error": None})
    assert (r.status, r.error_kind, r.retryable) == (RowStatus.ERRORED, "malformed", True)
    r = p.parse({"custom_id": "x", "response": {"status_code": 502, "body": "<html>Bad</html>"}})
    assert (r.status, r.error_kind) == (RowStatus.ERRORED, "server_error")
    r = p.parse({"custom_id": "x", "response": {"status_code": 200, "body": {"choices": []}}})
    assert (r.status, r.error_kind) == (RowStatus.ERRORED, "malformed")
    r = p.parse(read_line(b'{"custom_id": "cut-1", "response": {"status_'))
    assert (r.id, r.error_kind) == ("cut-1", "malformed")
    assert p.parse(["not", "an object"]).error_kind == "malformed"


def test_status_map_covers_every_sdk_status() -> None:
    from mistralai.client.models import BatchJobStatus

    args = typing.get_args(BatchJobStatus)
    literal = next(a for a in args if typing.get_origin(a) is typing.Literal)
    assert set(STATUS) == set(typing.get_args(literal))
    assert STATUS["TIMEOUT_EXCEEDED"] == BatchStatus.EXPIRED  # finished rows are kept
    assert {s for s in STATUS.values() if s.terminal} == {
        BatchStatus.COMPLETED,
        BatchStatus.FAILED,
        BatchStatus.EXPIRED,
        BatchStatus.CANCELLED,
    }


def _request(prefill: str | None = "<", cache: bool = False, n: int = 1) -> Request:
    return Request(
        id=f"c{uuid.uuid4().hex[:20]}-t1",
        model=MODEL,
        system="Be brief.",
        messages=(Message("user", "Hi"),),
        max_tokens=64,
        temperature=1.0,
        prefill=prefill,
        cache=cache,
        n=n,
    )


def test_render_sends_the_prefill_as_a_prefix_message() -> None:
    line = MistralProvider(MODEL).render(_request())
    assert set(line) == {"custom_id", "body"}
    assert line["body"]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<", "prefix": True},
    ]
    assert line["body"]["max_tokens"] == 64 and line["body"]["model"] == "mistral-large-latest"
    assert "prompt_cache_key" not in line["body"]
    assert MistralProvider(MODEL).render(_request(None))["body"]["messages"][-1]["role"] == "user"


def test_cache_key_is_shared_by_requests_with_one_system_prompt() -> None:
    p = MistralProvider(MODEL)
    a, b = (p.render(_request(cache=True))["body"] for _ in range(2))
    other = _request(cache=True)
    c = p.render(dataclasses.replace(other, system="Another prompt."))["body"]
    assert a["prompt_cache_key"] == b["prompt_cache_key"] != c["prompt_cache_key"]


def test_golden_job_renders_prefix_and_cache_key() -> None:
    lines = (GOLDEN / "requests" / "mistral-large.jsonl").read_text().splitlines()
    bodies = [json.loads(x)["body"] for x in lines]
    assert {b["messages"][-1]["content"] for b in bodies} == {"<", "<OUTPUT>"}
    assert all(b["messages"][-1]["prefix"] is True for b in bodies)
    assert len({b["prompt_cache_key"] for b in bodies}) == 2  # one per system prompt (variant)


def test_an_echoed_prefill_is_not_doubled_in_the_conversation() -> None:
    """Mistral's answer starts with the prefix it continued; Anthropic's holds the continuation."""
    grid = load_grid(load_job(GOLDEN / "job" / "job.toml"))
    assert capabilities("mistral").prefill_echoed and not capabilities("anthropic").prefill_echoed
    for label, text in (
        ("mistral-large", "<OUTPUT><request_fully_accepted/> Rain.</OUTPUT>"),
        ("haiku", "<request_fully_accepted/> Rain.</OUTPUT>"),
    ):
        model = grid.job.model_by_name(label)
        from afbatch.compile import conversations

        conv = next(c for c in conversations(grid, model) if c.variant == "no_cot")
        ledger = Ledger()
        ledger.add(
            "s", [Result(turn_id(conv.id, 1), RowStatus.SUCCEEDED, text, Usage(1, 0, 0, 1))], False
        )
        state = conversation_state(grid, model, conv, ledger, True, 3)
        assert state.turn_texts == ["<OUTPUT><request_fully_accepted/> Rain.</OUTPUT>"], label
        assert state.final_output == "<request_fully_accepted/> Rain.", label


# ============================================================================ I/O, emulator


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from afbatch.emulator import Emulator, Reply, RowError

    def responder(ctx: Any) -> Any:
        if any("FAIL THIS ROW" in m["content"] for m in ctx.messages):
            return RowError("rate_limit", "Too many requests for this row.")
        return Reply(f"OUTPUT>{ctx.custom_id}</OUTPUT>", input_tokens=100, output_tokens=7)

    with Emulator(responder) as e:
        for key, value in e.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("MISTRAL_API_KEY", SECRET)
        yield e
        assert e.errors == [], f"emulator/responder errors: {e.errors!r}"


@pytest.fixture
def mis(emu: Any) -> MistralProvider:
    p = get_provider(MODEL)
    assert isinstance(p, MistralProvider)
    return p


def _requests(n: int, bad: tuple[int, ...] = ()) -> list[Request]:
    return [
        Request(
            id=f"c{uuid.uuid4().hex[:20]}-t{1 + (i in bad)}",
            model=MODEL,
            system="Hi.",
            messages=(Message("user", f"Q{i}{' FAIL THIS ROW' if i in bad else ''}"),),
            max_tokens=64,
            temperature=1.0,
            prefill="<",
        )
        for i in range(n)
    ]


def _results(p: MistralProvider, batch_id: str) -> dict[str, Result]:
    parsed = [p.parse(line) for line in p.fetch(batch_id)]
    assert len({r.id for r in parsed}) == len(parsed)
    return {r.id: r for r in parsed}


def test_submit_poll_fetch(emu: Any, mis: MistralProvider, tmp_path: Path) -> None:
    reqs = _requests(4, bad=(2,))
    path = one_shard(mis, reqs, tmp_path)
    token = shard_token()
    emu.processing_delay = 60
    bid = mis.submit(path, 4, token, {"afbatch_run": "run-1", "afbatch_shard": "s-000"})
    job = emu.mistral.jobs[bid]
    assert job.metadata == {
        "afbatch_run": "run-1",
        "afbatch_shard": "s-000",
        "afbatch_token": token,
    }
    assert (job.model, job.timeout_hours, job.endpoint) == (
        "mistral-large-latest",
        TIMEOUT_HOURS,
        "/v1/chat/completions",
    )
    (file_id,) = job.input_files
    assert emu.mistral.files[file_id].data == Path(path).read_bytes()
    assert emu.openai.files == {}  # mounted apart from OpenAI's /v1/files
    info = mis.poll(bid)
    assert (info.status, info.raw_status) == (BatchStatus.VALIDATING, "QUEUED")
    emu.processing_delay = 0
    info = wait_ended(mis, bid)
    assert (info.status, info.raw_status) == (BatchStatus.COMPLETED, "SUCCESS")
    assert info.counts == {"total": 4, "succeeded": 3, "failed": 1}
    got = _results(mis, bid)  # output file and error file
    for r in reqs:
        res = got[r.id]
        if r.id.endswith("t2"):
            assert (res.status, res.error_kind, res.retryable) == (
                RowStatus.ERRORED,
                "rate_limit",
                True,
            )
        else:  # the answer starts with the prefix it continued
            assert res.text == f"<OUTPUT>{r.id}</OUTPUT>" and res.stop_reason == "stop"
            assert res.usage == Usage(100, 0, 0, 7)


def test_find_adopts_only_its_own_token(emu: Any, mis: MistralProvider, tmp_path: Path) -> None:
    reqs = _requests(2)
    token, since = shard_token(), time.time()
    assert mis.find(token, [], since) == Found()
    other = mis.submit(one_shard(mis, reqs, tmp_path), 2, shard_token(), {})
    assert mis.find(token, [], since) == Found()  # same size, same time, another token
    bid = mis.submit(one_shard(mis, reqs, tmp_path), 2, token, {})
    assert bid != other and mis.find(token, [], since) == Found(bid)
    assert mis.find(token, [], since, frozenset({bid})) == Found()  # already claimed
    assert mis.find(token, [], since + 3600) == Found()  # created well before the intent


def test_find_reads_every_page(emu: Any, mis: MistralProvider, tmp_path: Path) -> None:
    token, since = shard_token(), time.time()
    path = one_shard(mis, _requests(1), tmp_path)
    bid = mis.submit(path, 1, token, {})
    for _ in range(101):  # newer jobs push it to the second page
        mis.submit(path, 1, shard_token(), {})
    assert mis.find(token, [], since) == Found(bid)


def test_timeout_exceeded_keeps_finished_rows(
    emu: Any, mis: MistralProvider, tmp_path: Path
) -> None:
    emu.faults.batch("mistral", "expired", fraction_done=0.5)
    bid = mis.submit(one_shard(mis, _requests(4), tmp_path), 4, shard_token(), {})
    info = wait_ended(mis, bid)
    assert (info.status, info.raw_status) == (BatchStatus.EXPIRED, "TIMEOUT_EXCEEDED")
    got = _results(mis, bid)
    assert len(got) == 2 and all(r.status == RowStatus.SUCCEEDED for r in got.values())


def test_failed_job_reports_its_reason(emu: Any, mis: MistralProvider, tmp_path: Path) -> None:
    line = json.dumps(mis.render(_requests(1)[0]))
    path = tmp_path / "dup.jsonl"  # a duplicate custom_id fails the whole job
    path.write_text(f"{line}\n{line}\n")
    bid = mis.submit(str(path), 2, shard_token(), {})
    info = wait_ended(mis, bid)
    assert info.status == BatchStatus.FAILED and "not unique" in (info.message or "")
    assert list(mis.fetch(bid)) == []


def test_cancel(emu: Any, mis: MistralProvider, tmp_path: Path) -> None:
    emu.processing_delay = 60
    bid = mis.submit(one_shard(mis, _requests(3), tmp_path), 3, shard_token(), {})
    mis.cancel(bid)
    info = mis.poll(bid)
    assert (info.status, info.raw_status) == (BatchStatus.CANCELLED, "CANCELLED")
    assert list(mis.fetch(bid)) == []  # nothing had run: no line (collect marks them cancelled)


def test_create_500_is_retryable_sent_once_and_redacted(
    emu: Any, mis: MistralProvider, tmp_path: Path
) -> None:
    path, token = one_shard(mis, _requests(2), tmp_path), shard_token()
    body = {"object": "error", "message": f"upstream failed for key {SECRET}", "type": "x"}
    emu.faults.http(
        "mistral", "POST", r"^/mistral/v1/batch/jobs$", 500, times=2, body=body, headers=FAST
    )
    with pytest.raises(ProviderError) as ei:
        mis.submit(path, 2, token, {})
    msg = str(ei.value)
    assert ei.value.retryable and not ei.value.rejects_request
    assert "HTTP 500: upstream failed for key" in msg and SECRET not in msg and "\n" not in msg
    assert len(emu.faults.fired) == 1 and emu.created == []  # no SDK retry of a create
    assert mis.find(token, [], time.time() - 5) == Found()
    emu.faults.clear()


def test_create_400_rejects_the_request(emu: Any, mis: MistralProvider, tmp_path: Path) -> None:
    bad = get_provider(ModelSpec(provider="mistral", model="gpt-4o"))  # not a Mistral model
    with pytest.raises(ProviderError) as ei:
        bad.submit(one_shard(mis, _requests(1), tmp_path), 1, shard_token(), {})
    assert not ei.value.retryable and ei.value.rejects_request
    assert "HTTP 400: Invalid model: gpt-4o" in str(ei.value)


def test_a_proxy_page_for_the_create_is_retryable(
    emu: Any, mis: MistralProvider, tmp_path: Path
) -> None:
    """The job was made, but a gateway answered HTML with HTTP 200: look it up, never resend."""
    token, since = shard_token(), time.time()
    emu.faults.http(
        "mistral", "POST", r"^/mistral/v1/batch/jobs$", 200, body="<html>gateway</html>", after=True
    )
    with pytest.raises(ProviderError) as ei:
        mis.submit(one_shard(mis, _requests(2), tmp_path), 2, token, {})
    assert ei.value.retryable and not ei.value.rejects_request
    assert mis.find(token, [], since) == Found(emu.created[0][1])


def test_lost_create_response_is_found_by_token(
    emu: Any, mis: MistralProvider, tmp_path: Path
) -> None:
    path, token, since = one_shard(mis, _requests(2), tmp_path), shard_token(), time.time()
    mis.client.sdk_configuration.timeout_ms = 200
    emu.faults.http("mistral", "POST", r"^/mistral/v1/batch/jobs$", delay=0.6)  # answered too late
    with pytest.raises(ProviderError, match="cannot connect") as ei:
        mis.submit(path, 2, token, {})
    assert ei.value.retryable
    deadline = time.time() + 5
    while not emu.created:
        assert time.time() < deadline
        time.sleep(0.02)
    mis.client.sdk_configuration.timeout_ms = None
    assert mis.find(token, [], since) == Found(emu.created[0][1])


def test_reads_keep_sdk_retries(emu: Any, mis: MistralProvider, tmp_path: Path) -> None:
    bid = mis.submit(one_shard(mis, _requests(2), tmp_path), 2, shard_token(), {})
    emu.faults.http("mistral", "GET", r"^/mistral/v1/batch/jobs/", 503, times=2, headers=FAST)
    assert mis.poll(bid).status == BatchStatus.COMPLETED
    assert len(emu.faults.fired) == 2


def test_missing_key_and_base_url_precedence(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MISTRAL_API_KEY")
    with pytest.raises(ProviderError, match="set MISTRAL_API_KEY") as ei:
        MistralProvider(MODEL).ready()
    assert not ei.value.retryable
    monkeypatch.setenv("MY_KEY", "k")
    custom = ModelSpec(
        provider="mistral", model="m", api_key_env="MY_KEY", base_url="https://eu.example.org"
    )
    assert MistralProvider(custom).endpoint() == "https://eu.example.org"
    mine = ModelSpec(provider="mistral", model="m", api_key_env="MY_KEY")
    assert MistralProvider(mine).endpoint() == emu.url + "/mistral"  # MISTRAL_BASE_URL
    monkeypatch.delenv("MISTRAL_BASE_URL")
    assert MistralProvider(mine).endpoint() == "https://api.mistral.ai"


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISTRAL_API_KEY", SECRET)
    monkeypatch.setitem(sys.modules, "mistralai.client", None)  # import fails as if not installed
    with pytest.raises(ProviderError, match=r"pip install 'afbatch\[mistral\]'") as ei:
        MistralProvider(MODEL).ready()
    assert "\n" not in str(ei.value)
