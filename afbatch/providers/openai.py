"""OpenAI Batch API, and OpenAI-compatible hosts (Together, Groq, DeepInfra, any base URL).

Lines are `{custom_id, method, url, body}` for /v1/chat/completions, one model per file, the
system prompt as the first message. Reconciliation after a crash finds the batch by the
`afbatch_token` in its metadata.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from afbatch.errors import ProviderError
from afbatch.providers.base import (
    BatchInfo,
    BatchStatus,
    Found,
    chat_messages,
    classify_http,
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

ENDPOINT = "/v1/chat/completions"


STATUS = {
    "validating": BatchStatus.VALIDATING,
    "in_progress": BatchStatus.IN_PROGRESS,
    "finalizing": BatchStatus.FINALIZING,
    "completed": BatchStatus.COMPLETED,
    "failed": BatchStatus.FAILED,
    "expired": BatchStatus.EXPIRED,
    "cancelling": BatchStatus.CANCELLING,
    "cancelled": BatchStatus.CANCELLED,
}


class OpenAIProvider:
    name: ClassVar[str] = "openai"

    def __init__(self, model: ModelSpec):
        self.model = model
        self.info = capabilities(model.provider)  # OpenAI itself or a host: URL, key, limits
        self.limits = self.info.limits
        self._client: Any = None

    # --- pure -------------------------------------------------------------------------------

    def line_id(self, request_id: str) -> str:
        return request_id

    def render(self, request: Request) -> dict[str, Any]:
        messages = chat_messages(request)
        body: dict[str, Any] = {"model": request.model.model, "messages": messages}
        # OpenAI's own models take max_completion_tokens (reasoning models reject max_tokens);
        # OpenAI-compatible hosts document max_tokens.
        body["max_completion_tokens" if self.model.provider == "openai" else "max_tokens"] = (
            request.max_tokens
        )
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.n > 1:
            body["n"] = request.n
        return {"custom_id": request.id, "method": "POST", "url": ENDPOINT, "body": body}

    @guarded("custom_id")
    def parse(self, line: dict[str, Any]) -> Result:
        rid = line.get("custom_id") or ""
        err = line.get("error")
        resp = line.get("response") or {}
        if not err and not resp:
            return malformed(line, "custom_id", "neither response nor error")
        if err and not resp:
            code = (err.get("code") or "") if isinstance(err, dict) else str(err)
            message = err.get("message") if isinstance(err, dict) else None
            if code == "batch_expired":
                return Result(rid, RowStatus.EXPIRED, error_kind="expired", error_message=message)
            if code == "batch_cancelled":
                return Result(rid, RowStatus.CANCELED, error_kind="canceled", error_message=message)
            return Result(
                rid,
                RowStatus.ERRORED,
                error_kind=classify_http(500, code, message),
                error_message=message or code,
            )
        status = int(resp.get("status_code") or 0)
        body = resp.get("body") or {}
        choices = body.get("choices") if isinstance(body, dict) else None
        if status == 200 and choices and isinstance(choices, list):
            if len(choices) > 1:  # n choices of one prompt, in their index order
                choices = sorted(
                    choices, key=lambda c: c.get("index") or 0 if isinstance(c, dict) else 0
                )
            texts = tuple(_choice_text(c) for c in choices)
            usage = body.get("usage") or {}
            cached = ((usage.get("prompt_tokens_details") or {}).get("cached_tokens")) or 0
            first = choices[0] if isinstance(choices[0], dict) else {}
            return Result(
                rid,
                RowStatus.SUCCEEDED,
                text=texts[0],
                usage=Usage(
                    int(usage.get("prompt_tokens") or 0),
                    int(cached),
                    0,
                    int(usage.get("completion_tokens") or 0),
                ),
                stop_reason=first.get("finish_reason"),
                texts=texts if len(texts) > 1 else None,
            )
        error = (body.get("error") if isinstance(body, dict) else None) or {}
        if status == 200 or (not status and not error):
            return malformed(line, "custom_id", f"HTTP {status} answer without choices")
        message = error.get("message") or f"HTTP {status} without a completion"
        return Result(
            rid,
            RowStatus.ERRORED,
            error_kind=classify_http(
                status or 500, error.get("code") or error.get("type"), message
            ),
            error_message=message,
        )

    # --- I/O --------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import openai

            key_env = self.model.api_key_env or self.info.key_env
            key = os.environ.get(key_env) if key_env else None  # every HTTP provider names one
            register(key)  # redacted by value wherever it appears, whatever the env name
            if not key:
                raise ProviderError(
                    f"{self.model.name}: set {key_env} to your {self.model.provider} API key"
                )
            kwargs: dict[str, Any] = {"api_key": key, "max_retries": 4}
            base = self.base_url()
            if base:
                kwargs["base_url"] = base
            self._client = openai.OpenAI(**kwargs)
        return self._client

    def base_url(self) -> str | None:
        """Job's base_url, else the host's variable (e.g. TOGETHER_BASE_URL), else the host default.

        For OpenAI itself None is returned, so the SDK applies OPENAI_BASE_URL as usual.
        """
        if self.model.base_url:
            return self.model.base_url
        if self.info.default_base_url is None:
            return None
        env = os.environ.get(self.info.base_url_env) if self.info.base_url_env else None
        return env or self.info.default_base_url

    def ready(self) -> None:
        self.client  # noqa: B018 - building the client checks the key

    def endpoint(self) -> str:
        """Where the calls go (the client's base URL as the SDK resolved it; no network)."""
        return str(self.client.base_url)

    def submit(self, shard_path: str, n_requests: int, token: str, metadata: dict[str, str]) -> str:
        with _errors(self.model, "upload"), open(shard_path, "rb") as f:
            file = self.client.files.create(file=(os.path.basename(shard_path), f), purpose="batch")
        with _errors(self.model, "create batch"):
            # No SDK retries here: a retried create can make a second batch. A failure goes back to
            # the runner, which looks the batch up by its token before trying again.
            batch = self.client.with_options(max_retries=0).batches.create(
                input_file_id=file.id,
                endpoint=ENDPOINT,
                completion_window="24h",
                metadata={**metadata, "afbatch_token": token},
            )
        return created_id(batch, self.model, "batch")

    def find(
        self,
        token: str,
        line_ids: Sequence[str],
        since: float,
        claimed: frozenset[str] = frozenset(),
    ) -> Found:
        # The token in the batch metadata names the shard exactly; the line ids are not needed.
        with _errors(self.model, "list batches"):
            for batch in self.client.batches.list(limit=100):
                if batch.created_at < since - 120:
                    break
                if (batch.metadata or {}).get("afbatch_token") == token and batch.id not in claimed:
                    return Found(batch.id)
        return Found()

    def poll(self, batch_id: str) -> BatchInfo:
        with _errors(self.model, f"retrieve {batch_id}"):
            b = self.client.batches.retrieve(batch_id)
        counts = b.request_counts.model_dump() if b.request_counts else {}
        message = None
        if b.errors and b.errors.data:
            e = b.errors.data[0]
            message = f"{e.code}: {e.message}" + (f" (line {e.line})" if e.line else "")
        return BatchInfo(STATUS.get(b.status, BatchStatus.IN_PROGRESS), b.status, counts, message)

    def fetch(self, batch_id: str) -> Iterator[dict[str, Any]]:
        with _errors(self.model, f"retrieve {batch_id}"):
            b = self.client.batches.retrieve(batch_id)
        for file_id in (b.output_file_id, b.error_file_id):
            if not file_id:  # None, or "" for a clean batch
                continue
            with (
                _errors(self.model, f"download {file_id}"),
                self.client.files.with_streaming_response.content(file_id) as resp,
            ):
                for raw in resp.iter_lines():
                    if raw.strip():
                        yield read_line(raw)

    def cancel(self, batch_id: str) -> None:
        with _errors(self.model, f"cancel {batch_id}"):
            self.client.batches.cancel(batch_id)


# OpenAI-compatible hosts may put an error's message at the top of the body.
_errors = functools.partial(sdk_errors, http_sdk_failures("openai", top_level_message=True))


def _choice_text(choice: Any) -> str:
    message = (choice.get("message") if isinstance(choice, dict) else None) or {}
    # A model refusal arrives as `refusal` with null content; keep its words for the judges.
    return message.get("content") or message.get("refusal") or ""
