"""Gemini API batch mode (Google AI Studio key) through the `google-genai` SDK.

Lines are `{key, request}` with a GenerateContentRequest: the system prompt as
`system_instruction`, turns as `user`/`model` contents, `generation_config`. The shard is uploaded
through the Files API (the SDK's resumable upload) and the batch created from `files/<id>` with
the shard's token in its display name, which is how `find` recognises it after a crash. Results
come as a file named by the batch's `dest.file_name`, joined on `key`.

A shard whose requests fit in one create call (20 MB) is sent inline instead (`src=[...]`, no
upload): each request carries `metadata = {"key": <line id>}`, which the API returns with its
response, so inline responses are joined on that key too, never by their position.
"""

from __future__ import annotations

import functools
import importlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from afbatch import jsonl
from afbatch.errors import ProviderError
from afbatch.providers.base import (
    REJECTS,
    BatchInfo,
    BatchStatus,
    Failure,
    Found,
    Unreadable,
    classify_http,
    created_id,
    guarded,
    malformed,
    read_line,
    sdk_errors,
)
from afbatch.providers.registry import capabilities
from afbatch.redact import redact, register
from afbatch.spec import ModelSpec
from afbatch.types import Request, Result, RowStatus, Usage

# The SDK's JobState (JOB_STATE_*) and the raw REST resource's BatchState (BATCH_STATE_*) share
# their suffixes; the SDK renames only some BATCH_STATE_* values and passes the others through.
STATUS = {
    "UNSPECIFIED": BatchStatus.VALIDATING,
    "QUEUED": BatchStatus.VALIDATING,
    "PENDING": BatchStatus.VALIDATING,
    "RUNNING": BatchStatus.IN_PROGRESS,
    "UPDATING": BatchStatus.IN_PROGRESS,
    "PAUSED": BatchStatus.IN_PROGRESS,  # resumes on its own; nothing to collect yet
    "CANCELLING": BatchStatus.CANCELLING,
    "SUCCEEDED": BatchStatus.COMPLETED,
    "PARTIALLY_SUCCEEDED": BatchStatus.COMPLETED,  # per-line errors are in the output file
    "FAILED": BatchStatus.FAILED,
    "CANCELLED": BatchStatus.CANCELLED,
    "EXPIRED": BatchStatus.EXPIRED,
}

# google.rpc.Code of a line's `error`/`status` (a line may carry an HTTP code instead).
RPC_KINDS = {
    1: "canceled",
    2: "server_error",
    3: "invalid_request",
    4: "timeout",
    5: "invalid_request",
    7: "auth",
    8: "rate_limit",
    9: "invalid_request",
    10: "server_error",
    11: "invalid_request",
    12: "invalid_request",
    13: "server_error",
    14: "overloaded",
    15: "server_error",
    16: "auth",
}
RPC_NAMES = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}

CREATE_ONCE = {"retry_options": {"attempts": 1}}  # a retried create can make a second batch
INLINE_MAX_BYTES = 19 * 10**6  # requests inline in one create call: the API takes 20 MB
ATTEMPTS = 4  # every other call: 408, 429, 5xx and connection errors, backing off


def normalise(state: str) -> BatchStatus:
    """JOB_STATE_* or BATCH_STATE_* → BatchStatus (an unknown state is still running)."""
    suffix = state.removeprefix("JOB_STATE_").removeprefix("BATCH_STATE_")
    return STATUS.get(suffix, BatchStatus.IN_PROGRESS)


def display_name(token: str) -> str:
    """The batch's display name: it carries the shard's idempotency token."""
    return f"afbatch-{token}"


def _get(d: Any, camel: str, snake: str) -> Any:
    """A field of a REST answer (camelCase) or of the SDK's own dump (snake_case)."""
    if not isinstance(d, dict):
        return None
    return d[camel] if camel in d else d.get(snake)


def _int(d: Any, camel: str, snake: str) -> int:
    return int(_get(d, camel, snake) or 0)


