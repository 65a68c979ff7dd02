"""Fireworks' lines, the provider's two pure halves: the request line a Request becomes, the
Result a result line is (an error line's HTTP or gRPC code read as an HTTP status), and the
largest max_tokens of a shard's lines."""

from __future__ import annotations

import json
from typing import Any

from afbatch.providers.base import chat_messages, classify_http, malformed
from afbatch.types import Request, Result, RowStatus, Usage

# gRPC status names (and their numbers) as HTTP statuses, for error lines and bodies.
GRPC_HTTP = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "ABORTED": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INTERNAL": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}
GRPC_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)


def request_line(request: Request) -> dict[str, Any]:
    """`{"custom_id", "body": {"messages", "max_tokens", "temperature"}}`: the job names the
    model."""
    # the prefill only when the job asks: continuing it is not documented
    messages = chat_messages(request)
    body: dict[str, Any] = {"messages": messages, "max_tokens": request.max_tokens}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return {"custom_id": request.id, "body": body}


def result_of(line: dict[str, Any]) -> Result:
    """A result line's Result (the provider's `parse` makes it total: see `guarded`)."""
    rid = line.get("custom_id") or ""
    err, resp = line.get("error"), line.get("response")
    if err:
        return _row_error(rid, err)
    if not isinstance(resp, dict):
        return malformed(line, "custom_id", "neither response nor error")
    if "status_code" in resp and isinstance(resp.get("body"), dict):  # an OpenAI-style wrapper
        status = int(resp["status_code"] or 0)
        if status != 200:
            return _row_error(rid, {"code": status, **(resp["body"].get("error") or {})})
        resp = resp["body"]
    choices = resp.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return malformed(line, "custom_id", "a response without choices")
    message = choices[0].get("message") or {}
    usage = resp.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    # completion_tokens counts reasoning tokens too (DeepSeek R1, Kimi thinking models).
    return Result(
        rid,
        RowStatus.SUCCEEDED,
        text=message.get("content") or "",
        usage=Usage(
            int(usage.get("prompt_tokens") or 0),
            int(cached),
            0,
            int(usage.get("completion_tokens") or 0),
        ),
        stop_reason=choices[0].get("finish_reason"),
    )


def max_tokens(data: bytes) -> int:
    """The largest max_tokens of the shard's lines (for the job's own maxTokens)."""
    lines = (ln for ln in data.splitlines() if ln.strip())
    return max((int(json.loads(ln)["body"]["max_tokens"]) for ln in lines), default=1)


def _http_status(code: Any) -> int:
    """An error code as an HTTP status: an HTTP number, a gRPC number or a gRPC name."""
    if isinstance(code, int) and not isinstance(code, bool):
        if code >= 100:
            return code
        return GRPC_HTTP.get(GRPC_NAMES[code], 500) if 0 <= code < len(GRPC_NAMES) else 500
    return GRPC_HTTP.get(str(code or "").upper(), 500)


def _row_error(rid: str, err: Any) -> Result:
    if not isinstance(err, dict):
        err = {"message": str(err)}
    message = str(err.get("message") or "error")
    status = _http_status(err.get("code"))
    return Result(
        rid,
        RowStatus.ERRORED,
        error_kind=classify_http(status, None, message),
        error_message=message,
    )
