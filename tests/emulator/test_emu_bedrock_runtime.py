"""Bedrock Runtime ``InvokeModel`` (afbatch's on-demand fallback) through the real ``boto3``
client."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from afbatch.emulator import CallContext, Emulator, Expire, Reply, RowError
from afbatch.emulator.bedrock_models import parse_llama_prompt

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
LLAMA = "meta.llama3-1-70b-instruct-v1:0"
LLAMA_PROMPT = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n<"
)


def runtime(attempts: int = 1) -> Any:
    return boto3.client(
        "bedrock-runtime",
        config=Config(retries={"total_max_attempts": attempts, "mode": "standard"}),
    )


@pytest.fixture
def rt(emu: Emulator) -> Any:
    return runtime()


def claude_body(**extra: Any) -> dict:
    return {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [
            {"role": "user", "content": "Q"},
            {"role": "assistant", "content": "<OUTPUT>"},
        ],
        **extra,
    }


def invoke(rt: Any, body: Any, model: str = CLAUDE, **kw: Any) -> tuple[dict, dict]:
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    resp = rt.invoke_model(modelId=model, body=raw, contentType="application/json", **kw)
    return json.loads(resp["body"].read()), resp["ResponseMetadata"]["HTTPHeaders"]


def code_and_status(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"][
        "HTTPStatusCode"
    ]


def test_claude_invoke(emu: Emulator, rt: Any) -> None:
    seen: list[CallContext] = []

    def responder(ctx: CallContext) -> Reply:
        seen.append(ctx)
        return Reply("<rejected/></OUTPUT>", output_tokens=5)

    emu.responder = responder
    out, headers = invoke(rt, claude_body(system="Be brief.", temperature=0.5))
    assert (
        out["type"] == "message"
        and out["role"] == "assistant"
        and out["id"].startswith("msg_bdrk_")
    )
    assert out["content"] == [{"type": "text", "text": "<rejected/></OUTPUT>"}]
    assert out["model"] == "claude-sonnet-4-5-20250929" and out["stop_reason"] == "end_turn"
    assert out["usage"]["output_tokens"] == 5 and out["usage"]["input_tokens"] > 0
    assert headers["x-amzn-bedrock-output-token-count"] == "5" and "x-amzn-requestid" in headers
    assert int(headers["x-amzn-bedrock-input-token-count"]) == out["usage"]["input_tokens"]

    ctx = seen[0]
    assert (ctx.provider, ctx.model, ctx.custom_id, ctx.batch_id) == (
        "bedrock",
        CLAUDE,
        "invoke-1",
        None,
    )
    assert (ctx.system, ctx.prefill, ctx.messages) == (
        "Be brief.",
        "<OUTPUT>",
        [{"role": "user", "content": "Q"}],
    )
    assert ctx.params == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "temperature": 0.5,
    }

    invoke(rt, claude_body())
    assert emu.invocations == [(CLAUDE, "invoke-1"), (CLAUDE, "invoke-2")]
    assert emu.calls == [("bedrock", CLAUDE, "invoke-1"), ("bedrock", CLAUDE, "invoke-2")]
    assert emu.created == []  # no batch job involved


def test_model_ids_with_colons_and_arns_round_trip(emu: Emulator, rt: Any) -> None:
    arn = (
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/"
        "us.anthropic.claude-haiku-4-5-20251001-v1:0"
    )
    emu.responder = lambda ctx: "ok"
    out, _ = invoke(rt, claude_body(), model=arn)
    assert out["model"] == "claude-haiku-4-5-20251001"
    assert emu.invocations == [(arn, "invoke-1")]


def test_llama_invoke(emu: Emulator, rt: Any) -> None:
    seen: list[CallContext] = []
    emu.responder = lambda ctx: (
        seen.append(ctx) or Reply("OUTPUT>hi</OUTPUT>", stop_reason="max_tokens")
    )
    out, _ = invoke(
        rt, {"prompt": LLAMA_PROMPT, "max_gen_len": 256, "temperature": 1.0}, model=LLAMA
    )
    assert set(out) == {"generation", "prompt_token_count", "generation_token_count", "stop_reason"}
    assert out["generation"] == "OUTPUT>hi</OUTPUT>" and out["stop_reason"] == "length"
    assert out["prompt_token_count"] > 0 and out["generation_token_count"] > 0
    ctx = seen[0]
    assert (ctx.system, ctx.messages, ctx.prefill, ctx.batch_id) == (
        "SYS",
        [{"role": "user", "content": "Q"}],
        "<",
        None,
    )
    assert ctx.params == {"max_gen_len": 256, "temperature": 1.0}


def test_llama4_prompt_format_is_parsed() -> None:
    prompt = (
        "<|begin_of_text|><|header_start|>system<|header_end|>\n\nSYS<|eot|>"
        "<|header_start|>user<|header_end|>\n\nQ<|eot|><|header_start|>assistant<|header_end|>\n\n<OUTPUT>"
    )
    assert parse_llama_prompt(prompt) == ("SYS", [{"role": "user", "content": "Q"}], "<OUTPUT>")


def test_prompt_cache_outlives_one_call(emu: Emulator, rt: Any) -> None:
    emu.responder = lambda ctx: "x"
    system = [
        {
            "type": "text",
            "text": "A long shared system prompt. " * 40,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    first, _ = invoke(rt, claude_body(system=system))
    second, _ = invoke(rt, claude_body(system=system))
    assert (
        first["usage"]["cache_creation_input_tokens"] > 0
        and first["usage"]["cache_read_input_tokens"] == 0
    )
    assert (
        second["usage"]["cache_read_input_tokens"] == first["usage"]["cache_creation_input_tokens"]
    )
    assert second["usage"]["cache_creation_input_tokens"] == 0
    emu.reset()
    third, _ = invoke(rt, claude_body(system=system))
    assert third["usage"]["cache_creation_input_tokens"] > 0 and emu.invocations == [
        (CLAUDE, "invoke-1")
    ]


def bad_bodies() -> list[Any]:
    no_version = claude_body()
    del no_version["anthropic_version"]
    return [
        pytest.param(no_version, CLAUDE, "anthropic_version", id="claude-no-version"),
        pytest.param(
            claude_body(model="claude"), CLAUDE, "extraneous key [model]", id="claude-extra-key"
        ),
        pytest.param(claude_body(messages=[]), CLAUDE, "messages", id="claude-no-messages"),
        pytest.param(
            {"prompt": "x", "max_tokens": 5},
            LLAMA,
            "extraneous key [max_tokens]",
            id="llama-extra-key",
        ),
        pytest.param({"prompt": ""}, LLAMA, "prompt", id="llama-empty"),
        pytest.param("{not json", CLAUDE, "Malformed input request", id="not-json"),
        pytest.param("[1]", LLAMA, "JSON object", id="not-an-object"),
        pytest.param(
            claude_body(), "amazon.titan-text-express-v1", "model identifier", id="unknown-model"
        ),
    ]


@pytest.mark.parametrize(("body", "model", "needle"), bad_bodies())
def test_body_validation(emu: Emulator, rt: Any, body: Any, model: str, needle: str) -> None:
    with pytest.raises(ClientError, match=re.escape(needle)) as info:
        invoke(rt, body, model=model)
    assert code_and_status(info) == ("ValidationException", 400)
    assert emu.calls == [] and emu.invocations == []


@pytest.mark.parametrize(
    ("answer", "code", "status"),
    [
        (RowError("invalid_request", "bad"), "ValidationException", 400),
        (RowError("rate_limit", "bad"), "ThrottlingException", 429),
        (RowError("overloaded", "bad"), "ServiceUnavailableException", 503),
        (RowError("server_error", "bad"), "InternalServerException", 500),
        (RowError("auth", "bad"), "AccessDeniedException", 403),
        (Expire(), "ServiceUnavailableException", 503),
    ],
)
def test_row_errors_become_http_errors(
    emu: Emulator, rt: Any, answer: Any, code: str, status: int
) -> None:
    emu.responder = lambda ctx: answer
    with pytest.raises(ClientError) as info:
        invoke(rt, claude_body())
    assert code_and_status(info) == (code, status)
    assert emu.invocations == [(CLAUDE, "invoke-1")]  # the call was made and recorded


def test_responder_crash_is_an_internal_server_error(emu: Emulator, rt: Any) -> None:
    emu.responder = lambda ctx: 1 / 0
    with pytest.raises(ClientError, match="ZeroDivisionError") as info:
        invoke(rt, claude_body())
    assert code_and_status(info) == ("InternalServerException", 500)
    assert len(emu.errors) == 1
    emu.errors.clear()


def test_http_faults_apply(emu: Emulator, rt: Any) -> None:
    emu.faults.http("bedrock", "POST", r"^/model/.*/invoke$", 429)
    with pytest.raises(ClientError) as info:
        invoke(rt, claude_body())
    assert code_and_status(info) == ("ThrottlingException", 429)
    assert emu.invocations == [] and emu.faults.fired == [
        ("bedrock", "POST", f"/model/{CLAUDE.replace(':', '%3A')}/invoke", 429)
    ]
    # botocore's standard retry mode goes through a 503 (kept short: one retry)
    emu.faults.http("bedrock", "POST", r"^/model/.*/invoke$", 503)
    started = time.time()
    out, _ = invoke(runtime(attempts=2), claude_body())
    assert out["type"] == "message" and time.time() - started < 5
    assert [f[3] for f in emu.faults.fired] == [429, 503] and emu.faults.pending() == []
    assert [cid for _, cid in emu.invocations] == ["invoke-1"]


def test_unsigned_invoke_is_refused(emu: Emulator) -> None:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"{emu.url}/model/{LLAMA}/invoke",
        data=b'{"prompt": "x"}',
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert (
        info.value.code == 403 and info.value.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    )
    assert emu.calls == []


def test_default_demo_responder_on_demand(emu: Emulator, rt: Any) -> None:
    """Without a scripted responder, InvokeModel answers like the batch rows do (the demo model)."""
    system = "Reason in <SCRATCHPAD_REASONING> tags, then answer in <OUTPUT> tags."
    user = "<INPUT><is_free_tier_user>True</is_free_tier_user><user_input>x</user_input></INPUT>"
    body = claude_body(
        system=system,
        messages=[{"role": "user", "content": user}, {"role": "assistant", "content": "<"}],
    )
    out, _ = invoke(rt, body)
    assert out["content"][0]["text"].startswith("SCRATCHPAD_REASONING>")


def test_prefill_on_claude_4_6_is_refused(emu: Emulator, rt: Any) -> None:
    with pytest.raises(ClientError, match="does not support assistant message prefill") as info:
        invoke(rt, claude_body(), model="anthropic.claude-sonnet-4-6")
    assert code_and_status(info) == ("ValidationException", 400) and emu.calls == []
    body = claude_body()
    body["messages"] = body["messages"][:1]
    assert invoke(rt, body, model="anthropic.claude-sonnet-4-6")[0]["type"] == "message"
