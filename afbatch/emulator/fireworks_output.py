"""The lines of a Fireworks batch inference job's output and error datasets."""

from __future__ import annotations

import time
from typing import Any

from .batches import Outcome, openai_finish_reason, rand_id

# RowError kind -> the error line's HTTP-style code
ROW_ERRORS = {
    "invalid_request": 400,
    "rate_limit": 429,
    "overloaded": 503,
    "server_error": 500,
    "auth": 401,
}


def result_line(model: str, o: Outcome) -> dict[str, Any]:
    """The output or error dataset line of one request, as the job writes it."""
    if o.status == "errored":
        assert o.error is not None
        return {
            "custom_id": o.row.custom_id,
            "error": {"code": ROW_ERRORS[o.error.kind], "message": o.error.message},
        }
    assert o.reply is not None and o.usage is not None
    u = o.usage
    return {
        "custom_id": o.row.custom_id,
        "response": {
            "id": rand_id("", 36, "0123456789abcdef-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": o.reply.text},
                    "finish_reason": openai_finish_reason(o.reply.stop_reason),
                }
            ],
            "usage": {
                "prompt_tokens": u.input,
                "completion_tokens": u.output,
                "total_tokens": u.input + u.output,
                "prompt_tokens_details": {"cached_tokens": u.cache_read},
            },
        },
    }
