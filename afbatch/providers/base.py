"""The Provider protocol: two pure halves (render a request line, parse a result line) and a small
I/O half.

Statuses of every provider normalise to BatchStatus; the raw status is kept beside it.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, Protocol

from afbatch import jsonl
from afbatch.errors import ProviderError
from afbatch.providers.registry import Limits
from afbatch.redact import redact
from afbatch.spec import ModelSpec
from afbatch.types import Request, Result, RowStatus


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

TERMINAL = frozenset(
    {BatchStatus.COMPLETED, BatchStatus.FAILED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)


@dataclass(frozen=True)
class BatchInfo:
    status: BatchStatus
    raw_status: str
    counts: dict[str, int] = field(default_factory=dict)
    message: str | None = None  # the provider's own words when the batch failed


@dataclass(frozen=True)
class Found:
    """What `Provider.find` decided about a shard's batch after a crash or a failed create.

    `batch_id`: the shard's batch. Neither field set: nothing was created, the shard may be sent
    again.
    `undecided`: batches exist that may be the shard's but cannot be told apart yet (why, in words):
    neither adopt nor resubmit; ask again later.
    """

    batch_id: str | None = None
    undecided: str | None = None


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

    def parse(self, line: Any) -> Result:
        """One output/error line (as read_line gives it) → Result keyed by the provider's line id;
        never raises: a line it cannot read is a "malformed" errored row (see guarded)."""
        ...

    # I/O: the only methods that touch the network
    def ready(self) -> None:
        """Raise ProviderError naming what is missing (API key, S3 location, credentials); no
        network."""
        ...

    def endpoint(self) -> str:
        """Where this model's calls go (base URL as the SDK resolved it, no key); no network."""
        ...

    def submit(self, shard_path: str, n_requests: int, token: str, metadata: dict[str, str]) -> str:
        """Create the batch from a local JSONL shard; returns the provider batch id."""
        ...

    def find(
        self,
        token: str,
        line_ids: Sequence[str],
        since: float,
        claimed: frozenset[str] = frozenset(),
    ) -> Found:
        """Reconcile after a crash or a failed create: the batch this shard created (idempotency
        `token`, its requests' `line_ids`, intent recorded at `since`), never one in `claimed`
        (other shards' batches)."""
        ...

    def poll(self, batch_id: str) -> BatchInfo: ...

    def fetch(self, batch_id: str) -> Iterator[dict[str, Any]]:
        """Every output and error line of an ended batch."""
        ...

    def cancel(self, batch_id: str) -> None: ...


def chat_messages(request: Request, **prefill_fields: Any) -> list[dict[str, Any]]:
    """A request as OpenAI-style chat `messages`: the system prompt, the turns, and the prefill as
    a trailing assistant message (with a provider's own fields on it, e.g. Mistral's
    `prefix=True`)."""
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": request.system})
    messages.extend({"role": m.role, "content": m.content} for m in request.messages)
    if request.prefill:
        messages.append({"role": "assistant", "content": request.prefill, **prefill_fields})
    return messages


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


class Unreadable(str):
    """The text of an output line that is not JSON."""


def read_line(raw: bytes | str) -> Any:
    """One line of a provider's output, parsed; a line that is not JSON comes back as Unreadable
    text, for parse() to turn into an errored row (a proxy's error page or a cut-off line must not
    stop a collect)."""
    try:
        return jsonl.loads(raw)
    except ValueError:
        return Unreadable(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))


def malformed(line: Any, id_field: str, reason: str) -> Result:
    """An output line afbatch cannot read, as an errored row of the request it names (retried like
    a server error); when no id can be recovered the row is keyed "" and its request, left without
    a line, is missing."""
    rid = line.get(id_field) if isinstance(line, dict) else None
    if not isinstance(rid, str):
        text = _text(line)
        found = re.search(rf'"{re.escape(id_field)}"\s*:\s*"([A-Za-z0-9_-]{{1,64}})"', text)
        rid = found.group(1) if found else ""
    snippet = " ".join(_text(line).split())[:80]
    return Result(
        rid,
        RowStatus.ERRORED,
        error_kind="malformed",
        error_message=redact(f"malformed result line ({reason}): {snippet}"),
    )


