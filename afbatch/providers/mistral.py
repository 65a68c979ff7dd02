"""Mistral batch inference (`mistralai` SDK, optional extra `afbatch[mistral]`).

Lines are `{custom_id, body}` with a chat-completions body; the file is uploaded with purpose
"batch" and the job names the model and the endpoint. A prefill is a trailing assistant message
with `"prefix": true`, which Mistral's chat API continues; its answer starts with the prefix
(registry `prefill_echoed`). Reconciliation after a crash finds the job by the `afbatch_token` in
its metadata. Finished rows sit in the output file, failed rows in the error file; a job that
timed out or was cancelled has no line for the rows it never ran.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from afbatch.errors import ProviderError
from afbatch.providers.base import (
    REJECTS,
    BatchInfo,
    BatchStatus,
    Failure,
    Found,
    chat_messages,
    classify_http,
    created_id,
    guarded,
    malformed,
    read_line,
    sdk_errors,
)
from afbatch.providers.registry import capabilities
from afbatch.redact import register
from afbatch.spec import ModelSpec
from afbatch.types import Request, Result, RowStatus, Usage

ENDPOINT = "/v1/chat/completions"
# The job's window. afbatch has no per-job batch-window setting; 24 h is the SDK's default and
# the other providers' window.
TIMEOUT_HOURS = 24
# How far the provider's clock may run behind ours when listing jobs created since the intent.
CLOCK_SLACK_SECONDS = 120

STATUS = {
    "QUEUED": BatchStatus.VALIDATING,
    "RUNNING": BatchStatus.IN_PROGRESS,
    "SUCCESS": BatchStatus.COMPLETED,
    "FAILED": BatchStatus.FAILED,
    # The window closed: what finished is in the output file, like OpenAI's "expired".
    "TIMEOUT_EXCEEDED": BatchStatus.EXPIRED,
    "CANCELLATION_REQUESTED": BatchStatus.CANCELLING,
    "CANCELLED": BatchStatus.CANCELLED,
}


class MistralProvider:
    name: ClassVar[str] = "mistral"
    info = capabilities(name)
    limits = info.limits

    def __init__(self, model: ModelSpec):
        self.model = model
        self._client: Any = None

    # --- pure -------------------------------------------------------------------------------

    def line_id(self, request_id: str) -> str:
        return request_id

    def render(self, request: Request) -> dict[str, Any]:
        # Without "prefix": true Mistral refuses a trailing assistant message.
        messages = chat_messages(request, prefix=True)
        body: dict[str, Any] = {
            "model": request.model.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.n > 1:
            body["n"] = request.n
        if request.cache:
            # Requests sharing a prefix share a key: a hint, a hit is not guaranteed.
            shared = request.system or json.dumps(messages, ensure_ascii=False)
            body["prompt_cache_key"] = "afbatch-" + hashlib.sha256(shared.encode()).hexdigest()[:24]
        return {"custom_id": request.id, "body": body}

    @guarded("custom_id")
    def parse(self, line: dict[str, Any]) -> Result:
        rid = line.get("custom_id") or ""
        resp = line.get("response")
        err = line.get("error")
        if not isinstance(resp, dict):
            if not err:
                return malformed(line, "custom_id", "neither response nor error")
            message = _message(err) or "request failed"
            return Result(
                rid,
                RowStatus.ERRORED,
                error_kind=classify_http(500, None, message),
                error_message=message,
            )
        status = int(resp.get("status_code") or 0)
        body = resp.get("body")
        choices = body.get("choices") if isinstance(body, dict) else None
        if status == 200 and isinstance(body, dict) and isinstance(choices, list) and choices:
            ordered = sorted(choices, key=_index)
            texts = tuple(_choice_text(c) for c in ordered)
            first = ordered[0] if isinstance(ordered[0], dict) else {}
            if first.get("finish_reason") == "error":  # the generation broke off on their side
                return Result(
                    rid,
                    RowStatus.ERRORED,
                    usage=_usage(body.get("usage")),
                    error_kind="server_error",
                    error_message="the model stopped with finish_reason 'error'",
                )
            return Result(
                rid,
                RowStatus.SUCCEEDED,
                text=texts[0],
                usage=_usage(body.get("usage")),
                stop_reason=first.get("finish_reason"),
                texts=texts if len(texts) > 1 else None,
            )
        if status == 200 or (not status and not err):
            return malformed(line, "custom_id", f"HTTP {status} answer without choices")
        message = _message(body) or _message(err) or f"HTTP {status} without a completion"
        code = body.get("code") or body.get("type") if isinstance(body, dict) else None
        return Result(
            rid,
            RowStatus.ERRORED,
            error_kind=classify_http(status or 500, str(code) if code else None, message),
            error_message=message,
        )

    # --- I/O --------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            try:
                from mistralai.client import Mistral
                from mistralai.client.utils import BackoffStrategy, RetryConfig
            except ImportError:
                raise ProviderError(
                    f"{self.model.name}: the Mistral SDK is not installed — "
                    "pip install 'afbatch[mistral]'"
                ) from None
            key_env = self.model.api_key_env or self.info.key_env
            assert key_env is not None  # the registry entry names MISTRAL_API_KEY
            key = os.environ.get(key_env)
            register(key)  # redacted by value wherever it appears, whatever the env name
            if not key:
                raise ProviderError(f"{self.model.name}: set {key_env} to your Mistral API key")
            # Retries for reads; create turns them off (a retried create can make a second job).
            retry = RetryConfig("backoff", BackoffStrategy(500, 8000, 2.0, 60_000, 250), True)
            self._client = Mistral(api_key=key, server_url=self.base_url(), retry_config=retry)
        return self._client

    def base_url(self) -> str:
        """The job's base_url, else $MISTRAL_BASE_URL, else Mistral's own."""
        if self.model.base_url:
            return self.model.base_url
        env = os.environ.get(self.info.base_url_env) if self.info.base_url_env else None
        default = self.info.default_base_url
        assert default is not None  # the registry entry names Mistral's server
        return env or default

    def ready(self) -> None:
        self.client  # noqa: B018 - building the client checks the SDK and the key

    def endpoint(self) -> str:
        """Where the calls go (the server URL the SDK resolved; no network)."""
        url, _ = self.client.sdk_configuration.get_server_details()
        return str(url)

    def submit(self, shard_path: str, n_requests: int, token: str, metadata: dict[str, str]) -> str:
        with _errors(self.model, "upload"), open(shard_path, "rb") as f:
            uploaded = self.client.files.upload(
                file={"file_name": os.path.basename(shard_path), "content": f},  # streamed
                purpose="batch",
            )
        file_id = created_id(uploaded, self.model, "file")
        with _errors(self.model, "create batch"):
            job = self.client.batch.jobs.create(
                input_files=[file_id],
                model=self.model.model,
                endpoint=ENDPOINT,
                metadata={**metadata, "afbatch_token": token},
                timeout_hours=TIMEOUT_HOURS,
                retries=None,
            )  # no SDK retries: the runner looks the job up by its token first
        return created_id(job, self.model, "batch")

    def find(
        self,
        token: str,
        line_ids: Sequence[str],
        since: float,
        claimed: frozenset[str] = frozenset(),
    ) -> Found:
        # The token in the job's metadata names the shard exactly; the line ids are not needed.
        after = datetime.fromtimestamp(since - CLOCK_SLACK_SECONDS, tz=UTC)
        page = 0
        while True:
            with _errors(self.model, "list batches"):
                listed = self.client.batch.jobs.list(
                    page=page, page_size=100, created_after=after, order_by="-created"
                )
            jobs = listed.data or []
            for job in jobs:  # newest first
                if job.created_at < since - CLOCK_SLACK_SECONDS:
                    return Found()  # older than the intent, whatever the filter did
                if (job.metadata or {}).get("afbatch_token") == token and job.id not in claimed:
                    return Found(job.id)
            page += 1
            if not jobs or page * 100 >= listed.total:
                return Found()

    def poll(self, batch_id: str) -> BatchInfo:
        with _errors(self.model, f"retrieve {batch_id}"):
            job = self.client.batch.jobs.get(job_id=batch_id)
        counts = {
            "total": job.total_requests,
            "succeeded": job.succeeded_requests,
            "failed": job.failed_requests,
        }
        message = "; ".join(e.message for e in job.errors) if job.errors else None
        status = STATUS.get(job.status, BatchStatus.IN_PROGRESS)
        return BatchInfo(status, str(job.status), counts, message)

    def fetch(self, batch_id: str) -> Iterator[dict[str, Any]]:
        with _errors(self.model, f"retrieve {batch_id}"):
            job = self.client.batch.jobs.get(job_id=batch_id)
        for file_id in (job.output_file, job.error_file):
            if not isinstance(file_id, str) or not file_id:  # None, UNSET or ""
                continue
            with _errors(self.model, f"download {file_id}"):
                resp = self.client.files.download(file_id=file_id)
                try:
                    for raw in resp.iter_lines():
                        if raw.strip():
                            yield read_line(raw)
                finally:
                    resp.close()

    def cancel(self, batch_id: str) -> None:
        with _errors(self.model, f"cancel {batch_id}"):
            self.client.batch.jobs.cancel(job_id=batch_id)


def _translate(exc: BaseException) -> Failure | None:
    """The mistralai SDK's exceptions: MistralError (HTTP answers, with the body as text),
    NoResponseError, and its HTTP client's transport errors."""
    from mistralai.client import errors

    if isinstance(exc, errors.MistralError):
        status = exc.status_code
        words = _message(_json(exc.body)) or exc.message.split(". Body:")[0]
        if status < 400:  # an answer that is not the API's (a proxy page): the call may have worked
            return Failure(
                f"HTTP {status}: the answer is not the provider's JSON ({words})", retryable=True
            )
        return Failure(
            f"HTTP {status}: {words}",
            retryable=status in (408, 409, 429) or status >= 500,
            rejects_request=status in REJECTS,
        )
    if isinstance(exc, errors.NoResponseError):
        return Failure(f"no response ({exc.message})", retryable=True)
    # The SDK's HTTP client (httpx2 in 3.x) is its own choice: known by its classes' names.
    if type(exc).__module__.startswith("httpx") and any(
        c.__name__ == "TransportError" for c in type(exc).__mro__
    ):
        return Failure(f"cannot connect ({exc})", retryable=True)
    return None


