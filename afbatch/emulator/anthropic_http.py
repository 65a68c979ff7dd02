"""The Anthropic API's HTTP conventions as the emulator speaks them: error bodies by status."""

from __future__ import annotations

from typing import Any

from .batches import rand_id
from .web import Reject, json_response

STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def error_body(type_: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": rand_id("req_", 24),
    }


def fail(status: int, message: str) -> Reject:
    return Reject(json_response(error_body(STATUS_TYPES.get(status, "api_error"), message), status))
