"""Fireworks batch inference: a JSONL dataset in, a batch inference job, an output dataset back.

Client: Fireworks' REST API through httpx2, the HTTP client the openai SDK already depends on
(httpx's successor, same API; a declared dependency). The `fireworks-ai` SDK (1.2.30,
inspected) was not chosen: it would add aiohttp, httpx-aiohttp and a recent certifi as
dependencies, and its batch-inference resource has create, get, list and delete but no cancel.
The transport is in fireworks_rest.py, the request and result lines in fireworks_lines.py.

The flow, per shard (API key: FIREWORKS_API_KEY; account: FIREWORKS_ACCOUNT_ID; base URL:
FIREWORKS_BASE_URL, default https://api.fireworks.ai):
  1. POST /v1/accounts/{a}/datasets {datasetId, dataset: {userUploaded: {}, exampleCount}}
  2. POST /v1/accounts/{a}/datasets/{id}:upload  (multipart `file`; this path takes up to 150 MB)
  3. POST /v1/accounts/{a}/batchInferenceJobs?batchInferenceJobId=afbatch-{token}
     {displayName, model, inputDatasetId, outputDatasetId, inferenceParameters{maxTokens}}
  4. GET /v1/{job name}: `state` (JOB_STATE_*), `jobProgress`, `status.message`
  5. GET /v1/{output dataset}:getDownloadEndpoint → filenameToSignedUrls; each file is read from
     its signed URL without the API key (it is not Fireworks' host to trust with it)
  6. POST /v1/{job name}:cancel
The job id is the shard's idempotency token, so `find` after a crash is one GET of that id: the
job exists (adopt it) or it does not (nothing was created). Datasets get a fresh suffix per
attempt, so a retried submit never meets a half-uploaded dataset of an earlier one.

Lines are `{"custom_id", "body": {"messages", "max_tokens", "temperature"}}`; the model is the
job's. The job's maxTokens is the shard's largest, so a job default can never cut a row short.

Assumed where the documentation and the SDK's types are silent (the emulator implements exactly
this, strictly): errors come as `{"code", "message"}` bodies; a dataset id is lowercase letters,
digits and hyphens (≤ 63); the output dataset is created by the job and must not exist before;
cancel is the `:cancel` custom method the SDK offers for other jobs (it has none for batch jobs);
result lines are `{"custom_id", "response": <chat.completion>}` (an OpenAI-style
`{"status_code", "body"}` wrapper is read too) and error lines `{"custom_id", "error": {"code",
"message"}}` with an HTTP or gRPC code; every file of the output dataset holds such lines.
Unprocessed rows of an expired or cancelled job have no line: they are missing, and retried.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from afbatch.errors import ProviderError
from afbatch.providers.base import BatchInfo, BatchStatus, Found, guarded
from afbatch.providers.fireworks_lines import max_tokens, request_line, result_of
from afbatch.providers.fireworks_rest import (
    GET_ATTEMPTS,
    TIMEOUT_SECONDS,
    HTTPFailure,
    call,
    download_lines,
    errors,
)
from afbatch.providers.registry import capabilities
from afbatch.redact import redact, register
from afbatch.spec import ModelSpec
from afbatch.types import Request, Result

if TYPE_CHECKING:
    import httpx2

ACCOUNT_ENV = "FIREWORKS_ACCOUNT_ID"

STATUS = {
    "JOB_STATE_UNSPECIFIED": BatchStatus.VALIDATING,
    "JOB_STATE_CREATING": BatchStatus.VALIDATING,
    "JOB_STATE_CREATING_INPUT_DATASET": BatchStatus.VALIDATING,
    "JOB_STATE_VALIDATING": BatchStatus.VALIDATING,
    "JOB_STATE_PENDING": BatchStatus.IN_PROGRESS,
    "JOB_STATE_RUNNING": BatchStatus.IN_PROGRESS,
    "JOB_STATE_RE_QUEUEING": BatchStatus.IN_PROGRESS,
    "JOB_STATE_IDLE": BatchStatus.IN_PROGRESS,
    "JOB_STATE_PAUSED": BatchStatus.IN_PROGRESS,
    "JOB_STATE_WRITING_RESULTS": BatchStatus.FINALIZING,
    "JOB_STATE_COMPLETED": BatchStatus.COMPLETED,
    # Stopped before the end: what finished is in the output, the rest is missing and retried.
    "JOB_STATE_EARLY_STOPPED": BatchStatus.COMPLETED,
    "JOB_STATE_FAILED": BatchStatus.FAILED,
    "JOB_STATE_EXPIRED": BatchStatus.EXPIRED,
    "JOB_STATE_CANCELLING": BatchStatus.CANCELLING,
    "JOB_STATE_CANCELLED": BatchStatus.CANCELLED,
    # Deleted from elsewhere: no more output will come.
    "JOB_STATE_DELETING": BatchStatus.CANCELLED,
    "JOB_STATE_DELETING_CLEANING_UP": BatchStatus.CANCELLED,
}


def job_id(token: str) -> str:
    """The batch inference job id a shard's token names (Fireworks ids: [a-z0-9-], ≤ 63)."""
    safe = "".join(c if c.isalnum() else "-" for c in token.lower())
    return f"afbatch-{safe}"[:63].rstrip("-")


