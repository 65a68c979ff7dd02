"""What the emulated Bedrock checks and reads: a job's create request, and its input records,
read from S3 when the job is processed (what fails the whole job raises JobFailure)."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from .anthropic_input import claude_context, params_problem
from .batches import Row, rand_id
from .bedrock_http import fail
from .bedrock_models import claude_model_name, llama_problem, model_family, parse_llama_prompt
from .responders import CallContext

if TYPE_CHECKING:
    from .bedrock import BedrockJob, BedrockService

JOB_NAME = re.compile(r"[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}")
ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
TOKEN = re.compile(r"[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}")
S3_URI = re.compile(r"s3://([a-z0-9][-.a-z0-9]{1,61}[a-z0-9])(?:/(.*))?")


class JobFailure(Exception):
    """The whole job fails (status Failed, with this message)."""


def split_uri(uri: str) -> tuple[str, str]:
    m = S3_URI.fullmatch(uri)
    if not m:
        raise JobFailure(f"Invalid S3 URI {uri}")
    return m.group(1), m.group(2) or ""


def validate_create(body: dict[str, Any]) -> None:
    """Refuse a CreateModelInvocationJob request as the real service does (a 400)."""
    for key in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig"):
        if key not in body:
            raise fail(
                400,
                f"1 validation error detected: Value null at '{key}' failed to satisfy constraint: "
                "Member must not be null",
            )
    if (
        not isinstance(body["jobName"], str)
        or len(body["jobName"]) > 63
        or not JOB_NAME.fullmatch(body["jobName"])
    ):
        raise fail(
            400,
            f"Value '{body['jobName']}' at 'jobName' failed to satisfy constraint: Member must "
            f"satisfy regular expression pattern: {JOB_NAME.pattern}",
        )
    if not isinstance(body["roleArn"], str) or not ROLE_ARN.fullmatch(body["roleArn"]):
        raise fail(
            400,
            f"Value '{body['roleArn']}' at 'roleArn' failed to satisfy constraint: Member must "
            f"satisfy regular expression pattern: {ROLE_ARN.pattern}",
        )
    token = body.get("clientRequestToken")
    if token is not None and (not isinstance(token, str) or not TOKEN.fullmatch(token)):
        raise fail(
            400,
            "Value at 'clientRequestToken' failed to satisfy constraint: Member must satisfy "
            f"regular expression pattern: {TOKEN.pattern}",
        )
    if not isinstance(body["modelId"], str) or model_family(body["modelId"]) is None:
        raise fail(
            400,
            f"The provided model identifier '{body['modelId']}' is invalid or not supported for "
            "batch inference by the emulator (anthropic.* and meta.llama* models).",
        )
    hours = body.get("timeoutDurationInHours")
    if hours is not None and (type(hours) is not int or not 24 <= hours <= 168):
        raise fail(
            400,
            "Value at 'timeoutDurationInHours' failed to satisfy constraint: Member must have "
            "value between 24 and 168",
        )
    if body.get("modelInvocationType", "InvokeModel") != "InvokeModel":
        raise fail(400, "The emulator supports modelInvocationType 'InvokeModel' only.")
    s3_in = (body["inputDataConfig"] or {}).get("s3InputDataConfig") or {}
    s3_out = (body["outputDataConfig"] or {}).get("s3OutputDataConfig") or {}
    for where, cfg in (
        ("inputDataConfig.s3InputDataConfig", s3_in),
        ("outputDataConfig.s3OutputDataConfig", s3_out),
    ):
        if not isinstance(cfg.get("s3Uri"), str) or not S3_URI.fullmatch(cfg["s3Uri"]):
            raise fail(
                400,
                f"Value at '{where}.s3Uri' failed to satisfy constraint: Member must satisfy "
                "regular expression pattern: s3://...",
            )
    if s3_in.get("s3InputFormat", "JSONL") != "JSONL":
        raise fail(400, "s3InputFormat must be 'JSONL'.")
    if not (s3_in["s3Uri"].endswith(".jsonl") or s3_in["s3Uri"].endswith("/")):
        raise fail(
            400,
            "The input S3 URI must point to a .jsonl file or to a folder (ending in '/') of "
            ".jsonl files.",
        )


def read_input(svc: BedrockService, j: BedrockJob) -> list[tuple[str, list[Row]]]:
    """[(input file name, rows)]; raises JobFailure for what fails the whole job."""
    uri = j.request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
    bucket, key = split_uri(uri)
    s3 = svc.s3()
    try:
        if key.endswith(".jsonl"):
            keys = [key]
        else:
            listing = s3.list_objects_v2(Bucket=bucket, Prefix=key)
            keys = sorted(
                o["Key"] for o in listing.get("Contents", []) if o["Key"].endswith(".jsonl")
            )
        if not keys:
            raise JobFailure(f"No .jsonl input files found at {uri}.")
        blobs = [(k, s3.get_object(Bucket=bucket, Key=k)["Body"].read()) for k in keys]
    except (ClientError, BotoCoreError) as exc:
        raise JobFailure(f"Unable to read the input from {uri}: {exc}") from None
    files, seen, total = [], set(), 0
    family = model_family(j.request["modelId"])
    for k, blob in blobs:
        if len(blob) > svc.MAX_FILE_BYTES:
            raise JobFailure(f"Input file {k} is larger than the {svc.MAX_FILE_BYTES}-byte quota.")
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
            rows.append(record_row(j, family, rid, rec["modelInput"]))
        total += len(rows)
        files.append((k.rsplit("/", 1)[-1], rows))
    if total < svc.MIN_RECORDS:
        raise JobFailure(
            f"The number of records ({total}) is below the minimum of {svc.MIN_RECORDS} records "
            f"per batch inference job for {j.request['modelId']}."
        )
    if total > svc.MAX_RECORDS:
        raise JobFailure(
            f"The number of records ({total}) exceeds the maximum of {svc.MAX_RECORDS} records "
            "per batch inference job."
        )
    j.counts = {"totalRecordCount": total}
    return files


def record_row(j: BedrockJob, family: str | None, rid: str, body: dict[str, Any]) -> Row:
    """A record as a row to answer (or to fail, for that record only)."""
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
