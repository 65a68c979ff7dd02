"""Vertex AI batch prediction: ``batchPredictionJobs`` create/get/list/cancel/delete, as
``google-genai`` (vertexai=True) calls them, and an OAuth token endpoint for Application Default
Credentials.

Mounted under ``/vertex`` (``GOOGLE_VERTEX_BASE_URL`` = ``<emulator>/vertex``): paths
``/vertex/<v1|v1beta1>/projects/<p>/locations/<l>/batchPredictionJobs...``. Auth is emulated for
real: ``credentials_file()`` writes an ``external_account_authorized_user`` ADC file whose
``token_url`` is ``/vertex/token`` (google-auth ignores the ``token_uri`` of an ``authorized_user``
file: it always refreshes those at Google), the endpoint trades its refresh token for an access
token, and every Vertex and Cloud Storage call without a token it issued gets 401, as Google's do.

A job reads ``{"request": ...}`` lines (other columns pass through to the output) from a Cloud
Storage object (vertex_gcs.py) and writes ``predictions.jsonl`` (``predictions_<n>.jsonl`` when
longer than ``LINES_PER_FILE``) under ``<dest>/prediction-model-<time>/``. Strictness: an unknown
model (404), a bad gs:// URI, a missing bucket or object, a line that is not JSON or has no
``request``, over 200,000 requests or a file over 1 GB (400) refuse the create; a request
generateContent would refuse gets an error ``status`` of its own.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .batches import Outcome, Row, rand_id, run_rows, shuffled
from .gemini_http import fail
from .gemini_lines import context, request_problem
from .vertex_records import VertexJob, prediction_line
from .web import Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

PREFIX = "/vertex"
PROJECT, LOCATION = "afbatch-emulator", "us-central1"
CLIENT_ID, CLIENT_SECRET = "emulator-client", "emulator-client-secret"
REFRESH_TOKEN = "emulator-refresh-token"
MODEL = re.compile(r"publishers/google/models/(?P<id>(gemini|gemma)-[a-z0-9.-]+)")
GS = re.compile(r"gs://(?P<bucket>[a-z0-9][a-z0-9._-]{1,220}[a-z0-9])/(?P<name>.*)")
UNAUTHENTICATED = (
    "Request is missing required authentication credential. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential."
)


class VertexService:
    name = "vertex"
    MAX_REQUESTS = 200_000
    MAX_FILE_BYTES = 10**9
    LINES_PER_FILE = 100_000

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.tokens: set[str] = set()  # issued access tokens (kept across reset: like ADC's)
        self.refresh_token = REFRESH_TOKEN  # what the token endpoint accepts (a test revokes it)
        self._folder: str | None = None
        self.reset()

    def reset(self) -> None:
        self.jobs: dict[str, VertexJob] = {}  # by numeric id

    def close(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def credentials_file(self) -> str:
        """The ADC file pointing google-auth at this emulator's token endpoint (made once)."""
        if self._folder is None:
            self._folder = tempfile.mkdtemp(prefix="afbatch-emulator-adc-")
        path = os.path.join(self._folder, "adc.json")
        if not os.path.exists(path):
            info = {
                "type": "external_account_authorized_user",
                "audience": "//iam.googleapis.com/locations/global/workforcePools/emulator/"
                "providers/emulator",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "refresh_token": REFRESH_TOKEN,
                "token_url": f"{self.emu.url}{PREFIX}/token",
            }
            with open(path, "w", encoding="utf-8") as f:
                json.dump(info, f)
        return path

    def routes(self) -> list[Route]:
        jobs = PREFIX + r"/(?P<version>v1|v1beta1)/(?P<parent>projects/[^/]+/locations/[^/]+)"
        jobs += r"/batchPredictionJobs"
        job = jobs + r"/(?P<job_id>\d+)"
        return [
            ("POST", PREFIX + r"/token", self.token),
            ("POST", jobs, self.create),
            ("GET", jobs, self.list),
            ("GET", job, self.get),
            ("DELETE", job, self.delete),
            ("POST", job + ":cancel", self.cancel),
        ]

    def error(self, status: int, message: str) -> Response:
        return fail(status, message).response

    def headers(self) -> dict[str, str]:
        return {"x-goog-request-id": rand_id("", 16, "0123456789abcdef")}

    # ---------------------------------------------------------------- auth

    def authenticate(self, req: Request) -> Response | None:
        return None if req.path == PREFIX + "/token" else self.check_token(req)

    def check_token(self, req: Request) -> Response | None:
        """401 unless the request carries an access token this emulator issued."""
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        with self.emu.lock:
            if scheme.lower() == "bearer" and token in self.tokens:
                return None
        return self.error(401, UNAUTHENTICATED)

    def token(self, req: Request) -> Response:
        """OAuth 2 refresh-token grant (client credentials in HTTP Basic auth, as google-auth's STS
        client sends them)."""
        form = dict(parse_qsl(req.body.decode("utf-8", "replace")))
        scheme, _, basic = req.headers.get("authorization", "").partition(" ")
        try:
            client = base64.b64decode(basic).decode() if scheme.lower() == "basic" else ""
        except ValueError:
            client = ""
        if client != f"{CLIENT_ID}:{CLIENT_SECRET}":
            return json_response({"error": "invalid_client"}, 401)
        if (
            form.get("grant_type") != "refresh_token"
            or form.get("refresh_token") != self.refresh_token
        ):
            return json_response({"error": "invalid_grant", "error_description": "Bad token"}, 400)
        access = "ya29.emulator-" + rand_id("", 32)
        with self.emu.lock:
            self.tokens.add(access)
        return json_response({"access_token": access, "expires_in": 3600, "token_type": "Bearer"})

    # ---------------------------------------------------------------- jobs

    def create(self, req: Request, version: str, parent: str) -> Response:
        try:
            body = req.json()
        except ValueError:
            raise fail(400, "Invalid JSON payload received.") from None
        body = body if isinstance(body, dict) else {}
        model = MODEL.fullmatch(str(body.get("model") or ""))
        if model is None:
            raise fail(
                404,
                f"Publisher Model `{parent}/{body.get('model')}` was not found or your project "
                "does not have access to it.",
            )
        uris = ((body.get("inputConfig") or {}).get("gcsSource") or {}).get("uris")
        dest = ((body.get("outputConfig") or {}).get("gcsDestination") or {}).get("outputUriPrefix")
        if not isinstance(uris, list) or len(uris) != 1 or not isinstance(dest, str):
            raise fail(400, "inputConfig.gcsSource.uris (one) and an output prefix are required.")
        with self.emu.lock:
            data = self._input(str(uris[0]))
            self._bucket_of(dest)
            job = VertexJob(
                id=rand_id("", 19, "0123456789").lstrip("0") or "1",
                seq=self.emu.next_seq(),
                delay_at_creation=self.emu.processing_delay,
                fault=self.emu.faults.take_batch("vertex", model["id"]),
                parent=parent,
                model=model["id"],
                display_name=str(body.get("displayName") or ""),
                source=str(uris[0]),
                dest=dest,
                rows=self._rows(data, model["id"]),
            )
            for r in job.rows:
                if r.ctx is not None:
                    r.ctx = replace(r.ctx, provider="vertex", batch_id=job.id)
            self.jobs[job.id] = job
            self.emu.created.append(("vertex", job.name, job.model, len(job.rows)))
            return json_response(job.to_json())

    def _bucket_of(self, uri: str) -> tuple[str, str]:
        m = GS.fullmatch(uri)
        if m is None:
            raise fail(400, f"Invalid Cloud Storage URI {uri!r}: gs://<bucket>/<object> expected.")
        if m["bucket"] not in self.emu.gcs.buckets:
            raise fail(400, f"The bucket of {uri} does not exist.")
        return m["bucket"], m["name"]

    def _input(self, uri: str) -> bytes:
        bucket, name = self._bucket_of(uri)
        obj = self.emu.gcs.read(bucket, name)
        if obj is None or not name:
            raise fail(400, f"The Cloud Storage object {uri} does not exist.")
        if len(obj.data) > self.MAX_FILE_BYTES:
            raise fail(400, f"{uri}: the input file exceeds {self.MAX_FILE_BYTES} bytes.")
        return obj.data

    def _rows(self, data: bytes, model: str) -> list[Row]:
        lines = [ln for ln in data.split(b"\n") if ln.strip()]
        if not lines:
            raise fail(400, "The input file is empty.")
        if len(lines) > self.MAX_REQUESTS:
            raise fail(400, f"{len(lines)} requests exceed the {self.MAX_REQUESTS} per job.")
        rows = []
        for n, raw in enumerate(lines, 1):
            try:
                obj = json.loads(raw)
            except ValueError:
                raise fail(400, f"Line {n} of the input file is not valid JSON.") from None
            if not isinstance(obj, dict) or "request" not in obj:
                raise fail(400, f'Line {n}: each line must hold a "request".')
            key = obj.get("key")
            rid = key if isinstance(key, str) and key else f"#{n}"
            problem = request_problem(obj["request"])
            row = (
                Row(rid, None, invalid=problem)
                if problem
                else Row(rid, context(model, rid, obj["request"]), cache_marked=True)
            )
            row.source = obj  # its columns pass through to the output line
            rows.append(row)
        return rows

    def _job(self, job_id: str) -> VertexJob:
        job = self.jobs.get(job_id)
        if job is None:
            raise fail(404, f"The BatchPredictionJob {job_id} does not exist.")
        self._advance(job)
        return job

    def get(self, req: Request, version: str, parent: str, job_id: str) -> Response:
        with self.emu.lock:
            return json_response(self._job(job_id).to_json())

    def list(self, req: Request, version: str, parent: str) -> Response:
        size = req.query.get("pageSize", "100")
        if not size.isdigit() or not 1 <= int(size) <= 1000:
            raise fail(400, "pageSize must be between 1 and 1000.")
        filt = req.query.get("filter", "")
        want = re.fullmatch(r'display_name\s*=\s*"([^"]*)"', filt)
        if filt and want is None:
            raise fail(400, f"Unsupported filter {filt!r} (the emulator knows display_name=).")
        start = int(req.query.get("pageToken") or 0)
        with self.emu.lock:
            ordered = sorted(self.jobs.values(), key=lambda j: -j.seq)  # newest first
            if want is not None:
                ordered = [j for j in ordered if j.display_name == want[1]]
            page = ordered[start : start + int(size)]
            for j in page:
                self._advance(j)
            out: dict[str, Any] = {"batchPredictionJobs": [j.to_json() for j in page]}
            if start + int(size) < len(ordered):
                out["nextPageToken"] = str(start + int(size))
        return json_response(out)

    def cancel(self, req: Request, version: str, parent: str, job_id: str) -> Response:
        with self.emu.lock:
            job = self._job(job_id)
            if not job.ended and job.cancel_at is None:
                job.cancel_at = time.time()
                job.cancel_done = job.rows_done_by_now(self.emu, len(job.rows))
                job.state = "JOB_STATE_CANCELLING"
        return json_response({})

    def delete(self, req: Request, version: str, parent: str, job_id: str) -> Response:
        with self.emu.lock:
            job = self._job(job_id)
            if not job.ended:
                raise fail(400, f"The job {job.name} is still running; cancel it first.")
            del self.jobs[job_id]
        return json_response({"name": f"{job.name}/operations/{rand_id('', 19, '0123456789')}"})

    # ---------------------------------------------------------------- processing

    def _advance(self, job: VertexJob) -> None:
        if job.ended:
            return
        if job.cancel_at is None and not job.ready(self.emu):
            if not job.early(self.emu):
                job.state = "JOB_STATE_RUNNING"
            return
        job.ended, job.ended_at = True, time.time()
        fault = job.fault.outcome if job.fault else None
        if fault == "failed" and job.cancel_at is None:
            job.state = "JOB_STATE_FAILED"
            job.error = {"code": 13, "message": "Injected fault: the job failed."}
            return
        limit = job.cancel_done if job.cancel_at is not None else None
        if fault == "expired" and job.fault is not None and limit is None:
            limit = int(len(job.rows) * job.fault.fraction_done)
        outcomes = run_rows(
            self.emu, "vertex", job.rows, limit=limit, all_failed=fault == "all_failed"
        )
        done = [o for o in outcomes if o.status in ("succeeded", "errored")]
        failed = sum(o.status == "errored" for o in done)
        job.stats = {
            "successfulCount": len(done) - failed,
            "failedCount": failed,
            "incompleteCount": len(outcomes) - len(done),
        }
        job.state = (
            "JOB_STATE_CANCELLED"
            if job.cancel_at is not None
            else "JOB_STATE_EXPIRED"
            if len(done) < len(outcomes)
            else "JOB_STATE_PARTIALLY_SUCCEEDED"
            if failed
            else "JOB_STATE_SUCCEEDED"
        )
        if done:
            self._write(job, shuffled(done, job.id, self.emu))

    def _write(self, job: VertexJob, done: Sequence[Outcome]) -> None:
        stamp = datetime.fromtimestamp(job.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        bucket, prefix = self._bucket_of(job.dest)
        folder = "/".join(p for p in (prefix.strip("/"), f"prediction-model-{stamp}") if p)
        render = self.emu.faults.render_line
        lines = [render("vertex", prediction_line(job.model, o), ("response",)) for o in done]
        chunks = [
            lines[i : i + self.LINES_PER_FILE] for i in range(0, len(lines), self.LINES_PER_FILE)
        ]
        for n, chunk in enumerate(chunks, 1):
            name = "predictions.jsonl" if len(chunks) == 1 else f"predictions_{n:05d}.jsonl"
            data = "".join(line + "\n" for line in chunk).encode()
            self.emu.gcs.put(bucket, f"{folder}/{name}", data, "application/jsonl")
        job.output_dir = f"gs://{bucket}/{folder}"