def _text(line: Any) -> str:
    return line if isinstance(line, Unreadable) else jsonl.dumps(line).decode("utf-8", "replace")


_Parse = Callable[[Any, dict[str, Any]], Result]


def guarded(id_field: str) -> Callable[[_Parse], Callable[[Any, Any], Result]]:
    """Make a provider's parse total: a line that is not a JSON object, or whose fields have the
    wrong shape, becomes a malformed row instead of an exception in the middle of a collect."""

    def wrap(parse: _Parse) -> Callable[[Any, Any], Result]:
        @functools.wraps(parse)
        def safe(self: Any, line: Any) -> Result:
            if isinstance(line, Unreadable):
                return malformed(line, id_field, "not JSON")
            if not isinstance(line, dict):
                return malformed(line, id_field, "not a JSON object")
            try:
                return parse(self, line)
            except (AttributeError, TypeError, ValueError, KeyError, IndexError) as e:
                return malformed(line, id_field, f"unexpected shape: {type(e).__name__}")

        return safe

    return wrap


# --- SDK exceptions → ProviderError -------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """What an SDK exception means: the provider's words, and whether to retry or fail the rows."""

    detail: str
    retryable: bool
    rejects_request: bool = False


Translate = Callable[[BaseException], "Failure | None"]


class sdk_errors:
    """Turn an SDK's exceptions into one-line ProviderErrors: "<provider> <what> for <model>:
    <detail>", redacted. `translate` is what differs per SDK; an exception it does not know (None)
    passes through."""

    def __init__(self, translate: Translate, model: ModelSpec, what: str):
        self.translate, self.model, self.what = translate, model, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        if exc is None or isinstance(exc, ProviderError):
            return False
        failure = self.translate(exc)
        if failure is None:
            return False
        text = f"{self.model.provider} {self.what} for {self.model.name}: {failure.detail}"
        raise ProviderError(
            redact(text), retryable=failure.retryable, rejects_request=failure.rejects_request
        ) from None


def http_sdk_failures(sdk: str, *, top_level_message: bool) -> Translate:
    """The translation for an HTTP SDK built like openai's and anthropic's (APIStatusError,
    APIConnectionError). The provider's words: the body's `error.message`, else (with
    `top_level_message`: OpenAI-compatible hosts may answer so) the body's own `message`, else the
    SDK's message."""

    def translate(exc: BaseException) -> Failure | None:
        module = importlib.import_module(sdk)
        if isinstance(exc, module.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            if top_level_message:  # no error object, or an empty one: the body's own message
                holder = body.get("error", body)
                msg = (holder or body).get("message") if isinstance(holder, dict) else None
            else:
                err = body.get("error")
                msg = err.get("message") if isinstance(err, dict) else None
            status = exc.status_code
            return Failure(
                f"HTTP {status}: {msg or exc.message}",
                retryable=status in (408, 409, 429) or status >= 500,
                rejects_request=status in REJECTS,
            )
        if isinstance(exc, module.APIConnectionError):
            return Failure(f"cannot connect ({exc.__cause__ or exc})", retryable=True)
        return None

    return translate


def created_id(created: Any, model: ModelSpec, what: str, attr: str = "id") -> str:
    """The id (`attr`: Gemini's is `name`) of what a create call made. An answer without one (an
    HTML page from a proxy, with HTTP 200) leaves it unknown whether the batch exists: retryable,
    so the runner looks it up before sending again."""
    got = getattr(created, attr, None)
    if isinstance(got, str) and got:
        return got
    shown = " ".join(str(created).split())[:60]
    raise ProviderError(
        redact(
            f"{model.provider} create {what} for {model.name}: the answer is not the provider's "
            f"JSON ({shown!r}: a proxy or gateway page?) — the {what} may exist; it is looked up "
            "before anything is sent again"
        ),
        retryable=True,
    )
