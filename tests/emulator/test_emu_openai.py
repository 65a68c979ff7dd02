"""OpenAI Files + Batch API through the real ``openai`` SDK."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletion

from afbatch.emulator import CallContext, Emulator, Expire, Reply, RowError
from afbatch.emulator.openai import OpenAIService
from emu_helpers import chat_row, openai_jsonl


def submit(oai: Any, rows: list[dict], **kw: Any) -> Any:
    f = oai.files.create(file=("input.jsonl", openai_jsonl(rows)), purpose="batch")
    return oai.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", **kw
    )


def lines(oai: Any, file_id: str | None) -> list[dict]:
    assert file_id, "expected a file"
    return [json.loads(x) for x in oai.files.content(file_id).text.splitlines()]


def test_happy_path_end_to_end(emu: Emulator, oai: Any) -> None:
    seen: list[CallContext] = []

    def responder(ctx: CallContext) -> str:
        seen.append(ctx)
        return f"answer to {ctx.messages[-1]['content']}"

    emu.responder = responder
    rows = [chat_row(i, max_completion_tokens=50, temperature=0) for i in range(3)]
    batch = submit(oai, rows, metadata={"afbatch_shard": "s1"})
    assert batch.status == "validating" and batch.metadata == {"afbatch_shard": "s1"}

    done = oai.batches.retrieve(batch.id)
    assert done.status == "completed" and done.model == "gpt-4o-mini"
    assert done.request_counts.model_dump() == {"total": 3, "completed": 3, "failed": 0}
    assert done.error_file_id is None and done.completed_at is not None

    out = {ln["custom_id"]: ln for ln in lines(oai, done.output_file_id)}
    assert set(out) == {"req-0", "req-1", "req-2"}
    for cid, ln in out.items():
        assert (
            ln["error"] is None
            and ln["response"]["status_code"] == 200
            and ln["id"].startswith("batch_req_")
        )
        body = ChatCompletion.model_validate(ln["response"]["body"], strict=True)
        assert body.choices[0].message.content == f"answer to Q{cid[-1]}"
        assert body.choices[0].finish_reason == "stop"
    usage = done.usage
    assert usage is not None
    assert usage.input_tokens == sum(
        ln["response"]["body"]["usage"]["prompt_tokens"] for ln in out.values()
    )
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens

    ctx = seen[0]
    assert (ctx.provider, ctx.model, ctx.system, ctx.prefill) == (
        "openai",
        "gpt-4o-mini",
        "You are terse.",
        None,
    )
    assert ctx.messages == [{"role": "user", "content": "Q0"}]
    assert (
        ctx.params == {"max_completion_tokens": 50, "temperature": 0} and ctx.batch_id == batch.id
    )
    assert emu.created == [("openai", batch.id, "gpt-4o-mini", 3)]
    assert [c[2] for c in emu.calls] == ["req-0", "req-1", "req-2"]


def test_statuses_before_the_delay(emu: Emulator, oai: Any) -> None:
    emu.processing_delay = 0.8
    batch = submit(oai, [chat_row(0)])
    assert oai.batches.retrieve(batch.id).status == "validating"
    time.sleep(0.45)
    assert oai.batches.retrieve(batch.id).status == "in_progress"
    assert emu.calls == []
    time.sleep(0.4)
    assert oai.batches.retrieve(batch.id).status == "completed"


def test_duplicate_custom_id_fails_the_batch(emu: Emulator, oai: Any) -> None:
    batch = oai.batches.retrieve(submit(oai, [chat_row(0), chat_row(0)]).id)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.output_file_id is None and batch.error_file_id is None
    assert batch.errors is not None and batch.errors.data is not None
    [err] = batch.errors.data
    assert (err.code, err.line, err.param) == ("duplicate_custom_id", 2, "custom_id")
    assert emu.calls == []


def test_mixed_models_fail_the_batch(oai: Any) -> None:
    batch = oai.batches.retrieve(submit(oai, [chat_row(0), chat_row(1, model="gpt-4o")]).id)
    assert batch.status == "failed"
    assert [(e.code, e.line) for e in batch.errors.data] == [("model_mismatch", 2)]


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda ln: {**ln, "url": "/v1/embeddings"}, "url_mismatch"),
        (lambda ln: {**ln, "method": "GET"}, "invalid_request"),
        (
            lambda ln: {k: v for k, v in ln.items() if k != "custom_id"},
            "missing_required_parameter",
        ),
        (lambda ln: {**ln, "extra": 1}, "invalid_request"),
        (lambda ln: {**ln, "body": {**ln["body"], "messages": []}}, "invalid_request"),
        (
            lambda ln: {
                **ln,
                "body": {**ln["body"], "messages": [{"role": "robot", "content": "x"}]},
            },
            "invalid_request",
        ),
    ],
)
def test_malformed_lines_fail_the_batch(oai: Any, mutate: Any, code: str) -> None:
    good = json.loads(openai_jsonl([chat_row(0)]))
    data = (
        json.dumps(good) + "\n" + json.dumps(mutate(json.loads(openai_jsonl([chat_row(1)])))) + "\n"
    ).encode()
    f = oai.files.create(file=("input.jsonl", data), purpose="batch")
    batch = oai.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    batch = oai.batches.retrieve(batch.id)
    assert batch.status == "failed"
    assert [(e.code, e.line) for e in batch.errors.data] == [(code, 2)]


def test_invalid_json_and_limits(oai: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    f = oai.files.create(file=("input.jsonl", b'{"custom_id": \n'), purpose="batch")
    b = oai.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert [e.code for e in oai.batches.retrieve(b.id).errors.data] == ["invalid_json_line"]

    monkeypatch.setattr(OpenAIService, "MAX_REQUESTS", 2)
    assert (
        oai.batches.retrieve(submit(oai, [chat_row(i) for i in range(3)]).id).errors.data[0].code
        == "too_many_tasks"
    )
    monkeypatch.setattr(OpenAIService, "MAX_FILE_BYTES", 100)
    assert (
        oai.batches.retrieve(submit(oai, [chat_row(0)]).id).errors.data[0].code == "file_too_large"
    )


def test_create_time_rejections(oai: Any) -> None:
    f = oai.files.create(file=("input.jsonl", openai_jsonl([chat_row(0)])), purpose="batch")
    kw = {"input_file_id": f.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    bad = [
        {**kw, "completion_window": "48h"},
        {**kw, "metadata": {f"k{i}": "v" for i in range(17)}},
        {**kw, "metadata": {"k" * 65: "v"}},
        {**kw, "metadata": {"k": "v" * 513}},
        {**kw, "input_file_id": "file-doesnotexist"},
        {**kw, "endpoint": "/v1/embeddings"},
    ]
    for params in bad:
        with pytest.raises(openai.BadRequestError):
            oai.batches.create(**params)
    with pytest.raises(openai.BadRequestError, match="Must be .jsonl"):
        oai.files.create(file=("input.txt", b"{}"), purpose="batch")
    other = oai.files.create(file=("data.jsonl", b"{}\n"), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        oai.batches.create(**{**kw, "input_file_id": other.id})
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve("file-nope")
    assert oai.files.retrieve(f.id).bytes == len(openai_jsonl([chat_row(0)]))
    assert (
        oai.batches.create(**kw, metadata={f"k{i}": "v" * 512 for i in range(16)}).status
        == "validating"
    )


def test_each_row_error_kind(emu: Emulator, oai: Any) -> None:
    kinds = {
        "req-0": "invalid_request",
        "req-1": "rate_limit",
        "req-2": "overloaded",
        "req-3": "server_error",
        "req-4": "auth",
    }
    emu.responder = lambda ctx: (
        RowError(kinds[ctx.custom_id], "nope") if ctx.custom_id in kinds else "fine"
    )
    batch = oai.batches.retrieve(submit(oai, [chat_row(i) for i in range(6)]).id)
    assert batch.status == "completed"
    assert batch.request_counts.model_dump() == {"total": 6, "completed": 1, "failed": 5}
    assert [ln["custom_id"] for ln in lines(oai, batch.output_file_id)] == ["req-5"]
    errors = {ln["custom_id"]: ln for ln in lines(oai, batch.error_file_id)}
    got = {
        cid: (ln["response"]["status_code"], ln["response"]["body"]["error"]["type"])
        for cid, ln in errors.items()
    }
    assert got == {
        "req-0": (400, "invalid_request_error"),
        "req-1": (429, "requests"),
        "req-2": (503, "server_error"),
        "req-3": (500, "server_error"),
        "req-4": (401, "invalid_request_error"),
    }
    assert all(
        ln["error"] is None and ln["response"]["body"]["error"]["message"] == "nope"
        for ln in errors.values()
    )
    assert errors["req-1"]["response"]["body"]["error"]["code"] == "rate_limit_exceeded"


def test_row_level_parameter_errors(emu: Emulator, oai: Any) -> None:
    rows = [
        chat_row(0, model="gpt-5-mini", max_tokens=10),
        chat_row(1, model="gpt-5-mini", bogus=True),
        chat_row(2, model="gpt-5-mini", temperature=3),
        chat_row(3, model="gpt-5-mini", max_completion_tokens=9),
    ]
    batch = oai.batches.retrieve(submit(oai, rows).id)
    errors = {
        ln["custom_id"]: ln["response"]["body"]["error"]["message"]
        for ln in lines(oai, batch.error_file_id)
    }
    assert "max_completion_tokens" in errors["req-0"]
    assert "Unrecognized request argument supplied: bogus" == errors["req-1"]
    assert "temperature" in errors["req-2"]
    assert [c[2] for c in emu.calls] == ["req-3"]


def test_expire_gives_partial_output(emu: Emulator, oai: Any) -> None:
    emu.responder = lambda ctx: Expire() if ctx.custom_id in ("req-2", "req-3") else "done"
    batch = oai.batches.retrieve(submit(oai, [chat_row(i) for i in range(4)]).id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert sorted(ln["custom_id"] for ln in lines(oai, batch.output_file_id)) == ["req-0", "req-1"]
    expired = lines(oai, batch.error_file_id)
    assert sorted(ln["custom_id"] for ln in expired) == ["req-2", "req-3"]
    assert all(ln["response"] is None and ln["error"]["code"] == "batch_expired" for ln in expired)
    assert batch.request_counts.model_dump() == {"total": 4, "completed": 2, "failed": 2}


def test_fault_expired_processes_only_the_first_fraction(emu: Emulator, oai: Any) -> None:
    emu.faults.batch("openai", "expired", fraction_done=0.25)
    batch = oai.batches.retrieve(submit(oai, [chat_row(i) for i in range(4)]).id)
    assert batch.status == "expired"
    assert [c[2] for c in emu.calls] == ["req-0"]
    assert [ln["custom_id"] for ln in lines(oai, batch.output_file_id)] == ["req-0"]


def test_fault_all_failed_completes_without_output(emu: Emulator, oai: Any) -> None:
    emu.faults.batch("openai", "all_failed", model="gpt-4o-mini")
    batch = oai.batches.retrieve(submit(oai, [chat_row(i) for i in range(3)]).id)
    assert batch.status == "completed" and batch.output_file_id is None
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 0, "failed": 3}
    assert {ln["response"]["status_code"] for ln in lines(oai, batch.error_file_id)} == {500}
    assert emu.calls == []
    # consumed: the next batch is normal
    assert oai.batches.retrieve(submit(oai, [chat_row(0)]).id).output_file_id is not None


def test_fault_failed_and_model_filter(emu: Emulator, oai: Any) -> None:
    emu.faults.batch("openai", "failed", model="gpt-4o")
    assert (
        oai.batches.retrieve(submit(oai, [chat_row(0)]).id).status == "completed"
    )  # other model: untouched
    batch = oai.batches.retrieve(submit(oai, [chat_row(0, model="gpt-4o")]).id)
    assert batch.status == "failed" and batch.errors.data[0].code == "token_limit_exceeded"
    assert emu.faults.pending() == []


def test_cancel(emu: Emulator, oai: Any) -> None:
    emu.processing_delay = 3600
    batch = submit(oai, [chat_row(i) for i in range(3)])
    cancelling = oai.batches.cancel(batch.id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    cancelled = oai.batches.retrieve(batch.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    assert cancelled.output_file_id is None and emu.calls == []
    assert {ln["error"]["code"] for ln in lines(oai, cancelled.error_file_id)} == {
        "batch_cancelled"
    }
    assert oai.batches.cancel(batch.id).status == "cancelled"

    emu.processing_delay = 0
    done = oai.batches.retrieve(submit(oai, [chat_row(0)]).id)
    with pytest.raises(openai.BadRequestError, match="completed"):
        oai.batches.cancel(done.id)


def test_list_is_newest_first_and_paginates(emu: Emulator, oai: Any) -> None:
    ids = [submit(oai, [chat_row(i)]).id for i in range(5)]
    page = oai.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    raw = oai.batches.with_raw_response.list(limit=2, after=ids[3]).http_response.json()
    assert [b["id"] for b in raw["data"]] == [ids[2], ids[1]]
    assert (raw["first_id"], raw["last_id"], raw["has_more"]) == (ids[2], ids[1], True)
    assert [b.id for b in oai.batches.list(limit=2)] == ids[
        ::-1
    ]  # auto-pagination over three pages
    assert {b.status for b in oai.batches.list()} == {"completed"}


def test_usage_overrides_and_prompt_cache(emu: Emulator, oai: Any) -> None:
    emu.responder = lambda ctx: (
        Reply(
            "x" * 40,
            input_tokens=1000,
            output_tokens=7,
            cached_tokens=600,
            stop_reason="max_tokens",
        )
        if ctx.custom_id == "req-0"
        else "y" * 40
    )
    rows = [chat_row(0)] + [chat_row(i, prompt_cache_key="sys-v1") for i in (1, 2)]
    batch = oai.batches.retrieve(submit(oai, rows).id)
    body = {ln["custom_id"]: ln["response"]["body"] for ln in lines(oai, batch.output_file_id)}
    u0 = body["req-0"]["usage"]
    assert (u0["prompt_tokens"], u0["completion_tokens"]) == (1000, 7)
    assert u0["prompt_tokens_details"]["cached_tokens"] == 600
    assert body["req-0"]["choices"][0]["finish_reason"] == "length"
    assert (
        body["req-1"]["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    )  # first with the key writes
    assert body["req-2"]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    cached_2 = body["req-2"]["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert batch.usage.input_tokens_details.cached_tokens == 600 + cached_2


def test_requests_need_a_bearer_key(emu: Emulator) -> None:
    req = urllib.request.Request(emu.url + "/v1/batches")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 401
    assert json.loads(info.value.read())["error"]["type"] == "invalid_request_error"
