"""Bedrock batch inference through the real ``boto3`` clients, with S3 served by moto."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from afbatch.emulator import CallContext, Emulator, Expire, Reply, RowError
from afbatch.emulator.bedrock import BedrockService
from afbatch.emulator.bedrock_models import parse_llama_prompt
from emu_helpers import (
    ROLE_ARN,
    bedrock_claude_record,
    create_job,
    put_jsonl,
    read_manifest,
    read_output,
)

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
LLAMA = "meta.llama3-1-70b-instruct-v1:0"


@pytest.fixture
def few_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most tests need no 100-record files: lower the minimum."""
    monkeypatch.setattr(BedrockService, "MIN_RECORDS", 1)


def error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_claude_happy_path(emu: Emulator, bedrock: Any, s3: Any, bucket: str) -> None:
    seen: list[CallContext] = []

    def responder(ctx: CallContext) -> Reply:
        seen.append(ctx)
        return Reply("request_fully_accepted/></OUTPUT>", output_tokens=9)

    emu.responder = responder
    records = [
        bedrock_claude_record(
            i,
            system=[{"type": "text", "text": "Be brief."}],
            temperature=0,
            messages=[
                {"role": "user", "content": f"Q{i}"},
                {"role": "assistant", "content": "<OUTPUT><"},
            ],
        )
        for i in range(100)
    ]
    uri = put_jsonl(s3, bucket, "in/input.jsonl", records)
    arn = create_job(bedrock, bucket, uri, model=CLAUDE, timeoutDurationInHours=48)
    assert arn.startswith("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/")

    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert (
        job["status"] == "Completed"
        and job["modelId"] == CLAUDE
        and job["timeoutDurationInHours"] == 48
    )
    assert (job["totalRecordCount"], job["successRecordCount"], job["errorRecordCount"]) == (
        100,
        100,
        0,
    )
    assert job["endTime"] >= job["submitTime"]

    out = {ln["recordId"]: ln for ln in read_output(s3, bucket, arn)}
    assert len(out) == 100
    line = out["REC00000007"]
    assert line["modelInput"] == records[7]["modelInput"]
    msg = line["modelOutput"]
    assert msg["type"] == "message"
    assert msg["content"] == [{"type": "text", "text": "request_fully_accepted/></OUTPUT>"}]
    assert msg["model"] == "claude-sonnet-4-5-20250929" and msg["usage"]["output_tokens"] == 9
    manifest = read_manifest(s3, bucket, arn)
    assert (
        manifest["totalRecordCount"]
        == manifest["successRecordCount"]
        == manifest["processedRecordCount"]
        == 100
    )
    assert manifest["outputTokenCount"] == 900 and manifest["inputTokenCount"] > 0

    ctx = seen[7]
    assert (ctx.provider, ctx.model, ctx.custom_id, ctx.system, ctx.prefill) == (
        "bedrock",
        CLAUDE,
        "REC00000007",
        "Be brief.",
        "<OUTPUT><",
    )
    assert ctx.messages == [{"role": "user", "content": "Q7"}]
    assert ctx.params == {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "temperature": 0,
    }
    assert ctx.batch_id == arn.rsplit("/", 1)[-1]
    assert emu.created == [("bedrock", ctx.batch_id, CLAUDE, 100)]


def test_llama_happy_path(
    emu: Emulator, bedrock: Any, s3: Any, bucket: str, few_records: None
) -> None:
    seen: list[CallContext] = []
    emu.responder = lambda ctx: seen.append(ctx) or "OUTPUT>hi</OUTPUT>"
    prompt = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n<"
    )
    records = [
        {
            "recordId": f"L{i}",
            "modelInput": {"prompt": prompt, "max_gen_len": 512, "temperature": 0.5},
        }
        for i in range(2)
    ]
    arn = create_job(bedrock, bucket, put_jsonl(s3, bucket, "in/input.jsonl", records), model=LLAMA)
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Completed"
    out = read_output(s3, bucket, arn)[0]["modelOutput"]
    assert out["generation"] == "OUTPUT>hi</OUTPUT>" and out["stop_reason"] == "stop"
    assert out["prompt_token_count"] > 0 and out["generation_token_count"] > 0
    assert (seen[0].system, seen[0].messages, seen[0].prefill) == (
        "SYS",
        [{"role": "user", "content": "Q"}],
        "<",
    )
    assert seen[0].params == {"max_gen_len": 512, "temperature": 0.5}


