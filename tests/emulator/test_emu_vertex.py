"""The emulated Vertex AI batch prediction and its Cloud Storage, driven by the real google-genai
(vertexai=True), google-cloud-storage and google-auth (and raw HTTP where an SDK would not send
what is being refused): the token endpoint and 401s, uploads (multipart and resumable in chunks),
downloads, listing, job create/get/list/cancel, what create refuses, per-line errors, pass-through
columns, fault injection."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from afbatch.emulator import Emulator, Reply

BUCKET = "afbatch-emulator"


@pytest.fixture
def credentials(emu: Emulator) -> Any:
    import google.auth

    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return creds


@pytest.fixture
def gcs(credentials: Any) -> Any:
    from google.cloud import storage

    return storage.Client(project="afbatch-emulator", credentials=credentials)


@pytest.fixture
def vertex(credentials: Any) -> Any:
    from google import genai

    return genai.Client(
        vertexai=True, project="p1", location="us-central1", credentials=credentials
    )


def http(method: str, url: str, body: bytes | None = None, **headers: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def line(key: str, text: str = "hello", **more: Any) -> dict[str, Any]:
    request = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    return {"key": key, "request": request, **more}


def put(gcs: Any, name: str, lines: list[dict[str, Any]] | bytes) -> str:
    data = lines if isinstance(lines, bytes) else "".join(json.dumps(x) + "\n" for x in lines)
    gcs.bucket(BUCKET).blob(name).upload_from_string(data, content_type="application/jsonl")
    return f"gs://{BUCKET}/{name}"


def predictions(gcs: Any, job: Any) -> dict[str, dict[str, Any]]:
    folder = job.output_info.gcs_output_directory.removeprefix(f"gs://{BUCKET}/")
    rows = []
    for blob in gcs.list_blobs(BUCKET, prefix=folder + "/"):
        rows += [json.loads(x) for x in blob.download_as_bytes().decode().splitlines()]
    return {r["key"]: r for r in rows}


# ---------------------------------------------------------------- auth


def test_calls_without_a_token_get_401_as_google_answers(emu: Emulator) -> None:
    jobs = f"{emu.url}/vertex/v1beta1/projects/p/locations/l/batchPredictionJobs"
    for url in (jobs, f"{emu.url}/gcs/storage/v1/b/{BUCKET}/o"):
        status, body = http("GET", url)
        assert status == 401 and body["error"]["code"] == 401
        status, _ = http("GET", url, Authorization="Bearer ya29.not-issued-here")
        assert status == 401


def test_the_token_endpoint_checks_the_client_and_the_refresh_token(emu: Emulator) -> None:
    import base64

    from afbatch.emulator.vertex import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN

    def ask(client: str, refresh: str) -> tuple[int, Any]:
        basic = base64.b64encode(client.encode()).decode()
        form = f"grant_type=refresh_token&refresh_token={refresh}".encode()
        return http("POST", f"{emu.url}/vertex/token", form, Authorization=f"Basic {basic}")

    assert ask(f"{CLIENT_ID}:wrong", REFRESH_TOKEN)[0] == 401
    assert ask(f"{CLIENT_ID}:{CLIENT_SECRET}", "wrong")[0] == 400
    status, body = ask(f"{CLIENT_ID}:{CLIENT_SECRET}", REFRESH_TOKEN)
    assert status == 200 and body["access_token"] in emu.vertex.tokens
    jobs = f"{emu.url}/vertex/v1/projects/p/locations/l/batchPredictionJobs"
    assert http("GET", jobs, Authorization=f"Bearer {body['access_token']}")[0] == 200


# ---------------------------------------------------------------- Cloud Storage


def test_resumable_upload_in_chunks_download_and_list(emu: Emulator, gcs: Any) -> None:
    data = bytes(range(256)) * 3000  # 768,000 bytes: three chunks of 256 KiB
    blob = gcs.bucket(BUCKET).blob("in/big.bin", chunk_size=256 * 1024)
    blob.upload_from_string(data, content_type="application/octet-stream")  # checksum checked
    assert emu.gcs.read(BUCKET, "in/big.bin").data == data
    assert gcs.bucket(BUCKET).blob("in/big.bin").download_as_bytes() == data
    put(gcs, "in/small.jsonl", [line("a")])  # one multipart request
    put(gcs, "other/x.jsonl", [line("b")])
    assert [b.name for b in gcs.list_blobs(BUCKET, prefix="in/")] == [
        "in/big.bin",
        "in/small.jsonl",
    ]


def test_missing_object_and_bucket_are_404(emu: Emulator, gcs: Any) -> None:
    from google.api_core import exceptions

    with pytest.raises(exceptions.NotFound):
        gcs.bucket(BUCKET).blob("nothing-here").download_as_bytes()
    with pytest.raises(exceptions.NotFound):
        gcs.bucket("no-such-bucket").blob("x").upload_from_string(b"x")


# ---------------------------------------------------------------- jobs


def test_create_run_and_read_predictions(emu: Emulator, gcs: Any, vertex: Any) -> None:
    emu.responder = lambda ctx: Reply(f"answer to {ctx.custom_id}", input_tokens=9)
    src = put(
        gcs,
        "in/job.jsonl",
        [line("k1", note="kept"), line("k2"), {"key": "k3", "request": {"contents": []}}],
    )
    job = vertex.batches.create(
        model="gemini-3.6-flash",
        src=src,
        config={"dest": f"gs://{BUCKET}/out/", "display_name": "afbatch-t1"},
    )
    assert job.name.startswith("projects/p1/locations/us-central1/batchPredictionJobs/")
    job = vertex.batches.get(name=job.name)
    assert job.state.value == "JOB_STATE_PARTIALLY_SUCCEEDED"
    assert job.output_info.gcs_output_directory.startswith(f"gs://{BUCKET}/out/prediction-model-")
    rows = predictions(gcs, job)
    assert rows["k1"]["note"] == "kept" and rows["k1"]["request"] == line("k1")["request"]
    assert rows["k1"]["status"] == "" and rows["k1"]["response"]["usageMetadata"] == {
        "promptTokenCount": 9,
        "candidatesTokenCount": rows["k1"]["response"]["usageMetadata"]["candidatesTokenCount"],
        "totalTokenCount": rows["k1"]["response"]["usageMetadata"]["totalTokenCount"],
    }
    text = rows["k2"]["response"]["candidates"][0]["content"]["parts"][0]["text"]
    assert text == "answer to k2"
    assert "response" not in rows["k3"] and "INVALID_ARGUMENT" in rows["k3"]["status"]
    assert ("vertex", "gemini-3.6-flash", "k1") in emu.calls
    listed = list(vertex.batches.list(config={"filter": 'display_name="afbatch-t1"'}))
    assert [j.name for j in listed] == [job.name]
    assert list(vertex.batches.list(config={"filter": 'display_name="afbatch-t2"'})) == []


@pytest.mark.parametrize(
    ("model", "src", "dest", "status", "words"),
    [
        ("not-a-model", "in/ok.jsonl", "out/", 404, "Publisher Model"),
        ("gemini-3.6-flash", "in/missing.jsonl", "out/", 400, "does not exist"),
        ("gemini-3.6-flash", "in/bad.jsonl", "out/", 400, "not valid JSON"),
        ("gemini-3.6-flash", "in/norequest.jsonl", "out/", 400, '"request"'),
    ],
)
def test_create_refuses(
    emu: Emulator, gcs: Any, vertex: Any, model: str, src: str, dest: str, status: int, words: str
) -> None:
    from google.genai import errors

    put(gcs, "in/ok.jsonl", [line("a")])
    put(gcs, "in/bad.jsonl", b'{"key": "a", "request": {}}\nnot json\n')
    put(gcs, "in/norequest.jsonl", [{"key": "a"}])
    with pytest.raises(errors.APIError) as ei:
        vertex.batches.create(
            model=model, src=f"gs://{BUCKET}/{src}", config={"dest": f"gs://{BUCKET}/{dest}"}
        )
    assert ei.value.code == status and words in str(ei.value)
    assert emu.created == []


def test_create_refuses_a_bad_uri_a_missing_bucket_and_too_many_requests(
    emu: Emulator, gcs: Any, vertex: Any
) -> None:
    from google.genai import errors

    src = put(gcs, "in/three.jsonl", [line("a"), line("b"), line("c")])
    for bad_src, dest in (
        ("gs://UPPER_CASE_BUCKET/x.jsonl", f"gs://{BUCKET}/out/"),
        (src, "gs://no-such-bucket/out/"),
    ):
        with pytest.raises(errors.APIError) as ei:
            vertex.batches.create(model="gemini-3.6-flash", src=bad_src, config={"dest": dest})
        assert ei.value.code == 400
    emu.vertex.MAX_REQUESTS = 2
    with pytest.raises(errors.APIError, match="exceed the 2 per job"):
        vertex.batches.create(
            model="gemini-3.6-flash", src=src, config={"dest": f"gs://{BUCKET}/out/"}
        )
    emu.vertex.MAX_FILE_BYTES = 10
    emu.vertex.MAX_REQUESTS = 200_000
    with pytest.raises(errors.APIError, match="exceeds 10 bytes"):
        vertex.batches.create(
            model="gemini-3.6-flash", src=src, config={"dest": f"gs://{BUCKET}/out/"}
        )
    assert emu.created == []


def test_cancel_and_unknown_job(emu: Emulator, gcs: Any, vertex: Any) -> None:
    from google.genai import errors

    emu.processing_delay = 60
    src = put(gcs, "in/c.jsonl", [line("a")])
    job = vertex.batches.create(
        model="gemini-3.6-flash", src=src, config={"dest": f"gs://{BUCKET}/out/"}
    )
    vertex.batches.cancel(name=job.name)
    assert vertex.batches.get(name=job.name).state.value == "JOB_STATE_CANCELLED"
    with pytest.raises(errors.APIError) as ei:
        vertex.batches.get(name=job.name.rsplit("/", 1)[0] + "/12345")
    assert ei.value.code == 404


def test_faults_apply_to_vertex_and_cloud_storage(emu: Emulator, gcs: Any, vertex: Any) -> None:
    from google.api_core import exceptions
    from google.genai import errors

    emu.faults.http("gcs", "POST", r"/upload/", 403)
    with pytest.raises(exceptions.Forbidden):
        put(gcs, "in/f.jsonl", [line("a")])
    src = put(gcs, "in/f.jsonl", [line("a"), line("b")])
    emu.faults.http("vertex", "POST", r"/batchPredictionJobs$", 400)
    with pytest.raises(errors.APIError):
        vertex.batches.create(
            model="gemini-3.6-flash", src=src, config={"dest": f"gs://{BUCKET}/out/"}
        )
    emu.faults.batch("vertex", "expired", fraction_done=0.5)
    emu.faults.line("vertex", "missing_field")
    job = vertex.batches.create(
        model="gemini-3.6-flash", src=src, config={"dest": f"gs://{BUCKET}/out/"}
    )
    job = vertex.batches.get(name=job.name)
    assert job.state.value == "JOB_STATE_EXPIRED"
    (row,) = predictions(gcs, job).values()
    assert "response" not in row  # the line fault took it out
    assert emu.faults.pending() == []
