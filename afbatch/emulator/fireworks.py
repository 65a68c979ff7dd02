"""Fireworks datasets + batch inference jobs under ``/fireworks`` (``FIREWORKS_BASE_URL``).

Exactly the calls afbatch's provider makes, as strictly as the other services (its docstring
lists the assumptions): ids [a-z0-9-] ≤ 63; a dataset created, then uploaded once (≤ 150 MB); a
job naming a READY input and a not-yet-existing output dataset of its own account; unique job
ids; gRPC-style error bodies; signed download URLs that refuse an ``Authorization`` header. A
line that is not ``{"custom_id", "body"}``, a duplicate custom_id or > 500 MB fails the job.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .batches import Outcome, rand_id, run_rows, shuffled
from .fireworks_http import fail, json_object
from .fireworks_input import DATASET_FIELDS, ID_RE, JOB_FIELDS, MODEL_RE, PARAMS, read_rows
from .fireworks_output import result_line
from .fireworks_records import Dataset, FireworksJob
from .openai_http import parse_multipart
from .web import Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

ACCOUNT = r"/fireworks/v1/accounts/(?P<account>[a-z0-9-]+)"


class FireworksService:
    name = "fireworks"
    MAX_UPLOAD_BYTES = 150 * 1024 * 1024  # the one-request :upload path
    MAX_DATASET_BYTES = 500 * 1024 * 1024

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.reset()

    def reset(self) -> None:
        self.datasets: dict[str, Dataset] = {}  # by full resource name
        self.jobs: dict[str, FireworksJob] = {}

    def routes(self) -> list[Route]:
        ds, job = r"/datasets/(?P<ds>[^/:]+)", r"/batchInferenceJobs/(?P<job>[^/:]+)"
        return [
            ("POST", ACCOUNT + r"/datasets", self.create_dataset),
            ("GET", ACCOUNT + ds, self.get_dataset),
            ("POST", ACCOUNT + ds + r":upload", self.upload),
            ("GET", ACCOUNT + ds + r":getDownloadEndpoint", self.download_endpoint),
            (
                "GET",
                r"/fireworks/signed/(?P<account>[^/]+)/(?P<ds>[^/]+)/(?P<fname>[^/]+)",
                self.signed_download,
            ),
            ("POST", ACCOUNT + r"/batchInferenceJobs", self.create_job),
            ("GET", ACCOUNT + job, self.get_job),
            ("POST", ACCOUNT + job + r":cancel", self.cancel),
        ]

    def error(self, status: int, message: str) -> Response:
        return fail(status, message).response

    def authenticate(self, req: Request) -> Response | None:
        if req.path.startswith("/fireworks/signed/"):
            return None  # a signed URL carries its own authority
        auth = req.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            return self.error(401, "unauthenticated: missing or invalid API key")
        return None

    def headers(self) -> dict[str, str]:
        return {"x-request-id": rand_id("", 32, "0123456789abcdef")}

    # ---------------------------------------------------------------- datasets

    def create_dataset(self, req: Request, account: str) -> Response:
        body = json_object(req)
        extra = sorted(set(body) - {"dataset", "datasetId", "sourceDatasetId", "filter"})
        if extra:
            raise fail(400, f"unknown field(s) {extra}")
        did, spec = body.get("datasetId"), body.get("dataset")
        if not isinstance(did, str) or not ID_RE.match(did):
            raise fail(
                400,
                f"invalid datasetId {did!r}: lowercase letters, digits and hyphens, "
                "at most 63, starting with a letter",
            )
        if not isinstance(spec, dict) or spec.get("userUploaded") != {}:
            raise fail(400, "dataset.userUploaded must be {} for an uploaded dataset")
        unknown = sorted(set(spec) - DATASET_FIELDS)
        if unknown:
            raise fail(400, f"unknown dataset field(s) {unknown}")
        count = spec.get("exampleCount", "0")
        if not isinstance(count, str) or not count.isdigit():
            raise fail(400, "dataset.exampleCount must be an int64 given as a string")
        name = f"accounts/{account}/datasets/{did}"
        with self.emu.lock:
            if name in self.datasets:
                raise fail(409, f"dataset {name} already exists")
            d = Dataset(name, time.time(), str(spec.get("displayName") or ""), count)
            self.datasets[name] = d
            return json_response(d.to_json())

    def _dataset(self, account: str, ds: str) -> Dataset:
        d = self.datasets.get(f"accounts/{account}/datasets/{ds}")
        if d is None:
            raise fail(404, f"dataset accounts/{account}/datasets/{ds} not found")
        return d

    def get_dataset(self, req: Request, account: str, ds: str) -> Response:
        with self.emu.lock:
            return json_response(self._dataset(account, ds).to_json())

    def upload(self, req: Request, account: str, ds: str) -> Response:
        fields = parse_multipart(req.headers.get("content-type", ""), req.body)
        if set(fields) != {"file"}:
            raise fail(400, f"expected exactly one multipart field 'file', got {sorted(fields)}")
        filename, data = fields["file"]
        if len(data) > self.MAX_UPLOAD_BYTES:
            raise fail(
                413,
                f"file of {len(data)} bytes: :upload takes at most "
                f"{self.MAX_UPLOAD_BYTES}; use getUploadEndpoint",
            )
        with self.emu.lock:
            d = self._dataset(account, ds)
            if d.state != "UPLOADING":
                raise fail(400, f"dataset {d.name} is {d.state}: it was uploaded already")
            d.files[filename or "upload.jsonl"], d.state = data, "READY"
            return json_response(
                {
                    "id": ds,
                    "object": "file",
                    "bytes": len(data),
                    "created_at": int(time.time()),
                    "filename": filename,
                    "purpose": "fine-tune",
                }
            )

    def download_endpoint(self, req: Request, account: str, ds: str) -> Response:
        with self.emu.lock:
            d = self._dataset(account, ds)
            urls = {
                f: f"{req.base_url}/fireworks/signed/{account}/{ds}/{f}?sig={d.signature}"
                for f in d.files
            }
        return json_response({"filenameToSignedUrls": urls})

    def signed_download(self, req: Request, account: str, ds: str, fname: str) -> Response:
        if "authorization" in req.headers:
            raise fail(400, "a signed URL takes no Authorization header")
        with self.emu.lock:
            d = self.datasets.get(f"accounts/{account}/datasets/{ds}")
            if d is None or req.query.get("sig") != d.signature or fname not in d.files:
                raise fail(403, "the signature does not match")
            return Response(200, d.files[fname], "application/octet-stream")

    # ---------------------------------------------------------------- jobs

    def create_job(self, req: Request, account: str) -> Response:
        body = json_object(req)
        extra = sorted(set(body) - JOB_FIELDS)
        if extra:
            raise fail(400, f"unknown field(s) {extra}")
        jid = req.query.get("batchInferenceJobId") or rand_id("", 12, "0123456789abcdef")
        if not ID_RE.match(jid):
            raise fail(400, f"invalid batchInferenceJobId {jid!r}")
        model = body.get("model")
        if not isinstance(model, str) or not MODEL_RE.match(model):
            raise fail(400, f"invalid model {model!r}: accounts/<account>/models/<model>")
        params = body.get("inferenceParameters") or {}
        for k, v in params.items() if isinstance(params, dict) else [("", None)]:
            if k not in PARAMS or isinstance(v, bool) or not isinstance(v, PARAMS[k]):
                raise fail(400, f"invalid inferenceParameters.{k}: {v!r}")
        prefix = f"accounts/{account}/datasets/"
        src, out = body.get("inputDatasetId"), body.get("outputDatasetId")
        for what, v in (("inputDatasetId", src), ("outputDatasetId", out)):
            if not (isinstance(v, str) and v.startswith(prefix) and ID_RE.match(v[len(prefix) :])):
                raise fail(400, f"{what} must be {prefix}<id> in this account, got {v!r}")
        name = f"accounts/{account}/batchInferenceJobs/{jid}"
        with self.emu.lock:
            d = self.datasets.get(str(src))
            if d is None:
                raise fail(404, f"input dataset {src} not found")
            if d.state != "READY":
                raise fail(400, f"input dataset {src} is {d.state}, not READY")
            if out in self.datasets:
                raise fail(400, f"output dataset {out} already exists")
            if name in self.jobs:
                raise fail(409, f"batch inference job {name} already exists")
            self.datasets[str(out)] = Dataset(str(out), time.time(), f"output of {jid}")
            lines = [ln for ln in b"".join(d.files.values()).splitlines() if ln.strip()]
            j = FireworksJob(
                id=jid,
                seq=self.emu.next_seq(),
                delay_at_creation=self.emu.processing_delay,
                fault=self.emu.faults.take_batch("fireworks", model),
                name=name,
                display_name=str(body.get("displayName") or ""),
                model=model,
                input_dataset=str(src),
                output_dataset=str(out),
                params=params,
            )
            j.progress = {"percent": 0, "totalInputRequests": len(lines)}
            self.jobs[name] = j
            self.emu.created.append(("fireworks", name, model, len(lines)))
            return json_response(j.to_json())

    def _job(self, account: str, job: str) -> FireworksJob:
        j = self.jobs.get(f"accounts/{account}/batchInferenceJobs/{job}")
        if j is None:
            raise fail(
                404, f"batch inference job accounts/{account}/batchInferenceJobs/{job} not found"
            )
        self._advance(j)
        return j

    def get_job(self, req: Request, account: str, job: str) -> Response:
        with self.emu.lock:
            return json_response(self._job(account, job).to_json())

    def cancel(self, req: Request, account: str, job: str) -> Response:
        with self.emu.lock:
            j = self._job(account, job)
            if j.ended:
                raise fail(400, f"cannot cancel a job in state {j.state}")
            if j.cancel_at is None:
                j.cancel_at = time.time()
                j.cancel_done = j.rows_done_by_now(self.emu, j.progress["totalInputRequests"])
                j.state = "JOB_STATE_CANCELLING"
            return json_response({})

    # ---------------------------------------------------------------- processing

    def _advance(self, j: FireworksJob) -> None:
        """Lazy processing: move the job on according to the clock (caller holds the lock)."""
        if j.ended:
            return
        if j.cancel_at is None and not j.ready(self.emu):
            if not j.early(self.emu):
                j.state = "JOB_STATE_RUNNING"
            return
        j.ended = True
        data = b"".join(self.datasets[j.input_dataset].files.values())
        rows, problem = read_rows(j, data, self.MAX_DATASET_BYTES)
        if not problem and j.fault and j.fault.outcome == "failed":
            problem = "quota exceeded: too many batch tokens enqueued for this account"
        if problem:
            j.state, j.message = "JOB_STATE_FAILED", problem
            return
        limit = None
        if j.cancel_at is not None:
            limit = j.cancel_done
        elif j.fault and j.fault.outcome == "expired":
            limit = int(len(rows) * j.fault.fraction_done)
        outcomes = run_rows(
            self.emu,
            "fireworks",
            rows,
            limit=limit,
            all_failed=bool(j.fault and j.fault.outcome == "all_failed"),
        )
        self._write_results(j, shuffled(outcomes, j.name, self.emu))
        j.state = (
            "JOB_STATE_CANCELLED"
            if j.cancel_at is not None
            else "JOB_STATE_EXPIRED"
            if limit is not None
            else "JOB_STATE_COMPLETED"
        )

    def _write_results(self, j: FireworksJob, outcomes: list[Outcome]) -> None:
        ok: list[str] = []
        bad: list[str] = []
        tokens = {"inputTokens": 0, "outputTokens": 0, "cachedInputTokenCount": 0}
        for o in outcomes:
            if o.status in ("expired", "canceled"):
                continue  # never reached: no line at all
            line = self.emu.faults.render_line(
                "fireworks", result_line(j.model, o), ("response", "error")
            )
            (ok if o.status == "succeeded" else bad).append(line)
            if o.usage:
                tokens["inputTokens"] += o.usage.input
                tokens["outputTokens"] += o.usage.output
                tokens["cachedInputTokenCount"] += o.usage.cache_read
        out = self.datasets[j.output_dataset]
        if ok:
            out.files["BIJOutputSet.jsonl"] = ("\n".join(ok) + "\n").encode()
        if bad:
            out.files["BIJErrorSet.jsonl"] = ("\n".join(bad) + "\n").encode()
        out.state, out.example_count = "READY", str(len(ok))
        j.progress.update(
            {
                "percent": 100,
                "totalProcessedRequests": len(ok) + len(bad),
                "successfullyProcessedRequests": len(ok),
                "failedRequests": len(bad),
                "outputRows": len(ok),
                **tokens,
            }
        )
