"""The emulated Fireworks datasets and batch inference jobs, called over HTTP as the provider calls
them: what they refuse, how a job runs, fails and is cancelled, and the signed downloads."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from afbatch.emulator import Emulator, Reply
from afbatch.emulator.fireworks import FireworksService

ACCT = "accounts/emulator"
MODEL = "accounts/fireworks/models/llama-v3p1-8b-instruct"


@pytest.fixture
def fw(emu: Emulator) -> Any:
    with httpx2.Client(
        base_url=emu.url + "/fireworks/v1", headers={"Authorization": "Bearer emulator-key"}
    ) as client:
        yield client


def line(i: int, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": f"req-{i}",
        "body": {
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": f"Q{i}"},
            ],
            "max_tokens": 16,
            **body,
        },
    }


def dataset(fw: Any, did: str, rows: list[dict[str, Any]] | bytes) -> str:
    r = fw.post(
        f"/{ACCT}/datasets",
        json={"datasetId": did, "dataset": {"userUploaded": {}, "exampleCount": str(len(rows))}},
    )
    assert r.status_code == 200, r.text
    data = rows if isinstance(rows, bytes) else "".join(json.dumps(x) + "\n" for x in rows).encode()
    r = fw.post(f"/{ACCT}/datasets/{did}:upload", files={"file": ("in.jsonl", data)})
    assert r.status_code == 200, r.text
    return f"{ACCT}/datasets/{did}"


def job(fw: Any, jid: str, src: str, out: str, **extra: Any) -> httpx2.Response:
    return fw.post(
        f"/{ACCT}/batchInferenceJobs",
        params={"batchInferenceJobId": jid},
        json={
            "model": MODEL,
            "inputDatasetId": src,
            "outputDatasetId": f"{ACCT}/datasets/{out}",
            **extra,
        },
    )


def output(fw: Any, name: str) -> list[dict[str, Any]]:
    out = fw.get(f"/{name}").json()["outputDatasetId"]
    urls = fw.get(f"/{out}:getDownloadEndpoint").json()["filenameToSignedUrls"]
    return [
        json.loads(ln)
        for u in urls.values()
        for ln in httpx2.get(u).content.splitlines()
        if ln.strip()
    ]


def test_every_call_needs_a_key_but_a_signed_url(emu: Emulator, fw: Any) -> None:
    r = httpx2.get(emu.url + f"/fireworks/v1/{ACCT}/batchInferenceJobs/x")
    assert r.status_code == 401 and r.json()["code"] == 16
    assert fw.get(f"/{ACCT}/batchInferenceJobs/nope").status_code == 404


def test_datasets_are_created_once_and_uploaded_once(fw: Any) -> None:
    body = {"datasetId": "Bad_Id", "dataset": {"userUploaded": {}}}
    assert fw.post(f"/{ACCT}/datasets", json=body).status_code == 400
    body["datasetId"] = "ok-1"
    assert fw.post(f"/{ACCT}/datasets", json={**body, "extra": 1}).status_code == 400
    odd = {"datasetId": "ok-1", "dataset": {"userUploaded": {}, "example_count": "1"}}
    assert fw.post(f"/{ACCT}/datasets", json=odd).status_code == 400
    assert fw.post(f"/{ACCT}/datasets", json=body).status_code == 200
    assert fw.post(f"/{ACCT}/datasets", json=body).status_code == 409
    assert fw.get(f"/{ACCT}/datasets/ok-1").json()["state"] == "UPLOADING"
    up = {"file": ("a.jsonl", b"{}\n")}
    assert fw.post(f"/{ACCT}/datasets/ok-1:upload", files=up).status_code == 200
    assert fw.get(f"/{ACCT}/datasets/ok-1").json()["state"] == "READY"
    assert fw.post(f"/{ACCT}/datasets/ok-1:upload", files=up).status_code == 400
    assert fw.post(f"/{ACCT}/datasets/none:upload", files=up).status_code == 404


def test_an_upload_over_the_one_request_limit_is_refused(
    fw: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FireworksService, "MAX_UPLOAD_BYTES", 10)
    fw.post(f"/{ACCT}/datasets", json={"datasetId": "big", "dataset": {"userUploaded": {}}})
    r = fw.post(f"/{ACCT}/datasets/big:upload", files={"file": ("a.jsonl", b"x" * 11)})
    assert r.status_code == 413 and "getUploadEndpoint" in r.json()["message"]


def test_a_job_refuses_what_the_api_refuses(emu: Emulator, fw: Any) -> None:
    src = dataset(fw, "in-1", [line(0)])
    fw.post(f"/{ACCT}/datasets", json={"datasetId": "half", "dataset": {"userUploaded": {}}})
    cases = [
        job(fw, "j-1", src, "out-1", unknown=True),
        job(fw, "j-1", src, "out-1", model="llama-v3p1-8b-instruct"),
        job(fw, "j-1", src, "out-1", inferenceParameters={"maxTokens": "16"}),
        job(fw, "J_1", src, "out-1"),
        job(fw, "j-1", "accounts/other/datasets/in-1", "out-1"),
        job(fw, "j-1", f"{ACCT}/datasets/half", "out-1"),  # never uploaded: not READY
        job(fw, "j-1", src, "in-1"),  # the output dataset exists already
    ]
    assert [r.status_code for r in cases] == [400] * 7
    assert job(fw, "j-1", f"{ACCT}/datasets/none", "out-1").status_code == 404
    assert emu.created == []
    assert job(fw, "j-1", src, "out-1", inferenceParameters={"maxTokens": 16}).status_code == 200
    assert job(fw, "j-1", src, "out-2").status_code == 409  # one job per id
    assert len(emu.created) == 1


def test_a_job_runs_rows_and_writes_results_and_errors(emu: Emulator, fw: Any) -> None:
    emu.responder = lambda ctx: Reply(
        f"A {ctx.custom_id} {ctx.params['max_tokens']}", input_tokens=40, output_tokens=3
    )
    src = dataset(fw, "in-2", [line(0), line(1, model=MODEL), line(2, temperature=3)])
    name = job(fw, "j-2", src, "out-2").json()["name"]
    got = fw.get(f"/{name}").json()
    assert got["state"] == "JOB_STATE_COMPLETED"
    assert got["jobProgress"]["successfullyProcessedRequests"] == 1
    assert got["jobProgress"]["failedRequests"] == 2
    by_id = {r["custom_id"]: r for r in output(fw, name)}
    assert by_id["req-0"]["response"]["choices"][0]["message"]["content"] == "A req-0 16"
    assert by_id["req-0"]["response"]["usage"]["prompt_tokens"] == 40
    assert by_id["req-1"]["error"]["code"] == 400  # the model is the job's, not a row's
    assert by_id["req-2"]["error"]["code"] == 400
    assert [c for _, _, c in emu.calls] == ["req-0"]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b'{"custom_id": "a", "body": {"messages": []}}\n' * 2, "unique"),
        (b'{"custom_id": "a", "method": "POST", "body": {"messages": []}}\n', "exactly"),
        (b'{"custom_id": "a", "body": {"messages": []}}\nnot json\n', "not valid JSON"),
    ],
)
def test_a_bad_input_line_fails_the_whole_job(
    emu: Emulator, fw: Any, data: bytes, why: str
) -> None:
    name = job(fw, "j-3", dataset(fw, "in-3", data), "out-3").json()["name"]
    got = fw.get(f"/{name}").json()
    assert got["state"] == "JOB_STATE_FAILED" and why in got["status"]["message"]
    assert emu.calls == []


def test_cancel(emu: Emulator, fw: Any) -> None:
    emu.processing_delay = 60
    name = job(fw, "j-4", dataset(fw, "in-4", [line(0), line(1)]), "out-4").json()["name"]
    assert fw.get(f"/{name}").json()["state"] == "JOB_STATE_VALIDATING"
    assert fw.post(f"/{name}:cancel", json={}).status_code == 200
    assert fw.get(f"/{name}").json()["state"] == "JOB_STATE_CANCELLED"
    assert fw.post(f"/{name}:cancel", json={}).status_code == 400
    assert output(fw, name) == []


def test_signed_urls_refuse_a_key_and_a_wrong_signature(fw: Any) -> None:
    name = job(fw, "j-5", dataset(fw, "in-5", [line(0)]), "out-5").json()["name"]
    out = fw.get(f"/{name}").json()["outputDatasetId"]
    (url,) = fw.get(f"/{out}:getDownloadEndpoint").json()["filenameToSignedUrls"].values()
    assert httpx2.get(url).status_code == 200
    assert httpx2.get(url, headers={"Authorization": "Bearer k"}).status_code == 400
    assert httpx2.get(url.replace("sig=", "sig=x")).status_code == 403


def test_faults_reach_the_fireworks_service(emu: Emulator, fw: Any) -> None:
    emu.faults.http("fireworks", "GET", r"/batchInferenceJobs/", 503)
    assert fw.get(f"/{ACCT}/batchInferenceJobs/x").status_code == 503
    assert fw.get(f"/{ACCT}/batchInferenceJobs/x").status_code == 404
    assert emu.faults.pending() == []


def test_the_demo_model_answers_a_fireworks_row(emu: Emulator, fw: Any) -> None:
    row = {
        "custom_id": "c1",
        "body": {
            "messages": [
                {
                    "role": "system",
                    "content": "Reason in <SCRATCHPAD_REASONING> tags, answer in <OUTPUT>.",
                },
                {"role": "user", "content": "<is_free_tier_user>true</is_free_tier_user> hi"},
            ],
            "max_tokens": 200,
        },
    }
    name = job(fw, "j-6", dataset(fw, "in-6", [row]), "out-6").json()["name"]
    (got,) = output(fw, name)
    assert "<SCRATCHPAD_REASONING>" in got["response"]["choices"][0]["message"]["content"]
