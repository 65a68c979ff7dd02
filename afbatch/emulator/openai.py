"""OpenAI Files + Batch API (``/v1/files``, ``/v1/batches``) for chat-completions batches."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any

from .batches import Job, Outcome, Row, openai_finish_reason, rand_id, run_rows, shuffled, text_of
from .responders import CallContext
from .web import Reject, Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

DAY = 24 * 3600
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
CHAT_PARAMS = frozenset(
    "audio frequency_penalty function_call functions logit_bias logprobs max_completion_tokens max_tokens "
    "messages metadata modalities model moderation n parallel_tool_calls prediction presence_penalty "
    "prompt_cache_key prompt_cache_options prompt_cache_retention reasoning_effort response_format "
    "safety_identifier seed service_tier stop store stream stream_options temperature tool_choice tools "
    "top_logprobs top_p user verbosity web_search_options".split()
)
ROLES = ("system", "developer", "user", "assistant")
# (HTTP status, error.type, error.code) per RowError kind
ROW_ERRORS = {
    "invalid_request": (400, "invalid_request_error", None),
    "rate_limit": (429, "requests", "rate_limit_exceeded"),
    "overloaded": (503, "server_error", None),
    "server_error": (500, "server_error", None),
    "auth": (401, "invalid_request_error", "invalid_api_key"),
}
STATUS_ERRORS = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
                 429: "requests"}


def reasoning_model(model: str) -> bool:
    # o-series and GPT-5 family reject ``max_tokens`` (they want ``max_completion_tokens``)
    return model.startswith(("o1", "o3", "o4", "gpt-5"))


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def fail(status: int, message: str, code: str | None = None, param: str | None = None) -> Reject:
    type_ = STATUS_ERRORS.get(status, "server_error")
    return Reject(json_response(error_body(message, type_, code, param), status))


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    expires_at: int | None

    def to_json(self) -> dict:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "expires_at": self.expires_at, "status_details": None}


@dataclass
class OpenAIBatch(Job):
    input_file_id: str = ""
    endpoint: str = ""
    completion_window: str = "24h"
    metadata: dict | None = None
    model: str | None = None
    status: str = "validating"
    times: dict[str, int | None] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict] | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "completed": 0, "failed": 0})
    usage: dict[str, int] = field(default_factory=lambda: {"input": 0, "cached": 0, "output": 0})

    def to_json(self) -> dict:
        u = self.usage
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id, "completion_window": self.completion_window,
            "status": self.status, "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": int(self.created), "expires_at": int(self.created) + DAY,
            **{k: self.times.get(k) for k in ("in_progress_at", "finalizing_at", "completed_at", "failed_at",
                                              "expired_at", "cancelling_at", "cancelled_at")},
            "request_counts": dict(self.counts), "metadata": self.metadata, "model": self.model,
            "usage": {"input_tokens": u["input"], "input_tokens_details": {"cached_tokens": u["cached"]},
                      "output_tokens": u["output"], "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": u["input"] + u["output"]},
        }


class OpenAIService:
    name = "openai"
    # class attributes so tests can lower them
    MAX_UPLOAD_BYTES = 512 * 1024 * 1024
    MAX_FILE_BYTES = 200 * 1024 * 1024
    MAX_REQUESTS = 50_000
    MAX_ERRORS_REPORTED = 1000
    ENDPOINTS = ("/v1/chat/completions",)

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.reset()

    def reset(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, OpenAIBatch] = {}

    def routes(self) -> list[Route]:
        return [
            ("POST", r"/v1/files", self.upload),
            ("GET", r"/v1/files", self.list_files),
            ("GET", r"/v1/files/(?P<file_id>[^/]+)", self.get_file),
            ("DELETE", r"/v1/files/(?P<file_id>[^/]+)", self.delete_file),
            ("GET", r"/v1/files/(?P<file_id>[^/]+)/content", self.file_content),
            ("POST", r"/v1/batches", self.create),
            ("GET", r"/v1/batches", self.list),
            ("GET", r"/v1/batches/(?P<batch_id>[^/]+)", self.retrieve),
            ("POST", r"/v1/batches/(?P<batch_id>[^/]+)/cancel", self.cancel),
        ]

    # ---------------------------------------------------------------- HTTP plumbing

    def error(self, status: int, message: str) -> Response:
        return fail(status, message).response

    def authenticate(self, req: Request) -> Response | None:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return json_response(error_body(
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", "invalid_request_error"), 401)
        return None

    def headers(self) -> dict[str, str]:
        return {"x-request-id": rand_id("req_", 32, "0123456789abcdef")}

    # ---------------------------------------------------------------- files

    def upload(self, req: Request) -> Response:
        fields = parse_multipart(req.headers.get("content-type", ""), req.body)
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if purpose not in FILE_PURPOSES:
            raise fail(400, f"'{purpose}' is not one of {list(FILE_PURPOSES)} - 'purpose'", param="purpose")
        if "file" not in fields:
            raise fail(400, "Missing required parameter: 'file'.", param="file")
        filename, data = fields["file"]
        filename = filename or "upload"
        if len(data) > self.MAX_UPLOAD_BYTES:
            raise fail(400, f"File is too large: {len(data)} bytes (limit {self.MAX_UPLOAD_BYTES}).", param="file")
        if purpose == "batch" and not filename.endswith(".jsonl"):
            raise fail(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
        now = int(time.time())
        seconds = fields.get("expires_after[seconds]", (None, b""))[1].decode("utf-8", "replace")
        expires = now + int(seconds) if seconds.isdigit() else (now + 30 * DAY if purpose == "batch" else None)
        f = StoredFile(rand_id("file-", 22), filename, purpose, data, now, expires)
        with self.emu.lock:
            self.files[f.id] = f
        return json_response(f.to_json())

    def _file(self, file_id: str) -> StoredFile:
        f = self.files.get(file_id)
        if f is None:
            raise fail(404, f"No such File object: {file_id}", param="id")
        return f

    def list_files(self, req: Request) -> Response:
        with self.emu.lock:
            data = [f.to_json() for f in reversed(self.files.values())
                    if req.query.get("purpose") in (None, f.purpose)]
        return json_response({"object": "list", "data": data, "has_more": False,
                              "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None})

    def get_file(self, req: Request, file_id: str) -> Response:
        with self.emu.lock:
            return json_response(self._file(file_id).to_json())

    def delete_file(self, req: Request, file_id: str) -> Response:
        with self.emu.lock:
            self._file(file_id)
            del self.files[file_id]
        return json_response({"id": file_id, "object": "file", "deleted": True})

    def file_content(self, req: Request, file_id: str) -> Response:
        with self.emu.lock:
            f = self._file(file_id)
        return Response(200, f.data, "application/octet-stream")

    # ---------------------------------------------------------------- batches

    def create(self, req: Request) -> Response:
        body = json_object(req)
        for key in body:
            if key not in ("input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"):
                raise fail(400, f"Unrecognized request argument supplied: {key}", param=key)
        for key in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(key), str):
                raise fail(400, f"Missing required parameter: '{key}'.", param=key)
        if body["endpoint"] not in self.ENDPOINTS:
            raise fail(400, f"Invalid value for 'endpoint': {body['endpoint']!r}; the emulator supports "
                            f"{list(self.ENDPOINTS)}.", param="endpoint")
        if body["completion_window"] != "24h":
            raise fail(400, "Invalid value for 'completion_window': only '24h' is supported.",
                       param="completion_window")
        check_metadata(body.get("metadata"))
        check_expires_after(body.get("output_expires_after"))
        with self.emu.lock:
            f = self.files.get(body["input_file_id"])
            if f is None:
                raise fail(400, f"Invalid 'input_file_id': '{body['input_file_id']}'. File does not exist.",
                           param="input_file_id")
            if f.purpose != "batch":
                raise fail(400, "The input file must be uploaded with purpose 'batch'.", param="input_file_id")
            lines = [ln for ln in f.data.splitlines() if ln.strip()]
            model = first_model(lines)
            b = OpenAIBatch(id=rand_id("batch_", 32, "0123456789abcdef"), seq=self.emu.next_seq(),
                            delay_at_creation=self.emu.processing_delay,
                            fault=self.emu.faults.take_batch("openai", model),
                            input_file_id=f.id, endpoint=body["endpoint"], metadata=body.get("metadata"),
                            model=model)
            self.batches[b.id] = b
            self.emu.created.append(("openai", b.id, model, len(lines)))
            return json_response(b.to_json())

    def _batch(self, batch_id: str) -> OpenAIBatch:
        b = self.batches.get(batch_id)
        if b is None:
            raise fail(404, f"No batch found with id '{batch_id}'.", param="batch_id")
        self._advance(b)
        return b

    def retrieve(self, req: Request, batch_id: str) -> Response:
        with self.emu.lock:
            return json_response(self._batch(batch_id).to_json())

    def list(self, req: Request) -> Response:
        limit = int_query(req, "limit", 20, 1, 100)
        with self.emu.lock:
            ordered = sorted(self.batches.values(), key=lambda b: -b.seq)
            after = req.query.get("after")
            if after:
                ids = [b.id for b in ordered]
                ordered = ordered[ids.index(after) + 1:] if after in ids else []
            page = ordered[:limit]
            for b in page:
                self._advance(b)
            data = [b.to_json() for b in page]
        return json_response({"object": "list", "data": data, "has_more": len(ordered) > limit,
                              "first_id": data[0]["id"] if data else None,
                              "last_id": data[-1]["id"] if data else None})

    def cancel(self, req: Request, batch_id: str) -> Response:
        with self.emu.lock:
            b = self._batch(batch_id)
            if b.status in ("completed", "failed", "expired"):
                raise fail(400, f"Cannot cancel a batch with status '{b.status}'.")
            if b.cancel_at is None:
                b.cancel_at = time.time()
                b.cancel_done = b.rows_done_by_now(self.emu, len(self._lines(b)))
                b.status = "cancelling"
                b.times["cancelling_at"] = int(b.cancel_at)
            return json_response(b.to_json())

    # ---------------------------------------------------------------- processing

    def _lines(self, b: OpenAIBatch) -> list[bytes]:
        f = self.files.get(b.input_file_id)
        return [ln for ln in f.data.splitlines() if ln.strip()] if f else []

    def _advance(self, b: OpenAIBatch) -> None:
        """Lazy processing: move the batch on according to the clock (caller holds the lock)."""
        if b.ended:
            return
        if b.cancel_at is None and not b.ready(self.emu):
            if not b.early(self.emu) and b.status == "validating":
                b.status = "in_progress"
                b.times["in_progress_at"] = int(time.time())
                b.counts["total"] = len(self._lines(b))
            return
        b.ended = True
        now = int(time.time())
        rows, errors = self._read_rows(b)
        if not errors and b.fault and b.fault.outcome == "failed":
            errors = [{"code": "token_limit_exceeded", "line": None, "param": None,
                       "message": f"Enqueued token limit reached for {b.model} in organization org-emulator. "
                                  "Please try again once some in_progress batches have been completed."}]
        if errors:
            b.status, b.errors, b.times["failed_at"] = "failed", errors[: self.MAX_ERRORS_REPORTED], now
            b.counts = {"total": 0, "completed": 0, "failed": 0}
            return
        b.times.setdefault("in_progress_at", now)
        limit, stop = None, "expired"
        if b.cancel_at is not None:
            limit, stop = b.cancel_done, "canceled"
        elif b.fault and b.fault.outcome == "expired":
            limit = int(len(rows) * b.fault.fraction_done)
        outcomes = run_rows(self.emu, "openai", rows, limit=limit, stop_status=stop,
                            all_failed=bool(b.fault and b.fault.outcome == "all_failed"))
        self._write_results(b, shuffled(outcomes, b.id, self.emu))
        if b.cancel_at is not None:
            b.status, b.times["cancelled_at"] = "cancelled", now
        elif any(o.status == "expired" for o in outcomes):
            b.status, b.times["expired_at"] = "expired", now
        else:
            b.status, b.times["finalizing_at"], b.times["completed_at"] = "completed", now, now

    def _write_results(self, b: OpenAIBatch, outcomes: list[Outcome]) -> None:
        ok, bad = [], []
        for o in outcomes:
            line = self.emu.faults.render_line("openai", self._line(b, o), ("response", "error"))
            (ok if o.status == "succeeded" else bad).append(line)
            if o.usage:
                b.usage["input"] += o.usage.input
                b.usage["cached"] += o.usage.cache_read
                b.usage["output"] += o.usage.output
        b.counts = {"total": len(outcomes), "completed": len(ok), "failed": len(bad)}
        now = int(time.time())
        if ok:
            f = StoredFile(rand_id("file-", 22), f"batch_{b.id}_output.jsonl", "batch_output",
                           ("\n".join(ok) + "\n").encode(), now, now + 30 * DAY)
            self.files[f.id] = f
            b.output_file_id = f.id
        if bad:
            f = StoredFile(rand_id("file-", 22), f"batch_{b.id}_error.jsonl", "batch_output",
                           ("\n".join(bad) + "\n").encode(), now, now + 30 * DAY)
            self.files[f.id] = f
            b.error_file_id = f.id

    def _line(self, b: OpenAIBatch, o: Outcome) -> dict:
        line: dict[str, Any] = {"id": rand_id("batch_req_", 32, "0123456789abcdef"), "custom_id": o.row.custom_id}
        request_id = rand_id("req_", 32, "0123456789abcdef")
        if o.status == "expired":
            return {**line, "response": None, "error": {
                "code": "batch_expired", "message": "This request could not be executed before the completion "
                                                    "window expired."}}
        if o.status == "canceled":
            return {**line, "response": None, "error": {
                "code": "batch_cancelled", "message": "This request was not executed because the batch was "
                                                      "cancelled."}}
        if o.status == "errored":
            assert o.error is not None
            status, type_, code = ROW_ERRORS[o.error.kind]
            return {**line, "response": {"status_code": status, "request_id": request_id,
                                         "body": error_body(o.error.message, type_, code)}, "error": None}
        assert o.reply is not None and o.usage is not None
        u = o.usage
        body = {
            "id": rand_id("chatcmpl-", 29), "object": "chat.completion", "created": int(time.time()),
            "model": b.model,
            "choices": [{"index": i, "message": {"role": "assistant", "content": r.text, "refusal": None,
                                                  "annotations": []},
                         "logprobs": None, "finish_reason": openai_finish_reason(r.stop_reason)}
                        for i, r in enumerate([o.reply, *o.more])],
            "usage": {"prompt_tokens": u.input, "completion_tokens": u.output, "total_tokens": u.input + u.output,
                      "prompt_tokens_details": {"cached_tokens": u.cache_read, "audio_tokens": 0},
                      "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                                    "accepted_prediction_tokens": 0,
                                                    "rejected_prediction_tokens": 0}},
            "service_tier": "default", "system_fingerprint": None,
        }
        return {**line, "response": {"status_code": 200, "request_id": request_id, "body": body}, "error": None}

    def _read_rows(self, b: OpenAIBatch) -> tuple[list[Row], list[dict]]:
        """Validate the input file as the real service does before running it."""
        f = self.files.get(b.input_file_id)
        data = f.data if f else b""
        if len(data) > self.MAX_FILE_BYTES:
            return [], [batch_error("file_too_large", f"The input file is larger than the "
                                                      f"{self.MAX_FILE_BYTES}-byte limit.")]
        lines = data.split(b"\n")
        while lines and not lines[-1].strip():
            lines.pop()
        if not lines:
            return [], [batch_error("empty_file", "The input file is empty.")]
        if len(lines) > self.MAX_REQUESTS:
            return [], [batch_error("too_many_tasks", f"The input file has {len(lines)} requests; the limit is "
                                                      f"{self.MAX_REQUESTS}.")]
        rows, errors, seen = [], [], set()
        model = None
        for n, raw in enumerate(lines, 1):
            try:
                obj = json.loads(raw)
            except ValueError:
                errors.append(batch_error("invalid_json_line", "This line is not parseable as valid JSON.", n))
                continue
            problem = line_problem(obj, b.endpoint)
            if problem:
                errors.append(batch_error(problem[0], problem[1], n, problem[2]))
                continue
            if obj["custom_id"] in seen:
                errors.append(batch_error("duplicate_custom_id", f"The custom_id '{obj['custom_id']}' is not "
                                                                 "unique within the batch.", n, "custom_id"))
                continue
            seen.add(obj["custom_id"])
            model = model or obj["body"]["model"]
            if obj["body"]["model"] != model:
                errors.append(batch_error("model_mismatch", f"Model '{obj['body']['model']}' differs from "
                                                            f"'{model}': one model per input file.", n, "body.model"))
                continue
            rows.append(self._row(b, obj))
        return rows, errors

    def _row(self, b: OpenAIBatch, obj: dict) -> Row:
        body, cid = obj["body"], obj["custom_id"]
        invalid = body_problem(body)
        if invalid:
            return Row(cid, None, invalid=invalid)
        try:
            system = [text_of(m.get("content"), f"messages.{i}.content") for i, m in enumerate(body["messages"])
                      if m["role"] in ("system", "developer")]
            messages = [{"role": m["role"], "content": text_of(m.get("content"), f"messages.{i}.content")}
                        for i, m in enumerate(body["messages"]) if m["role"] not in ("system", "developer")]
        except ValueError as exc:
            return Row(cid, None, invalid=str(exc))
        params = {k: v for k, v in body.items() if k not in ("model", "messages")}
        ctx = CallContext("openai", body["model"], cid, "\n\n".join(system) if system else None, messages, None,
                          params, b.id)
        return Row(cid, ctx, cache_marked="prompt_cache_key" in body, source=obj)


# ---------------------------------------------------------------- validation helpers


def batch_error(code: str, message: str, line: int | None = None, param: str | None = None) -> dict:
    return {"code": code, "message": message, "line": line, "param": param}


def line_problem(obj: Any, endpoint: str) -> tuple[str, str, str | None] | None:
    """Structural problems that fail the whole batch: (code, message, param)."""
    if not isinstance(obj, dict):
        return "invalid_json_line", "Each line must be a JSON object.", None
    for key in ("custom_id", "method", "url", "body"):
        if key not in obj:
            return "missing_required_parameter", f"Missing required parameter: '{key}'.", key
    extra = sorted(set(obj) - {"custom_id", "method", "url", "body"})
    if extra:
        return "invalid_request", f"Unrecognized field(s) in request line: {extra}.", extra[0]
    if not isinstance(obj["custom_id"], str) or not obj["custom_id"]:
        return "invalid_request", "custom_id must be a non-empty string.", "custom_id"
    if obj["method"] != "POST":
        return "invalid_request", f"Invalid method '{obj['method']}': only POST is supported.", "method"
    if obj["url"] != endpoint:
        return "url_mismatch", f"The url '{obj['url']}' does not match the batch endpoint '{endpoint}'.", "url"
    body = obj["body"]
    if not isinstance(body, dict):
        return "invalid_request", "body must be a JSON object.", "body"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "missing_required_parameter", "Missing required parameter: 'body.model'.", "body.model"
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "invalid_request", "body.messages must be a non-empty array.", "body.messages"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            return "invalid_request", f"body.messages[{i}].role must be one of {list(ROLES)}.", "body.messages"
    return None


def body_problem(body: dict) -> str | None:
    """Parameter problems the real API answers with a 400 for that row only."""
    for key in body:
        if key not in CHAT_PARAMS:
            return f"Unrecognized request argument supplied: {key}"
    if body.get("stream"):
        return "Streaming is not supported in the Batch API."
    if "max_tokens" in body and reasoning_model(body["model"]):
        return ("Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.")
    for key in ("max_tokens", "max_completion_tokens"):
        if key in body and (type(body[key]) is not int or body[key] < 1):
            return f"Invalid '{key}': must be an integer >= 1."
    for key, hi in (("temperature", 2), ("top_p", 1)):
        v = body.get(key)
        if v is not None and (type(v) not in (int, float) or not 0 <= v <= hi):
            return f"Invalid '{key}': must be a number between 0 and {hi}."
    n = body.get("n", 1)
    if type(n) is not int or not 1 <= n <= 128:
        return "Invalid 'n': must be an integer between 1 and 128."
    return None


def check_metadata(md: Any) -> None:
    if md is None:
        return
    if not isinstance(md, dict):
        raise fail(400, "Invalid type for 'metadata': expected an object.", param="metadata")
    if len(md) > 16:
        raise fail(400, "Invalid 'metadata': too many keys (maximum 16).", param="metadata")
    for k, v in md.items():
        if len(k) > 64:
            raise fail(400, f"Invalid 'metadata': key '{k[:20]}...' is longer than 64 characters.", param="metadata")
        if not isinstance(v, str) or len(v) > 512:
            raise fail(400, f"Invalid 'metadata': value for '{k}' must be a string of at most 512 characters.",
                       param="metadata")


def check_expires_after(ea: Any) -> None:
    if ea is None:
        return
    if (not isinstance(ea, dict) or ea.get("anchor") != "created_at" or type(ea.get("seconds")) is not int
            or not 3600 <= ea["seconds"] <= 30 * DAY):
        raise fail(400, "Invalid 'output_expires_after': anchor must be 'created_at' and seconds within "
                        "[3600, 2592000].", param="output_expires_after")


def first_model(lines: list[bytes]) -> str | None:
    try:
        model = json.loads(lines[0])["body"]["model"]
        return model if isinstance(model, str) else None
    except (ValueError, LookupError, TypeError):
        return None


def json_object(req: Request) -> dict:
    try:
        body = req.json()
    except ValueError:
        raise fail(400, "We could not parse the JSON body of your request.") from None
    if not isinstance(body, dict):
        raise fail(400, "The request body must be a JSON object.")
    return body


def int_query(req: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = req.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise fail(400, f"Invalid '{name}': must be an integer between {lo} and {hi}.", param=name)
    return int(raw)


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``multipart/form-data`` → {field: (filename, bytes)}; exact bytes, unlike the email parser."""
    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str):
        raise fail(400, "Expected a multipart/form-data body.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition["content-disposition"] = value.strip()
        field_name = disposition.get_param("name", header="content-disposition")
        if isinstance(field_name, str):
            fields[field_name] = (disposition.get_filename(), data.removesuffix(b"\r\n"))
    return fields