def _errors(model: ModelSpec, what: str) -> sdk_errors:
    return sdk_errors(_translate, model, what)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _message(obj: Any) -> str | None:
    """The provider's words in an error body: `message`, an `error` object's message, or
    FastAPI's `detail` (a string or a list of {msg})."""
    if isinstance(obj, str):
        return obj or None
    if not isinstance(obj, dict):
        return None
    for key in ("message", "msg"):
        if isinstance(obj.get(key), str) and obj[key]:
            return str(obj[key])
    if isinstance(obj.get("error"), dict):
        return _message(obj["error"])
    detail = obj.get("detail")
    if isinstance(detail, list):
        msgs = [str(d.get("msg")) for d in detail if isinstance(d, dict) and d.get("msg")]
        return "; ".join(msgs) or None
    return detail if isinstance(detail, str) and detail else None


def _usage(u: Any) -> Usage:
    """prompt_tokens includes the cached ones (usage.prompt_tokens_details.cached_tokens);
    completion_tokens includes a reasoning model's thinking."""
    u = u if isinstance(u, dict) else {}
    details = u.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        int(u.get("prompt_tokens") or 0), int(cached or 0), 0, int(u.get("completion_tokens") or 0)
    )


def _index(choice: Any) -> int:
    return int(choice.get("index") or 0) if isinstance(choice, dict) else 0


def _choice_text(choice: Any) -> str:
    """The answer's text. A reasoning model (Magistral) answers with a list of chunks: the text
    chunks are the answer, its "thinking" chunks are left out (as OpenAI's reasoning is)."""
    message = (choice.get("message") if isinstance(choice, dict) else None) or {}
    content = message.get("content")
    if isinstance(content, list):
        return "".join(
            str(c.get("text") or "")
            for c in content
            if isinstance(c, dict) and c.get("type") == "text"
        )
    return content if isinstance(content, str) else ""
