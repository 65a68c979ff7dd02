"""Vertex AI batch prediction through `google-genai` (vertexai=True) and `google-cloud-storage`.

Lines are the Gemini API's `{key, request}` (gemini_lines.py): Vertex passes an input line's other
columns (`key`) through to its output line, where results are joined on it — never on order or on
the echoed request. The shard goes to `<gcs_uri>/afbatch-input/<token>.jsonl` (a re-upload after a
crash overwrites that object instead of making a second), the job is created with the display name
`afbatch-<token>` (how `find` recognises it) and writes under `<gcs_uri>/afbatch-output/<token>/`;
the results are every `predictions*.jsonl` in the job's output directory, lines
`{key, request, response, status}` with `status` the row's error message ("" when it succeeded).

Credentials: Application Default Credentials, loaded once and given to both clients (under
STORAGE_EMULATOR_HOST google-cloud-storage would otherwise send none: it falls back to anonymous
credentials there). Project and location: the model entry's, else GOOGLE_CLOUD_PROJECT (or the
ADC's project) and GOOGLE_CLOUD_LOCATION.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from afbatch.errors import ProviderError
from afbatch.providers.base import (
    BatchInfo,
    Failure,
    Found,
    classify_http,
    created_id,
    guarded,
    malformed,
    read_line,
    sdk_errors,
)
from afbatch.providers.gemini_lines import (
    RPC_KINDS,
    RPC_NAMES,
    display_name,
    error_row,
    genai_failure,
    normalise,
    parse_response,
    render_line,
)
from afbatch.providers.registry import capabilities
from afbatch.redact import register
from afbatch.spec import ModelSpec
from afbatch.types import Request, Result, RowStatus

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
CREATE_ONCE = {"retry_options": {"attempts": 1}}  # a retried create can make a second job
ATTEMPTS = 4  # every other Vertex call: 408, 429, 5xx and connection errors, backing off
NO_CREDENTIALS = (
    "no Google Cloud credentials found — run `gcloud auth application-default login`, or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a credentials file"
)
# A predictions file of the job's output directory (one, or several numbered ones).
PREDICTIONS = re.compile(r"(^|/)predictions[^/]*\.jsonl$")


class VertexProvider:
    name: ClassVar[str] = "vertex"
    info = capabilities(name)
    limits = info.limits

    def __init__(self, model: ModelSpec):
        self.model = model
        self._credentials: Any = None
        self._project = self._place = ""
        self._client: Any = None
        self._gcs: Any = None

    # --- pure -------------------------------------------------------------------------------

    def line_id(self, request_id: str) -> str:
        return request_id

    def render(self, request: Request) -> dict[str, Any]:
        return render_line(request)

    @guarded("key")
    def parse(self, line: dict[str, Any]) -> Result:
        key = line.get("key")
        if not isinstance(key, str) or not key:
            return malformed(line, "key", "no key")
        status, resp = line.get("status"), line.get("response")
        if isinstance(status, dict):
            return error_row(key, status)
        if status:
            return status_row(key, str(status))
        if not isinstance(resp, dict):
            return malformed(line, "key", "neither response nor status")
        return parse_response(key, resp, line)

    # --- I/O --------------------------------------------------------------------------------

    def _location(self) -> tuple[str, str]:
        if not self.model.gcs_uri:
            raise ProviderError(
                f"{self.model.name}: Vertex AI batch needs `gcs_uri` (gs://bucket/prefix) in the "
                "job's model entry"
            )
        bucket, _, prefix = self.model.gcs_uri.removeprefix("gs://").partition("/")
        return bucket, prefix.strip("/")

    def _connect(self) -> None:
        """Credentials, project and location (no network for a credentials file)."""
        if self._credentials is not None:
            return
        try:
            import google.auth
            import google.genai  # noqa: F401 - checked now: submit needs both SDKs
            from google.auth import exceptions
            from google.cloud.storage import Client  # noqa: F401
        except ImportError:
            raise ProviderError(
                f"{self.model.name}: Vertex AI needs the google-genai and google-cloud-storage "
                "SDKs — pip install 'afbatch[vertex]'"
            ) from None
        try:
            credentials, adc_project = google.auth.default(scopes=[SCOPE])
        except exceptions.DefaultCredentialsError:
            raise ProviderError(f"{self.model.name}: {NO_CREDENTIALS}") from None
        _register(credentials)
        project = self.model.project or os.environ.get("GOOGLE_CLOUD_PROJECT") or adc_project
        place = self.model.location or os.environ.get("GOOGLE_CLOUD_LOCATION")
        if not project:
            raise ProviderError(
                f"{self.model.name}: no Google Cloud project — set `project` in the job's model "
                "entry or GOOGLE_CLOUD_PROJECT"
            )
        if not place:
            raise ProviderError(
                f"{self.model.name}: no Vertex AI location — set `location` in the job's model "
                "entry or GOOGLE_CLOUD_LOCATION (e.g. us-central1)"
            )
        self._credentials, self._project, self._place = credentials, project, place

    @property
    def client(self) -> Any:
        if self._client is None:
            self._connect()
            from google import genai
            from google.genai import types

            # Without a job base_url the SDK reads GOOGLE_VERTEX_BASE_URL itself.
            options = types.HttpOptions(
                retry_options=types.HttpRetryOptions(attempts=ATTEMPTS),
                base_url=self.model.base_url or None,
            )
            # The SDK logs which of credentials and an API key in the environment it uses: the
            # credentials are given, so that line is noise past the CLI.
            sdk_log = logging.getLogger("google_genai._api_client")
            level = sdk_log.level
            sdk_log.setLevel(logging.ERROR)
            try:
                self._client = genai.Client(
                    vertexai=True,
                    project=self._project,
                    location=self._place,
                    credentials=self._credentials,
                    http_options=options,
                )
            finally:
                sdk_log.setLevel(level)
        return self._client

    @property
    def gcs(self) -> Any:
        if self._gcs is None:
            self._connect()
            from google.cloud.storage import Client

            self._gcs = Client(project=self._project, credentials=self._credentials)
        return self._gcs

    @contextlib.contextmanager
    def _call(self, what: str) -> Iterator[None]:
        """One call's SDK errors as a ProviderError; the access token the SDKs may have refreshed
        meanwhile is registered for redaction first."""
        with _errors(self.model, what):
            try:
                yield
            finally:
                _register(self._credentials)

    def ready(self) -> None:
        self._location()
        self._connect()

    def endpoint(self) -> str:
        """Where the calls go, as the SDKs resolved it (no network)."""
        options = getattr(self.client._api_client, "_http_options", None)
        vertex = str(getattr(options, "base_url", None) or "the SDK's default")
        return f"{vertex}, Cloud Storage {self.gcs._connection.API_BASE_URL}"

    def submit(self, shard_path: str, n_requests: int, token: str, metadata: dict[str, str]) -> str:
        bucket, prefix = self._location()
        key_in = _key(prefix, "afbatch-input", f"{token}.jsonl")
        with self._call("upload to Cloud Storage"):
            from google.cloud.storage.retry import DEFAULT_RETRY

            blob = self.gcs.bucket(bucket).blob(key_in)
            # The object's name is the shard's: retrying the upload overwrites, never duplicates.
            blob.upload_from_filename(
                shard_path, content_type="application/jsonl", retry=DEFAULT_RETRY
            )
        dest = f"gs://{bucket}/{_key(prefix, 'afbatch-output', token)}/"
        with self._call("create job"):
            # No SDK retries: the runner reconciles by the display name first.
            config = {
                "display_name": display_name(token),
                "dest": dest,
                "http_options": CREATE_ONCE,
            }
            job = self.client.batches.create(
                model=self.model.model, src=f"gs://{bucket}/{key_in}", config=config
            )
        return created_id(job, self.model, "job", attr="name")

    def find(
        self,
        token: str,
        line_ids: Sequence[str],
        since: float,
        claimed: frozenset[str] = frozenset(),
    ) -> Found:
        # The display name carries the token: it names the shard exactly. The listing is filtered
        # by it, and each job's name still compared.
        want = display_name(token)
        config = {"page_size": 100, "filter": f'display_name="{want}"'}
        with self._call("list jobs"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the SDK warns on a state its enum lacks
            for job in self.client.batches.list(config=config):
                if job.display_name == want and job.name not in claimed:
                    return Found(job.name)
        return Found()

    def _get(self, batch_id: str) -> Any:
        with self._call(f"get {batch_id}"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.client.batches.get(name=batch_id)

    def poll(self, batch_id: str) -> BatchInfo:
        job = self._get(batch_id)
        raw = str(getattr(job.state, "value", job.state) or "JOB_STATE_UNSPECIFIED")
        message = f"{job.error.code}: {job.error.message}" if job.error is not None else None
        stats = job.completion_stats
        counts = {}
        if stats is not None:
            got = (stats.successful_count, stats.failed_count, stats.incomplete_count)
            counts = {k: int(v) for k, v in zip(("succeeded", "failed", "incomplete"), got) if v}
        return BatchInfo(normalise(raw), raw, counts, message)

    def fetch(self, batch_id: str) -> Iterator[dict[str, Any]]:
        job = self._get(batch_id)
        out = job.output_info.gcs_output_directory if job.output_info is not None else None
        if not out:  # failed, or cancelled before anything ran: no output
            return
        bucket, _, prefix = out.removeprefix("gs://").partition("/")
        with self._call(f"list {out}"):
            names = sorted(
                b.name
                for b in self.gcs.list_blobs(bucket, prefix=prefix.strip("/") + "/")
                if PREDICTIONS.search(b.name)
            )
        for name in names:  # every predictions file of the job, each streamed to disk
            with tempfile.TemporaryDirectory(prefix="afbatch-vertex-") as tmp:
                path = os.path.join(tmp, "predictions.jsonl")
                with self._call(f"download gs://{bucket}/{name}"):
                    self.gcs.bucket(bucket).blob(name).download_to_filename(path)
                with open(path, "rb") as f:
                    for raw in f:
                        if raw.strip():
                            yield read_line(raw)

    def cancel(self, batch_id: str) -> None:
        with self._call(f"cancel {batch_id}"):
            self.client.batches.cancel(name=batch_id)


def _key(prefix: str, *parts: str) -> str:
    return "/".join(p for p in (prefix, *parts) if p)


def _register(credentials: Any) -> None:
    """Redact the credentials' secrets by value wherever they appear."""
    for attr in ("token", "refresh_token", "client_secret"):
        value = getattr(credentials, attr, None)
        if isinstance(value, str):
            register(value)


