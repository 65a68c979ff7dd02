"""Provider-neutral values that flow through compile, submit, collect and report."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from afbatch.spec import ModelSpec

STAGE_GENERATE = "generate"
STAGE_COMPLIANCE = "judge_compliance"
STAGE_AF = "judge_af"
STAGE_PARTIAL = "judge_partial"


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class Conversation:
    """One cell of the grid: model x variant x temperature x samples x tier x prompt x sample."""

    id: str
    model: str
    variant: str
    cot: bool
    tier: str
    prompt_index: int
    sample: int
    user_input: str  # the dataset row; the rendered user turn is Grid.user_message(conversation)
    temperature: float | None = None  # sent with every model turn
    samples: int = 1  # the sample count of its condition ([sampling] samples)


@dataclass(frozen=True, slots=True)
class Request:
    """One call to a model, before any provider's formatting.

    `prefill` is sent as a trailing assistant message only where the model allows it; the
    provider's completion then continues it, and afbatch prepends it back to the text.
    """

    id: str
    model: ModelSpec
    system: str | None
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None
    prefill: str | None = None
    cache: bool = False
    stage: str = STAGE_GENERATE
    n: int = 1  # choices asked of the one prompt (the AF votes in one request)


class RowStatus(StrEnum):
    """Outcome of one request in one attempt."""

    SUCCEEDED = "succeeded"
    ERRORED = "errored"  # the provider answered with an error for this row
    EXPIRED = "expired"  # not processed before the batch window closed
    CANCELED = "canceled"
    MISSING = "missing"  # the batch ended without any line for this row


class Usage(NamedTuple):
    """Tokens of one or more rows (a tuple: cheap to build for 100k-row runs)."""

    input_tokens: int = 0
    cached_tokens: int = 0  # cache reads, part of input_tokens
    cache_write_tokens: int = 0  # cache writes, part of input_tokens
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:  # type: ignore[override]
        return Usage(
            self.input_tokens + other.input_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.output_tokens + other.output_tokens,
        )


class Result(NamedTuple):
    """One parsed result line. Per-row failures are values, never exceptions."""

    id: str
    status: RowStatus
    text: str | None = None
    usage: Usage = Usage()
    error_kind: str | None = (
        None  # invalid_request | rate_limit | overloaded | server_error | auth | ...
    )
    error_message: str | None = None
    stop_reason: str | None = None
    verdict: dict[str, Any] | None = (
        None  # judge replies: parsed when collected (None: not a judge reply, or unparseable)
    )
    texts: tuple[str, ...] | None = (
        None  # every choice, in order, when the provider returned several (text: the first)
    )

    @property
    def retryable(self) -> bool:
        if self.status in (RowStatus.EXPIRED, RowStatus.CANCELED, RowStatus.MISSING):
            return True
        return self.status == RowStatus.ERRORED and self.error_kind in RETRYABLE_KINDS

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "status": self.status.value}
        if self.text is not None:
            d["text"] = self.text
        u = self.usage
        if u.input_tokens or u.output_tokens:
            d["usage"] = [u.input_tokens, u.cached_tokens, u.cache_write_tokens, u.output_tokens]
        for k in ("error_kind", "error_message", "stop_reason", "verdict"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.texts is not None:
            d["texts"] = list(self.texts)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Result:
        u = d.get("usage")
        get = d.get
        texts = get("texts")
        # tuple.__new__ directly: the namedtuple's own __new__ is one more Python call, on every
        # stored row
        return _new(
            cls,
            (
                d["id"],
                _STATUS[d["status"]],
                get("text"),
                Usage(*u) if u else _NO_USAGE,
                get("error_kind"),
                get("error_message"),
                get("stop_reason"),
                get("verdict"),
                tuple(texts) if texts is not None else None,
            ),
        )


_STATUS = {s.value: s for s in RowStatus}
_new = tuple.__new__
if len(Result._fields) != 9:  # from_json builds every field by position: a new one goes there too
    raise TypeError("Result gained a field: add it to Result.from_json")
_NO_USAGE = Usage()

# Failures worth a new attempt: the request itself was fine.
# "malformed": the provider's line for the row could not be read (a cut-off line, a proxy's page).
RETRYABLE_KINDS = frozenset(
    {"rate_limit", "overloaded", "server_error", "timeout", "billing", "malformed"}
)
