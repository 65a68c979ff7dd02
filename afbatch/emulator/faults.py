"""Fault injection: scripted HTTP failures and scripted batch outcomes.

Faults are consumed in the order they were added; every method is thread-safe
because the HTTP server answers on many threads.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

BATCH_OUTCOMES = ("failed", "expired", "all_failed")
# What a damaged output line looks like: cut off mid-line (its id still readable), a proxy's HTML
# page in its place (no id), JSON that is not an object, or an object without its payload.
LINE_FAULTS = ("garbage", "garbage_no_id", "not_object", "missing_field")


@dataclass
class HttpFault:
    provider: str | None  # None matches every provider
    method: str | None  # None or "*" matches every method
    path_regex: str
    status: int | None  # None: only delay, then handle normally
    times: int
    body: Any = (
        None  # dict/list (sent as JSON), str/bytes, or None for the provider's own error body
    )
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    after: bool = False  # handle the request as usual (a create happens), then answer with this

    def matches(self, provider: str, method: str, path: str) -> bool:
        return (
            self.provider in (None, provider)
            and (self.method in (None, "*") or self.method.upper() == method)
            and re.search(self.path_regex, path) is not None
        )


@dataclass
class LineFault:
    provider: str
    kind: str
    times: int


def damaged_line(kind: str, line: dict[str, Any], payload: tuple[str, ...]) -> str:
    """An output line as a LineFault of ``kind`` writes it (``payload``: missing_field drops it)."""
    if kind == "garbage":
        text = json.dumps(line)
        return text[: max(40, len(text) // 2)]
    if kind == "garbage_no_id":
        return "<html><body><h1>502 Bad Gateway</h1></body></html>"
    if kind == "not_object":
        return json.dumps([next(iter(line.values())), "unexpected"])
    return json.dumps({k: v for k, v in line.items() if k not in payload})


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
        self._lines: list[LineFault] = []
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
        after: bool = False,
    ) -> HttpFault:
        """The next ``times`` matching requests get ``status`` (after ``delay`` seconds).

        A 429 carries ``retry-after: 0`` unless ``headers`` says otherwise. Note the
        SDKs treat 0 as "no hint" and back off ~0.5 s; pass
        ``headers={"retry-after-ms": "1"}`` to make OpenAI/Anthropic retry at once.
        With ``after``, the request is handled as usual first (a create happens) and
        ``status``/``body`` replace its answer: a gateway mangling a response the provider sent.
        """
        if status is None and delay <= 0:
            raise ValueError("an HTTP fault needs a status or a delay")
        hdrs = {"retry-after": "0"} if status == 429 else {}
        hdrs.update(headers or {})
        fault = HttpFault(provider, method, path_regex, status, times, body, delay, hdrs, after)
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
        """The next ``times`` batches created on ``provider`` (for ``model``, if given) end with
        ``outcome``."""
        if outcome not in BATCH_OUTCOMES:
            raise ValueError(f"outcome must be one of {BATCH_OUTCOMES}")
        if not 0.0 <= fraction_done <= 1.0:
            raise ValueError("fraction_done must be within [0, 1]")
        fault = BatchFault(provider, outcome, model, times, fraction_done)
        with self._lock:
            self._batch.append(fault)
        return fault

    def line(self, provider: str, kind: str, times: int = 1) -> LineFault:
        """The next ``times`` result lines ``provider`` writes (in output order) become ``kind``."""
        if kind not in LINE_FAULTS:
            raise ValueError(f"kind must be one of {LINE_FAULTS}")
        fault = LineFault(provider, kind, times)
        with self._lock:
            self._lines.append(fault)
        return fault

    def render_line(self, provider: str, line: dict[str, Any], payload: tuple[str, ...]) -> str:
        """``line`` as JSON, or damaged by the next line fault of ``provider``."""
        with self._lock:
            fault = next((f for f in self._lines if f.times > 0 and f.provider == provider), None)
            if fault is not None:
                fault.times -= 1
                self._lines = [f for f in self._lines if f.times > 0]
        return json.dumps(line) if fault is None else damaged_line(fault.kind, line, payload)

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

    def pending(self) -> list[HttpFault | BatchFault | LineFault]:
        """Faults not yet consumed (tests can assert this is empty)."""
        with self._lock:
            return [*self._http, *self._batch, *self._lines]

    def clear(self) -> None:
        with self._lock:
            self._http.clear()
            self._batch.clear()
            self._lines.clear()
            self.fired.clear()