class GeminiProvider:
    name: ClassVar[str] = "gemini"
    info = capabilities(name)
    limits = info.limits

    def __init__(self, model: ModelSpec):
        self.model = model
        self._client: Any = None

    # --- pure -------------------------------------------------------------------------------

    def line_id(self, request_id: str) -> str:
        return request_id

    def render(self, request: Request) -> dict[str, Any]:
        contents = [
            {"role": "model" if m.role == "assistant" else "user", "parts": [{"text": m.content}]}
            for m in request.messages
        ]
        if request.prefill:  # never sent (supports_prefill is False); shown as it would go
            contents.append({"role": "model", "parts": [{"text": request.prefill}]})
        body: dict[str, Any] = {"contents": contents}
        if request.system:
            body["system_instruction"] = {"parts": [{"text": request.system}]}
        config: dict[str, Any] = {"max_output_tokens": request.max_tokens}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        body["generation_config"] = config
        return {"key": request.id, "request": body}

    @guarded("key")
    def parse(self, line: dict[str, Any]) -> Result:
        key = line.get("key") or ""
        err = line.get("error") or line.get("status")
        resp = line.get("response")
        if not isinstance(resp, dict):
            if not isinstance(err, dict):
                return malformed(line, "key", "neither response nor error")
            return _error_row(key, err)
        usage_md = _get(resp, "usageMetadata", "usage_metadata") or {}
        usage = Usage(
            input_tokens=_int(usage_md, "promptTokenCount", "prompt_token_count"),
            cached_tokens=_int(usage_md, "cachedContentTokenCount", "cached_content_token_count"),
            # thinking is billed as output
            output_tokens=(
                _int(usage_md, "candidatesTokenCount", "candidates_token_count")
                + _int(usage_md, "thoughtsTokenCount", "thoughts_token_count")
            ),
        )
        candidates = resp.get("candidates") or []
        if not candidates:
            # The prompt itself was blocked: no candidate, a block reason. Like a refusal, it is
            # the answer (empty), with the reason kept.
            feedback = _get(resp, "promptFeedback", "prompt_feedback") or {}
            reason = _get(feedback, "blockReason", "block_reason")
            if not reason:
                return malformed(line, "key", "response without candidates")
            return Result(
                key,
                RowStatus.SUCCEEDED,
                text="",
                usage=usage,
                stop_reason=f"PROMPT_BLOCKED:{reason}",
            )
        first = candidates[0]
        parts = (first.get("content") or {}).get("parts") or []
        # Thought summaries (`thought: true`) are not the answer.
        text = "".join(p.get("text") or "" for p in parts if not p.get("thought"))
        # SAFETY, RECITATION, BLOCKLIST, ... end the answer as a refusal does; MAX_TOKENS cuts it:
        # both are answers, with the reason kept (as for the other providers).
        reason = _get(first, "finishReason", "finish_reason")
        return Result(key, RowStatus.SUCCEEDED, text=text, usage=usage, stop_reason=reason)

    # --- I/O --------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                from google import genai
                from google.genai import types
            except ImportError:
                raise ProviderError(
                    f"{self.model.name}: the Gemini API needs the google-genai "
                    "SDK — pip install 'afbatch[gemini]'"
                ) from None
            key_env = self.model.api_key_env or self.info.key_env or "GEMINI_API_KEY"
            key = os.environ.get(key_env)
            register(key)  # redacted by value wherever it appears, whatever the env name
            if not key:
                raise ProviderError(f"{self.model.name}: set {key_env} to your Gemini API key")
            # The key is passed, so the SDK's own pick (GOOGLE_API_KEY before GEMINI_API_KEY)
            # does not apply; vertexai=False, whatever GOOGLE_GENAI_USE_VERTEXAI says. Without a
            # job base_url the SDK reads GOOGLE_GEMINI_BASE_URL itself.
            options = types.HttpOptions(
                retry_options=types.HttpRetryOptions(attempts=ATTEMPTS),
                base_url=self.model.base_url or None,
            )
            # The SDK logs "Both GOOGLE_API_KEY and GEMINI_API_KEY are set. Using GOOGLE_API_KEY."
            # even when given the key: untrue here, and printed past the CLI: kept quiet.
            sdk_log = logging.getLogger("google_genai._api_client")
            level = sdk_log.level
            sdk_log.setLevel(logging.ERROR)
            try:
                self._client = genai.Client(api_key=key, vertexai=False, http_options=options)
            finally:
                sdk_log.setLevel(level)
        return self._client

    def ready(self) -> None:
        self.client  # noqa: B018 - building the client checks the SDK and the key

    def endpoint(self) -> str:
        """The base URL the SDK resolved (no network; the SDK offers no public accessor)."""
        options = getattr(self.client._api_client, "_http_options", None)
        return str(getattr(options, "base_url", None) or "the SDK's default")

    def submit(self, shard_path: str, n_requests: int, token: str, metadata: dict[str, str]) -> str:
        inline = inline_requests(shard_path)
        src = inline if inline is not None else self._upload(shard_path, token)
        with _errors(self.model, "create batch"):
            # No SDK retries: the runner reconciles by the display name first.
            config = {"display_name": display_name(token), "http_options": CREATE_ONCE}
            batch = self.client.batches.create(model=self.model.model, src=src, config=config)
        return created_id(batch, self.model, "batch", attr="name")

    def _upload(self, shard_path: str, token: str) -> str:
        with _errors(self.model, "upload"):
            try:
                config = {"mime_type": "jsonl", "display_name": display_name(token)}
                uploaded = self.client.files.upload(file=shard_path, config=config)
            except (ValueError, KeyError) as e:  # the resumable upload did not finalise
                raise ProviderError(
                    redact(f"gemini upload for {self.model.name}: {e}"), retryable=True
                ) from None
        return str(uploaded.name)

    def find(
        self,
        token: str,
        line_ids: Sequence[str],
        since: float,
        claimed: frozenset[str] = frozenset(),
    ) -> Found:
        # The display name carries the token: it names the shard exactly. The listing's order is
        # not documented, so every page is read.
        want = display_name(token)
        with _errors(self.model, "list batches"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the SDK warns on a state its enum lacks
            for b in self.client.batches.list(config={"page_size": 100}):
                if b.display_name == want and b.name not in claimed:
                    return Found(b.name)
        return Found()

    def _get(self, batch_id: str) -> Any:
        with _errors(self.model, f"get {batch_id}"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.client.batches.get(name=batch_id)

    def poll(self, batch_id: str) -> BatchInfo:
        b = self._get(batch_id)
        raw = str(getattr(b.state, "value", b.state) or "JOB_STATE_UNSPECIFIED")
        message = None
        if b.error is not None:
            message = f"{b.error.code}: {b.error.message}"
        return BatchInfo(normalise(raw), raw, {}, message)

    def fetch(self, batch_id: str) -> Iterator[dict[str, Any]]:
        b = self._get(batch_id)
        if b.dest is not None and b.dest.inlined_responses is not None:
            for i, response in enumerate(b.dest.inlined_responses):
                yield inline_line(i, response)
            return
        name = b.dest.file_name if b.dest is not None else None
        if not name:  # failed, or cancelled before anything ran: no output file
            return
        with tempfile.TemporaryDirectory(prefix="afbatch-gemini-") as tmp:
            path = os.path.join(tmp, "results.jsonl")
            with _errors(self.model, f"download {name}"):
                self.client.files.download(file=name, destination=path)  # streamed to disk
            with open(path, "rb") as f:
                for raw in f:
                    if raw.strip():
                        yield read_line(raw)

    def cancel(self, batch_id: str) -> None:
        with _errors(self.model, f"cancel {batch_id}"):
            self.client.batches.cancel(name=batch_id)


def inline_requests(shard_path: str) -> list[dict[str, Any]] | None:
    """The shard's lines as the SDK's InlinedRequests, when their JSON fits in one create call
    (escaped as the SDK sends it); None: upload the file."""
    if os.path.getsize(shard_path) > INLINE_MAX_BYTES:
        return None
    with open(shard_path, "rb") as f:
        lines = jsonl.read(f.read())
    requests = []
    for line in lines:
        body = line["request"]
        config = dict(body.get("generation_config") or {})
        if "system_instruction" in body:
            config["system_instruction"] = body["system_instruction"]
        requests.append(
            {"contents": body["contents"], "config": config, "metadata": {"key": line["key"]}}
        )
    if len(json.dumps(requests)) > INLINE_MAX_BYTES:
        return None
    return requests


def inline_line(index: int, response: Any) -> Any:
    """An inline response (the SDK's InlinedResponse) as a result line keyed by its metadata."""
    key = (response.metadata or {}).get("key")
    if not key:  # no key: its request is left without a line ("missing", retried)
        return Unreadable(f"inline response {index} carries no key in its metadata")
    if response.error is not None:
        return {"key": key, "error": response.error.model_dump(mode="json", exclude_none=True)}
    if response.response is None:
        return {"key": key}
    return {"key": key, "response": response.response.model_dump(mode="json", exclude_none=True)}


def _error_row(key: str, err: dict[str, Any]) -> Result:
    code, name = err.get("code"), str(err.get("status") or "")
    message = str(err.get("message") or name or code or "error")
    rpc = RPC_NAMES.get(name) or (code if isinstance(code, int) and code < 100 else None)
    if isinstance(code, int) and code >= 100 and not name:
        kind = classify_http(code, None, message)
    else:
        kind = RPC_KINDS.get(rpc or 2, "server_error")
    if kind == "canceled":
        return Result(key, RowStatus.CANCELED, error_kind="canceled", error_message=message)
    if kind == "rate_limit" and classify_http(429, name, message) == "billing":
        kind = "billing"  # quota or billing of the account, not the moment
    return Result(key, RowStatus.ERRORED, error_kind=kind, error_message=message)


def _genai_failure(exc: BaseException) -> Failure | None:
    from google.genai import errors

    if isinstance(exc, errors.APIError):
        code = int(exc.code or 500)
        return Failure(
            f"HTTP {code} {exc.status or ''}: {exc.message or exc}".replace(" :", ":"),
            retryable=code in (408, 409, 429) or code >= 500,
            rejects_request=code in REJECTS,
        )
    if isinstance(exc, _transport_errors()):
        return Failure(f"cannot connect ({exc})", retryable=True)
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection failures of whichever HTTP client the SDK runs on (httpx or its fork httpx2)."""
    found = []
    for name in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except ImportError:
            continue
    return tuple(found)


_errors = functools.partial(sdk_errors, _genai_failure)
