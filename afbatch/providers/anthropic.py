"""Anthropic Message Batches: requests inline as `{custom_id, params}`; results streamed per row.

Anthropic batches carry no metadata, so reconciliation after a crash lists batches created
after the recorded intent and matches the request count, skipping ids other shards claimed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

from afbatch import jsonl
from afbatch.errors import ProviderError
from afbatch.providers.base import REJECTS, BatchInfo, BatchStatus, Limits
from afbatch.redact import redact
from afbatch.spec import ModelSpec
from afbatch.types import Request, Result, RowStatus, Usage

# 256 MB per create call; the JSON envelope adds a few bytes per request, so keep a margin.
LIMITS = Limits(max_requests=100_000, max_bytes=250 * 10**6)

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
    messages: list[dict[str, Any]] = [{"role": m.role, "content": m.content} for m in request.messages]
    if request.cache and not request.system and messages:
        # No shared system prompt (judge votes): cache the whole prompt, which every vote repeats.
        control = {"type": "ephemeral", **({"ttl": "1h"} if request.model.cache_ttl == "1h" else {})}
        messages[-1] = {"role": messages[-1]["role"],
                        "content": [{"type": "text", "text": messages[-1]["content"], "cache_control": control}]}
    if request.prefill:
        messages.append({"role": "assistant", "content": request.prefill})
    body["messages"] = messages
    return body


def parse_message(message: dict[str, Any]) -> tuple[str, Usage, str | None]:
    """Text, usage and stop reason of a Messages API response (input includes cache reads and writes)."""
    text = "".join(b.get("text", "") for b in message.get("content") or [] if b.get("type") == "text")
    u = message.get("usage") or {}
    read = int(u.get("cache_read_input_tokens") or 0)
    write = int(u.get("cache_creation_input_tokens") or 0)
    usage = Usage(int(u.get("input_tokens") or 0) + read + write, read, write, int(u.get("output_tokens") or 0))
    return text, usage, message.get("stop_reason")


class AnthropicProvider:
    name: ClassVar[str] = "anthropic"
    limits = LIMITS

    def __init__(self, model: ModelSpec):
        self.model = model
        self._client: Any = None

    # --- pure -------------------------------------------------------------------------------

    def line_id(self, request_id: str) -> str:
        return request_id

    def render(self, request: Request) -> dict[str, Any]:
        return {"custom_id": request.id, "params": render_messages_body(request)}

    def parse(self, line: dict[str, Any]) -> Result:
        rid = line.get("custom_id") or ""
        result = line.get("result") or {}
        kind = result.get("type")
        if kind == "succeeded":
            text, usage, stop = parse_message(result.get("message") or {})
            return Result(rid, RowStatus.SUCCEEDED, text=text, usage=usage, stop_reason=stop)
        if kind == "expired":
            return Result(rid, RowStatus.EXPIRED, error_kind="expired", error_message="batch expired before this request ran")
        if kind == "canceled":
            return Result(rid, RowStatus.CANCELED, error_kind="canceled", error_message="batch canceled before this request ran")
        outer = result.get("error") or {}
        inner = outer.get("error") if isinstance(outer.get("error"), dict) else outer
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

            key_env = self.model.api_key_env or "ANTHROPIC_API_KEY"
            key = os.environ.get(key_env)
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
            # No SDK retries: a retried create can make a second batch; the runner reconciles instead.
            batch = self.client.with_options(max_retries=0).messages.batches.create(requests=requests)
        return batch.id

    def find(self, token: str, n_requests: int, since: float, claimed: frozenset[str] = frozenset()) -> str | None:
        with _errors(self.model, "list batches"):
            candidates = []
            for b in self.client.messages.batches.list(limit=100):
                created = _ts(b.created_at)
                if created < since - 120:
                    break
                c = b.request_counts
                total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
                if total == n_requests and b.id not in claimed and created >= since - 120:
                    candidates.append((created, b.id))
        # The oldest unclaimed match after the intent is ours: shards are submitted one at a time.
        return min(candidates)[1] if candidates else None

    def poll(self, batch_id: str) -> BatchInfo:
        with _errors(self.model, f"retrieve {batch_id}"):
            b = self.client.messages.batches.retrieve(batch_id)
        counts = b.request_counts.model_dump()
        if b.processing_status == "ended":
            if counts.get("succeeded", 0) == 0 and counts.get("errored", 0) == 0 and counts.get("expired", 0):
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
            for row in self.client.messages.batches.results(batch_id):
                yield row.model_dump(mode="json", exclude_none=True)

    def cancel(self, batch_id: str) -> None:
        with _errors(self.model, f"cancel {batch_id}"):
            self.client.messages.batches.cancel(batch_id)


def _ts(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


class _errors:
    def __init__(self, model: ModelSpec, what: str):
        self.model, self.what = model, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, ProviderError):
            return False
        import anthropic

        if isinstance(exc, anthropic.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            err = body.get("error") if isinstance(body.get("error"), dict) else {}
            msg = err.get("message") or exc.message
            retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
            raise ProviderError(
                redact(f"anthropic {self.what} for {self.model.name}: HTTP {exc.status_code}: {msg}"), retryable=retryable,
                rejects_request=exc.status_code in REJECTS,
            ) from None
        if isinstance(exc, anthropic.APIConnectionError):
            raise ProviderError(
                redact(f"anthropic {self.what} for {self.model.name}: cannot connect ({exc.__cause__ or exc})"), retryable=True
            ) from None
        return False
