"""Anthropic Message Batches: requests inline as `{custom_id, params}`; results streamed per row.

Anthropic batches carry no metadata, so reconciliation after a crash or a failed create lists the
batches created after the recorded intent (less a few seconds of clock slack) with the shard's
request count that no other shard holds, and adopts one only when its results' custom_ids are
exactly the shard's requests; while a candidate is still processing its results cannot be read,
and the decision waits (never a guess: a late adoption costs nothing, a wrong one bills twice).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, ClassVar

from afbatch import jsonl
from afbatch.errors import ProviderError
from afbatch.providers.base import (
    BatchInfo,
    BatchStatus,
    Found,
    created_id,
    guarded,
    http_sdk_failures,
    malformed,
    read_line,
    sdk_errors,
)
from afbatch.providers.registry import capabilities
from afbatch.redact import register
from afbatch.spec import ModelSpec
from afbatch.types import Request, Result, RowStatus, Usage

# How far the provider's clock may run behind ours: a batch created after the intent may look older.
CLOCK_SLACK_SECONDS = 5.0

ERROR_KINDS = {
    "invalid_request_error": "invalid_request",
    "authentication_error": "auth",
    "permission_error": "auth",
    "not_found_error": "invalid_request",
    "request_too_large": "invalid_request",
    "rate_limit_error": "rate_limit",
    "overloaded_error": "overloaded",
    "api_error": "server_error",
    "timeout_error": "timeout",
    "billing_error": "billing",
}


def render_messages_body(request: Request, *, bedrock: bool = False) -> dict[str, Any]:
    """The Messages API body (shared with Claude on Bedrock)."""
    body: dict[str, Any] = {}
    if bedrock:
        body["anthropic_version"] = "bedrock-2023-05-31"
    else:
        body["model"] = request.model.model
    body["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.system:
        if request.cache:
            # A cache breakpoint on the shared system prompt: every request of a variant reuses it.
            control: dict[str, str] = {"type": "ephemeral"}
            if request.model.cache_ttl == "1h":
                control["ttl"] = "1h"
            body["system"] = [{"type": "text", "text": request.system, "cache_control": control}]
        else:
            body["system"] = request.system
    messages: list[dict[str, Any]] = [
        {"role": m.role, "content": m.content} for m in request.messages
    ]
    if request.cache and not request.system and messages:
        # No shared system prompt (judge votes): cache the whole prompt, which every vote repeats.
        control = {
            "type": "ephemeral",
            **({"ttl": "1h"} if request.model.cache_ttl == "1h" else {}),
        }
        messages[-1] = {
            "role": messages[-1]["role"],
            "content": [
                {"type": "text", "text": messages[-1]["content"], "cache_control": control}
            ],
        }
    if request.prefill:
        messages.append({"role": "assistant", "content": request.prefill})
    body["messages"] = messages
    return body


def parse_message(message: dict[str, Any]) -> tuple[str, Usage, str | None]:
    """Text, usage and stop reason of a Messages API response (input includes cache reads and
    writes)."""
    text = "".join(
        b.get("text", "") for b in message.get("content") or [] if b.get("type") == "text"
    )
    u = message.get("usage") or {}
    read = int(u.get("cache_read_input_tokens") or 0)
    write = int(u.get("cache_creation_input_tokens") or 0)
    usage = Usage(
        int(u.get("input_tokens") or 0) + read + write,
        read,
        write,
        int(u.get("output_tokens") or 0),
    )
    return text, usage, message.get("stop_reason")


class AnthropicProvider:
    name: ClassVar[str] = "anthropic"
    info = capabilities(name)
    limits = info.limits

    def __init__(self, model: ModelSpec):
        self.model = model
        self._client: Any = None

    # --- pure -------------------------------------------------------------------------------

    def line_id(self, request_id: str) -> str:
        return request_id

    def render(self, request: Request) -> dict[str, Any]:
        return {"custom_id": request.id, "params": render_messages_body(request)}

    @guarded("custom_id")
    def parse(self, line: dict[str, Any]) -> Result:
        rid = line.get("custom_id") or ""
        result = line.get("result") or {}
        kind = result.get("type")
        if kind not in ("succeeded", "errored", "expired", "canceled"):
            return malformed(line, "custom_id", f"result type {kind!r}")
        if kind == "succeeded":
            if not isinstance(result.get("message"), dict):
                return malformed(line, "custom_id", "succeeded without a message")
            text, usage, stop = parse_message(result["message"])
            return Result(rid, RowStatus.SUCCEEDED, text=text, usage=usage, stop_reason=stop)
        if kind == "expired":
            return Result(
                rid,
                RowStatus.EXPIRED,
                error_kind="expired",
                error_message="batch expired before this request ran",
            )
        if kind == "canceled":
            return Result(
                rid,
                RowStatus.CANCELED,
                error_kind="canceled",
                error_message="batch canceled before this request ran",
            )
        outer = result.get("error") or {}
        nested = outer.get("error")
        inner = nested if isinstance(nested, dict) else outer
        etype = inner.get("type") or "api_error"
        message = inner.get("message") or etype
        error_kind = ERROR_KINDS.get(etype, "server_error")
        if "credit balance" in message.lower():
            error_kind = "billing"  # an account problem, not the model's: retry once it's fixed
        return Result(rid, RowStatus.ERRORED, error_kind=error_kind, error_message=message)

    # --- I/O --------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import anthropic

            key_env = self.model.api_key_env or self.info.key_env
            key = os.environ.get(key_env) if key_env else None  # every HTTP provider names one
            register(key)  # redacted by value wherever it appears, whatever the env name
            if not key:
                raise ProviderError(f"{self.model.name}: set {key_env} to your Anthropic API key")
            kwargs: dict[str, Any] = {"api_key": key, "max_retries": 4}
            if self.model.base_url:
                kwargs["base_url"] = self.model.base_url
            self._client = anthropic.Anthropic(**kwargs)
        return self._client

    def ready(self) -> None:
        self.client  # noqa: B018 - building the client checks the key

    def endpoint(self) -> str:
        """Where the calls go (the client's base URL as the SDK resolved it; no network)."""
        return str(self.client.base_url)

    def submit(self, shard_path: str, n_requests: int, token: str, metadata: dict[str, str]) -> str:
        with open(shard_path, "rb") as f:
            requests = jsonl.read(f.read())
        with _errors(self.model, "create batch"):
            # No SDK retries: a retried create can make a second batch; the runner reconciles
            # instead.
            batch = self.client.with_options(max_retries=0).messages.batches.create(
                requests=requests
            )
        return created_id(batch, self.model, "batch")

    def find(
        self,
        token: str,
        line_ids: Sequence[str],
        since: float,
        claimed: frozenset[str] = frozenset(),
    ) -> Found:
        # No metadata on Anthropic batches: a candidate is a batch created after the intent (less
        # the clock slack), with the shard's request count, that no other shard holds. Only its
        # results' custom_ids prove it is this shard's, readable once it has ended: till then, wait.
        # An archived batch's results are gone: it can be neither proved nor collected.
        with _errors(self.model, "list batches"):
            candidates = []
            for b in self.client.messages.batches.list(limit=100):  # newest first
                created = _ts(b.created_at)
                if created < since - CLOCK_SLACK_SECONDS:
                    break
                c = b.request_counts
                total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
                if total == len(line_ids) and b.id not in claimed and b.archived_at is None:
                    candidates.append((created, b.id, b.processing_status == "ended"))
        mine, waiting = frozenset(line_ids), list[str]()
        for _, batch_id, ended in sorted(candidates):
            holds = self._holds_exactly(batch_id, mine) if ended else None
            if holds:
                return Found(batch_id)
            if holds is None:
                waiting.append(batch_id)
        if waiting:
            return Found(
                undecided=f"{len(waiting)} batch(es) of {len(line_ids)} requests created "
                f"since the intent ({', '.join(waiting)}) are still processing "
                "or unreadable; their results will tell whose they are"
            )
        return Found()

    def _holds_exactly(self, batch_id: str, ids: frozenset[str]) -> bool | None:
        """The ended batch's results are exactly the requests `ids` (custom_ids are unique); None
        when a line without a readable id leaves it unproved either way."""
        seen, unreadable = 0, False
        for line in self.fetch(batch_id):  # raw lines: one malformed line must not stop the check
            rid = self.parse(line).id
            if not rid:
                unreadable = True
            elif rid not in ids:
                return False  # another shard's batch: one foreign row decides
            else:
                seen += 1
        return None if unreadable else seen == len(ids)

    def poll(self, batch_id: str) -> BatchInfo:
        with _errors(self.model, f"retrieve {batch_id}"):
            b = self.client.messages.batches.retrieve(batch_id)
        counts = b.request_counts.model_dump()
        if b.processing_status == "ended":
            if (
                counts.get("succeeded", 0) == 0
                and counts.get("errored", 0) == 0
                and counts.get("expired", 0)
            ):
                status = BatchStatus.EXPIRED
            elif b.cancel_initiated_at is not None:
                status = BatchStatus.CANCELLED
            elif counts.get("expired", 0):
                status = BatchStatus.EXPIRED
            else:
                status = BatchStatus.COMPLETED
        elif b.processing_status == "canceling":
            status = BatchStatus.CANCELLING
        else:
            status = BatchStatus.IN_PROGRESS
        return BatchInfo(status, b.processing_status, counts)

    def fetch(self, batch_id: str) -> Iterator[dict[str, Any]]:
        with _errors(self.model, f"results of {batch_id}"):
            decoder = self.client.messages.batches.results(batch_id)
            try:  # raw lines, not the SDK's decoding: a line that is not JSON must not stop collect
                for raw in decoder.http_response.iter_lines():
                    if raw.strip():
                        yield read_line(raw)
            finally:
                decoder.close()

    def cancel(self, batch_id: str) -> None:
        with _errors(self.model, f"cancel {batch_id}"):
            self.client.messages.batches.cancel(batch_id)


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


_errors = functools.partial(sdk_errors, http_sdk_failures("anthropic", top_level_message=False))
