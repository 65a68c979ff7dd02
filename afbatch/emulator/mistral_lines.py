"""What the emulated Mistral reads from an input file and writes to its output and error files:
the checks of the input lines (a whole-job failure, or a 400 for one row), and the result lines.
The HTTP service is in mistral.py."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from .batches import Outcome, Row, openai_finish_reason, text_of
from .responders import CallContext

ROLES = ("system", "user", "assistant", "tool")
CHAT_PARAMS = frozenset(
    (
        "model",
        "messages",
        "temperature",
        "top_p",
        "max_tokens",
        "stream",
        "stop",
        "random_seed",
        "metadata",
        "response_format",
        "tools",
        "tool_choice",
        "presence_penalty",
        "frequency_penalty",
        "n",
        "prediction",
        "parallel_tool_calls",
        "reasoning_effort",
        "prompt_mode",
        "guardrails",
        "prompt_cache_key",
        "service_tier",
        "safe_prompt",
    )
)
# (HTTP status, type, code) per RowError kind
ROW_ERRORS = {
    "invalid_request": (400, "invalid_request_error", None),
    "rate_limit": (429, "rate_limited", "1300"),
    "overloaded": (503, "service_unavailable", None),
    "server_error": (500, "internal_server_error", None),
    "auth": (401, "unauthorized", None),
}


def error_body(
    message: str, type_: str = "invalid_request_error", code: str | None = None
) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": type_, "param": None, "code": code}


def read_rows(lines: list[bytes], model: str, job_id: str) -> tuple[list[Row], str | None]:
    """The job's rows, or why the whole job fails (a line that is not a request, a duplicate
    custom_id, a body naming another model than the job's)."""
    rows: list[Row] = []
    seen: set[str] = set()
    for n, raw in enumerate(lines, 1):
        try:
            obj = json.loads(raw)
        except ValueError:
            return [], f"Line {n} is not valid JSON."
        if not isinstance(obj, dict) or not isinstance(obj.get("body"), dict):
            return [], f"Line {n}: each line needs a `body` object."
        cid = obj.get("custom_id")
        if not isinstance(cid, str) or not cid:
            return [], f"Line {n}: custom_id must be a non-empty string."
        if cid in seen:
            return [], f"Line {n}: custom_id {cid!r} is not unique within the batch."
        seen.add(cid)
        named = obj["body"].get("model", model)
        if named != model:
            return [], f"Line {n}: model {named!r} differs from the job's {model!r}."
        rows.append(_row(model, job_id, cid, obj["body"]))
    return rows, None


def _row(model: str, job_id: str, cid: str, body: dict[str, Any]) -> Row:
    invalid = body_problem(body)
    if invalid:
        return Row(cid, None, invalid=invalid)
    msgs = body["messages"]
    prefill = None
    try:
        if msgs[-1].get("role") == "assistant":  # a prefix (checked by body_problem)
            prefill = text_of(msgs[-1].get("content"), f"messages.{len(msgs) - 1}.content")
            msgs = msgs[:-1]
        system = [
            text_of(m.get("content"), f"messages.{i}.content")
            for i, m in enumerate(msgs)
            if m["role"] == "system"
        ]
        turns = [
            {"role": m["role"], "content": text_of(m.get("content"), f"messages.{i}.content")}
            for i, m in enumerate(msgs)
            if m["role"] != "system"
        ]
    except ValueError as exc:
        return Row(cid, None, invalid=str(exc))
    params = {k: v for k, v in body.items() if k not in ("model", "messages")}
    ctx = CallContext(
        "mistral",
        model,
        cid,
        "\n\n".join(system) if system else None,
        turns,
        prefill,
        params,
        job_id,
    )
    return Row(cid, ctx, cache_marked="prompt_cache_key" in body, source=body)


def body_problem(body: dict[str, Any]) -> str | None:
    """What the chat API answers with a 400/422 for that row only."""
    for key in body:
        if key not in CHAT_PARAMS:
            return f"Extra inputs are not permitted: {key}"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "messages must be a non-empty list"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return f"messages.{i}.role must be one of {list(ROLES)}"
        if m.get("prefix") and (m["role"] != "assistant" or i != len(msgs) - 1):
            return "Only the last message can be an assistant message with prefix True"
    last = msgs[-1]
    if last["role"] == "assistant" and last.get("prefix") is not True:
        return (
            "Expected last role User or Tool (or Assistant with prefix True) for serving "
            "but got assistant"
        )
    if body.get("stream"):
        return "Streaming is not supported in batch jobs."
    if "max_tokens" in body and (type(body["max_tokens"]) is not int or body["max_tokens"] < 0):
        return "max_tokens must be a non-negative integer"
    t = body.get("temperature")
    if t is not None and (type(t) not in (int, float) or not 0 <= t <= 2):
        return "temperature must be between 0 and 2"
    n = body.get("n", 1)
    if type(n) is not int or n < 1:
        return "n must be a positive integer"
    return None


def result_line(model: str, o: Outcome) -> dict[str, Any]:
    """The output (or error) file's line for a row that ran."""
    line: dict[str, Any] = {"id": f"batch-{uuid.uuid4().hex[:8]}", "custom_id": o.row.custom_id}
    if o.status == "errored":
        assert o.error is not None
        status, type_, code = ROW_ERRORS[o.error.kind]
        return {
            **line,
            "response": {"status_code": status, "body": error_body(o.error.message, type_, code)},
            "error": None,
        }
    assert o.reply is not None and o.usage is not None and o.row.ctx is not None
    prefix = o.row.ctx.prefill or ""  # the answer starts with the prefix it continued
    u = o.usage
    body = {
        "id": uuid.uuid4().hex,
        "object": "chat.completion",
        "model": model,
        "created": int(time.time()),
        "usage": {
            "prompt_tokens": u.input,
            "completion_tokens": u.output,
            "total_tokens": u.input + u.output,
            "prompt_tokens_details": {"cached_tokens": u.cache_read},
        },
        "choices": [
            {
                "index": i,
                "finish_reason": openai_finish_reason(r.stop_reason),
                "message": {
                    "role": "assistant",
                    "content": prefix + r.text,
                    "tool_calls": None,
                    "prefix": False,
                },
            }
            for i, r in enumerate([o.reply, *o.more])
        ],
    }
    return {**line, "response": {"status_code": 200, "body": body}, "error": None}
