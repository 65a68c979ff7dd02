"""Anthropic Message Batches through the real ``anthropic`` SDK."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import anthropic
import pytest
from anthropic.types.messages import MessageBatchIndividualResponse

from afbatch.emulator import CallContext, Emulator, Expire, Reply, RowError
from afbatch.emulator.anthropic import AnthropicService
from emu_helpers import claude_request

SYSTEM = [
    {
        "type": "text",
        "text": "You reason in <SCRATCHPAD_REASONING> tags. " * 20,
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
    }
]


def results(claude: Any, batch_id: str) -> dict[str, Any]:
    return {r.custom_id: r.result for r in claude.messages.batches.results(batch_id)}


def test_happy_path_with_system_blocks_prefill_and_cache(emu: Emulator, claude: Any) -> None:
    seen: list[CallContext] = []

    def responder(ctx: CallContext) -> str:
        seen.append(ctx)
        return "SCRATCHPAD_REASONING>ok</SCRATCHPAD_REASONING>"

    emu.responder = responder
    emu.processing_delay = 3600
    reqs = [
        claude_request(
            i,
            "claude-haiku-4-5",
            system=SYSTEM,
            temperature=1.0,
            messages=[
                {"role": "user", "content": [{"type": "text", "text": f"Q{i}"}]},
                {"role": "assistant", "content": "<"},
            ],
        )
        for i in range(3)
    ]
    batch = claude.messages.batches.create(requests=reqs)
    assert batch.processing_status == "in_progress" and batch.results_url is None
    assert batch.request_counts.processing == 3 and batch.request_counts.succeeded == 0
    assert claude.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    assert seen == []

    emu.processing_delay = 0
    ended = claude.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    assert ended.results_url == f"{emu.url}/v1/messages/batches/{batch.id}/results"
    assert ended.request_counts.model_dump() == {
        "processing": 0,
        "succeeded": 3,
        "errored": 0,
        "canceled": 0,
        "expired": 0,
    }
    res = results(claude, batch.id)
    assert set(res) == {"req-0", "req-1", "req-2"}
    assert all(
        r.type == "succeeded" and r.message.content[0].text.startswith("SCRATCHPAD")
        for r in res.values()
    )
    first, later = res["req-0"].message.usage, res["req-2"].message.usage
    assert first.cache_creation_input_tokens > 0 and first.cache_read_input_tokens == 0
    assert first.cache_creation.ephemeral_1h_input_tokens == first.cache_creation_input_tokens
    assert (
        later.cache_read_input_tokens == first.cache_creation_input_tokens
        and later.cache_creation_input_tokens == 0
    )
    assert res["req-0"].message.stop_reason == "end_turn"
    assert res["req-0"].message.model == "claude-haiku-4-5"

    ctx = seen[0]
    assert ctx.system == SYSTEM[0]["text"] and ctx.prefill == "<"
    assert ctx.messages == [{"role": "user", "content": "Q0"}]
    assert ctx.params == {"max_tokens": 64, "temperature": 1.0} and ctx.batch_id == batch.id
    assert emu.created == [("anthropic", batch.id, "claude-haiku-4-5", 3)]


def test_result_lines_parse_with_the_sdk_types(emu: Emulator, claude: Any) -> None:
    emu.responder = lambda ctx: {"req-0": "fine", "req-1": RowError("overloaded", "busy")}.get(
        ctx.custom_id, Expire()
    )
    batch = claude.messages.batches.create(requests=[claude_request(i) for i in range(3)])
    claude.messages.batches.retrieve(batch.id)
    lines = [
        json.loads(x)
        for x in urllib.request.urlopen(
            urllib.request.Request(
                f"{emu.url}/v1/messages/batches/{batch.id}/results",
                headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
            ),
            timeout=5,
        )
        .read()
        .splitlines()
    ]
    parsed = {
        ln["custom_id"]: MessageBatchIndividualResponse.model_validate(ln, strict=True).result.type
        for ln in lines
    }
    assert parsed == {"req-0": "succeeded", "req-1": "errored", "req-2": "expired"}


@pytest.mark.parametrize("custom_id", ["has space", "x" * 65, "", "dot.ted", "ünï"])
def test_bad_custom_id_is_a_400(emu: Emulator, claude: Any, custom_id: str) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.batches.create(requests=[{**claude_request(0), "custom_id": custom_id}])
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "custom_id" in info.value.body["error"]["message"]
    assert emu.created == []


def test_duplicate_custom_id_is_a_400(emu: Emulator, claude: Any) -> None:
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id"):
        claude.messages.batches.create(requests=[claude_request(0), claude_request(0)])
    assert emu.created == []


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"model": None}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "first message"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "alternate",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "text blocks",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b "},
                ]
            },
            "trailing whitespace",
        ),
        ({"temperature": 1.5}, "temperature"),
        ({"bogus": 1}, "bogus"),
        (
            {
                "system": [
                    {
                        "type": "text",
                        "text": "s",
                        "cache_control": {"type": "ephemeral", "ttl": "2h"},
                    }
                ]
            },
            "cache_control",
        ),
    ],
)
def test_bad_params_are_a_400(emu: Emulator, claude: Any, params: dict, needle: str) -> None:
    req = claude_request(0)
    req["params"] = {k: v for k, v in {**req["params"], **params}.items() if v is not None}
    with pytest.raises(anthropic.BadRequestError, match=needle):
        claude.messages.batches.create(requests=[claude_request(1), req])


def test_params_checked_asynchronously_when_configured(
    emu: Emulator, claude: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AnthropicService, "VALIDATE_PARAMS_AT_CREATE", False)
    bad = claude_request(1)
    bad["params"]["temperature"] = 7
    batch = claude.messages.batches.create(requests=[claude_request(0), bad])
    res = results(claude, claude.messages.batches.retrieve(batch.id).id)
    assert res["req-0"].type == "succeeded"
    assert (
        res["req-1"].type == "errored" and res["req-1"].error.error.type == "invalid_request_error"
    )
    assert [c[2] for c in emu.calls] == ["req-0"]


PREFILLED = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<"}]
NO_PREFILL = "This model does not support assistant message prefill"


@pytest.mark.parametrize(
    "model",
    [
        "claude-sonnet-4-6",
        "claude-opus-4-6",
        "claude-opus-4-8",
        "claude-sonnet-5",
        "claude-opus-4-6-20260205",
    ],
)
def test_prefill_on_claude_4_6_and_later_is_a_400(emu: Emulator, claude: Any, model: str) -> None:
    prefilled = claude_request(1, model, messages=PREFILLED)
    where = "requests.1.params.messages"
    with pytest.raises(anthropic.BadRequestError, match=f"{where}: {NO_PREFILL}"):
        claude.messages.batches.create(requests=[claude_request(0, model), prefilled])
    assert emu.created == []
    claude.messages.batches.create(requests=[claude_request(0, model)])  # ends on a user turn


@pytest.mark.parametrize(
    "model",
    [
        "claude-haiku-4-5",
        "claude-sonnet-4-5-20250929",
        "claude-opus-4-1",
        "claude-sonnet-4-20250514",
        "claude-3-5-haiku-20241022",
    ],
)
def test_prefill_on_earlier_claude_is_accepted(emu: Emulator, claude: Any, model: str) -> None:
    batch = claude.messages.batches.create(requests=[claude_request(0, model, messages=PREFILLED)])
    assert results(claude, batch.id)["req-0"].type == "succeeded"


def test_prefill_rejected_per_row_when_params_are_checked_asynchronously(
    emu: Emulator, claude: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(AnthropicService, "VALIDATE_PARAMS_AT_CREATE", False)
    sonnet_4_6 = claude_request(0, messages=PREFILLED)
    batch = claude.messages.batches.create(requests=[sonnet_4_6])
    err = results(claude, batch.id)["req-0"]
    assert err.type == "errored" and err.error.error.type == "invalid_request_error"
    assert NO_PREFILL in err.error.error.message and emu.calls == []


def test_batch_limits(emu: Emulator, claude: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AnthropicService, "MAX_REQUESTS", 2)
    with pytest.raises(anthropic.BadRequestError, match="at most 2"):
        claude.messages.batches.create(requests=[claude_request(i) for i in range(3)])
    monkeypatch.setattr(AnthropicService, "MAX_BODY_BYTES", 200)
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.batches.create(requests=[claude_request(i) for i in range(2)])
    assert info.value.status_code == 413


def test_each_row_error_kind(emu: Emulator, claude: Any) -> None:
    kinds = ["invalid_request", "rate_limit", "overloaded", "server_error", "auth"]
    emu.responder = lambda ctx: RowError(kinds[int(ctx.custom_id[-1])], f"{ctx.custom_id} failed")
    batch = claude.messages.batches.create(requests=[claude_request(i) for i in range(5)])
    assert claude.messages.batches.retrieve(batch.id).request_counts.errored == 5
    res = results(claude, batch.id)
    assert {cid: r.error.error.type for cid, r in res.items()} == {
        "req-0": "invalid_request_error",
        "req-1": "rate_limit_error",
        "req-2": "overloaded_error",
        "req-3": "api_error",
        "req-4": "authentication_error",
    }
    assert all(
        r.type == "errored" and r.error.type == "error" and r.error.error.message == f"{cid} failed"
        for cid, r in res.items()
    )


def test_expire_and_usage_overrides(emu: Emulator, claude: Any) -> None:
    emu.responder = lambda ctx: (
        Expire()
        if ctx.custom_id == "req-1"
        else Reply("t", input_tokens=100, output_tokens=5, cached_tokens=40, stop_reason="length")
    )
    batch = claude.messages.batches.create(requests=[claude_request(i) for i in range(2)])
    counts = claude.messages.batches.retrieve(batch.id).request_counts
    assert (counts.succeeded, counts.expired) == (1, 1)
    res = results(claude, batch.id)
    assert res["req-1"].type == "expired"
    usage = res["req-0"].message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (60, 40, 5)
    assert res["req-0"].message.stop_reason == "max_tokens"


@pytest.mark.parametrize("outcome", ["failed", "all_failed"])
def test_fault_every_row_errors(emu: Emulator, claude: Any, outcome: str) -> None:
    emu.faults.batch("anthropic", outcome)
    batch = claude.messages.batches.create(requests=[claude_request(i) for i in range(3)])
    assert claude.messages.batches.retrieve(batch.id).request_counts.errored == 3
    assert {r.error.error.type for r in results(claude, batch.id).values()} == {"api_error"}
    assert emu.calls == []


def test_fault_expired_fraction(emu: Emulator, claude: Any) -> None:
    emu.faults.batch("anthropic", "expired", fraction_done=0.5)
    batch = claude.messages.batches.create(requests=[claude_request(i) for i in range(4)])
    res = results(claude, batch.id)
    assert {cid: r.type for cid, r in res.items()} == {
        "req-0": "succeeded",
        "req-1": "succeeded",
        "req-2": "expired",
        "req-3": "expired",
    }


def test_cancel(emu: Emulator, claude: Any) -> None:
    emu.processing_delay = 3600
    batch = claude.messages.batches.create(requests=[claude_request(i) for i in range(3)])
    canceling = claude.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    ended = claude.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 3
    assert {r.type for r in results(claude, batch.id).values()} == {"canceled"}
    assert emu.calls == []
    assert claude.messages.batches.delete(batch.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.batches.retrieve(batch.id)


def test_results_only_after_the_end(emu: Emulator, claude: Any) -> None:
    emu.processing_delay = 3600
    batch = claude.messages.batches.create(requests=[claude_request(0)])
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        claude.messages.batches.results(batch.id)
    req = urllib.request.Request(
        f"{emu.url}/v1/messages/batches/{batch.id}/results",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 400
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.batches.delete(batch.id)


def test_list_is_newest_first_and_paginates(emu: Emulator, claude: Any) -> None:
    ids = [claude.messages.batches.create(requests=[claude_request(0)]).id for _ in range(5)]
    newest_first = ids[::-1]
    page = claude.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == newest_first[:2] and page.has_more
    assert (page.first_id, page.last_id) == (newest_first[0], newest_first[1])
    older = claude.messages.batches.list(limit=2, after_id=newest_first[1])
    assert [b.id for b in older.data] == newest_first[2:4] and older.has_more
    newer = claude.messages.batches.list(limit=2, before_id=newest_first[3])
    assert [b.id for b in newer.data] == newest_first[1:3] and newer.has_more
    assert [b.id for b in claude.messages.batches.list(limit=2)] == newest_first  # auto-pagination
    assert {b.processing_status for b in claude.messages.batches.list()} == {"ended"}


def test_headers_are_required(emu: Emulator) -> None:
    for headers, status in (({"anthropic-version": "2023-06-01"}, 401), ({"x-api-key": "k"}, 400)):
        req = urllib.request.Request(emu.url + "/v1/messages/batches", headers=headers)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        assert info.value.code == status
        assert json.loads(info.value.read())["type"] == "error"