def test_llama_prompt_parsing() -> None:
    assert parse_llama_prompt("just text") == (
        None,
        [{"role": "user", "content": "just text"}],
        None,
    )
    multi = (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nA<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nB<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n<NEXT/><|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert parse_llama_prompt(multi) == (
        None,
        [
            {"role": "user", "content": "A"},
            {"role": "assistant", "content": "B"},
            {"role": "user", "content": "<NEXT/>"},
        ],
        None,
    )


def test_too_few_records_fails_the_job(emu: Emulator, bedrock: Any, s3: Any, bucket: str) -> None:
    arn = create_job(
        bedrock,
        bucket,
        put_jsonl(s3, bucket, "in/input.jsonl", [bedrock_claude_record(i) for i in range(99)]),
    )
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Failed" and "minimum of 100 records" in job["message"]
    assert emu.calls == []


@pytest.mark.parametrize(
    ("records", "needle"),
    [
        ([bedrock_claude_record(0), bedrock_claude_record(0)], "not a unique"),
        ([{"recordId": "A"}], "modelInput"),
    ],
)
def test_bad_files_fail_the_job(
    bedrock: Any, s3: Any, bucket: str, few_records: None, records: list, needle: str
) -> None:
    arn = create_job(bedrock, bucket, put_jsonl(s3, bucket, "in/input.jsonl", records))
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Failed" and needle in job["message"]


def test_missing_input_and_limits(
    bedrock: Any, s3: Any, bucket: str, few_records: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = create_job(bedrock, bucket, f"s3://{bucket}/in/absent.jsonl")
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Failed" and "absent.jsonl" in job["message"]
    monkeypatch.setattr(BedrockService, "MAX_RECORDS", 2)
    uri = put_jsonl(s3, bucket, "in/input.jsonl", [bedrock_claude_record(i) for i in range(3)])
    assert (
        "exceeds the maximum"
        in bedrock.get_model_invocation_job(
            jobIdentifier=create_job(bedrock, bucket, uri, name="job-2")
        )["message"]
    )


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ({"jobName": "bad name!"}, "jobName"),
        ({"modelId": "amazon.titan-text-express-v1"}, "model identifier"),
        ({"roleArn": "not-an-arn"}, "roleArn"),
        ({"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://bkt/in/input.json"}}}, ".jsonl"),
        ({"outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "http://bkt/out/"}}}, "s3Uri"),
        ({"modelInvocationType": "Converse"}, "InvokeModel"),
    ],
)
def test_create_validation(emu: Emulator, bedrock: Any, override: dict, needle: str) -> None:
    params = {
        "jobName": "job-1",
        "roleArn": ROLE_ARN,
        "modelId": CLAUDE,
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://bkt/in/input.jsonl"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://bkt/out/"}},
        **override,
    }
    with pytest.raises(ClientError, match=needle) as info:
        bedrock.create_model_invocation_job(**params)
    assert error_code(info) == "ValidationException"
    assert emu.created == []


def test_client_request_token_is_idempotent(
    emu: Emulator, bedrock: Any, s3: Any, bucket: str, few_records: None
) -> None:
    uri = put_jsonl(s3, bucket, "in/input.jsonl", [bedrock_claude_record(0)])
    first = create_job(bedrock, bucket, uri, clientRequestToken="shard-0001-attempt-1")
    again = create_job(bedrock, bucket, uri, clientRequestToken="shard-0001-attempt-1")
    assert first == again
    assert len(emu.created) == 1
    assert len(bedrock.list_model_invocation_jobs()["invocationJobSummaries"]) == 1
    assert (
        bedrock.get_model_invocation_job(jobIdentifier=first)["clientRequestToken"]
        == "shard-0001-attempt-1"
    )
    with pytest.raises(ClientError) as info:
        create_job(
            bedrock, bucket, uri, name="other-name", clientRequestToken="shard-0001-attempt-1"
        )
    assert error_code(info) == "ConflictException"
    assert create_job(bedrock, bucket, uri) != first  # botocore fills in a fresh token: a new job


def test_each_row_error_kind(
    emu: Emulator, bedrock: Any, s3: Any, bucket: str, few_records: None
) -> None:
    kinds = ["invalid_request", "rate_limit", "overloaded", "server_error", "auth"]
    emu.responder = lambda ctx: (
        RowError(kinds[int(ctx.custom_id[-1])], "bad") if int(ctx.custom_id[-1]) < 5 else "ok"
    )
    arn = create_job(
        bedrock,
        bucket,
        put_jsonl(s3, bucket, "in/input.jsonl", [bedrock_claude_record(i) for i in range(6)]),
    )
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Completed" and (
        job["errorRecordCount"],
        job["successRecordCount"],
    ) == (5, 1)
    codes = {
        ln["recordId"]: ln.get("error", {}).get("errorCode") for ln in read_output(s3, bucket, arn)
    }
    assert codes == {
        "REC00000000": 400,
        "REC00000001": 429,
        "REC00000002": 503,
        "REC00000003": 500,
        "REC00000004": 403,
        "REC00000005": None,
    }


