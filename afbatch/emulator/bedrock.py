"""AWS Bedrock: the batch inference control plane (``CreateModelInvocationJob`` & co.), I/O through
S3, and the runtime's on-demand ``InvokeModel`` (``POST /model/{modelId}/invoke``).

Speaks botocore's rest-json protocol: errors carry ``x-amzn-ErrorType``; timestamps are ISO 8601.
Records are read from S3 when the job is processed, and results written back beside them.
``bedrock`` and ``bedrock-runtime`` share this service (and so the fault provider name
``"bedrock"``); the SDKs reach them through ``AWS_ENDPOINT_URL_BEDROCK`` and
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from .anthropic import claude_context, claude_message, params_problem
from .batches import Job, Outcome, Row, openai_finish_reason, rand_id, run_rows, shuffled
from .responders import CacheTracker, CallContext, Expire, RowError, answer_row
from .web import Reject, Request, Response, Route, json_response

if TYPE_CHECKING:
    from .server import Emulator

JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
TOKEN = re.compile(r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}")
S3_URI = re.compile(r"s3://([a-z0-9][-.a-z0-9]{1,61}[a-z0-9])(?:/(.*))?")
GEO_PREFIXES = ("us", "eu", "apac", "global", "us-gov", "ca", "jp", "au")
ROW_ERROR_CODES = {"invalid_request": 400, "rate_limit": 429, "overloaded": 503, "server_error": 500, "auth": 403}
STATUS_ERRORS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                 409: "ConflictException", 429: "ThrottlingException", 500: "InternalServerException",
                 503: "ServiceUnavailableException"}
# Llama 3 (<|start_header_id|>…<|end_header_id|>, <|eot_id|>) and Llama 4 (<|header_start|>…<|header_end|>, <|eot|>)
LLAMA_HEADER = re.compile(r"<\|(?:start_header_id|header_start)\|>(\w+)<\|(?:end_header_id|header_end)\|>(?:\n\n)?")
LLAMA_EOT = re.compile(r"<\|eot(?:_id)?\|>\s*\Z")
LLAMA_KEYS = frozenset({"prompt", "temperature", "top_p", "max_gen_len", "images"})
TERMINAL = ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def aws_error(status: int, message: str, type_: str | None = None) -> Response:
    type_ = type_ or STATUS_ERRORS.get(status, "InternalServerException")
    return json_response({"message": message}, status, {"x-amzn-ErrorType": type_})


def fail(status: int, message: str, type_: str | None = None) -> Reject:
    return Reject(aws_error(status, message, type_))


def model_family(model_id: str) -> str | None:
    """"claude" | "llama" | None, for plain ids, geo-prefixed profiles (us.anthropic...) and ARNs."""
    base = model_id.rsplit("/", 1)[-1]
    head, _, rest = base.partition(".")
    if head in GEO_PREFIXES and "." in rest:
        base = rest
    if base.startswith("anthropic.claude"):
        return "claude"
    if base.startswith("meta.llama"):
        return "llama"
    return None


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

    def summary(self) -> dict:
        r = self.request
        hours = r.get("timeoutDurationInHours", 24)
        out: dict[str, Any] = {
            "jobArn": self.arn, "jobName": r["jobName"], "modelId": r["modelId"],
            "clientRequestToken": r.get("clientRequestToken"), "roleArn": r["roleArn"], "status": self.status,
            "message": self.message, "submitTime": iso(self.created), "lastModifiedTime": iso(self.modified),
            "endTime": iso(self.end_time), "inputDataConfig": r["inputDataConfig"],
            "outputDataConfig": r["outputDataConfig"], "vpcConfig": r.get("vpcConfig"),
            "timeoutDurationInHours": hours, "jobExpirationTime": iso(self.created + hours * 3600),
            "modelInvocationType": r.get("modelInvocationType"), **(self.counts or {}),
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
        self._validate_create(body)
        with self.emu.lock:
            token = body.get("clientRequestToken")
            if token in self.tokens:
                job = self.jobs[self.tokens[token]]
                same = all(job.request.get(k) == body.get(k) for k in
                           ("jobName", "modelId", "roleArn", "inputDataConfig", "outputDataConfig"))
                if not same:
                    raise fail(409, "The clientRequestToken was already used with different parameters.")
                return json_response({"jobArn": job.arn})
            job_id = rand_id("", 12, "abcdefghijklmnopqrstuvwxyz0123456789")
            job = BedrockJob(id=job_id, seq=self.emu.next_seq(), delay_at_creation=self.emu.processing_delay,
                             fault=self.emu.faults.take_batch("bedrock", body["modelId"]),
                             arn=f"arn:aws:bedrock:{self.emu.region}:{self.ACCOUNT}:model-invocation-job/{job_id}",
                             request=body)
            self.jobs[job_id] = job
            if token:
                self.tokens[token] = job_id
            self.emu.created.append(("bedrock", job_id, body["modelId"], self._count_records(job)))
            return json_response({"jobArn": job.arn})

    def _validate_create(self, body: dict) -> None:
        for key in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"):
            if key not in body:
                raise fail(400, f"1 validation error detected: Value null at '{key}' failed to satisfy constraint: "
                                "Member must not be null")
        if not isinstance(body["jobName"], str) or len(body["jobName"]) > 63 or not JOB_NAME.fullmatch(body["jobName"]):
            raise fail(400, f"Value '{body['jobName']}' at 'jobName' failed to satisfy constraint: Member must "
                            f"satisfy regular expression pattern: {JOB_NAME.pattern}")
        if not isinstance(body["roleArn"], str) or not ROLE_ARN.fullmatch(body["roleArn"]):
            raise fail(400, f"Value '{body['roleArn']}' at 'roleArn' failed to satisfy constraint: Member must "
                            f"satisfy regular expression pattern: {ROLE_ARN.pattern}")
        token = body.get("clientRequestToken")
        if token is not None and (not isinstance(token, str) or not TOKEN.fullmatch(token)):
            raise fail(400, "Value at 'clientRequestToken' failed to satisfy constraint: Member must satisfy "
                            f"regular expression pattern: {TOKEN.pattern}")
        if not isinstance(body["modelId"], str) or model_family(body["modelId"]) is None:
            raise fail(400, f"The provided model identifier '{body['modelId']}' is invalid or not supported for "
                            "batch inference by the emulator (anthropic.* and meta.llama* models).")
        hours = body.get("timeoutDurationInHours")
        if hours is not None and (type(hours) is not int or not 24 <= hours <= 168):
            raise fail(400, "Value at 'timeoutDurationInHours' failed to satisfy constraint: Member must have "
                            "value between 24 and 168")
        if body.get("modelInvocationType", "InvokeModel") != "InvokeModel":
            raise fail(400, "The emulator supports modelInvocationType 'InvokeModel' only.")
        s3_in = (body["inputDataConfig"] or {}).get("s3InputDataConfig") or {}
        s3_out = (body["outputDataConfig"] or {}).get("s3OutputDataConfig") or {}
        for where, cfg in (("inputDataConfig.s3InputDataConfig", s3_in), ("outputDataConfig.s3OutputDataConfig",
                                                                          s3_out)):
            if not isinstance(cfg.get("s3Uri"), str) or not S3_URI.fullmatch(cfg["s3Uri"]):
                raise fail(400, f"Value at '{where}.s3Uri' failed to satisfy constraint: Member must satisfy "
                                "regular expression pattern: s3://...")
        if s3_in.get("s3InputFormat", "JSONL") != "JSONL":
            raise fail(400, "s3InputFormat must be 'JSONL'.")
        if not (s3_in["s3Uri"].endswith(".jsonl") or s3_in["s3Uri"].endswith("/")):
            raise fail(400, "The input S3 URI must point to a .jsonl file or to a folder (ending in '/') of "
                            ".jsonl files.")

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
            raise fail(400, "Value at 'maxResults' failed to satisfy constraint: Member must have value between "
                            "1 and 1000")
        if q.get("sortBy", "CreationTime") != "CreationTime" or q.get("sortOrder", "Descending") not in (
                "Ascending", "Descending"):
            raise fail(400, "sortBy must be 'CreationTime' and sortOrder 'Ascending' or 'Descending'.")
        after, before = (_parse_time(q.get(k)) for k in ("submitTimeAfter", "submitTimeBefore"))
        with self.emu.lock:
            jobs = sorted(self.jobs.values(), key=lambda j: j.seq, reverse=q.get("sortOrder") != "Ascending")
            for j in jobs:
                self._advance(j)
            jobs = [j for j in jobs
                    if q.get("statusEquals") in (None, j.status)
                    and q.get("nameContains", "") in j.request["jobName"]
                    and (after is None or j.created > after) and (before is None or j.created < before)]
            start = int(q["nextToken"].removeprefix("page-")) if q.get("nextToken", "").startswith("page-") else 0
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
        """On-demand ``InvokeModel``: the body is validated like a batch record's ``modelInput``,
        answered by the responder (``custom_id`` "invoke-<n>", ``batch_id`` None) and returned as
        the model's native response body; a ``RowError`` becomes the matching HTTP error and an
        ``Expire`` a ServiceUnavailableException (there is no completion window on-demand)."""
        family = model_family(model)
        if family is None:
            raise fail(400, f"The provided model identifier '{model}' is invalid or not supported by the emulator "
                            "(anthropic.* and meta.llama* models).")
        ctype = req.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype not in ("application/json", ""):
            raise fail(400, f"Content type {ctype!r} is not supported: use application/json.")
        accept = req.headers.get("accept", "application/json").split(";")[0].strip().lower()
        if accept not in ("application/json", "*/*", ""):
            raise fail(400, f"Accept type {accept!r} is not supported: use application/json.")
        try:
            body = req.json()
        except ValueError:
            raise fail(400, "Malformed input request, please reformat your input and try again.") from None
        if not isinstance(body, dict):
            raise fail(400, "Malformed input request: the body must be a JSON object, please reformat your input.")
        with self.emu.lock:
            self.invoke_seq += 1
            cid = f"invoke-{self.invoke_seq}"
        ttl = None
        if family == "claude":
            problem = params_problem(body, bedrock=True, model=claude_model_name(model))
            if problem:
                raise fail(400, f"Malformed input request: {problem}, please reformat your input and try again.")
            ctx, ttl = claude_context("bedrock", cid, {**body, "model": model}, None)
        else:
            problem = llama_problem(body)
            if problem:
                raise fail(400, problem)
            system, messages, prefill = parse_llama_prompt(body["prompt"])
            ctx = CallContext("bedrock", model, cid, system, messages, prefill,
                              {k: v for k, v in body.items() if k != "prompt"}, None)
        started = time.time()
        ans = answer_row(self.emu.responder, ctx, self.emu.errors)  # outside the lock: calls may overlap
        with self.emu.lock:
            self.emu.calls.append(("bedrock", model, cid))
            self.emu.invocations.append((model, cid))
            if isinstance(ans, (Expire, RowError)):
                if isinstance(ans, Expire):
                    raise fail(503, "The model is currently unavailable (the responder returned Expire()). "
                                    "Try your request again.", "ServiceUnavailableException")
                raise fail(ROW_ERROR_CODES[ans.kind], ans.message)
            usage = self.invoke_cache.usage(ctx, ans, ttl is not None)
        outcome = Outcome(Row(cid, ctx, cache_marked=ttl is not None, source={"ttl": ttl}), "succeeded",
                          reply=ans, usage=usage)
        if family == "claude":
            out = claude_message("msg_bdrk_", claude_model_name(model), outcome)
        else:
            out = {"generation": ans.text, "prompt_token_count": usage.input,
                   "generation_token_count": usage.output, "stop_reason": openai_finish_reason(ans.stop_reason)}
        return json_response(out, headers={
            "X-Amzn-Bedrock-Input-Token-Count": str(usage.input),
            "X-Amzn-Bedrock-Output-Token-Count": str(usage.output),
            "X-Amzn-Bedrock-Invocation-Latency": str(int((time.time() - started) * 1000)),
        })

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
            files = self._read_input(j)
        except JobFailure as exc:
            j.status, j.message = "Failed", str(exc)
            return
        if j.fault and j.fault.outcome == "failed":
            j.status, j.message = "Failed", "Internal error: the batch inference job failed (injected fault)."
            return
        rows = [r for _, file_rows in files for r in file_rows]
        limit, stop = None, "expired"
        if j.cancel_at is not None:
            # records are only counted now: keep the share done by the time of the stop
            limit, stop = j.rows_done_by_now(self.emu, len(rows), at=j.cancel_at), "canceled"
        elif j.fault and j.fault.outcome == "expired":
            limit = int(len(rows) * j.fault.fraction_done)
        outcomes = run_rows(self.emu, "bedrock", rows, limit=limit, stop_status=stop,
                            all_failed=bool(j.fault and j.fault.outcome == "all_failed"))
        try:
            self._write_output(j, files, outcomes)
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

    def _read_input(self, j: BedrockJob) -> list[tuple[str, list[Row]]]:
        """[(input file name, rows)]; raises JobFailure for what fails the whole job."""
        uri = j.request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        bucket, key = split_uri(uri)
        s3 = self._s3()
        try:
            if key.endswith(".jsonl"):
                keys = [key]
            else:
                listing = s3.list_objects_v2(Bucket=bucket, Prefix=key)
                keys = sorted(o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith(".jsonl"))
            if not keys:
                raise JobFailure(f"No .jsonl input files found at {uri}.")
            blobs = [(k, s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]
        except (ClientError, BotoCoreError) as exc:
            raise JobFailure(f"Unable to read the input from {uri}: {exc}") from None
        files, seen, total = [], set(), 0
        family = model_family(j.request["modelId"])
        for k, blob in blobs:
            if len(blob) > self.MAX_FILE_BYTES:
                raise JobFailure(f"Input file {k} is larger than the {self.MAX_FILE_BYTES}-byte quota.")
            rows = []
            for n, line in enumerate(blob.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    raise JobFailure(f"Line {n} of {k} is not valid JSON.") from None
                if not isinstance(rec, dict) or not isinstance(rec.get("modelInput"), dict):
                    raise JobFailure(f"Line {n} of {k} must be an object with a 'modelInput' object.")
                rid = rec.get("recordId") or rand_id("", 11, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
                if not isinstance(rid, str) or rid in seen:
                    raise JobFailure(f"Line {n} of {k}: recordId {rid!r} is not a unique string.")
                seen.add(rid)
                rows.append(self._row(j, family, rid, rec["modelInput"]))
            total += len(rows)
            files.append((k.rsplit("/", 1)[-1], rows))
        if total < self.MIN_RECORDS:
            raise JobFailure(f"The number of records ({total}) is below the minimum of {self.MIN_RECORDS} records "
                             f"per batch inference job for {j.request['modelId']}.")
        if total > self.MAX_RECORDS:
            raise JobFailure(f"The number of records ({total}) exceeds the maximum of {self.MAX_RECORDS} records "
                             "per batch inference job.")
        j.counts = {"totalRecordCount": total}
        return files

    def _row(self, j: BedrockJob, family: str | None, rid: str, body: dict) -> Row:
        model = j.request["modelId"]
        if family == "claude":
            problem = params_problem(body, bedrock=True, model=claude_model_name(model))
            if problem:
                return Row(rid, None, invalid=problem, source={"modelInput": body})
            ctx, ttl = claude_context("bedrock", rid, {**body, "model": model}, j.id)
            return Row(rid, ctx, cache_marked=ttl is not None, source={"modelInput": body, "ttl": ttl})
        problem = llama_problem(body)
        if problem:
            return Row(rid, None, invalid=problem, source={"modelInput": body})
        system, messages, prefill = parse_llama_prompt(body["prompt"])
        params = {k: v for k, v in body.items() if k != "prompt"}
        ctx = CallContext("bedrock", model, rid, system, messages, prefill, params, j.id)
        return Row(rid, ctx, source={"modelInput": body})

    def _write_output(self, j: BedrockJob, files: list[tuple[str, list[Row]]], outcomes: list[Outcome]) -> None:
        by_id = {o.row.custom_id: o for o in outcomes}
        family = model_family(j.request["modelId"])
        bucket, prefix = split_uri(j.request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"])
        base = f"{prefix.rstrip('/')}/{j.id}/" if prefix.strip("/") else f"{j.id}/"
        s3 = self._s3()
        for name, rows in files:
            lines = []
            for o in shuffled([by_id[r.custom_id] for r in rows], j.id, self.emu):
                line = self._line(family, j.request["modelId"], o)
                if line is not None:
                    lines.append(self.emu.faults.render_line("bedrock", line, ("modelOutput",)))
            s3.put_object(Bucket=bucket, Key=f"{base}{name}.out", Body=("\n".join(lines) + "\n").encode())
        done = [o for o in outcomes if o.status in ("succeeded", "errored")]
        ok = [o for o in done if o.status == "succeeded"]
        j.counts = {"totalRecordCount": len(outcomes), "processedRecordCount": len(done),
                    "successRecordCount": len(ok), "errorRecordCount": len(done) - len(ok)}
        manifest = {**j.counts, "inputTokenCount": sum(o.usage.input for o in ok if o.usage),
                    "outputTokenCount": sum(o.usage.output for o in ok if o.usage)}
        s3.put_object(Bucket=bucket, Key=f"{base}manifest.json.out", Body=json.dumps(manifest).encode())

    def _line(self, family: str | None, model_id: str, o: Outcome) -> dict | None:
        if o.status in ("expired", "canceled"):
            return None  # never reached: absent from the output
        line = {"recordId": o.row.custom_id, "modelInput": o.row.source["modelInput"]}
        if o.status == "errored":
            assert o.error is not None
            return {**line, "error": {"errorCode": ROW_ERROR_CODES[o.error.kind], "errorMessage": o.error.message}}
        assert o.reply is not None and o.usage is not None
        if family == "claude":
            return {**line, "modelOutput": claude_message("msg_bdrk_", claude_model_name(model_id), o)}
        return {**line, "modelOutput": {
            "generation": o.reply.text, "prompt_token_count": o.usage.input,
            "generation_token_count": o.usage.output, "stop_reason": openai_finish_reason(o.reply.stop_reason)}}

    def _s3(self) -> Any:
        s3 = self.emu.s3_client()
        if s3 is None:
            raise JobFailure("The emulator has no S3: pass Emulator(s3_endpoint=...) or set AWS_ENDPOINT_URL_S3.")
        return s3

    def _count_records(self, job: BedrockJob) -> int | None:
        """Best effort, for ``emu.created``: the real service only reads the input later."""
        try:
            bucket, key = split_uri(job.request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"])
            if not key.endswith(".jsonl"):
                return None
            blob = self._s3().get_object(Bucket=bucket, Key=key)["Body"].read()
            return sum(1 for ln in blob.splitlines() if ln.strip())
        except Exception:  # missing object, no S3 configured: the job will fail later, visibly
            return None


class JobFailure(Exception):
    """The whole job fails (status Failed, with this message)."""


def split_uri(uri: str) -> tuple[str, str]:
    m = S3_URI.fullmatch(uri)
    if not m:
        raise JobFailure(f"Invalid S3 URI {uri}")
    return m.group(1), m.group(2) or ""


def claude_model_name(model_id: str) -> str:
    # "us.anthropic.claude-sonnet-4-5-20250929-v1:0" -> "claude-sonnet-4-5-20250929"
    base = model_id.rsplit("/", 1)[-1]
    base = base[base.index("anthropic.") + len("anthropic."):] if "anthropic." in base else base
    return re.sub(r"-v\d+(:\d+)?$", "", base)


def llama_problem(body: dict) -> str | None:
    for key in body:
        if key not in LLAMA_KEYS:
            return f"Malformed input request: extraneous key [{key}] is not permitted, please reformat your input."
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        return "Malformed input request: required key [prompt] not found or empty."
    mgl = body.get("max_gen_len")
    if mgl is not None and (type(mgl) is not int or not 1 <= mgl <= 2048):
        return "Malformed input request: max_gen_len must be an integer between 1 and 2048."
    for key in ("temperature", "top_p"):
        v = body.get(key)
        if v is not None and (type(v) not in (int, float) or not 0 <= v <= 1):
            return f"Malformed input request: {key} must be a number between 0 and 1."
    return None


def parse_llama_prompt(prompt: str) -> tuple[str | None, list[dict[str, str]], str | None]:
    """Llama 3/4 chat format → (system, messages, prefill after the final assistant header)."""
    parts = LLAMA_HEADER.split(prompt.removeprefix("<|begin_of_text|>"))
    if len(parts) == 1:
        return None, [{"role": "user", "content": prompt}], None
    turns = list(zip(parts[1::2], parts[2::2]))
    system, messages, prefill = [], [], None
    for i, (role, content) in enumerate(turns):
        eot = LLAMA_EOT.search(content)
        closed = eot is not None
        text = content[: eot.start()] if eot else content
        if i == len(turns) - 1 and role == "assistant" and not closed:
            prefill = text or None
        elif role == "system":
            system.append(text)
        else:
            messages.append({"role": role, "content": text})
    return ("\n\n".join(system) if system else None), messages, prefill


def _parse_time(raw: str | None) -> float | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise fail(400, f"Invalid timestamp {raw!r}.") from None
