"""What the three providers share: ids, lazy timing, and running rows through the responder."""

from __future__ import annotations

import hashlib
import secrets
import string
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .faults import BatchFault
from .responders import (
    CacheTracker,
    CallContext,
    Expire,
    Reply,
    RowError,
    Usage,
    answer_row,
    estimate_tokens,
)

if TYPE_CHECKING:
    from .server import Emulator

_ALNUM = string.ascii_letters + string.digits


def rand_id(prefix: str, n: int = 24, alphabet: str = _ALNUM) -> str:
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


def text_of(content: Any, where: str) -> str:
    """Content given as a string or a list of text blocks, as one string.

    Raises ValueError naming ``where`` for anything else (the emulator only speaks text).
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, block in enumerate(content):
            if (
                not isinstance(block, dict)
                or block.get("type") != "text"
                or not isinstance(block.get("text"), str)
            ):
                raise ValueError(f"{where}.{i}: only text content blocks are supported")
            parts.append(block["text"])
        return "".join(parts)
    raise ValueError(f"{where}: content must be a string or a list of content blocks")


@dataclass
class Row:
    custom_id: str
    ctx: CallContext | None  # None when ``invalid`` is set
    cache_marked: bool = False
    invalid: str | None = None  # a per-row 400 found while reading the row
    source: Any = None  # the provider's own input (Bedrock echoes it in the output)


@dataclass
class Outcome:
    row: Row
    status: str  # "succeeded" | "errored" | "expired" | "canceled"
    reply: Reply | None = None
    error: RowError | None = None
    usage: Usage | None = None
    more: list[Reply] = field(
        default_factory=list
    )  # choices after the first, when the row asked for n


@dataclass
class Job:
    """Timing and fate of one provider batch; providers keep their own fields beside it."""

    id: str
    seq: int  # creation order: list endpoints sort on it, not on a clock
    created: float = field(default_factory=time.time)
    fault: BatchFault | None = None
    cancel_at: float | None = None  # when a cancel/stop was requested
    cancel_done: int = 0  # rows already done when the cancel arrived
    ended: bool = False
    delay_at_creation: float = 0.0

    def delay(self, emu: Emulator) -> float:
        # Lowering emu.processing_delay releases pending batches; raising it only affects new ones.
        return min(self.delay_at_creation, emu.processing_delay)

    def elapsed(self) -> float:
        return time.time() - self.created

    def ready(self, emu: Emulator) -> bool:
        return self.elapsed() >= self.delay(emu)

    def early(self, emu: Emulator) -> bool:
        """In the first half of the processing delay (validating / Submitted)."""
        return self.elapsed() < self.delay(emu) / 2

    def rows_done_by_now(self, emu: Emulator, n: int, at: float | None = None) -> int:
        # rows finish at an even pace over the delay: a cancel keeps what was done
        delay = self.delay(emu)
        if delay <= 0:
            return n
        elapsed = (time.time() if at is None else at) - self.created
        return max(0, min(n, int(n * elapsed / delay)))


def run_rows(
    emu: Emulator,
    provider: str,
    rows: list[Row],
    *,
    limit: int | None = None,
    stop_status: str = "expired",
    all_failed: bool = False,
) -> list[Outcome]:
    """Answer rows in input order; rows from ``limit`` on get ``stop_status`` unanswered."""
    cache = CacheTracker()
    out: list[Outcome] = []
    for i, row in enumerate(rows):
        if limit is not None and i >= limit:
            out.append(Outcome(row, stop_status))
        elif all_failed:
            out.append(
                Outcome(row, "errored", error=RowError("server_error", "Internal server error."))
            )
        elif row.invalid is not None or row.ctx is None:
            out.append(
                Outcome(
                    row,
                    "errored",
                    error=RowError("invalid_request", row.invalid or "invalid request"),
                )
            )
        else:
            ans = answer_row(emu.responder, row.ctx, emu.errors)
            emu.calls.append((provider, row.ctx.model, row.custom_id))
            if isinstance(ans, Expire):
                out.append(Outcome(row, "expired"))
            elif isinstance(ans, RowError):
                out.append(Outcome(row, "errored", error=ans))
            else:
                usage = cache.usage(row.ctx, ans, row.cache_marked)
                more = []
                for choice in range(
                    1, _choices(row.ctx)
                ):  # one prompt, n answers: input billed once
                    extra = answer_row(emu.responder, replace(row.ctx, choice=choice), emu.errors)
                    extra = extra if isinstance(extra, Reply) else Reply("")
                    more.append(extra)
                    usage.output += (
                        extra.output_tokens
                        if extra.output_tokens is not None
                        else estimate_tokens(extra.text)
                    )
                out.append(Outcome(row, "succeeded", reply=ans, usage=usage, more=more))
    return out


def _choices(ctx: CallContext) -> int:
    n = ctx.params.get("n", 1)
    return n if type(n) is int and n > 1 else 1


def shuffled(items: list[Any], key: str, emu: Emulator) -> list[Any]:
    """Result order is not guaranteed by any provider: scramble it deterministically."""
    if not emu.shuffle_results:
        return items
    return sorted(items, key=lambda o: hashlib.sha256((key + _custom_id(o)).encode()).digest())


def _custom_id(o: Any) -> str:
    return o.row.custom_id if isinstance(o, Outcome) else str(o)


def finish_stop_reason(stop_reason: str) -> str:
    """Anthropic/Bedrock-Claude wording for a Reply's stop_reason."""
    return {"stop": "end_turn", "length": "max_tokens"}.get(stop_reason, stop_reason)


def openai_finish_reason(stop_reason: str) -> str:
    return {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}.get(
        stop_reason, stop_reason
    )
