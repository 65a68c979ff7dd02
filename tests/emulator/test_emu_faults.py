"""HTTP fault injection: the SDKs' retry behaviour against scripted 429/5xx and slow responses."""

from __future__ import annotations

import threading
import time
from typing import Any

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from afbatch.emulator import Emulator
from afbatch.emulator.bedrock import BedrockService
from emu_helpers import (
    bedrock_claude_record,
    chat_row,
    claude_request,
    create_job,
    openai_jsonl,
    put_jsonl,
)

FAST = {"retry-after-ms": "1"}  # the SDKs honour it: retries without the 0.5 s backoff


def openai_file(emu: Emulator) -> str:
    return (
        openai.OpenAI(max_retries=0)
        .files.create(file=("input.jsonl", openai_jsonl([chat_row(0)])), purpose="batch")
        .id
    )


def test_openai_retries_through_a_429(emu: Emulator) -> None:
    file_id = openai_file(emu)
    emu.faults.http("openai", "POST", r"^/v1/batches$", 429)  # retry-after: 0, as a busy API sends
    client = openai.OpenAI(max_retries=2)
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    assert batch.status == "validating"
    assert emu.faults.fired == [("openai", "POST", "/v1/batches", 429)]
    assert len(emu.created) == 1  # the rejected attempt created nothing


def test_openai_gives_up_after_max_retries(emu: Emulator) -> None:
    file_id = openai_file(emu)
    emu.faults.http("openai", "POST", r"^/v1/batches$", 500, times=3, headers=FAST)
    client = openai.OpenAI(max_retries=2)
    with pytest.raises(openai.InternalServerError):
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert len(emu.faults.fired) == 3 and emu.created == []
    # the fault is used up: the next call goes through
    assert (
        client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        ).status
        == "validating"
    )


def test_openai_503_on_file_content_then_success(emu: Emulator) -> None:
    client = openai.OpenAI(max_retries=1)
    f = client.files.create(file=("input.jsonl", openai_jsonl([chat_row(0)])), purpose="batch")
    emu.faults.http("openai", "GET", r"/content$", 503, headers=FAST)
    assert client.files.content(f.id).text.startswith('{"custom_id": "req-0"')
    assert [status for *_, status in emu.faults.fired] == [503]


def test_anthropic_retries_overloaded_and_rate_limits(emu: Emulator) -> None:
    emu.faults.http("anthropic", "POST", r"/v1/messages/batches$", 529, headers=FAST)
    emu.faults.http("anthropic", "POST", r"/v1/messages/batches$", 429, headers=FAST)
    client = anthropic.Anthropic(max_retries=2)
    batch = client.messages.batches.create(requests=[claude_request(0)])
    assert [f[3] for f in emu.faults.fired] == [529, 429]
    assert (
        len(emu.created) == 1
        and client.messages.batches.retrieve(batch.id).processing_status == "ended"
    )


def test_anthropic_gives_up(emu: Emulator) -> None:
    emu.faults.http("anthropic", "GET", r"/v1/messages/batches/", 429, times=2, headers=FAST)
    client = anthropic.Anthropic(max_retries=1)
    batch = client.messages.batches.create(requests=[claude_request(0)])
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.batches.retrieve(batch.id)
    assert info.value.body["error"]["type"] == "rate_limit_error"
    assert info.value.response.headers["retry-after"] == "0"


def test_bedrock_throttling_is_retried_by_boto3(
    emu: Emulator, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BedrockService, "MIN_RECORDS", 1)
    uri = put_jsonl(s3, bucket, "in/input.jsonl", [bedrock_claude_record(0)])
    emu.faults.http("bedrock", "POST", r"^/model-invocation-job$", 429)
    patient = boto3.client(
        "bedrock", config=Config(retries={"total_max_attempts": 3, "mode": "standard"})
    )
    arn = create_job(patient, bucket, uri, clientRequestToken="tok-1")
    assert len(emu.created) == 1 and emu.faults.fired[0][3] == 429

    emu.faults.http("bedrock", "GET", r"^/model-invocation-job/", 500)
    impatient = boto3.client(
        "bedrock", config=Config(retries={"total_max_attempts": 1, "mode": "standard"})
    )
    with pytest.raises(ClientError) as info:
        impatient.get_model_invocation_job(jobIdentifier=arn)
    assert info.value.response["Error"]["Code"] == "InternalServerException"
    assert impatient.get_model_invocation_job(jobIdentifier=arn)["status"] == "Completed"


def test_slow_response_times_out_and_the_retry_succeeds(emu: Emulator) -> None:
    client = openai.OpenAI(max_retries=0)
    f = client.files.create(file=("input.jsonl", openai_jsonl([chat_row(0)])), purpose="batch")
    emu.faults.http("openai", "GET", r"^/v1/files/", delay=0.5)
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.1).files.retrieve(f.id)
    assert client.with_options(timeout=5).files.retrieve(f.id).id == f.id  # fault consumed


def test_a_timed_out_create_may_still_create(emu: Emulator) -> None:
    """Why afbatch reconciles before resubmitting: the server finished what the client gave up
    on."""
    client = openai.OpenAI(max_retries=1)
    f = client.files.create(file=("input.jsonl", openai_jsonl([chat_row(0)])), purpose="batch")
    emu.faults.http("openai", "POST", r"^/v1/batches$", delay=0.4)
    client.with_options(timeout=0.2).batches.create(
        input_file_id=f.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"token": "t1"},
    )
    deadline = time.time() + 5
    while len(emu.created) < 2 and time.time() < deadline:
        time.sleep(0.02)
    assert len(emu.created) == 2
    assert [b.metadata for b in client.batches.list()] == [{"token": "t1"}, {"token": "t1"}]


def test_custom_body_and_ordering(emu: Emulator) -> None:
    emu.faults.http(None, "*", r"/v1/batches/", 418, body={"surprise": True})
    emu.faults.http("openai", "GET", r"/v1/batches/", 404)
    client = openai.OpenAI(max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        client.batches.retrieve("batch_x")
    assert info.value.status_code == 418 and info.value.body == {"surprise": True}
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_x")
    assert emu.faults.pending() == []


def test_faults_are_thread_safe(emu: Emulator) -> None:
    emu.faults.http("openai", "GET", r"^/v1/files$", 500, times=25)
    client = openai.OpenAI(max_retries=0)
    statuses: list[int] = []

    def call() -> None:
        try:
            client.files.list()
            statuses.append(200)
        except openai.InternalServerError:
            statuses.append(500)

    threads = [threading.Thread(target=call) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 15 + [500] * 25


def test_fault_arguments_are_checked(emu: Emulator) -> None:
    with pytest.raises(ValueError):
        emu.faults.http("openai", "GET", "/", None)
    with pytest.raises(ValueError):
        emu.faults.batch("openai", "exploded")
    with pytest.raises(ValueError):
        emu.faults.batch("openai", "expired", fraction_done=1.5)
