"""AWS Bedrock batch inference (`CreateModelInvocationJob`) through boto3.

Lines are `{recordId, modelInput}` with the model's native body: the Messages body with
`anthropic_version` for Claude, a Llama-formatted `prompt` for Meta Llama. Shards go to S3; the
job is created with a `clientRequestToken`, so a retried create never makes a second job.
Jobs need at least 100 records; smaller leftovers go on-demand only when the job allows it.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from afbatch import ids
from afbatch.errors import ProviderError
from afbatch.providers.anthropic import parse_message, render_messages_body
from afbatch.providers.base import (
    BatchInfo,
    BatchStatus,
    Failure,
    Found,
    classify_http,
    guarded,
    malformed,
    read_line,
    sdk_errors,
)
from afbatch.providers.registry import capabilities
from afbatch.redact import redact, register_aws
from afbatch.spec import ModelSpec
from afbatch.types import Request, Result, RowStatus, Usage

NO_CREDENTIALS = (
    "no AWS credentials found — set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
)

STATUS = {
    "Submitted": BatchStatus.VALIDATING,
    "Validating": BatchStatus.VALIDATING,
    "Scheduled": BatchStatus.VALIDATING,
    "InProgress": BatchStatus.IN_PROGRESS,
    "Completed": BatchStatus.COMPLETED,
    "PartiallyCompleted": BatchStatus.COMPLETED,
    "Failed": BatchStatus.FAILED,
    "Stopping": BatchStatus.CANCELLING,
    "Stopped": BatchStatus.CANCELLED,
    "Expired": BatchStatus.EXPIRED,
}


def model_family(model_id: str) -> str:
    mid = model_id.lower()
    if "anthropic." in mid or "claude" in mid:
        return "claude"
    if "llama4" in mid or "llama-4" in mid:
        return "llama4"
    if "llama" in mid:
        return "llama3"
    raise ProviderError(
        f"bedrock model {model_id!r}: afbatch renders Claude and Llama bodies for Bedrock batch; "
        "use another provider for this model"
    )


def llama_prompt(request: Request, family: str) -> str:
    """Meta's chat template, ending with the assistant header (and any prefill) to continue from."""
    if family == "llama4":
        head, tail, eot = "<|header_start|>", "<|header_end|>\n\n", "<|eot|>"
    else:
        head, tail, eot = "<|start_header_id|>", "<|end_header_id|>\n\n", "<|eot_id|>"
    parts = ["<|begin_of_text|>"]
    if request.system:
        parts.append(f"{head}system{tail}{request.system}{eot}")
    for m in request.messages:
        parts.append(f"{head}{m.role}{tail}{m.content}{eot}")
    parts.append(f"{head}assistant{tail}{request.prefill or ''}")
    return "".join(parts)


