"""xAI's native Batch API over REST: a named batch, requests added to it, results read in pages.

Why not the OpenAI-compatible `/v1/files` + `/v1/batches`: docs.x.ai (advanced-api-usage/batch-api,
2026) documents the named-batch workflow at 50% off; xai-sdk 1.21.0 (PyPI) has only it
(`batch.create(name, input_file_id=None)`, `add`, `get`, `list`, `list_batch_results`, `cancel`);
and the batch it returns has no OpenAI `status` or output file (counts only, results as paged
JSON), so the OpenAI SDK could create a batch but never collect it.

Calls: POST /batches {name} → POST /batches/{id}/requests {batch_requests} (≤ 25 MB a call) →
GET /batches/{id} (counts) → GET /batches/{id}/results (pages) ; POST /batches/{id}:cancel.
The shard's idempotency token is the batch's name: `find` adopts only a batch of that name.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
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
    chat_messages,
    classify_http,
    guarded,
    malformed,
    sdk_errors,
)
from afbatch.providers.registry import capabilities
from afbatch.redact import redact, register
from afbatch.spec import ModelSpec
from afbatch.types import Request, Result, RowStatus, Usage

NAME_PREFIX = "afbatch-"
# "Each request to add batch requests has a maximum payload size of 25MB" (docs.x.ai): read as
# 25 * 10**6 bytes, the stricter reading, less room for the JSON envelope.
MAX_ADD_BYTES = 25 * 10**6 - 1024
PAGE = 100
CLOCK_SLACK_SECONDS = 120.0
# google.rpc codes (a failed row's `error.code`, per xai-sdk's BatchResult proto) as HTTP statuses.
GRPC_AS_HTTP = {3: 400, 4: 408, 5: 404, 7: 403, 8: 429, 9: 400, 11: 400, 13: 500, 14: 503, 16: 401}
GRPC_CANCELLED = 1


class XAIProvider:
    name: ClassVar[str] = "xai"

    def __init__(self, model: ModelSpec):
        self.model = model
        self.info = capabilities(model.provider)
        self.limits = self.info.limits
        self._client: Any = None

    # --- pure -------------------------------------------------------------------------------

    def line_id(self, request_id: str) -> str:
        return request_id

    def render(self, request: Request) -> dict[str, Any]:
        messages = chat_messages(request)
        body: dict[str, Any] = {
            "model": request.model.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return {"batch_request_id": request.id, "batch_request": {"chat_get_completion": body}}

    @guarded("batch_request_id")
    def parse(self, line: dict[str, Any]) -> Result:
        rid = line.get("batch_request_id") or ""
        result = line.get("batch_result") or {}
        error = result.get("error") or line.get("error")
        if not error and line.get("error_message"):  # the failed-list shape some clients document
            error = {"message": line["error_message"]}
        response = result.get("response") or line.get("response") or {}
        completion = response.get("chat_get_completion")
        if completion:
            return _completion(rid, completion, line)
        if isinstance(error, dict) and (error.get("code") or error.get("message")):
            code = error.get("code")
            message = str(error.get("message") or f"error code {code}")
            if code == GRPC_CANCELLED:
                return Result(rid, RowStatus.CANCELED, error_kind="canceled", error_message=message)
            status = GRPC_AS_HTTP.get(code, 500) if isinstance(code, int) else 500
            return Result(
                rid,
                RowStatus.ERRORED,
                error_kind=classify_http(status, None, message),
                error_message=message,
            )
        return malformed(line, "batch_request_id", "neither a completion nor an error")

    # --- I/O --------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            import httpx2  # the HTTP client the openai and anthropic SDKs are built on

            key_env = self.model.api_key_env or self.info.key_env or "XAI_API_KEY"
            key = os.environ.get(key_env)
            register(key)
            if not key:
                raise ProviderError(f"{self.model.name}: set {key_env} to your xAI API key")
            self._client = httpx2.Client(
                base_url=self.base_url().rstrip("/") + "/",
                headers={"Authorization": f"Bearer {key}"},
                timeout=httpx2.Timeout(120.0, connect=20.0),
            )
        return self._client

    def base_url(self) -> str:
        """The job's base_url, else $XAI_BASE_URL, else https://api.x.ai/v1."""
        env = os.environ.get(self.info.base_url_env) if self.info.base_url_env else None
        return self.model.base_url or env or self.info.default_base_url or ""

    def ready(self) -> None:
        self.client  # noqa: B018 - building the client checks the key

    def endpoint(self) -> str:
        return str(self.client.base_url)

    def _call(self, what: str, method: str, path: str, tries: int = 1, **kw: Any) -> Any:
        """One REST call; its JSON answer. A 429 is tried again up to `tries` times (it did
        nothing). A 2xx answer that is not JSON (a proxy page) leaves it unknown whether the call
        took effect: retryable, so the runner looks before sending again."""
        with _errors(self.model, what):
            for attempt in range(tries):
                resp = self.client.request(method, path, **kw)
                if resp.status_code != 429 or attempt == tries - 1:
                    break
                time.sleep(2.0 * (attempt + 1))
            resp.raise_for_status()
        try:
            return jsonl.loads(resp.content)
        except ValueError:
            shown = " ".join(resp.text.split())[:60]
            raise ProviderError(
                redact(
                    f"xai {what} for {self.model.name}: the answer is not xAI's JSON ({shown!r}: a "
                    "proxy or gateway page?) — whether it took effect is looked up before anything "
                    "is sent again"
                ),
                retryable=True,
            ) from None

    def submit(self, shard_path: str, n_requests: int, token: str, metadata: dict[str, str]) -> str:
        name = NAME_PREFIX + token
        since = time.time()
        try:
            batch_id = _batch_id(self._call("create batch", "POST", "batches", json={"name": name}))
        except ProviderError as e:
            # The create's answer may be lost while the batch exists: look for it by its name now
            # (an empty batch bills nothing, but this keeps one batch per shard).
            if not e.retryable:
                raise
            batch_id = self._named(name, since, frozenset()) or ""
            if not batch_id:
                raise
        with open(shard_path, "rb") as f:
            lines = [raw.strip() for raw in f if raw.strip()]
        added = 0
        for chunk in _chunks(lines, self.model.name):
            try:
                self._add(batch_id, chunk)
            except ProviderError as e:
                if added == 0 and not e.retryable:
                    raise  # refused before anything was added: the empty batch costs nothing
                # Some requests are in the batch: it must be collected, not sent again. The runner
                # finds it by its name; requests not added come back missing and are asked again.
                raise ProviderError(
                    f"{e} ({added} of {len(lines)} requests were added to {batch_id})",
                    retryable=True,
                ) from None
            added += len(chunk)
        return batch_id

    def _add(self, batch_id: str, chunk: list[bytes]) -> None:
        # 100 add calls per 30 s per team (docs.x.ai): a 429 is waited out a few times.
        body = b'{"batch_requests":[' + b",".join(chunk) + b"]}"
        self._call(
            f"add requests to {batch_id}",
            "POST",
            f"batches/{batch_id}/requests",
            tries=4,
            content=body,
            headers={"Content-Type": "application/json"},
        )

    def find(
        self,
        token: str,
        line_ids: Sequence[str],
        since: float,
        claimed: frozenset[str] = frozenset(),
    ) -> Found:
        # The name carries the token. A batch of that name with no request bills nothing and is
        # not adopted (the shard may be sent again); one with some or all of the shard's requests
        # is (a request never added comes back missing and is asked again in a later shard).
        return Found(self._named(NAME_PREFIX + token, since, claimed, nonempty=True))

    def _named(
        self, name: str, since: float, claimed: frozenset[str], nonempty: bool = False
    ) -> str | None:
        found: list[tuple[int, str]] = []
        page: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE, **({"pagination_token": page} if page else {})}
            answer = self._call("list batches", "GET", "batches", params=params)
            for b in answer.get("batches") or []:
                created = _seconds(b.get("create_time"))
                if b.get("name") != name or b.get("batch_id") in claimed:
                    continue
                if created is not None and created < since - CLOCK_SLACK_SECONDS:
                    continue  # older than the intent: not this attempt's
                n = int((b.get("state") or {}).get("num_requests") or 0)
                if n or not nonempty:
                    found.append((n, str(b["batch_id"])))
            page = answer.get("pagination_token") or None
            if not page:
                break
        return max(found)[1] if found else None  # the fullest, if a name was ever used twice

    def poll(self, batch_id: str) -> BatchInfo:
        b = self._call(f"retrieve {batch_id}", "GET", f"batches/{batch_id}")
        state = {k: int(v or 0) for k, v in (b.get("state") or {}).items()}
        pending = state.get("num_pending", 0)
        raw = " ".join(f"{k.removeprefix('num_')}={v}" for k, v in sorted(state.items()))
        if b.get("cancel_time") or b.get("cancel_by_xai_message"):
            status = BatchStatus.CANCELLING if pending else BatchStatus.CANCELLED
        elif not pending:
            status = BatchStatus.COMPLETED
        elif (_seconds(b.get("expire_time")) or float("inf")) < time.time():
            status = BatchStatus.EXPIRED  # the rest stays unanswered: missing, asked again
        else:
            status = BatchStatus.IN_PROGRESS
        return BatchInfo(status, raw or "no state", state, b.get("cancel_by_xai_message") or None)

    def fetch(self, batch_id: str) -> Iterator[dict[str, Any]]:
        page: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE, **({"pagination_token": page} if page else {})}
            answer = self._call(
                f"results of {batch_id}", "GET", f"batches/{batch_id}/results", params=params
            )
            # `results` is the captured REST shape; succeeded/failed lists are read as well.
            for key in ("results", "succeeded", "failed"):
                for item in answer.get(key) or []:
                    # an item given as text (a damaged one): parse reads its id from the text
                    line: Any = Unreadable(item) if isinstance(item, str) else item
                    yield line
            page = answer.get("pagination_token") or None
            if not page:
                return

    def cancel(self, batch_id: str) -> None:
        self._call(f"cancel {batch_id}", "POST", f"batches/{batch_id}:cancel")


