"""The result lines of an Anthropic message batch, and the Messages API response body (shared
with Bedrock's Claude)."""

from __future__ import annotations

from typing import Any

from .anthropic_http import error_body
from .batches import Outcome, finish_stop_reason, rand_id

ROW_ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "rate_limit": "rate_limit_error",
    "overloaded": "overloaded_error",
    "server_error": "api_error",
    "auth": "authentication_error",
}


def result_line(o: Outcome) -> dict[str, Any]:
    """The results line of one request, as the real service writes it."""
    if o.status in ("canceled", "expired"):
        return {"custom_id": o.row.custom_id, "result": {"type": o.status}}
    if o.status == "errored":
        assert o.error is not None
        err = error_body(ROW_ERROR_TYPES[o.error.kind], o.error.message)
        return {"custom_id": o.row.custom_id, "result": {"type": "errored", "error": err}}
    assert o.reply is not None and o.usage is not None and o.row.ctx is not None
    return {
        "custom_id": o.row.custom_id,
        "result": {
            "type": "succeeded",
            "message": claude_message("msg_", o.row.ctx.model, o, service_tier="batch"),
        },
    }


def claude_message(
    id_prefix: str, model: str, o: Outcome, service_tier: str | None = None
) -> dict[str, Any]:
    """A Messages API response body for a succeeded row."""
    assert o.reply is not None and o.usage is not None
    u = o.usage
    one_hour = isinstance(o.row.source, dict) and o.row.source.get("ttl") == "1h"
    usage: dict[str, Any] = {
        "input_tokens": u.uncached_input,
        "output_tokens": u.output,
        "cache_creation_input_tokens": u.cache_write,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation": {
            "ephemeral_5m_input_tokens": 0 if one_hour else u.cache_write,
            "ephemeral_1h_input_tokens": u.cache_write if one_hour else 0,
        },
    }
    if service_tier:
        usage["service_tier"] = service_tier
    return {
        "id": rand_id(id_prefix, 24),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": o.reply.text}],
        "stop_reason": finish_stop_reason(o.reply.stop_reason),
        "stop_sequence": None,
        "usage": usage,
    }
