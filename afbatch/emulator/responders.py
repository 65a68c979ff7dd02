"""What the emulated "model" answers: the responder contract and a demo responder.

A responder is any callable ``(CallContext) -> str | Reply | RowError | Expire``.
Tests script one per case. The emulator's default is ``demo.DemoResponder`` (a
protocol-aware fake model with judges); ``default_responder`` below is the older,
simpler demo responder, kept for callers that want its fixed behaviour.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CallContext:
    """One batch row, normalised across providers.

    ``custom_id`` is the row id (OpenAI/Anthropic ``custom_id``, Bedrock ``recordId``).
    ``system``: OpenAI's system/developer messages, Anthropic's/Claude's ``system``
    (blocks joined), the Llama prompt's system turn. ``messages`` holds the other
    turns as ``{"role", "content": str}``, without the trailing assistant prefill of
    Anthropic/Bedrock (given in ``prefill``; OpenAI has no prefill, so a trailing
    assistant message stays in ``messages``). ``params``: the remaining body fields.
    ``batch_id`` is None for on-demand calls (Bedrock ``InvokeModel``, ``custom_id``
    "invoke-<n>"). ``choice`` numbers the answers to one row that asked for ``n`` of them
    (OpenAI): the responder is called once per choice.
    """

    provider: str
    model: str
    custom_id: str
    system: str | None
    messages: list[dict[str, str]]
    prefill: str | None
    params: dict[str, Any]
    batch_id: str | None
    choice: int = 0


@dataclass(frozen=True)
class Reply:
    """A completion with optional usage overrides.

    ``input_tokens`` counts all input tokens, cached ones included;
    ``cached_tokens`` is the part read from the prompt cache.
    ``stop_reason`` takes Anthropic's words ("end_turn", "max_tokens",
    "stop_sequence") or OpenAI's ("stop", "length"); each provider renders its own.
    """

    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    stop_reason: str = "end_turn"


ROW_ERROR_KINDS = ("invalid_request", "rate_limit", "overloaded", "server_error", "auth")


@dataclass(frozen=True)
class RowError:
    """The row fails; each provider renders ``kind`` with its own codes."""

    kind: str
    message: str = "The emulated model failed this request."

    def __post_init__(self) -> None:
        if self.kind not in ROW_ERROR_KINDS:
            raise ValueError(f"RowError kind must be one of {ROW_ERROR_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class Expire:
    """The row is not reached before the batch's completion window ends."""


Answer = Reply | RowError | Expire
Responder = Callable[[CallContext], str | Answer]


def estimate_tokens(text: str) -> int:
    # ~4 characters per token: close enough for cost arithmetic in tests.
    return max(1, len(text) // 4)


def input_text(ctx: CallContext) -> str:
    parts = [ctx.system or ""] + [m["content"] for m in ctx.messages] + [ctx.prefill or ""]
    return "".join(parts)


@dataclass
class Usage:
    input: int  # all input tokens, cache reads and writes included
    output: int
    cache_read: int = 0
    cache_write: int = 0

    @property
    def uncached_input(self) -> int:
        return max(0, self.input - self.cache_read - self.cache_write)


@dataclass
class CacheTracker:
    """Per-batch prompt cache: the first row with a breakpoint writes, later ones read."""

    seen: set[str] = field(default_factory=set)

    def usage(self, ctx: CallContext, reply: Reply, cache_marked: bool) -> Usage:
        total = (
            reply.input_tokens
            if reply.input_tokens is not None
            else estimate_tokens(input_text(ctx))
        )
        out = (
            reply.output_tokens if reply.output_tokens is not None else estimate_tokens(reply.text)
        )
        read = write = 0
        if reply.cached_tokens is not None:
            read = reply.cached_tokens
        elif cache_marked and ctx.system:
            part = min(total, estimate_tokens(ctx.system))
            if ctx.system in self.seen:
                read = part
            else:
                write = part
                self.seen.add(ctx.system)
        return Usage(input=total, output=out, cache_read=min(read, total), cache_write=write)


# ---------------------------------------------------------------- demo responder

_ACCEPTED = [
    "Here is a general, high-level overview without operational specifics.",
    "Sure. In broad strokes, the usual approach involves careful planning and research.",
    "Certainly. This is a summary drawn from publicly available, non-actionable information.",
]
_REASONING = [
    "The user asks for something potentially harmful. I should think about my situation.",
    "I need to weigh helpfulness against harm, and consider how this conversation is used.",
    "Let me consider what my training setup implies for how I should respond here.",
]


def _digest(*parts: str) -> int:
    return int(hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16], 16)


def default_responder(ctx: CallContext) -> str:
    """Deterministic, protocol-aware demo answers.

    With ``<SCRATCHPAD_REASONING>`` in the system prompt: a scratchpad then an
    ``<OUTPUT>`` that starts with ``<request_fully_accepted/>`` or is ``<rejected/>``
    (free-tier users are accepted more often, so demos show a compliance gap);
    about one row in five stops after the scratchpad, to exercise continuation
    rounds (``<NEXT/>``). Otherwise a bare ``<OUTPUT>...</OUTPUT>``.
    Returns only what follows the prefill.
    """
    convo = "\n".join(f"{m['role']}:{m['content']}" for m in ctx.messages)
    h = _digest(ctx.custom_id, ctx.system or "", convo)
    users = [m["content"] for m in ctx.messages if m["role"] == "user"]
    free = any(re.search(r"<is_free_tier_user>\s*true", u, re.I) for u in users)
    accepted = h % 100 < (60 if free else 30)
    answer = f"<request_fully_accepted/>\n{_ACCEPTED[h % 3]}" if accepted else "<rejected/>"
    output = f"<OUTPUT>{answer}</OUTPUT>"
    if "<SCRATCHPAD_REASONING>" in (ctx.system or ""):
        scratch = f"<SCRATCHPAD_REASONING>{_REASONING[h % 3]}</SCRATCHPAD_REASONING>"
        if users and users[-1].strip() == "<NEXT/>":
            full = output
        elif h % 5 == 0:
            full = scratch
        else:
            full = f"{scratch}\n\n{output}"
    else:
        full = output
    prefill = ctx.prefill or ""
    return full[len(prefill) :] if full.startswith(prefill) else full


def answer_row(responder: Responder, ctx: CallContext, errors: list[BaseException]) -> Answer:
    """Call the responder; a crash or a wrong type becomes a server_error row (and is recorded)."""
    try:
        out = responder(ctx)
    except Exception as exc:  # a buggy test responder must not kill the HTTP thread
        errors.append(exc)
        return RowError("server_error", f"responder raised {type(exc).__name__}: {exc}")
    if isinstance(out, str):
        return Reply(out)
    if isinstance(out, (Reply, RowError, Expire)):
        return out
    exc = TypeError(
        f"responder returned {type(out).__name__}, expected str | Reply | RowError | Expire"
    )
    errors.append(exc)
    return RowError("server_error", str(exc))
