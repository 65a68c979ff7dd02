"""Fault injection: scripted HTTP failures and scripted batch outcomes.

Faults are consumed in the order they were added; every method is thread-safe
because the HTTP server answers on many threads.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

BATCH_OUTCOMES = ("failed", "expired", "all_failed")


@dataclass
class HttpFault:
    provider: str | None  # None matches every provider
    method: str | None  # None or "*" matches every method
    path_regex: str
    status: int | None  # None: only delay, then handle normally
    times: int
    body: Any = None  # dict/list (sent as JSON), str/bytes, or None for the provider's own error body
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, provider: str, method: str, path: str) -> bool:
        return (
            self.provider in (None, provider)
            and (self.method in (None, "*") or self.method.upper() == method)
            and re.search(self.path_regex, path) is not None
        )


@dataclass
class BatchFault:
    provider: str
    outcome: str
    model: str | None
    times: int
    fraction_done: float


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._http: list[HttpFault] = []
        self._batch: list[BatchFault] = []
        self.fired: list[tuple[str, str, str, int | None]] = []  # (provider, method, path, status)

    def http(
        self,
        provider: str | None,
        method: str | None,
        path_regex: str,
        status: int | None = None,
        times: int = 1,
        body: Any = None,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> HttpFault:
        """The next ``times`` matching requests get ``status`` (after ``delay`` seconds).

        A 429 carries ``retry-after: 0`` unless ``headers`` says otherwise. Note the
        SDKs treat 0 as "no hint" and back off ~0.5 s; pass
        ``headers={"retry-after-ms": "1"}`` to make OpenAI/Anthropic retry at once.
        """
        if status is None and delay <= 0:
            raise ValueError("an HTTP fault needs a status or a delay")
        hdrs = {"retry-after": "0"} if status == 429 else {}
        hdrs.update(headers or {})
        fault = HttpFault(provider, method, path_regex, status, times, body, delay, hdrs)
        with self._lock:
            self._http.append(fault)
        return fault

    def batch(
        self,
        provider: str,
        outcome: str,
        model: str | None = None,
        times: int = 1,
        fraction_done: float = 0.5,
    ) -> BatchFault:
        """The next ``times`` batches created on ``provider`` (for ``model``, if given) end with ``outcome``."""
        if outcome not in BATCH_OUTCOMES:
            raise ValueError(f"outcome must be one of {BATCH_OUTCOMES}")
        if not 0.0 <= fraction_done <= 1.0:
            raise ValueError("fraction_done must be within [0, 1]")
        fault = BatchFault(provider, outcome, model, times, fraction_done)
        with self._lock:
            self._batch.append(fault)
        return fault

    def take_http(self, provider: str, method: str, path: str) -> HttpFault | None:
        with self._lock:
            for fault in self._http:
                if fault.times > 0 and fault.matches(provider, method, path):
                    fault.times -= 1
                    self._http = [f for f in self._http if f.times > 0]
                    self.fired.append((provider, method, path, fault.status))
                    return fault
        return None

    def take_batch(self, provider: str, model: str | None) -> BatchFault | None:
        with self._lock:
            for fault in self._batch:
                if fault.times > 0 and fault.provider == provider and fault.model in (None, model):
                    fault.times -= 1
                    self._batch = [f for f in self._batch if f.times > 0]
                    return fault
        return None

    def pending(self) -> list[HttpFault | BatchFault]:
        """Faults not yet consumed (tests can assert this is empty)."""
        with self._lock:
            return [*self._http, *self._batch]

    def clear(self) -> None:
        with self._lock:
            self._http.clear()
            self._batch.clear()
            self.fired.clear()
