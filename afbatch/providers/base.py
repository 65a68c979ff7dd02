"""The Provider protocol: two pure halves (render a request line, parse a result line) and a small I/O half.

Statuses of every provider normalise to BatchStatus; the raw status is kept beside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from afbatch.types import Request, Result


class BatchStatus(StrEnum):
    VALIDATING = "validating"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    CANCELLING = "cancelling"
    COMPLETED = "completed"  # ended; rows may still have failed individually
    FAILED = "failed"  # rejected as a whole; no row was processed
    EXPIRED = "expired"  # the window closed; finished rows are still in the output
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


# HTTP statuses that mean "the provider refused what was sent" (not the account, not the moment).
REJECTS = frozenset({400, 404, 413, 422})

TERMINAL = frozenset({BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED})


@dataclass(frozen=True)
class Limits:
    max_requests: int
    max_bytes: int
    min_requests: int = 1


@dataclass(frozen=True)
class BatchInfo:
    status: BatchStatus
    raw_status: str
    counts: dict[str, int] = field(default_factory=dict)
    message: str | None = None  # the provider's own words when the batch failed


class Provider(Protocol):
    name: ClassVar[str]
    limits: Limits

    # pure: no network, golden-file tested
    def line_id(self, request_id: str) -> str:
        """The id the provider sees for a request (Bedrock maps to short record ids)."""
        ...

    def render(self, request: Request) -> dict[str, Any]:
        """One JSONL line of the provider's batch input."""
        ...

    def parse(self, line: dict[str, Any]) -> Result:
        """One output/error line → Result keyed by the provider's line id; never raises for row errors."""
        ...

    # I/O: the only methods that touch the network
    def ready(self) -> None:
        """Raise ProviderError naming what is missing (API key, S3 location, credentials); no network."""
        ...

    def endpoint(self) -> str:
        """Where this model's calls go (base URL as the SDK resolved it, no key); no network."""
        ...

    def submit(self, shard_path: str, n_requests: int, token: str, metadata: dict[str, str]) -> str:
        """Create the batch from a local JSONL shard; returns the provider batch id."""
        ...

    def find(self, token: str, n_requests: int, since: float, claimed: frozenset[str] = frozenset()) -> str | None:
        """Reconcile after a crash: the batch created with this idempotency token (not one in `claimed`), if any."""
        ...

    def poll(self, batch_id: str) -> BatchInfo: ...

    def fetch(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """Every output and error line of an ended batch."""
        ...

    def cancel(self, batch_id: str) -> None: ...


def classify_http(status: int, code: str | None = None, message: str | None = None) -> str:
    """Map an HTTP-like status (and code) to afbatch's error kinds."""
    text = f"{code or ''} {message or ''}".lower()
    if "credit balance" in text or "insufficient_quota" in text or "billing" in text:
        return "billing"
    if status == 402:
        return "billing"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status == 429:
        return "rate_limit"
    if status in (503, 529):
        return "overloaded"
    if status >= 500:
        return "server_error"
    return "invalid_request"