def test_bad_model_input_is_a_record_error(
    emu: Emulator, bedrock: Any, s3: Any, bucket: str, few_records: None
) -> None:
    good = bedrock_claude_record(0)
    no_version = bedrock_claude_record(1)
    del no_version["modelInput"]["anthropic_version"]
    extra = bedrock_claude_record(2, model="claude")
    arn = create_job(
        bedrock, bucket, put_jsonl(s3, bucket, "in/input.jsonl", [good, no_version, extra])
    )
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["errorRecordCount"] == 2
    errors = {ln["recordId"]: ln.get("error") for ln in read_output(s3, bucket, arn)}
    assert errors["REC00000000"] is None
    assert (
        errors["REC00000001"]["errorCode"] == 400
        and "anthropic_version" in errors["REC00000001"]["errorMessage"]
    )
    assert "extraneous key [model]" in errors["REC00000002"]["errorMessage"]
    assert [c[2] for c in emu.calls] == ["REC00000000"]


def test_expire_partially_completes(
    emu: Emulator, bedrock: Any, s3: Any, bucket: str, few_records: None
) -> None:
    emu.responder = lambda ctx: Expire() if ctx.custom_id.endswith(("2", "3")) else "ok"
    uri = put_jsonl(s3, bucket, "in/input.jsonl", [bedrock_claude_record(i) for i in range(4)])
    arn = create_job(bedrock, bucket, uri)
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "PartiallyCompleted"
    assert (job["totalRecordCount"], job["processedRecordCount"]) == (4, 2)
    assert sorted(ln["recordId"] for ln in read_output(s3, bucket, arn)) == [
        "REC00000000",
        "REC00000001",
    ]

    emu.responder = lambda ctx: Expire()
    arn = create_job(bedrock, bucket, uri, name="job-2")
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Expired"
    assert read_output(s3, bucket, arn) == []


def test_batch_faults(emu: Emulator, bedrock: Any, s3: Any, bucket: str, few_records: None) -> None:
    uri = put_jsonl(s3, bucket, "in/input.jsonl", [bedrock_claude_record(i) for i in range(4)])
    emu.faults.batch("bedrock", "failed")
    emu.faults.batch("bedrock", "all_failed")
    emu.faults.batch("bedrock", "expired", fraction_done=0.75)
    failed, all_failed, expired = (
        create_job(bedrock, bucket, uri, name=f"job-{i}") for i in range(3)
    )
    job = bedrock.get_model_invocation_job(jobIdentifier=failed)
    assert job["status"] == "Failed" and job["message"]
    job = bedrock.get_model_invocation_job(jobIdentifier=all_failed)
    assert job["status"] == "Completed" and job["errorRecordCount"] == 4
    assert {ln["error"]["errorCode"] for ln in read_output(s3, bucket, all_failed)} == {500}
    assert bedrock.get_model_invocation_job(jobIdentifier=expired)["status"] == "PartiallyCompleted"
    assert len(read_output(s3, bucket, expired)) == 3
    assert [c[2] for c in emu.calls] == ["REC00000000", "REC00000001", "REC00000002"]


def test_stop(emu: Emulator, bedrock: Any, s3: Any, bucket: str, few_records: None) -> None:
    emu.processing_delay = 3600
    arn = create_job(
        bedrock, bucket, put_jsonl(s3, bucket, "in/input.jsonl", [bedrock_claude_record(0)])
    )
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Submitted"
    bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Stopping"
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Stopped"
    assert read_output(s3, bucket, arn) == [] and emu.calls == []
    with pytest.raises(ClientError) as info:
        bedrock.stop_model_invocation_job(jobIdentifier=arn)
    assert error_code(info) == "ValidationException"
    with pytest.raises(ClientError) as info:
        bedrock.get_model_invocation_job(jobIdentifier="abcdefabcdef")
    assert error_code(info) == "ResourceNotFoundException"