class BedrockProvider:
    name: ClassVar[str] = "bedrock"
    limits = capabilities(name).limits  # at least 100 records per job

    def __init__(self, model: ModelSpec):
        self.model = model
        self.family = model_family(model.model)
        self._clients: dict[str, Any] = {}

    # --- pure -------------------------------------------------------------------------------

    def line_id(self, request_id: str) -> str:
        return ids.record_id(request_id)

    def render(self, request: Request) -> dict[str, Any]:
        if self.family == "claude":
            body = render_messages_body(request, bedrock=True)
        else:
            body = {"prompt": llama_prompt(request, self.family), "max_gen_len": request.max_tokens}
            if request.temperature is not None:
                body["temperature"] = request.temperature
        return {"recordId": ids.record_id(request.id), "modelInput": body}

    @guarded("recordId")
    def parse(self, line: dict[str, Any]) -> Result:
        rid = line.get("recordId") or ""
        if not line.get("error") and not isinstance(line.get("modelOutput"), dict):
            return malformed(line, "recordId", "neither modelOutput nor error")
        if line.get("error"):
            err = line["error"]
            code = (
                int(err.get("errorCode") or 500)
                if str(err.get("errorCode") or "").isdigit()
                else 500
            )
            message = err.get("errorMessage") or "error"
            return Result(
                rid,
                RowStatus.ERRORED,
                error_kind=classify_http(code, None, message),
                error_message=message,
            )
        out = line.get("modelOutput") or {}
        if self.family == "claude":
            text, usage, stop = parse_message(out)
            return Result(rid, RowStatus.SUCCEEDED, text=text, usage=usage, stop_reason=stop)
        usage = Usage(
            int(out.get("prompt_token_count") or 0),
            0,
            0,
            int(out.get("generation_token_count") or 0),
        )
        return Result(
            rid,
            RowStatus.SUCCEEDED,
            text=out.get("generation") or "",
            usage=usage,
            stop_reason=out.get("stop_reason"),
        )

    # --- I/O --------------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            import boto3

            region = (
                self.model.region
                or os.environ.get("AWS_REGION")
                or os.environ.get("AWS_DEFAULT_REGION")
                or "us-east-1"
            )
            session = boto3.Session()
            register_aws(session.get_credentials())  # secret key and session token, wherever found
            self._clients[service] = session.client(service, region_name=region)
        return self._clients[service]

    def _location(self) -> tuple[str, str]:
        if not self.model.s3_uri or not self.model.role_arn:
            raise ProviderError(
                f"{self.model.name}: Bedrock batch needs `s3_uri` (s3://bucket/prefix) and "
                "`role_arn` in the job's model entry"
            )
        bucket, _, prefix = self.model.s3_uri.removeprefix("s3://").partition("/")
        return bucket, prefix.strip("/")

    def _key(self, prefix: str, *parts: str) -> str:
        return "/".join(p for p in (prefix, *parts) if p)

    def ready(self) -> None:
        if not self.model.on_demand_fallback or self.model.s3_uri or self.model.role_arn:
            self._location()
        import boto3

        credentials = boto3.Session().get_credentials()
        register_aws(credentials)
        if credentials is None:
            raise ProviderError(f"{self.model.name}: {NO_CREDENTIALS}")

    def endpoint(self) -> str:
        """Where the calls go (each boto3 client's endpoint, from the environment; no network)."""
        where = [self._client("bedrock").meta.endpoint_url]
        if self.model.s3_uri:
            where.append(f"S3 {self._client('s3').meta.endpoint_url}")
        if self.model.on_demand_fallback:
            where.append(f"on-demand {self._client('bedrock-runtime').meta.endpoint_url}")
        return ", ".join(where)

    def submit(self, shard_path: str, n_requests: int, token: str, metadata: dict[str, str]) -> str:
        bucket, prefix = self._location()
        key_in = self._key(prefix, "afbatch-input", f"{token}.jsonl")
        with _errors(self.model, "upload to S3"):
            self._client("s3").upload_file(shard_path, bucket, key_in)
        with _errors(self.model, "create job"):
            resp = self._client("bedrock").create_model_invocation_job(
                jobName=_job_name(token),
                roleArn=self.model.role_arn,
                modelId=self.model.model,
                clientRequestToken=token,
                inputDataConfig={
                    "s3InputDataConfig": {
                        "s3Uri": f"s3://{bucket}/{key_in}",
                        "s3InputFormat": "JSONL",
                    }
                },
                outputDataConfig={
                    "s3OutputDataConfig": {
                        "s3Uri": f"s3://{bucket}/{self._key(prefix, 'afbatch-output', token)}/"
                    }
                },
                timeoutDurationInHours=24,
                tags=[{"key": k[:128], "value": v[:256]} for k, v in metadata.items()],
            )
        arn = resp.get("jobArn") if isinstance(resp, dict) else None
        if not isinstance(arn, str) or not arn:  # the job may exist: found by clientRequestToken
            raise ProviderError(
                f"bedrock create job for {self.model.name}: the answer has no job ARN — the job "
                "may exist; it is looked up by its token before anything is sent again",
                retryable=True,
            )
        return arn

    def find(
        self,
        token: str,
        line_ids: Sequence[str],
        since: float,
        claimed: frozenset[str] = frozenset(),
    ) -> Found:
        # The job name comes from the token: it names the shard exactly; line ids are not needed.
        name = _job_name(token)
        with _errors(self.model, "list jobs"):
            resp = self._client("bedrock").list_model_invocation_jobs(
                nameContains=name, maxResults=100
            )
        for job in resp.get("invocationJobSummaries", []):
            if job.get("jobName") == name and job["jobArn"] not in claimed:
                return Found(job["jobArn"])
        return Found()

    def poll(self, batch_id: str) -> BatchInfo:
        with _errors(self.model, "get job"):
            job = self._client("bedrock").get_model_invocation_job(jobIdentifier=batch_id)
        raw = job.get("status", "InProgress")
        return BatchInfo(STATUS.get(raw, BatchStatus.IN_PROGRESS), raw, {}, job.get("message"))

    def fetch(self, batch_id: str) -> Iterator[dict[str, Any]]:
        with _errors(self.model, "get job"):
            job = self._client("bedrock").get_model_invocation_job(jobIdentifier=batch_id)
        out_uri = job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        in_uri = job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        bucket, _, prefix = out_uri.removeprefix("s3://").partition("/")
        job_id = batch_id.rsplit("/", 1)[-1]
        key = self._key(prefix.strip("/"), job_id, in_uri.rsplit("/", 1)[-1] + ".out")
        s3 = self._client("s3")
        try:
            obj = s3.get_object(Bucket=bucket, Key=key)
        except Exception as e:  # noqa: BLE001 - a failed job has no output; that is not an error here
            if "NoSuchKey" in type(e).__name__ or "NoSuchKey" in str(e):
                return
            raise ProviderError(
                redact(f"bedrock read s3://{bucket}/{key} for {self.model.name}: {e}"),
                retryable=True,
            ) from None
        for raw in obj["Body"].iter_lines():
            if raw.strip():
                yield read_line(raw)

    def cancel(self, batch_id: str) -> None:
        with _errors(self.model, "stop job"):
            self._client("bedrock").stop_model_invocation_job(jobIdentifier=batch_id)

    def invoke(self, line: dict[str, Any]) -> dict[str, Any]:
        """On-demand fallback: one InvokeModel call, returned shaped like a batch output line."""
        from botocore.exceptions import NoCredentialsError, PartialCredentialsError

        try:
            resp = self._client("bedrock-runtime").invoke_model(
                modelId=self.model.model,
                body=json.dumps(line["modelInput"]),
                contentType="application/json",
            )
            return {"recordId": line["recordId"], "modelOutput": json.loads(resp["body"].read())}
        except (NoCredentialsError, PartialCredentialsError):
            raise ProviderError(
                f"bedrock invoke for {self.model.name}: {NO_CREDENTIALS}", retryable=False
            ) from None
        except Exception as e:  # noqa: BLE001 - a row error, reported like a batch row error
            code = getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            msg = getattr(e, "response", {}).get("Error", {}).get("Message") or str(e)
            return {
                "recordId": line["recordId"],
                "error": {"errorCode": code, "errorMessage": redact(msg)},
            }


def _job_name(token: str) -> str:
    return f"afbatch-{token}"[:63]


RETRYABLE_CODES = ("ThrottlingException", "ServiceUnavailableException", "InternalServerException")


def _boto_failure(exc: BaseException) -> Failure | None:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        ParamValidationError,
        PartialCredentialsError,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return Failure(NO_CREDENTIALS, retryable=False)
    if isinstance(exc, ParamValidationError):
        return Failure(str(exc), retryable=False)
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        return Failure(
            f"{err.get('Code')}: {err.get('Message')}",
            retryable=err.get("Code") in RETRYABLE_CODES or status >= 500,
            rejects_request=err.get("Code") == "ValidationException",
        )
    if isinstance(exc, BotoCoreError):
        return Failure(str(exc), retryable=True)
    return None


_errors = functools.partial(sdk_errors, _boto_failure)
