"""The few HTTP types the provider modules share (kept apart from server.py to avoid import
cycles)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Request:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str  # "http://<Host header>", for URLs we hand back (Anthropic results_url)

    def json(self) -> Any:
        """Parsed JSON body; raises ValueError on anything else."""
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj).encode(), "application/json", dict(headers or {}))


class Reject(Exception):
    """Raised by a handler to answer with an error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


Handler = Callable[..., Response]
Route = tuple[str, str, Handler]  # (method, path regex with named groups, handler)


class Service(Protocol):
    """One provider's API in the emulator: its routes, its auth check and its error shape."""

    name: str

    def authenticate(self, req: Request) -> Response | None: ...

    def error(self, status: int, message: str) -> Response: ...

    def headers(self) -> dict[str, str]: ...
