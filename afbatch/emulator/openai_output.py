"""The lines of an OpenAI batch's output and error files."""

from __future__ import annotations

import time
from typing import Any

from .batches import Outcome, openai_finish_reason, rand_id
from .openai_http import error_body

# (HTTP status, error.type, error.code) per RowError kind
ROW_ERRORS = {
    "invalid_request": (400, "invalid_request_error", None),
    "rate_limit": (429, "requests", "rate_limit_exceeded"),
    "overloaded": (503, "server_error", None),
    "server_error": (500, "server_error", None),
    "auth": (401, "invalid_request_error", "invalid_api_key"),
}


def result_line(model: str | None, o: Outcome) -> dict[str, Any]:
    """The output or error file line of one request, as the real service writes it."""
    line: dict[str, Any] = {
        "id": rand_id("batch_req_", 32, "0123456789abcdef"),
        "custom_id": o.row.custom_id,
    }
    request_id = rand_id("req_", 32, "0123456789abcdef")
    if o.status == "expired":
        return {
            **line,
            "response": None,
            "error": {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion "
                "window expired.",
            },
        }
    if o.status == "canceled":
        return {
            **line,
            "response": None,
            "error": {
                "code": "batch_cancelled",
                "message": "This request was not executed because the batch was cancelled.",
            },
        }
    if o.status == "errored":
        assert o.error is not None
        status, type_, code = ROW_ERRORS[o.error.kind]
        return {
            **line,
            "response": {
                "status_code": status,
                "request_id": request_id,
                "body": error_body(o.error.message, type_, code),
            },
            "error": None,
        }
    assert o.reply is not None and o.usage is not None
    u = o.usage
    body = {
        "id": rand_id("chatcmpl-", 29),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {
                    "role": "assistant",
                    "content": r.text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": openai_finish_reason(r.stop_reason),
            }
            for i, r in enumerate([o.reply, *o.more])
        ],
        "usage": {
            "prompt_tokens": u.input,
            "completion_tokens": u.output,
            "total_tokens": u.input + u.output,
            "prompt_tokens_details": {"cached_tokens": u.cache_read, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        "service_tier": "default",
        "system_fingerprint": None,
    }
    return {
        **line,
        "response": {"status_code": 200, "request_id": request_id, "body": body},
        "error": None,
    }
