"""Fireworks' REST transport over httpx2 (a declared dependency, imported on first use): one call
with retries of idempotent reads, downloads from signed URLs, and Fireworks' error bodies as
`HTTPFailure`, translated to ProviderError by `errors` (the provider's I/O runs inside it)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from afbatch.errors import ProviderError
from afbatch.providers.base import REJECTS, Failure, read_line, sdk_errors
from afbatch.redact import redact
from afbatch.spec import ModelSpec

if TYPE_CHECKING:
    import httpx2

TIMEOUT_SECONDS = 120.0
GET_ATTEMPTS = 3  # reads are idempotent: retried on 408/429/5xx and lost connections
BACKOFF_SECONDS = 0.25


class HTTPFailure(Exception):
    """A Fireworks answer other than 2xx, with the provider's words."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message = status, message


def call(
    client: httpx2.Client, method: str, path: str, *, attempts: int = 1, **kw: Any
) -> dict[str, Any]:
    """One REST call; its JSON answer (a dict), else HTTPFailure with Fireworks' words."""
    import httpx2 as http

    for attempt in range(attempts):
        last = attempt + 1 == attempts
        try:
            resp = client.request(method, f"/v1/{path}", **kw)
        except http.TransportError:
            if last:
                raise
            time.sleep(BACKOFF_SECONDS * (1 << attempt))
            continue
        if resp.status_code < 300:
            return _json_object(resp.content, f"{method} {path}")
        if last or not (resp.status_code in (408, 429) or resp.status_code >= 500):
            raise HTTPFailure(resp.status_code, _message(resp.content))
        time.sleep(_wait(resp.headers.get("retry-after"), attempt))
    raise AssertionError("unreachable")


def download_lines(model: ModelSpec, filename: str, url: str) -> Iterator[dict[str, Any]]:
    """The lines of one output file, read from its signed URL."""
    # A fresh client: the signed URL carries its own authority, never the API key.
    import httpx2 as http

    with (
        errors(model, f"download {filename}"),
        http.Client(timeout=TIMEOUT_SECONDS) as plain,
        plain.stream("GET", url) as resp,
    ):
        if resp.status_code >= 300:
            raise HTTPFailure(resp.status_code, _message(resp.read()))
        for raw in resp.iter_lines():
            if raw.strip():
                yield read_line(raw)


def _wait(retry_after: str | None, attempt: int) -> float:
    """Seconds before a retry: the server's Retry-After (at most 10 s), else a short backoff."""
    if retry_after is not None:
        try:
            return max(0.0, min(float(retry_after), 10.0))
        except ValueError:
            pass
    return BACKOFF_SECONDS * (1 << attempt)


def _json_object(content: bytes, what: str) -> dict[str, Any]:
    try:
        got = json.loads(content)
    except ValueError:
        got = None
    if not isinstance(got, dict):
        shown = " ".join(content[:60].decode("utf-8", "replace").split())
        raise ProviderError(
            redact(
                f"fireworks {what}: the answer is not Fireworks' JSON "
                f"({shown!r}: a proxy or gateway page?)"
            ),
            retryable=True,
        )
    return got


def _message(content: bytes) -> str:
    """Fireworks' words from an error body: `message`, or `error.message`, else the text."""
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        inner = body.get("error")
        msg = inner.get("message") if isinstance(inner, dict) else body.get("message")
        if isinstance(msg, str) and msg:
            return msg
    return " ".join(content[:200].decode("utf-8", "replace").split()) or "no message"


def _translate(exc: BaseException) -> Failure | None:
    import httpx2

    if isinstance(exc, HTTPFailure):
        return Failure(
            f"HTTP {exc.status}: {exc.message}",
            retryable=exc.status in (408, 409, 429) or exc.status >= 500,
            rejects_request=exc.status in REJECTS,
        )
    if isinstance(exc, httpx2.TransportError):
        return Failure(f"cannot connect ({exc})", retryable=True)
    return None


errors = functools.partial(sdk_errors, _translate)
