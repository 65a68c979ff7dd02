"""The Gemini API's HTTP conventions as the emulator speaks them: Google-style error bodies."""

from __future__ import annotations

from .web import Reject, json_response

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def fail(status: int, message: str) -> Reject:
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": STATUS_NAMES.get(status, "INTERNAL"),
        }
    }
    return Reject(json_response(body, status))
