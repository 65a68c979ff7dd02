"""The emulated Mistral files + batch jobs API, driven by the real mistralai SDK over HTTP."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

import pytest

from afbatch.emulator import Emulator, Reply, RowError

pytest.importorskip("mistralai.client")

MODEL = "mistral-small-latest"


@pytest.fixture
def client(emu: Emulator) -> Any:
    from mistralai.client import Mistral

    return Mistral(api_key=os.environ["MISTRAL_API_KEY"], server_url=os.environ["MISTRAL_BASE_URL"])


def line(i: int, *, prefix: str | None = None, **body: Any) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": f"Q{i}"},
    ]
    if prefix is not None:
        messages.append({"role": "assistant", "content": prefix, "prefix": True})
    return {"custom_id": f"req-{i}", "body": {"max_tokens": 32, "messages": messages, **body}}


def upload(client: Any, lines: list[dict[str, Any]], purpose: str = "batch") -> str:
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    return str(
        client.files.upload(file={"file_name": "in.jsonl", "content": data}, purpose=purpose).id
    )


def create(client: Any, file_ids: list[str], **kw: Any) -> Any:
    args: dict[str, Any] = {"model": MODEL, "endpoint": "/v1/chat/completions", **kw}
    return client.batch.jobs.create(input_files=file_ids, **args)


def read(client: Any, file_id: str | None) -> list[dict[str, Any]]:
    if not file_id:
        return []
    resp = client.files.download(file_id=file_id)
    return [json.loads(x) for x in resp.read().decode().splitlines() if x.strip()]


def test_happy_path_with_a_prefix(emu: Emulator, client: Any) -> None:
    emu.responder = lambda ctx: Reply(
        f"{ctx.prefill}|{ctx.custom_id}", input_tokens=50, output_tokens=5
    )
    emu.processing_delay = 60
    job = create(
        client,
        [upload(client, [line(0, prefix="<"), line(1)])],
        metadata={"afbatch_token": "t1"},
        timeout_hours=24,
    )
    assert (job.status, job.total_requests, job.metadata) == ("QUEUED", 0, {"afbatch_token": "t1"})
    emu.processing_delay = 0
    job = client.batch.jobs.get(job_id=job.id)
    assert (job.status, job.total_requests, job.succeeded_requests, job.failed_requests) == (
        "SUCCESS",
        2,
        2,
        0,
    )
    assert job.error_file is None
    out = {x["custom_id"]: x for x in read(client, job.output_file)}
    first = out["req-0"]["response"]
    assert first["status_code"] == 200
    # the prefix is what the model continued, and the answer starts with it
    assert first["body"]["choices"][0]["message"]["content"] == "<<|req-0"
    assert first["body"]["usage"]["prompt_tokens"] == 50
    assert out["req-1"]["response"]["body"]["choices"][0]["message"]["content"] == "None|req-1"
    assert emu.calls == [("mistral", MODEL, "req-0"), ("mistral", MODEL, "req-1")]


def test_row_errors_go_to_the_error_file(emu: Emulator, client: Any) -> None:
    emu.responder = lambda ctx: RowError("rate_limit") if ctx.custom_id == "req-1" else "ok"
    trailing = line(2)
    trailing["body"]["messages"].append({"role": "assistant", "content": "<"})  # no prefix flag
    job = create(client, [upload(client, [line(0), line(1), trailing, line(3, foo=1)])])
    job = client.batch.jobs.get(job_id=job.id)
    assert (job.status, job.succeeded_requests, job.failed_requests) == ("SUCCESS", 1, 3)
    errors = {x["custom_id"]: x["response"] for x in read(client, job.error_file)}
    assert errors["req-1"]["status_code"] == 429
    assert errors["req-2"]["status_code"] == 400
    assert "Assistant with prefix True" in errors["req-2"]["body"]["message"]
    assert "foo" in errors["req-3"]["body"]["message"]
    assert [x["custom_id"] for x in read(client, job.output_file)] == ["req-0"]


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ([line(0), line(0)], "not unique"),
        ([line(0, model="mistral-large-latest")], "differs from the job's"),
        ([{"custom_id": "req-0"}], "needs a `body`"),
    ],
)
def test_bad_input_files_fail_the_job(client: Any, lines: list[dict[str, Any]], words: str) -> None:
    job = create(client, [upload(client, lines)])
    job = client.batch.jobs.get(job_id=job.id)
    assert job.status == "FAILED" and words in job.errors[0].message
    assert job.output_file is None and job.error_file is None


def test_create_time_rejections(emu: Emulator, client: Any) -> None:
    from mistralai.client import errors

    good = upload(client, [line(0)])
    with pytest.raises(errors.SDKError) as ei:
        create(client, [good], model="gpt-4o")
    assert ei.value.status_code == 400 and "Invalid model" in ei.value.body
    with pytest.raises(errors.SDKError) as ei:
        create(client, ["no-such-file"])
    assert ei.value.status_code == 404
    with pytest.raises(errors.SDKError) as ei:
        create(client, [upload(client, [line(0)], purpose="fine-tune")])
    assert ei.value.status_code == 400
    assert emu.created == []


def test_timeout_exceeded_keeps_what_finished(emu: Emulator, client: Any) -> None:
    emu.faults.batch("mistral", "expired", fraction_done=0.5)
    job = create(client, [upload(client, [line(i) for i in range(4)])])
    job = client.batch.jobs.get(job_id=job.id)
    assert (job.status, job.succeeded_requests, job.total_requests) == ("TIMEOUT_EXCEEDED", 2, 4)
    assert len(read(client, job.output_file)) == 2 and job.error_file is None


def test_cancel(emu: Emulator, client: Any) -> None:
    emu.processing_delay = 60
    job = create(client, [upload(client, [line(i) for i in range(3)])])
    assert client.batch.jobs.cancel(job_id=job.id).status == "CANCELLATION_REQUESTED"
    job = client.batch.jobs.get(job_id=job.id)
    assert job.status == "CANCELLED" and emu.calls == []


def test_list_is_newest_first_paged_and_filtered_by_creation(emu: Emulator, client: Any) -> None:
    from datetime import UTC, datetime, timedelta

    file_id = upload(client, [line(0)])
    ids = [create(client, [file_id], metadata={"n": str(i)}).id for i in range(3)]
    page = client.batch.jobs.list(page=0, page_size=2)
    assert page.total == 3 and [j.id for j in page.data] == ids[::-1][:2]
    assert [j.id for j in client.batch.jobs.list(page=1, page_size=2).data] == ids[:1]
    later = datetime.now(UTC) + timedelta(hours=1)
    assert client.batch.jobs.list(created_after=later).total == 0


def test_mounted_apart_from_openai(emu: Emulator, client: Any) -> None:
    upload(client, [line(0)])
    assert emu.openai.files == {} and len(emu.mistral.files) == 1
    assert _status(emu.url + "/mistral/v1/batch/jobs") == 401  # no key
    assert _status(emu.url + "/mistral/v1/nothing", {"authorization": "Bearer k"}) == 404


def _status(url: str, headers: dict[str, str] | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_http_faults_reach_the_mistral_routes(emu: Emulator, client: Any) -> None:
    from mistralai.client import errors

    emu.faults.http("mistral", "POST", r"^/mistral/v1/files$", 503)
    with pytest.raises(errors.SDKError) as ei:
        upload(client, [line(0)])
    assert ei.value.status_code == 503 and emu.mistral.files == {}
    assert emu.faults.fired == [("mistral", "POST", "/mistral/v1/files", 503)]


def test_over_limit_input_fails_the_job(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from afbatch.emulator.mistral import MistralService

    monkeypatch.setattr(MistralService, "MAX_REQUESTS", 2)
    job = create(client, [upload(client, [line(i) for i in range(3)])])
    job = client.batch.jobs.get(job_id=job.id)
    assert job.status == "FAILED" and "limit 2" in job.errors[0].message


def test_line_faults_damage_the_output(emu: Emulator, client: Any) -> None:
    emu.faults.line("mistral", "garbage")
    job = create(client, [upload(client, [line(0), line(1)])])
    job = client.batch.jobs.get(job_id=job.id)
    raw = client.files.download(file_id=job.output_file).read().decode().splitlines()
    bad = [x for x in raw if not x.endswith("}")]
    assert len(raw) == 2 and len(bad) == 1  # one line cut off mid-way