def _completion(rid: str, body: dict[str, Any], line: dict[str, Any]) -> Result:
    choices = body.get("choices")
    if not choices or not isinstance(choices, list):
        return malformed(line, "batch_request_id", "completion without choices")
    first = choices[0]
    message = first.get("message") or {}
    u = body.get("usage") or {}
    prompt, completion = int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
    reasoning = int((u.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    # xAI bills reasoning tokens as output. Its total_tokens says whether completion_tokens
    # already holds them (total = prompt + completion) or not (total = prompt + completion +
    # reasoning, as in xAI's reasoning examples).
    if reasoning and int(u.get("total_tokens") or 0) >= prompt + completion + reasoning:
        completion += reasoning
    cached = int((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return Result(
        rid,
        RowStatus.SUCCEEDED,
        text=message.get("content") or message.get("refusal") or "",
        usage=Usage(prompt, cached, 0, completion),
        stop_reason=first.get("finish_reason"),
    )


def _chunks(lines: list[bytes], model: str) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if len(line) + 64 > MAX_ADD_BYTES:
            raise ProviderError(
                f"xai: a request of {model} is {len(line)} bytes, over the 25 MB "
                "an add call may carry",
                rejects_request=True,
            )
        if chunk and size + len(line) + 1 > MAX_ADD_BYTES:
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        yield chunk


def _batch_id(answer: Any) -> str:
    got = answer.get("batch_id") if isinstance(answer, dict) else None
    if isinstance(got, str) and got:
        return got
    raise ProviderError(
        "xai create batch: the answer has no batch_id — the batch may exist; it "
        "is looked up by its name before anything is sent again",
        retryable=True,
    )


def _seconds(stamp: Any) -> float | None:
    """A protobuf Timestamp as REST gives it (RFC 3339 text, or {seconds, nanos}), in seconds."""
    try:
        if isinstance(stamp, str):
            return datetime.fromisoformat(stamp).timestamp()
        if isinstance(stamp, dict):
            return float(stamp.get("seconds") or 0)
        if isinstance(stamp, (int, float)):
            return float(stamp)
    except ValueError:
        pass
    return None


def _translate(exc: BaseException) -> Failure | None:
    import httpx2

    if isinstance(exc, httpx2.HTTPStatusError):
        status = exc.response.status_code
        try:
            body = jsonl.loads(exc.response.content)
        except ValueError:
            body = None
        msg = None
        if isinstance(body, dict):  # xAI answers {"code": ..., "error": "<words>"}
            err = body.get("error")
            msg = err.get("message") if isinstance(err, dict) else err
            msg = msg or body.get("message") or body.get("code")
        return Failure(
            f"HTTP {status}: {msg or exc.response.reason_phrase}",
            retryable=status in (408, 409, 429) or status >= 500,
            rejects_request=status in REJECTS,
        )
    if isinstance(exc, httpx2.TransportError):
        return Failure(f"cannot connect ({exc})", retryable=True)
    return None


_errors = functools.partial(sdk_errors, _translate)
