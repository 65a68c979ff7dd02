"""botocore's rest-json conventions as the emulated Bedrock speaks them: errors carry
``x-amzn-ErrorType``; timestamps are ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime

from .web import Reject, Response, json_response

STATUS_ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    409: "ConflictException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def aws_error(status: int, message: str, type_: str | None = None) -> Response:
    type_ = type_ or STATUS_ERRORS.get(status, "InternalServerException")
    return json_response({"message": message}, status, {"x-amzn-ErrorType": type_})


def fail(status: int, message: str, type_: str | None = None) -> Reject:
    return Reject(aws_error(status, message, type_))


def parse_time(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()  # noqa: FURB162
    except ValueError:
        raise fail(400, f"Invalid timestamp {raw!r}.") from None
