"""AWS Bedrock: the batch inference control plane (``CreateModelInvocationJob`` & co.), I/O through
S3, and the runtime's on-demand ``InvokeModel`` (``POST /model/{modelId}/invoke``).

Speaks botocore's rest-json protocol: errors carry ``x-amzn-ErrorType``; timestamps are ISO 8601.
Records are read from S3 when the job is processed, and results written back beside them.
``bedrock`` and ``bedrock-runtime`` share this service (and so the fault provider name
``"bedrock"``); the SDKs reach them through ``AWS_ENDPOINT_URL_BEDROCK`` and
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from .batches import Job, rand_id, run_rows
from .bedrock_http import aws_error, fail, iso, parse_time
from .bedrock_input import JobFailure, read_input, split_uri, validate_create
from .bedrock_output import write_output
from .bedrock_runtime import invoke as runtime_invoke
from .responders import CacheTracker
from .web import Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

TERMINAL = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")


@dataclass
class BedrockJob(Job):
    arn: str = ""
    request: dict[str, Any] = field(default_factory=dict)
    status: str = "Submitted"
    message: str | None = None
    end_time: float | None = None
    modified: float = field(default_factory=time.time)
    counts: dict[str, int] | None = None
    stopping_seen: bool = False

    def summary(self) -> dict[str, Any]:
        r = self.request
        hours = r.get("timeoutDurationInHours", 24)
        out: dict[str, Any] = {
            "jobArn": self.arn,
            "jobName": r["jobName"],
            "modelId": r["modelId"],
            "clientRequestToken": r.get("clientRequestToken"),
            "roleArn": r["roleArn"],
            "status": self.status,
            "message": self.message,
            "submitTime": iso(self.created),
            "lastModifiedTime": iso(self.modified),
            "endTime": iso(self.end_time),
            "inputDataConfig": r["inputDataConfig"],
            "outputDataConfig": r["outputDataConfig"],
            "vpcConfig": r.get("vpcConfig"),
            "timeoutDurationInHours": hours,
            "jobExpirationTime": iso(self.created + hours * 3600),
            "modelInvocationType": r.get("modelInvocationType"),
            **(self.counts or {}),
        }
        return {k: v for k, v in out.items() if v is not None}


class BedrockService:
    name = "bedrock"
    ACCOUNT = "123456789012"
    # class attributes so tests can lower them
    MIN_RECORDS = 100
    MAX_RECORDS = 50_000
    MAX_FILE_BYTES = 1024**3

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.reset()

    def reset(self) -> None:
        self.jobs: dict[str, BedrockJob] = {}
        self.tokens: dict[str, str] = {}  # clientRequestToken -> job id
        self.invoke_seq = 0
        # on-demand prompt cache: it outlives a single call (the real one lasts 5 min or 1 h)
        self.invoke_cache = CacheTracker()

    def routes(self) -> list[Route]:
        return [
            ("POST", r"/model-invocation-job", self.create),
            ("GET", r"/model-invocation-jobs", self.list),
            ("GET", r"/model-invocation-job/(?P<job>[^/]+)", self.get),
            ("POST", r"/model-invocation-job/(?P<job>[^/]+)/stop", self.stop),
            # bedrock-runtime; botocore percent-encodes the id (":" as %3A, an ARN's "/" as %2F)
            ("POST", r"/model/(?P<model>[^/]+)/invoke", self.invoke),
        ]

    def error(self, status: int, message: str) -> Response:
        return aws_error(status, message)

    def headers(self) -> dict[str, str]:
        return {"x-amzn-RequestId": rand_id("", 36, "0123456789abcdef")}

    def authenticate(self, req: Request) -> Response | None:
        auth = req.headers.get("authorization", "")
        if not auth.startswith(("AWS4-HMAC-SHA256 ", "Bearer ")):
            return aws_error(403, "Missing Authentication Token", "AccessDeniedException")
        return None

    # ---------------------------------------------------------------- endpoints

    def create(self, req: Request) -> Response:
        try:
            body = req.json()
        except ValueError:
            raise fail(400, "Request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise fail(400, "Request body must be a JSON object.")
        validate_create(body)
        with self.emu.lock:
            token = body.get("clientRequestToken")
            if token in self.tokens:
                job = self.jobs[self.tokens[token]]
                same = all(
                    job.request.get(k) == body.get(k)
                    for k in (
                        "jobName",
                        "modelId",
                        "roleArn",
                        "inputDataConfig",
                        "outputDataConfig",
                    )
                )
                if not same:
                    raise fail(
                        409, "The clientRequestToken was already used with different parameters."
                    )
                return json_response({"jobArn": job.arn})
            job_id = rand_id("", 12, "abcdefghijklmnopqrstuvwxyz0123456789")
            arn = f"arn:aws:bedrock:{self.emu.region}:{self.ACCOUNT}:model-invocation-job/{job_id}"
            job = BedrockJob(
                id=job_id,
                seq=self.emu.next_seq(),
                delay_at_creation=self.emu.processing_delay,
                fault=self.emu.faults.take_batch("bedrock", body["modelId"]),
                arn=arn,
                request=body,
            )
            self.jobs[job_id] = job
            if token:
                self.tokens[token] = job_id
            self.emu.created.append(("bedrock", job_id, body["modelId"], self._count_records(job)))
            return json_response({"jobArn": job.arn})

    def _job(self, ident: str) -> BedrockJob:
        job = self.jobs.get(ident.rsplit("/", 1)[-1])
        if job is None:
            raise fail(404, f"The specified job {ident} does not exist.")
        self._advance(job)
        return job

    def get(self, req: Request, job: str) -> Response:
        with self.emu.lock:
            return json_response(self._job(job).summary())

    def list(self, req: Request) -> Response:
        q = req.query
        raw = q.get("maxResults", "1000")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            raise fail(
                400,
                "Value at 'maxResults' failed to satisfy constraint: Member must have "
                "value between 1 and 1000",
            )
        if q.get("sortBy", "CreationTime") != "CreationTime" or q.get(
            "sortOrder", "Descending"
        ) not in ("Ascending", "Descending"):
            raise fail(
                400, "sortBy must be 'CreationTime' and sortOrder 'Ascending' or 'Descending'."
            )
        after, before = (parse_time(q.get(k)) for k in ("submitTimeAfter", "submitTimeBefore"))
        with self.emu.lock:
            jobs = sorted(
                self.jobs.values(), key=lambda j: j.seq, reverse=q.get("sortOrder") != "Ascending"
            )
            for j in jobs:
                self._advance(j)
            jobs = [
                j
                for j in jobs
                if q.get("statusEquals") in (None, j.status)
                and q.get("nameContains", "") in j.request["jobName"]
                and (after is None or j.created > after)
                and (before is None or j.created < before)
            ]
            token = q.get("nextToken", "")
            start = int(token.removeprefix("page-")) if token.startswith("page-") else 0
            end = start + int(raw)
            out: dict[str, Any] = {"invocationJobSummaries": [j.summary() for j in jobs[start:end]]}
        if end < len(jobs):
            out["nextToken"] = f"page-{end}"
        return json_response(out)

    def stop(self, req: Request, job: str) -> Response:
        with self.emu.lock:
            j = self._job(job)
            if j.status in TERMINAL:
                raise fail(400, f"The job {j.arn} is {j.status} and cannot be stopped.")
            if j.cancel_at is None:
                j.cancel_at = j.modified = time.time()
                j.status = "Stopping"
        return json_response({})

    # ---------------------------------------------------------------- bedrock-runtime InvokeModel

    def invoke(self, req: Request, model: str) -> Response:
        """On-demand ``InvokeModel`` (``bedrock_runtime.py``)."""
        return runtime_invoke(self, req, model)

    # ---------------------------------------------------------------- processing

    def _advance(self, j: BedrockJob) -> None:
        if j.ended:
            return
        if j.cancel_at is not None:
            if not j.stopping_seen:  # let one poll observe "Stopping"
                j.stopping_seen = True
                return
        elif not j.ready(self.emu):
            status = "Submitted" if j.early(self.emu) else "InProgress"
            if status != j.status:
                j.status, j.modified = status, time.time()
            return
        j.ended = True
        j.modified = j.end_time = time.time()
        try:
            files = read_input(self, j)
        except JobFailure as exc:
            j.status, j.message = "Failed", str(exc)
            return
        if j.fault and j.fault.outcome == "failed":
            j.status = "Failed"
            j.message = "Internal error: the batch inference job failed (injected fault)."
            return
        rows = [r for _, file_rows in files for r in file_rows]
        limit, stop = None, "expired"
        if j.cancel_at is not None:
            # records are only counted now: keep the share done by the time of the stop
            limit, stop = j.rows_done_by_now(self.emu, len(rows), at=j.cancel_at), "canceled"
        elif j.fault and j.fault.outcome == "expired":
            limit = int(len(rows) * j.fault.fraction_done)
        outcomes = run_rows(
            self.emu,
            "bedrock",
            rows,
            limit=limit,
            stop_status=stop,
            all_failed=bool(j.fault and j.fault.outcome == "all_failed"),
        )
        try:
            write_output(self, j, files, outcomes)
        except (ClientError, BotoCoreError) as exc:
            j.status, j.message = "Failed", f"Unable to write the output: {exc}"
            return
        finished = [o for o in outcomes if o.status in ("succeeded", "errored")]
        if j.cancel_at is not None:
            j.status = "Stopped"
        elif len(finished) < len(outcomes):
            j.status = "PartiallyCompleted" if finished else "Expired"
        else:
            j.status = "Completed"

    def s3(self) -> Any:
        """The S3 client the job's records are read from and its results written to."""
        s3 = self.emu.s3_client()
        if s3 is None:
            raise JobFailure(
                "The emulator has no S3: pass Emulator(s3_endpoint=...) or set AWS_ENDPOINT_URL_S3."
            )
        return s3

    def _count_records(self, job: BedrockJob) -> int | None:
        """Best effort, for ``emu.created``: the real service only reads the input later."""
        try:
            bucket, key = split_uri(job.request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"])
            if not key.endswith(".jsonl"):
                return None
            blob = self.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
            return sum(1 for ln in blob.splitlines() if ln.strip())
        except Exception:  # noqa: BLE001 - missing object, no S3: the job fails later, visibly
            return None
