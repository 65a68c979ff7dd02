"""Mistral Files + batch jobs (``/mistral/v1/files``, ``/mistral/v1/batch/jobs``), mounted under
``/mistral`` so that its ``/v1/files`` does not clash with OpenAI's; the SDK reaches it through
its ``server_url`` (afbatch: ``MISTRAL_BASE_URL``).

Shapes follow the mistralai SDK's models (BatchJob, ListBatchJobsResponse, CreateFileResponse).
A trailing assistant message needs ``"prefix": true`` and the answer starts with that prefix, as
Mistral's chat API does. Rows a job never ran (timed out, cancelled) get no line. The lines read
and written are mistral_lines.py's.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .batches import Job, Outcome, Row, run_rows, shuffled
from .mistral_lines import error_body, read_rows, result_line
from .openai_http import parse_multipart
from .web import Reject, Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

PREFIX = "/mistral"
ENDPOINTS = ("/v1/chat/completions",)
# Model ids the emulated API knows (by family prefix); anything else is an unknown model.
MODEL_PREFIXES = (
    "mistral-",
    "magistral-",
    "ministral-",
    "codestral-",
    "devstral-",
    "open-",
    "pixtral-",
)


def fail(status: int, message: str) -> Reject:
    type_ = "invalid_request_error" if status < 500 else "internal_server_error"
    return Reject(json_response(error_body(message, type_), status))


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    sample_type: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "sample_type": self.sample_type,
            "source": "upload",
            "num_lines": len(self.data.splitlines()),
            "mimetype": "application/jsonl",
        }


@dataclass
class MistralJob(Job):
    input_files: list[str] = field(default_factory=list)
    endpoint: str = ""
    model: str = ""
    metadata: dict[str, str] | None = None
    timeout_hours: int = 24
    status: str = "QUEUED"
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file: str | None = None
    error_file: str | None = None
    started_at: int | None = None
    completed_at: int | None = None
    counts: dict[str, int] = field(default_factory=lambda: {"total": 0, "ok": 0, "failed": 0})

    def to_json(self) -> dict[str, Any]:
        c = self.counts
        return {
            "id": self.id,
            "object": "batch",
            "input_files": self.input_files,
            "metadata": self.metadata,
            "endpoint": self.endpoint,
            "model": self.model,
            "agent_id": None,
            "output_file": self.output_file,
            "error_file": self.error_file,
            "errors": self.errors,
            "outputs": None,
            "status": self.status,
            "created_at": int(self.created),
            "total_requests": c["total"],
            "completed_requests": c["ok"] + c["failed"],
            "succeeded_requests": c["ok"],
            "failed_requests": c["failed"],
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }


class MistralService:
    name = "mistral"
    # class attributes so tests can lower them
    MAX_FILE_BYTES = 512 * 1024 * 1024
    MAX_REQUESTS = 1_000_000

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.reset()

    def reset(self) -> None:
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, MistralJob] = {}

    def routes(self) -> list[Route]:
        p = PREFIX
        return [
            ("POST", p + r"/v1/files", self.upload),
            ("GET", p + r"/v1/files/(?P<file_id>[^/]+)", self.get_file),
            ("GET", p + r"/v1/files/(?P<file_id>[^/]+)/content", self.file_content),
            ("POST", p + r"/v1/batch/jobs", self.create),
            ("GET", p + r"/v1/batch/jobs", self.list_jobs),
            ("GET", p + r"/v1/batch/jobs/(?P<job_id>[^/]+)", self.get),
            ("POST", p + r"/v1/batch/jobs/(?P<job_id>[^/]+)/cancel", self.cancel),
        ]

    # ---------------------------------------------------------------- HTTP plumbing

    def error(self, status: int, message: str) -> Response:
        return fail(status, message).response

    def authenticate(self, req: Request) -> Response | None:
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return json_response({"message": "Unauthorized", "request_id": uuid.uuid4().hex}, 401)
        return None

    def headers(self) -> dict[str, str]:
        return {"x-request-id": uuid.uuid4().hex}

    # ---------------------------------------------------------------- files

    def upload(self, req: Request) -> Response:
        fields = parse_multipart(req.headers.get("content-type", ""), req.body)
        purpose = fields.get("purpose", (None, b"fine-tune"))[1].decode("utf-8", "replace")
        if purpose not in ("fine-tune", "batch", "ocr", "agentic_safety"):
            raise fail(422, f"Input should be 'fine-tune', 'batch' or 'ocr': {purpose!r}")
        if "file" not in fields:
            raise fail(422, "Field required: file")
        filename, data = fields["file"]
        if len(data) > self.MAX_FILE_BYTES:
            raise fail(413, f"File is too large: {len(data)} bytes (limit {self.MAX_FILE_BYTES}).")
        sample = "batch_request" if purpose == "batch" else "instruct"
        f = StoredFile(
            str(uuid.uuid4()), filename or "upload.jsonl", purpose, data, int(time.time()), sample
        )
        with self.emu.lock:
            self.files[f.id] = f
        return json_response(f.to_json())

    def _file(self, file_id: str) -> StoredFile:
        f = self.files.get(file_id)
        if f is None:
            raise fail(404, f"File {file_id} not found")
        return f

    def get_file(self, req: Request, file_id: str) -> Response:
        with self.emu.lock:
            return json_response(self._file(file_id).to_json())

    def file_content(self, req: Request, file_id: str) -> Response:
        with self.emu.lock:
            f = self._file(file_id)
        return Response(200, f.data, "application/octet-stream")

    # ---------------------------------------------------------------- jobs

    def create(self, req: Request) -> Response:
        body = _json_object(req)
        unknown = sorted(
            set(body)
            - {
                "input_files",
                "requests",
                "endpoint",
                "model",
                "agent_id",
                "metadata",
                "timeout_hours",
            }
        )
        if unknown:
            raise fail(422, f"Extra inputs are not permitted: {unknown[0]}")
        if body.get("endpoint") not in ENDPOINTS:
            raise fail(422, f"Unsupported endpoint for the emulator: {body.get('endpoint')!r}")
        model = body.get("model")
        if not isinstance(model, str) or not model.startswith(MODEL_PREFIXES):
            raise fail(400, f"Invalid model: {model}")
        files = body.get("input_files")
        if not isinstance(files, list) or not files or body.get("requests"):
            raise fail(422, "The emulator takes input_files (one or more file ids).")
        metadata = body.get("metadata")
        if metadata is not None and (
            not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values())
        ):
            raise fail(422, "metadata must be an object of strings")
        hours = body.get("timeout_hours", 24)
        if type(hours) is not int or not 1 <= hours <= 168:
            raise fail(422, "timeout_hours must be an integer between 1 and 168")
        with self.emu.lock:
            for fid in files:
                f = self.files.get(fid) if isinstance(fid, str) else None
                if f is None:
                    raise fail(404, f"File {fid} not found")
                if f.purpose != "batch":
                    raise fail(400, f"File {fid} was not uploaded with purpose 'batch'")
            job = MistralJob(
                id=str(uuid.uuid4()),
                seq=self.emu.next_seq(),
                delay_at_creation=self.emu.processing_delay,
                fault=self.emu.faults.take_batch("mistral", model),
                input_files=files,
                endpoint=body["endpoint"],
                model=model,
                metadata=metadata,
                timeout_hours=hours,
            )
            self.jobs[job.id] = job
            self.emu.created.append(("mistral", job.id, model, len(self._lines(job))))
            return json_response(job.to_json())

    def _job(self, job_id: str) -> MistralJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise fail(404, f"Batch job {job_id} not found")
        self._advance(job)
        return job

    def get(self, req: Request, job_id: str) -> Response:
        with self.emu.lock:
            return json_response(self._job(job_id).to_json())

    def list_jobs(self, req: Request) -> Response:
        page, size = _int(req, "page", 0), _int(req, "page_size", 100)
        after = req.query.get("created_after")
        since = datetime.fromisoformat(after).timestamp() if after else None
        newest_first = req.query.get("order_by", "-created") == "-created"
        with self.emu.lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j.seq, reverse=newest_first)
            jobs = [j for j in jobs if since is None or j.created >= since]
            chunk = jobs[page * size : (page + 1) * size]
            for j in chunk:
                self._advance(j)
            data = [j.to_json() for j in chunk]
        return json_response({"data": data, "object": "list", "total": len(jobs)})

    def cancel(self, req: Request, job_id: str) -> Response:
        with self.emu.lock:
            job = self._job(job_id)
            if job.ended:
                raise fail(400, f"Batch job {job_id} is already {job.status}")
            if job.cancel_at is None:
                job.cancel_at = time.time()
                job.cancel_done = job.rows_done_by_now(self.emu, len(self._lines(job)))
                job.status = "CANCELLATION_REQUESTED"
            return json_response(job.to_json())

    # ---------------------------------------------------------------- processing

    def _lines(self, job: MistralJob) -> list[bytes]:
        lines: list[bytes] = []
        for fid in job.input_files:
            f = self.files.get(fid)
            lines += [ln for ln in (f.data.splitlines() if f else []) if ln.strip()]
        return lines

    def _advance(self, job: MistralJob) -> None:
        """Lazy processing: move the job on according to the clock (caller holds the lock)."""
        if job.ended:
            return
        if job.cancel_at is None and not job.ready(self.emu):
            if not job.early(self.emu) and job.status == "QUEUED":
                job.status, job.started_at = "RUNNING", int(time.time())
                job.counts["total"] = len(self._lines(job))
            return
        job.ended = True
        now = int(time.time())
        job.started_at = job.started_at or now
        job.completed_at = now
        rows, problem = self._read_rows(job)
        if problem is None and job.fault and job.fault.outcome == "failed":
            problem = "The batch job failed: the emulated service is over capacity."
        if problem is not None:
            job.status, job.errors = "FAILED", [{"message": problem, "count": 1}]
            return
        limit = None
        if job.cancel_at is not None:
            limit = job.cancel_done
        elif job.fault and job.fault.outcome == "expired":
            limit = int(len(rows) * job.fault.fraction_done)
        outcomes = run_rows(
            self.emu,
            "mistral",
            rows,
            limit=limit,
            all_failed=bool(job.fault and job.fault.outcome == "all_failed"),
        )
        self._write_results(job, shuffled(outcomes, job.id, self.emu))
        if job.cancel_at is not None:
            job.status = "CANCELLED"
        elif limit is not None:
            job.status = "TIMEOUT_EXCEEDED"
        else:
            job.status = "SUCCESS"

    def _write_results(self, job: MistralJob, outcomes: list[Outcome]) -> None:
        ok: list[str] = []
        bad: list[str] = []
        for o in outcomes:
            if o.status in ("expired", "canceled"):
                continue  # never ran: no line
            line = self.emu.faults.render_line(
                "mistral", result_line(job.model, o), ("response", "error")
            )
            (ok if o.status == "succeeded" else bad).append(line)
        job.counts = {"total": len(outcomes), "ok": len(ok), "failed": len(bad)}
        now = int(time.time())
        for lines, kind in ((ok, "batch_result"), (bad, "batch_error")):
            if lines:
                f = StoredFile(
                    str(uuid.uuid4()),
                    f"{job.id}_{kind}.jsonl",
                    "batch",
                    ("\n".join(lines) + "\n").encode(),
                    now,
                    kind,
                )
                self.files[f.id] = f
                if kind == "batch_result":
                    job.output_file = f.id
                else:
                    job.error_file = f.id

    def _read_rows(self, job: MistralJob) -> tuple[list[Row], str | None]:
        """Validate the input files as the real service does before running them."""
        lines = self._lines(job)
        if not lines:
            return [], "The input file is empty."
        if sum(len(ln) for ln in lines) > self.MAX_FILE_BYTES or len(lines) > self.MAX_REQUESTS:
            return [], f"Too many requests: {len(lines)} (limit {self.MAX_REQUESTS})."
        return read_rows(lines, job.model, job.id)


def _json_object(req: Request) -> dict[str, Any]:
    try:
        body = req.json()
    except ValueError:
        raise fail(400, "Invalid JSON body") from None
    if not isinstance(body, dict):
        raise fail(422, "The request body must be a JSON object.")
    return body


def _int(req: Request, name: str, default: int) -> int:
    raw = req.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise fail(422, f"{name} must be a non-negative integer")
    return max(int(raw), 1) if name == "page_size" else int(raw)