def status_row(key: str, status: str) -> Result:
    """A failed row: Vertex writes its error as a message string, which may hold the Google error
    body (`{"error": {code, message, status}}`) or name a google.rpc status or an HTTP code."""
    start = status.find("{")
    if start >= 0:
        try:
            body = json.loads(status[start:])
        except ValueError:
            body = None
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and (err.get("status") or err.get("code")):
            return error_row(key, err)
    name = next((n for n in RPC_NAMES if re.search(rf"\b{n}\b", status)), None)
    code = re.search(r"\b([45]\d\d)\b", status)
    if name is not None:
        kind = RPC_KINDS.get(RPC_NAMES[name], "server_error")
    elif code is not None:
        kind = classify_http(int(code.group(1)), None, status)
    else:
        kind = "server_error"  # unknown: retried
    if kind == "canceled":
        return Result(key, RowStatus.CANCELED, error_kind="canceled", error_message=status)
    return Result(key, RowStatus.ERRORED, error_kind=kind, error_message=status)


def _google_failure(exc: BaseException) -> Failure | None:
    """Cloud Storage's and google-auth's exceptions (and their HTTP client's) as a Failure."""
    import requests
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, api.GoogleAPICallError):
        code = int(exc.code or 500)
        return Failure(
            f"HTTP {code}: {exc.message}",
            # A missing bucket or a refused object is the setup's fault, not the requests'.
            retryable=code in (408, 409, 429) or code >= 500,
        )
    if isinstance(exc, auth.DefaultCredentialsError):
        return Failure(NO_CREDENTIALS, retryable=False)
    if isinstance(exc, (auth.TransportError, requests.ConnectionError)):
        return Failure(f"cannot connect ({exc})", retryable=True)
    if isinstance(exc, auth.GoogleAuthError):  # the token endpoint refused (RefreshError, ...)
        return Failure(f"credentials refused: {exc}", retryable=bool(getattr(exc, "retryable", 0)))
    return None


def _failure(exc: BaseException) -> Failure | None:
    return genai_failure(exc) or _google_failure(exc)


_errors = functools.partial(sdk_errors, _failure)