def test_prefix_input_with_several_files(
    emu: Emulator, bedrock: Any, s3: Any, bucket: str, few_records: None
) -> None:
    put_jsonl(s3, bucket, "in/part-a.jsonl", [bedrock_claude_record(0)])
    put_jsonl(s3, bucket, "in/part-b.jsonl", [bedrock_claude_record(1)])
    arn = create_job(bedrock, bucket, f"s3://{bucket}/in/")
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["totalRecordCount"] == 2
    assert [ln["recordId"] for ln in read_output(s3, bucket, arn, "part-b.jsonl")] == [
        "REC00000001"
    ]


def test_list_filters_order_and_pagination(
    emu: Emulator, bedrock: Any, s3: Any, bucket: str, few_records: None
) -> None:
    uri = put_jsonl(s3, bucket, "in/input.jsonl", [bedrock_claude_record(0)])
    arns = [create_job(bedrock, bucket, uri, name=f"afb-run1-{i}") for i in range(3)]
    emu.processing_delay = 3600
    pending = create_job(bedrock, bucket, uri, name="other-job")

    def names(**kw: Any) -> list[str]:
        return [
            j["jobName"] for j in bedrock.list_model_invocation_jobs(**kw)["invocationJobSummaries"]
        ]

    assert names() == ["other-job", "afb-run1-2", "afb-run1-1", "afb-run1-0"]
    assert names(sortOrder="Ascending", nameContains="run1") == [
        "afb-run1-0",
        "afb-run1-1",
        "afb-run1-2",
    ]
    assert names(statusEquals="Submitted") == ["other-job"]
    assert names(statusEquals="Completed", maxResults=1) == ["afb-run1-2"]
    first = bedrock.list_model_invocation_jobs(maxResults=3)
    assert len(first["invocationJobSummaries"]) == 3 and "nextToken" in first
    rest = bedrock.list_model_invocation_jobs(maxResults=3, nextToken=first["nextToken"])
    assert [j["jobArn"] for j in rest["invocationJobSummaries"]] == [
        arns[0]
    ] and "nextToken" not in rest
    paged = [
        j["jobArn"]
        for page in bedrock.get_paginator("list_model_invocation_jobs").paginate(
            PaginationConfig={"PageSize": 2}
        )
        for j in page["invocationJobSummaries"]
    ]
    assert paged == [pending, *arns[::-1]]


def test_unsigned_requests_are_refused(emu: Emulator) -> None:
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(emu.url + "/model-invocation-jobs", timeout=5)
    assert (
        info.value.code == 403 and info.value.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    )
    assert json.loads(info.value.read())["message"]


def test_s3_problems_fail_the_job(
    emu: Emulator,
    bedrock: Any,
    s3: Any,
    bucket: str,
    few_records: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    uri = put_jsonl(s3, bucket, "in/input.jsonl", [bedrock_claude_record(0)])
    arn = bedrock.create_model_invocation_job(
        jobName="no-out",
        roleArn=ROLE_ARN,
        modelId=CLAUDE,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": uri}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://no-such-bucket-here/out/"}},
    )["jobArn"]
    job = bedrock.get_model_invocation_job(jobIdentifier=arn)
    assert job["status"] == "Failed" and "write the output" in job["message"]

    # without any S3 endpoint the emulator refuses instead of reaching for the real AWS
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    with Emulator() as bare:
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK", bare.url)
        import boto3

        client = boto3.client("bedrock")
        arn = create_job(client, bucket, uri)
        job = client.get_model_invocation_job(jobIdentifier=arn)
        assert job["status"] == "Failed" and "no S3" in job["message"]
        assert bare.created[0][3] is None


def test_prefill_on_claude_4_6_is_a_record_error(
    emu: Emulator, bedrock: Any, s3: Any, bucket: str, few_records: None
) -> None:
    prefilled = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<"}]
    records = [bedrock_claude_record(0), bedrock_claude_record(1, messages=prefilled)]
    arn = create_job(
        bedrock,
        bucket,
        put_jsonl(s3, bucket, "in/input.jsonl", records),
        model="us.anthropic.claude-opus-4-6-v1",
    )
    assert bedrock.get_model_invocation_job(jobIdentifier=arn)["errorRecordCount"] == 1
    errors = {ln["recordId"]: ln.get("error") for ln in read_output(s3, bucket, arn)}
    assert errors["REC00000000"] is None
    assert errors["REC00000001"]["errorCode"] == 400
    assert "does not support assistant message prefill" in errors["REC00000001"]["errorMessage"]
    assert [c[2] for c in emu.calls] == ["REC00000000"]
