"""Gemini API batch mode: the Files API's resumable upload, ``models/{m}:batchGenerateContent``,
``batches`` get/list/cancel/delete, and the download of the results file.

Mounted under ``/gemini`` (``GOOGLE_GEMINI_BASE_URL`` = ``<emulator>/gemini``), answering the API
versions the SDK may use. The shapes are what ``google-genai`` sends and reads (its
``batches.py``, ``files.py`` and ``_api_client.py``): the batch resource comes back as an operation
``{name: "batches/<id>", metadata: {displayName, state: BATCH_STATE_*, output: {responsesFile}}}``;
a file upload is a ``start`` call answered with ``x-goog-upload-url``, then chunks with
``X-Goog-Upload-Offset``, the last one ``upload, finalize``.

Strictness: an unknown or malformed line (not JSON, no ``key``, a duplicate key) refuses the batch
at create (HTTP 400); a request the API would refuse (unknown field, a role other than user/model,
a trailing ``model`` turn, an out-of-range parameter) gets an error line of its own.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .batches import Row, rand_id, run_rows, shuffled
from .gemini_http import fail
from .gemini_lines import context, inline_result, request_problem, result_line
from .gemini_records import GeminiBatch, GeminiFile
from .web import Reject, Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

PREFIX = "/gemini"
VERSION = r"(?P<version>v1|v1beta|v1alpha)"
LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"  # ids of files and batches
MODEL = re.compile(r"(gemini|gemma)-[a-z0-9.-]+")


class GeminiService:
    name = "gemini"
    MAX_FILE_BYTES = 2 * 1024**3  # the Files API's 2 GB per batch input file
    MAX_INLINE_BYTES = 20 * 1024**2  # a create call with its requests inline

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.reset()

    def reset(self) -> None:
        self.files: dict[str, GeminiFile] = {}  # by "files/<id>"
        self.uploads: dict[str, GeminiFile] = {}  # resumable sessions by upload_id
        self.batches: dict[str, GeminiBatch] = {}  # by id (the name is "batches/<id>")

    def routes(self) -> list[Route]:
        v = PREFIX + "/" + VERSION
        batch = v + r"/batches/(?P<batch_id>[^/:]+)"
        return [
            ("POST", PREFIX + r"/upload/" + VERSION + r"/files", self.upload),
            ("GET", v + r"/files/(?P<file_id>[^/:]+)", self.get_file),
            ("GET", v + r"/files/(?P<file_id>[^/:]+):download", self.download),
            ("POST", v + r"/models/(?P<model>[^/:]+):batchGenerateContent", self.create),
            ("GET", v + r"/batches", self.list),
            ("GET", batch, self.get),
            ("DELETE", batch, self.delete),
            ("POST", batch + ":cancel", self.cancel),
        ]

    def error(self, status: int, message: str) -> Response:
        return fail(status, message).response

    def authenticate(self, req: Request) -> Response | None:
        if "upload_id" in req.query:  # a resumable session's URL is its own credential
            return None
        if not req.headers.get("x-goog-api-key"):
            return self.error(
                401,
                "Method doesn't allow unregistered callers (callers without "
                "established identity). Please use API Key or other form of "
                "API consumer identity to call this API.",
            )
        return None

    def headers(self) -> dict[str, str]:
        return {"x-goog-request-id": rand_id("", 16, "0123456789abcdef")}

    # ---------------------------------------------------------------- files

    def upload(self, req: Request, version: str) -> Response:
        upload_id = req.query.get("upload_id")
        if upload_id is None:
            return self._start(req, version)
        with self.emu.lock:
            f = self.uploads.get(upload_id)
            if f is None:
                raise fail(404, f"No upload session {upload_id}.")
            command = req.headers.get("x-goog-upload-command", "")
            offset = req.headers.get("x-goog-upload-offset", "")
            if "upload" not in command or offset != str(len(f.data)):
                raise fail(
                    400,
                    f"Upload offset {offset!r} does not match the {len(f.data)} bytes received.",
                )
            f.data += req.body
            if len(f.data) > f.size:
                del self.uploads[upload_id]
                raise fail(400, f"Received {len(f.data)} bytes, more than the {f.size} declared.")
            if "finalize" not in command:
                return Response(200, b"", headers={"x-goog-upload-status": "active"})
            if len(f.data) != f.size:
                raise fail(400, f"Finalized at {len(f.data)} of {f.size} declared bytes.")
            del self.uploads[upload_id]
            f.done = True
            self.files[f.name] = f
            return json_response({"file": f.to_json()}, headers={"x-goog-upload-status": "final"})

    def _start(self, req: Request, version: str) -> Response:
        h = req.headers
        protocol = (h.get("x-goog-upload-protocol"), h.get("x-goog-upload-command"))
        if protocol != ("resumable", "start"):
            raise fail(400, "Only the resumable upload protocol is supported here.")
        size = h.get("x-goog-upload-header-content-length", "")
        if not size.isdigit():
            raise fail(400, "X-Goog-Upload-Header-Content-Length is required.")
        if int(size) > self.MAX_FILE_BYTES:
            raise fail(400, f"File size {size} exceeds the {self.MAX_FILE_BYTES}-byte limit.")
        try:
            meta = (req.json() or {}).get("file") or {} if req.body else {}
        except ValueError:
            raise fail(400, "Invalid JSON payload received.") from None
        mime = h.get("x-goog-upload-header-content-type") or meta.get("mime_type") or ""
        if not mime:
            raise fail(400, "The file's mime type is required.")
        upload_id = rand_id("", 32)
        name = meta.get("name") or f"files/{rand_id('', 12, LOWER)}"
        with self.emu.lock:
            if name in self.files:
                raise Reject(
                    json_response(
                        {
                            "error": {
                                "code": 409,
                                "status": "ALREADY_EXISTS",
                                "message": f"{name} already exists.",
                            }
                        },
                        409,
                    )
                )
            self.uploads[upload_id] = GeminiFile(name, meta.get("display_name"), mime, int(size))
        url = f"{req.base_url}{PREFIX}/upload/{version}/files?upload_id={upload_id}"
        return Response(
            200, b"", headers={"x-goog-upload-url": url, "x-goog-upload-status": "active"}
        )

    def _file(self, file_id: str) -> GeminiFile:
        f = self.files.get(f"files/{file_id}")
        if f is None:
            raise fail(
                403, f"You do not have permission to access the File {file_id} or it may not exist."
            )
        return f

    def get_file(self, req: Request, version: str, file_id: str) -> Response:
        with self.emu.lock:
            return json_response(self._file(file_id).to_json())

    def download(self, req: Request, version: str, file_id: str) -> Response:
        with self.emu.lock:
            f = self._file(file_id)
            if not f.generated:
                raise fail(400, "Only generated files can be downloaded.")
            return Response(200, bytes(f.data), "application/octet-stream")

    # ---------------------------------------------------------------- batches

    def create(self, req: Request, version: str, model: str) -> Response:
        if not MODEL.fullmatch(model):
            raise fail(
                404,
                f"models/{model} is not found for API version {version}, or is not "
                "supported for batchGenerateContent.",
            )
        try:
            body = req.json()
        except ValueError:
            raise fail(400, "Invalid JSON payload received.") from None
        batch = body.get("batch") if isinstance(body, dict) else None
        batch = batch if isinstance(batch, dict) else {}
        source = batch.get("inputConfig")
        if not isinstance(source, dict) or set(source) not in ({"fileName"}, {"requests"}):
            raise fail(400, "batch.input_config: exactly one of file_name or requests is required.")
        if len(req.body) > self.MAX_INLINE_BYTES:
            raise fail(
                400, f"Request payload size exceeds the limit: {self.MAX_INLINE_BYTES} bytes."
            )
        with self.emu.lock:
            if "requests" in source:
                rows, inline = self._inline_rows(source["requests"], model), True
            else:
                f = self.files.get(str(source["fileName"]))
                if f is None or f.generated:
                    raise fail(404, f"File {source['fileName']} not found.")
                rows, inline = self._rows(bytes(f.data), model), False
            b = GeminiBatch(
                inline=inline,
                id=rand_id("", 24, LOWER),
                seq=self.emu.next_seq(),
                delay_at_creation=self.emu.processing_delay,
                fault=self.emu.faults.take_batch("gemini", model),
                model=model,
                display_name=batch.get("displayName"),
                rows=rows,
            )
            for r in rows:
                if r.ctx is not None:
                    r.ctx = replace(r.ctx, batch_id=b.id)
            self.batches[b.id] = b
            self.emu.created.append(("gemini", f"batches/{b.id}", model, len(rows)))
            return json_response(b.to_json())

    def _rows(self, data: bytes, model: str) -> list[Row]:
        rows, seen = [], set()
        lines = [ln for ln in data.split(b"\n") if ln.strip()]
        if not lines:
            raise fail(400, "The input file is empty.")
        for n, raw in enumerate(lines, 1):
            try:
                obj = json.loads(raw)
            except ValueError:
                raise fail(400, f"Line {n} of the input file is not valid JSON.") from None
            if not isinstance(obj, dict) or set(obj) != {"key", "request"}:
                raise fail(400, f'Line {n}: each line must be {{"key": ..., "request": ...}}.')
            key = obj["key"]
            if not isinstance(key, str) or not key:
                raise fail(400, f"Line {n}: key must be a non-empty string.")
            if key in seen:
                raise fail(400, f"Line {n}: duplicate key {key!r}.")
            seen.add(key)
            problem = request_problem(obj["request"])
            rows.append(
                Row(key, None, invalid=problem)
                if problem
                else Row(key, context(model, key, obj["request"]), cache_marked=True)
            )
        return rows

    def _inline_rows(self, requests: Any, model: str) -> list[Row]:
        """Inline requests: `{request, metadata}` each; a row is named by its metadata's `key`
        (afbatch's), else by its position (the API needs no key: metadata is the caller's)."""
        items = requests.get("requests") if isinstance(requests, dict) else None
        if not isinstance(items, list) or not items:
            raise fail(400, "batch.input_config.requests.requests: a non-empty list is required.")
        rows = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not set(item) <= {"request", "metadata"}:
                raise fail(400, f"requests[{i}]: only request and metadata are allowed.")
            metadata = item.get("metadata") or {}
            key = str(metadata.get("key") or f"#{i}")
            body = item.get("request")
            problem = request_problem(body)
            if problem or not isinstance(body, dict):
                row = Row(key, None, invalid=problem)
            else:
                row = Row(key, context(model, key, body), cache_marked=True)
            row.source = metadata
            rows.append(row)
        return rows

    def _batch(self, batch_id: str) -> GeminiBatch:
        b = self.batches.get(batch_id)
        if b is None:
            raise fail(404, f"Batch batches/{batch_id} not found.")
        self._advance(b)
        return b

    def get(self, req: Request, version: str, batch_id: str) -> Response:
        with self.emu.lock:
            return json_response(self._batch(batch_id).to_json())

    def list(self, req: Request, version: str) -> Response:
        size = req.query.get("pageSize", "50")
        if not size.isdigit() or not 1 <= int(size) <= 1000:
            raise fail(400, "pageSize must be between 1 and 1000.")
        start = int(req.query.get("pageToken") or 0)
        with self.emu.lock:
            ordered = sorted(self.batches.values(), key=lambda b: -b.seq)  # newest first
            page = ordered[start : start + int(size)]
            for b in page:
                self._advance(b)
            out: dict[str, Any] = {"operations": [b.to_json() for b in page]}
            if start + int(size) < len(ordered):
                out["nextPageToken"] = str(start + int(size))
        return json_response(out)

    def cancel(self, req: Request, version: str, batch_id: str) -> Response:
        with self.emu.lock:
            b = self._batch(batch_id)
            if not b.ended and b.cancel_at is None:
                b.cancel_at = time.time()
                b.cancel_done = b.rows_done_by_now(self.emu, len(b.rows))
                b.state = "BATCH_STATE_CANCELLING"
        return json_response({})

    def delete(self, req: Request, version: str, batch_id: str) -> Response:
        with self.emu.lock:
            b = self._batch(batch_id)
            if not b.ended:
                raise fail(400, f"Batch batches/{batch_id} is still running; cancel it first.")
            del self.batches[batch_id]
        return json_response({})

    # ---------------------------------------------------------------- processing

    def _advance(self, b: GeminiBatch) -> None:
        if b.ended:
            return
        if b.cancel_at is None and not b.ready(self.emu):
            if not b.early(self.emu):
                b.state = "BATCH_STATE_RUNNING"
            return
        b.ended, b.ended_at = True, time.time()
        fault = b.fault.outcome if b.fault else None
        if fault == "failed" and b.cancel_at is None:
            b.state = "BATCH_STATE_FAILED"
            return
        limit = b.cancel_done if b.cancel_at is not None else None
        if fault == "expired" and b.fault is not None and limit is None:
            limit = int(len(b.rows) * b.fault.fraction_done)
        outcomes = run_rows(
            self.emu, "gemini", b.rows, limit=limit, all_failed=fault == "all_failed"
        )
        done = [o for o in outcomes if o.status in ("succeeded", "errored")]
        b.stats = {
            "pendingRequestCount": 0,
            "successfulRequestCount": sum(o.status == "succeeded" for o in done),
            "failedRequestCount": sum(o.status == "errored" for o in done),
        }
        b.state = (
            "BATCH_STATE_CANCELLED"
            if b.cancel_at is not None
            else "BATCH_STATE_EXPIRED"
            if len(done) < len(outcomes)
            else "BATCH_STATE_SUCCEEDED"
        )
        if b.inline:  # in input order, each with its request's metadata
            b.inline_results = [inline_result(b.model, o) for o in done]
            return
        render = self.emu.faults.render_line
        lines = [
            render("gemini", result_line(b.model, o), ("response", "status"))
            for o in shuffled(done, b.id, self.emu)
        ]
        if done:
            out = GeminiFile(
                f"files/batch-{b.id}", None, "application/jsonl", 0, generated=True, done=True
            )
            out.data += "".join(line + "\n" for line in lines).encode()
            out.size = len(out.data)
            self.files[out.name] = out
            b.output_file = out.name
