"""OpenAI Files + Batch API (``/v1/files``, ``/v1/batches``) for chat-completions batches."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .batches import Outcome, Row, rand_id, run_rows, shuffled
from .openai_http import error_body, fail, int_query, json_object, parse_multipart
from .openai_input import check_expires_after, check_metadata, first_model, read_rows
from .openai_output import result_line
from .openai_records import DAY, OpenAIBatch, StoredFile
from .web import Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


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
            ("GET", r"/v1/batches", self.list_batches),
            ("GET", r"/v1/batches/(?P<batch_id>[^/]+)", self.retrieve),
            ("POST", r"/v1/batches/(?P<batch_id>[^/]+)/cancel", self.cancel),
        ]

    # ---------------------------------------------------------------- HTTP plumbing

    def error(self, status: int, message: str) -> Response:
        return fail(status, message).response

    def authenticate(self, req: Request) -> Response | None:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return json_response(
                error_body(
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                ),
                401,
            )
        return None

    def headers(self) -> dict[str, str]:
        return {"x-request-id": rand_id("req_", 32, "0123456789abcdef")}

    # ---------------------------------------------------------------- files

    def upload(self, req: Request) -> Response:
        fields = parse_multipart(req.headers.get("content-type", ""), req.body)
        purpose = fields.get("purpose", (None, b""))[1].decode("utf-8", "replace")
        if purpose not in FILE_PURPOSES:
            raise fail(
                400, f"'{purpose}' is not one of {list(FILE_PURPOSES)} - 'purpose'", param="purpose"
            )
        if "file" not in fields:
            raise fail(400, "Missing required parameter: 'file'.", param="file")
        filename, data = fields["file"]
        filename = filename or "upload"
        if len(data) > self.MAX_UPLOAD_BYTES:
            raise fail(
                400,
                f"File is too large: {len(data)} bytes (limit {self.MAX_UPLOAD_BYTES}).",
                param="file",
            )
        if purpose == "batch" and not filename.endswith(".jsonl"):
            raise fail(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
        now = int(time.time())
        seconds = fields.get("expires_after[seconds]", (None, b""))[1].decode("utf-8", "replace")
        default = now + 30 * DAY if purpose == "batch" else None
        expires = now + int(seconds) if seconds.isdigit() else default
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
            data = [
                f.to_json()
                for f in reversed(self.files.values())
                if req.query.get("purpose") in (None, f.purpose)
            ]
        return json_response(
            {
                "object": "list",
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

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
            if key not in (
                "input_file_id",
                "endpoint",
                "completion_window",
                "metadata",
                "output_expires_after",
            ):
                raise fail(400, f"Unrecognized request argument supplied: {key}", param=key)
        for key in ("input_file_id", "endpoint", "completion_window"):
            if not isinstance(body.get(key), str):
                raise fail(400, f"Missing required parameter: '{key}'.", param=key)
        if body["endpoint"] not in self.ENDPOINTS:
            raise fail(
                400,
                f"Invalid value for 'endpoint': {body['endpoint']!r}; the emulator "
                f"supports {list(self.ENDPOINTS)}.",
                param="endpoint",
            )
        if body["completion_window"] != "24h":
            raise fail(
                400,
                "Invalid value for 'completion_window': only '24h' is supported.",
                param="completion_window",
            )
        check_metadata(body.get("metadata"))
        check_expires_after(body.get("output_expires_after"))
        with self.emu.lock:
            f = self.files.get(body["input_file_id"])
            if f is None:
                raise fail(
                    400,
                    f"Invalid 'input_file_id': '{body['input_file_id']}'. File does not exist.",
                    param="input_file_id",
                )
            if f.purpose != "batch":
                raise fail(
                    400,
                    "The input file must be uploaded with purpose 'batch'.",
                    param="input_file_id",
                )
            lines = [ln for ln in f.data.splitlines() if ln.strip()]
            model = first_model(lines)
            b = OpenAIBatch(
                id=rand_id("batch_", 32, "0123456789abcdef"),
                seq=self.emu.next_seq(),
                delay_at_creation=self.emu.processing_delay,
                fault=self.emu.faults.take_batch("openai", model),
                input_file_id=f.id,
                endpoint=body["endpoint"],
                metadata=body.get("metadata"),
                model=model,
            )
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

    def list_batches(self, req: Request) -> Response:
        limit = int_query(req, "limit", 20, 1, 100)
        with self.emu.lock:
            ordered = sorted(self.batches.values(), key=lambda b: -b.seq)
            after = req.query.get("after")
            if after:
                ids = [b.id for b in ordered]
                ordered = ordered[ids.index(after) + 1 :] if after in ids else []
            page = ordered[:limit]
            for b in page:
                self._advance(b)
            data = [b.to_json() for b in page]
        return json_response(
            {
                "object": "list",
                "data": data,
                "has_more": len(ordered) > limit,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

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
            errors = [
                {
                    "code": "token_limit_exceeded",
                    "line": None,
                    "param": None,
                    "message": f"Enqueued token limit reached for {b.model} in organization "
                    "org-emulator. Please try again once some in_progress batches "
                    "have been completed.",
                }
            ]
        if errors:
            b.status, b.times["failed_at"] = "failed", now
            b.errors = errors[: self.MAX_ERRORS_REPORTED]
            b.counts = {"total": 0, "completed": 0, "failed": 0}
            return
        b.times.setdefault("in_progress_at", now)
        limit, stop = None, "expired"
        if b.cancel_at is not None:
            limit, stop = b.cancel_done, "canceled"
        elif b.fault and b.fault.outcome == "expired":
            limit = int(len(rows) * b.fault.fraction_done)
        outcomes = run_rows(
            self.emu,
            "openai",
            rows,
            limit=limit,
            stop_status=stop,
            all_failed=bool(b.fault and b.fault.outcome == "all_failed"),
        )
        self._write_results(b, shuffled(outcomes, b.id, self.emu))
        if b.cancel_at is not None:
            b.status, b.times["cancelled_at"] = "cancelled", now
        elif any(o.status == "expired" for o in outcomes):
            b.status, b.times["expired_at"] = "expired", now
        else:
            b.status, b.times["finalizing_at"], b.times["completed_at"] = "completed", now, now

    def _write_results(self, b: OpenAIBatch, outcomes: list[Outcome]) -> None:
        ok: list[str] = []
        bad: list[str] = []
        for o in outcomes:
            line = self.emu.faults.render_line(
                "openai", result_line(b.model, o), ("response", "error")
            )
            (ok if o.status == "succeeded" else bad).append(line)
            if o.usage:
                b.usage["input"] += o.usage.input
                b.usage["cached"] += o.usage.cache_read
                b.usage["output"] += o.usage.output
        b.counts = {"total": len(outcomes), "completed": len(ok), "failed": len(bad)}
        now = int(time.time())
        if ok:
            f = StoredFile(
                rand_id("file-", 22),
                f"batch_{b.id}_output.jsonl",
                "batch_output",
                ("\n".join(ok) + "\n").encode(),
                now,
                now + 30 * DAY,
            )
            self.files[f.id] = f
            b.output_file_id = f.id
        if bad:
            f = StoredFile(
                rand_id("file-", 22),
                f"batch_{b.id}_error.jsonl",
                "batch_output",
                ("\n".join(bad) + "\n").encode(),
                now,
                now + 30 * DAY,
            )
            self.files[f.id] = f
            b.error_file_id = f.id

    def _read_rows(self, b: OpenAIBatch) -> tuple[list[Row], list[dict[str, Any]]]:
        f = self.files.get(b.input_file_id)
        return read_rows(
            f.data if f else b"", b.id, b.endpoint, self.MAX_FILE_BYTES, self.MAX_REQUESTS
        )
