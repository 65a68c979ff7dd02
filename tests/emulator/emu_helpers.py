"""Builders shared by the emulator tests (a uniquely named module: tests/ has no packages)."""

from __future__ import annotations

import json
from typing import Any

ROLE_ARN = "arn:aws:iam::123456789012:role/bedrock-batch"


def openai_jsonl(rows: list[dict], endpoint: str = "/v1/chat/completions") -> bytes:
    return "".join(
        json.dumps({"custom_id": r.pop("custom_id"), "method": "POST", "url": endpoint, "body": r})
        + "\n"
        for r in [dict(r) for r in rows]
    ).encode()


def chat_row(i: int, model: str = "gpt-4o-mini", **extra: Any) -> dict:
    return {
        "custom_id": f"req-{i}",
        "model": model,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": f"Q{i}"},
        ],
        **extra,
    }


def claude_request(i: int, model: str = "claude-sonnet-4-6", **params: Any) -> dict:
    return {
        "custom_id": f"req-{i}",
        "params": {
            "model": model,
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"Q{i}"}],
            **params,
        },
    }


def bedrock_claude_record(i: int, **extra: Any) -> dict:
    return {
        "recordId": f"REC{i:08d}",
        "modelInput": {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"Q{i}"}],
            **extra,
        },
    }


def put_jsonl(s3: Any, bucket: str, key: str, records: list[dict]) -> str:
    s3.put_object(
        Bucket=bucket, Key=key, Body="".join(json.dumps(r) + "\n" for r in records).encode()
    )
    return f"s3://{bucket}/{key}"


def create_job(
    bedrock: Any,
    bucket: str,
    input_uri: str,
    model: str = "anthropic.claude-3-5-haiku-20241022-v1:0",
    name: str = "job-1",
    **kw: Any,
) -> str:
    return bedrock.create_model_invocation_job(
        jobName=name,
        roleArn=ROLE_ARN,
        modelId=model,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket}/out/"}},
        **kw,
    )["jobArn"]


def read_output(s3: Any, bucket: str, job_arn: str, name: str = "input.jsonl") -> list[dict]:
    job_id = job_arn.rsplit("/", 1)[-1]
    body = s3.get_object(Bucket=bucket, Key=f"out/{job_id}/{name}.out")["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def read_manifest(s3: Any, bucket: str, job_arn: str) -> dict:
    job_id = job_arn.rsplit("/", 1)[-1]
    return json.loads(
        s3.get_object(Bucket=bucket, Key=f"out/{job_id}/manifest.json.out")["Body"].read()
    )
