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
    BatchInfo,
    Found,
    Unreadable,
    created_id,
    guarded,
    malformed,
    read_line,
    sdk_errors,
)
from afbatch.providers.gemini_lines import (
    STATUS,
    display_name,
    error_row,
    genai_failure,
    normalise,
    parse_response,
    render_line,
)
from afbatch.providers.registry import capabilities
from afbatch.redact import redact, register
from afbatch.spec import ModelSpec
from afbatch.types import Request, Result

__all__ = ["STATUS", "GeminiProvider", "inline_line", "inline_requests", "normalise"]

CREATE_ONCE = {"retry_options": {"attempts": 1}}  # a retried create can make a second batch
INLINE_MAX_BYTES = 19 * 10**6  # requests inline in one create call: the API takes 20 MB
ATTEMPTS = 4  # every other call: 408, 429, 5xx and connection errors, backing off


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
        return render_line(request)

    @guarded("key")
    def parse(self, line: dict[str, Any]) -> Result:
        key = line.get("key") or ""
        err = line.get("error") or line.get("status")
        resp = line.get("response")
        if not isinstance(resp, dict):
            if not isinstance(err, dict):
                return malformed(line, "key", "neither response nor error")
            return error_row(key, err)
        return parse_response(key, resp, line)

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


_errors = functools.partial(sdk_errors, genai_failure)
