"""Fireworks' HTTP conventions as the emulator speaks them: gRPC-style error bodies, JSON
request bodies."""

from __future__ import annotations

from typing import Any

from .web import Reject, Request, json_response

GRPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 413: 3, 429: 8, 500: 13, 503: 14}


def fail(status: int, message: str) -> Reject:
    return Reject(
        json_response({"code": GRPC.get(status, 2), "message": message, "details": []}, status)
    )


def json_object(req: Request) -> dict[str, Any]:
    try:
        body = req.json()
    except ValueError:
        raise fail(400, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise fail(400, "the request body must be a JSON object")
    return body