class FireworksProvider:
    name: ClassVar[str] = "fireworks"
    info = capabilities(name)
    limits = info.limits

    def __init__(self, model: ModelSpec):
        self.model = model
        self._client: httpx2.Client | None = None
        self._account: str | None = None

    # --- pure -------------------------------------------------------------------------------

    def line_id(self, request_id: str) -> str:
        return request_id

    def render(self, request: Request) -> dict[str, Any]:
        return request_line(request)

    @guarded("custom_id")
    def parse(self, line: dict[str, Any]) -> Result:
        return result_of(line)

    # --- I/O --------------------------------------------------------------------------------

    def ready(self) -> None:
        self._connect()

    def endpoint(self) -> str:
        """Where the calls go (base URL and account; no key, no network)."""
        self._connect()
        return f"{self.base_url()}/v1/accounts/{self._account}"

    def base_url(self) -> str:
        """The job's base_url, else $FIREWORKS_BASE_URL, else Fireworks' own."""
        env = os.environ.get(self.info.base_url_env or "")
        return (self.model.base_url or env or self.info.default_base_url or "").rstrip("/")

    def _connect(self) -> httpx2.Client:
        if self._client is not None:
            return self._client
        key_env = self.model.api_key_env or self.info.key_env or ""
        key, account = os.environ.get(key_env), os.environ.get(ACCOUNT_ENV)
        register(key)  # redacted by value wherever it appears
        missing = [
            what
            for what, value in (
                (f"{key_env} to your Fireworks API key", key),
                (f"{ACCOUNT_ENV} to your Fireworks account id", account),
            )
            if not value
        ]
        if missing:
            raise ProviderError(f"{self.model.name}: set " + " and ".join(missing))
        self._account = account
        import httpx2  # imported when first connecting: estimate and compile never need it

        self._client = httpx2.Client(
            base_url=self.base_url(),
            timeout=TIMEOUT_SECONDS,
            headers={"Authorization": f"Bearer {key}"},
        )
        return self._client

    @property
    def account_path(self) -> str:
        self._connect()
        return f"accounts/{self._account}"

    def _call(self, method: str, path: str, *, attempts: int = 1, **kw: Any) -> Any:
        """One REST call; its JSON answer (a dict), else HTTPFailure with Fireworks' words."""
        return call(self._connect(), method, path, attempts=attempts, **kw)

    def submit(self, shard_path: str, n_requests: int, token: str, metadata: dict[str, str]) -> str:
        with open(shard_path, "rb") as f:
            data = f.read()
        acct, jid = self.account_path, job_id(token)
        stem = f"{jid[:40]}-{secrets.token_hex(4)}"
        dataset_in, dataset_out = f"{stem}-in", f"{stem}-out"
        with errors(self.model, "create dataset"):
            self._call(
                "POST",
                f"{acct}/datasets",
                json={
                    "datasetId": dataset_in,
                    "dataset": {
                        "displayName": jid,
                        "userUploaded": {},
                        "exampleCount": str(n_requests),
                    },
                },
            )
        with errors(self.model, "upload dataset"):
            self._call(
                "POST",
                f"{acct}/datasets/{dataset_in}:upload",
                files={"file": (os.path.basename(shard_path), data, "application/jsonl")},
            )
        with errors(self.model, "create batch inference job"):
            # Never retried here: the runner looks the job up by its id before sending again.
            job = self._call(
                "POST",
                f"{acct}/batchInferenceJobs",
                params={"batchInferenceJobId": jid},
                json={
                    "displayName": jid,
                    "model": self.model.model,
                    "inputDatasetId": f"{acct}/datasets/{dataset_in}",
                    "outputDatasetId": f"{acct}/datasets/{dataset_out}",
                    "inferenceParameters": {"maxTokens": max_tokens(data)},
                },
            )
        name = job.get("name")
        if name != f"{acct}/batchInferenceJobs/{jid}":
            raise ProviderError(
                redact(
                    f"fireworks create batch inference job for {self.model.name}: the answer names "
                    f"{name!r}, not the job asked for — it is looked up by its id before anything "
                    "is sent again"
                ),
                retryable=True,
            )
        return str(name)

    def find(
        self,
        token: str,
        line_ids: Sequence[str],
        since: float,
        claimed: frozenset[str] = frozenset(),
    ) -> Found:
        # The job id is the token: one GET decides; the line ids are not needed.
        name = f"{self.account_path}/batchInferenceJobs/{job_id(token)}"
        with errors(self.model, "look up batch inference job"):
            try:
                self._call("GET", name, attempts=GET_ATTEMPTS)
            except HTTPFailure as e:
                if e.status != 404:
                    raise
                return Found()  # no job of that id: nothing was created
        return Found() if name in claimed else Found(name)

    def poll(self, batch_id: str) -> BatchInfo:
        with errors(self.model, f"get {batch_id}"):
            job = self._call("GET", batch_id, attempts=GET_ATTEMPTS)
        raw = str(job.get("state") or "JOB_STATE_UNSPECIFIED")
        p = job.get("jobProgress") or {}
        counts = {
            k: int(p.get(f) or 0)
            for k, f in (
                ("total", "totalInputRequests"),
                ("completed", "successfullyProcessedRequests"),
                ("failed", "failedRequests"),
            )
        }
        message = (job.get("status") or {}).get("message") or None
        status = STATUS.get(raw, BatchStatus.IN_PROGRESS)
        return BatchInfo(status, raw, counts, message if status == BatchStatus.FAILED else None)

    def fetch(self, batch_id: str) -> Iterator[dict[str, Any]]:
        with errors(self.model, f"get {batch_id}"):
            job = self._call("GET", batch_id, attempts=GET_ATTEMPTS)
        output = str(job.get("outputDatasetId") or "")
        try:
            with errors(self.model, f"download endpoint of {output}"):
                files = self._call("GET", f"{output}:getDownloadEndpoint", attempts=GET_ATTEMPTS)
        except ProviderError:
            if STATUS.get(job.get("state") or "") in (BatchStatus.FAILED, BatchStatus.CANCELLED):
                return  # a job that failed or was stopped early may have written nothing
            raise
        urls = files.get("filenameToSignedUrls") or {}
        for filename in sorted(urls):
            yield from download_lines(self.model, filename, str(urls[filename]))

    def cancel(self, batch_id: str) -> None:
        with errors(self.model, f"cancel {batch_id}"):
            self._call("POST", f"{batch_id}:cancel", json={})
