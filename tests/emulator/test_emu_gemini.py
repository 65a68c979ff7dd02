"""The emulated Gemini API batch mode, driven by the real google-genai SDK (and raw HTTP where the
SDK would not send what is being refused): the resumable upload, create/get/list/cancel, what it
refuses, per-line errors, the results file."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from afbatch.emulator import Emulator, Reply


@pytest.fixture
def genai_client(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Any:
    from google import genai

    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    return genai.Client(vertexai=False)  # GEMINI_API_KEY and GOOGLE_GEMINI_BASE_URL from emu.env()


class Answer:
    """A raw HTTP answer (the SDK would not send what some tests send)."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status_code, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    json_body: Any = None,
) -> Answer:
    if json_body is not None:
        content = json.dumps(json_body).encode()
    req = urllib.request.Request(url, data=content, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as resp:
            return Answer(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as e:
        return Answer(e.code, e.headers, e.read())


def line(key: str, text: str = "hello", **request: Any) -> dict[str, Any]:
    body = {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "generation_config": {"max_output_tokens": 20},
        **request,
    }
    return {"key": key, "request": body}


def upload(client: Any, lines: list[dict[str, Any]] | bytes) -> str:
    data = (
        lines if isinstance(lines, bytes) else "".join(json.dumps(x) + "\n" for x in lines).encode()
    )
    f = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    return str(f.name)


def results(client: Any, name: str) -> dict[str, dict[str, Any]]:
    job = client.batches.get(name=name)
    data = client.files.download(file=job.dest.file_name)
    rows = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
    return {r["key"]: r for r in rows}


def test_upload_create_get_download(emu: Emulator, genai_client: Any) -> None:
    emu.responder = lambda ctx: Reply(
        f"{ctx.system}|{ctx.messages[-1]['content']}",
        input_tokens=30,
        output_tokens=4,
        stop_reason="max_tokens",
    )
    src = upload(
        genai_client, [line("a", system_instruction={"parts": [{"text": "S"}]}), line("b", "bye")]
    )
    assert src.startswith("files/")
    job = genai_client.batches.create(
        model="gemini-2.5-flash", src=src, config={"display_name": "afbatch-t123"}
    )
    assert job.name.startswith("batches/") and job.display_name == "afbatch-t123"
    got = results(genai_client, job.name)
    assert genai_client.batches.get(name=job.name).state.value == "JOB_STATE_SUCCEEDED"
    a = got["a"]["response"]
    assert a["candidates"][0]["content"]["parts"][0]["text"] == "S|hello"
    assert a["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert a["usageMetadata"]["promptTokenCount"] == 30
    assert got["b"]["response"]["candidates"][0]["content"]["parts"][0]["text"] == "None|bye"
    assert [c[0] for c in emu.calls] == ["gemini", "gemini"]


def test_upload_in_chunks_checks_offsets(emu: Emulator) -> None:
    """The resumable protocol: start, chunks at their offsets, finalize at the declared size."""
    base = emu.url + "/gemini/upload/v1beta/files"
    start = {
        "x-goog-api-key": "k",
        "X-Goog-Upload-Protocol": "resumable",
        "X-Goog-Upload-Command": "start",
        "X-Goog-Upload-Header-Content-Length": "6",
        "X-Goog-Upload-Header-Content-Type": "jsonl",
    }
    r = http("POST", base, start, json_body={"file": {}})
    url = r.headers["x-goog-upload-url"]
    r = http("POST", url, {"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"}, b"abc")
    assert r.headers["x-goog-upload-status"] == "active"
    bad = http(
        "POST",
        url,
        {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "0"},
        b"def",
    )
    assert bad.status_code == 400  # wrong offset
    done = http(
        "POST",
        url,
        {"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "3"},
        b"def",
    )
    assert done.headers["x-goog-upload-status"] == "final"
    name = done.json()["file"]["name"]
    assert bytes(emu.gemini.files[name].data) == b"abcdef"
    # uploaded files cannot be downloaded; a simple (non-resumable) upload is refused
    fid = name.removeprefix("files/")
    assert (
        http(
            "GET", f"{emu.url}/gemini/v1/files/{fid}:download", {"x-goog-api-key": "k"}
        ).status_code
        == 400
    )
    assert http("POST", base, {"x-goog-api-key": "k"}, b"x").status_code == 400


def test_an_upload_over_the_file_limit_is_refused(
    emu: Emulator, genai_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.genai import errors

    monkeypatch.setattr(emu.gemini, "MAX_FILE_BYTES", 10)
    with pytest.raises(errors.ClientError) as ei:
        upload(genai_client, [line("a")])
    assert ei.value.code == 400


def test_create_refuses_bad_files_and_models(emu: Emulator, genai_client: Any) -> None:
    from google.genai import errors

    def create(src: str, model: str = "gemini-2.5-flash") -> int:
        with pytest.raises(errors.APIError) as ei:
            genai_client.batches.create(model=model, src=src)
        return int(ei.value.code)

    good = upload(genai_client, [line("a")])
    assert create(good, model="gpt-4o") == 404  # not a Gemini model
    assert create("files/nope") == 404
    assert create(upload(genai_client, [line("a"), line("a")])) == 400  # duplicate key
    assert create(upload(genai_client, b'{"key": "a", "request": {}}\nnot json\n')) == 400
    assert create(upload(genai_client, [{"custom_id": "a", "body": {}}])) == 400  # OpenAI's shape
    assert emu.created == []


def test_requests_the_api_refuses_get_error_lines(emu: Emulator, genai_client: Any) -> None:
    trailing = line("prefill")
    trailing["request"]["contents"].append({"role": "model", "parts": [{"text": "<"}]})
    src = upload(
        genai_client,
        [
            line("ok"),
            trailing,
            line("unknown", max_tokens=5),
            line("hot", generation_config={"temperature": 2.5}),
            line("role", contents=[{"role": "assistant", "parts": [{"text": "x"}]}]),
        ],
    )
    job = genai_client.batches.create(model="gemini-2.5-flash", src=src)
    got = results(genai_client, job.name)
    assert "response" in got["ok"]
    for key, words in (
        ("prefill", "ending with a model turn"),
        ("unknown", "Unknown name"),
        ("hot", "temperature"),
        ("role", "valid role"),
    ):
        status = got[key]["status"]
        assert status["code"] == 3 and status["status"] == "INVALID_ARGUMENT"
        assert words in status["message"], key
    assert [c[2] for c in emu.calls] == ["ok"]  # refused lines never reach the model


def test_list_pages_and_cancel(emu: Emulator, genai_client: Any) -> None:
    emu.processing_delay = 60
    src = upload(genai_client, [line("a")])
    names = [genai_client.batches.create(model="gemini-2.5-flash", src=src).name for _ in range(3)]
    listed = [b.name for b in genai_client.batches.list(config={"page_size": 2})]
    assert listed == names[::-1]  # newest first, across pages
    genai_client.batches.cancel(name=names[0])
    job = genai_client.batches.get(name=names[0])
    assert job.state.value == "JOB_STATE_CANCELLED" and job.dest is None


def test_states_of_the_raw_resource(emu: Emulator) -> None:
    """The REST resource says BATCH_STATE_*; the SDK renames some (both are normalised)."""
    emu.processing_delay = 60
    headers = {"x-goog-api-key": "k"}
    from google import genai

    client = genai.Client(api_key="k", vertexai=False)
    src = upload(client, [line("a")])
    name = client.batches.create(model="gemini-2.5-flash", src=src).name
    raw = http("GET", f"{emu.url}/gemini/v1beta/{name}", headers).json()
    assert raw["metadata"]["state"] == "BATCH_STATE_PENDING" and raw["done"] is False
    emu.processing_delay = 0
    raw = http("GET", f"{emu.url}/gemini/v1beta/{name}", headers).json()
    assert raw["metadata"]["state"] == "BATCH_STATE_SUCCEEDED" and raw["done"] is True
    assert raw["metadata"]["batchStats"]["successfulRequestCount"] == "1"


def test_a_key_is_required(emu: Emulator) -> None:
    r = http("GET", f"{emu.url}/gemini/v1beta/batches")
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"


def test_faults_apply_to_gemini(emu: Emulator, genai_client: Any) -> None:
    from google.genai import errors

    src = upload(genai_client, [line("a"), line("b")])
    emu.faults.http("gemini", "POST", r":batchGenerateContent$", 429)
    with pytest.raises(errors.ClientError):
        genai_client.batches.create(model="gemini-2.5-flash", src=src)
    emu.faults.batch("gemini", "all_failed")
    job = genai_client.batches.create(model="gemini-2.5-flash", src=src)
    assert {r["status"]["status"] for r in results(genai_client, job.name).values()} == {"INTERNAL"}
    emu.faults.line("gemini", "missing_field")
    job = genai_client.batches.create(model="gemini-2.5-flash", src=src)
    assert sorted(len(r) for r in results(genai_client, job.name).values()) == [1, 2]
    assert emu.faults.pending() == []


def test_inline_requests_come_back_in_the_resource_with_their_metadata(
    emu: Emulator, genai_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.genai import errors

    emu.responder = lambda ctx: Reply(f"re:{ctx.messages[-1]['content']}", output_tokens=2)
    src = [
        {
            "contents": [{"role": "user", "parts": [{"text": t}]}],
            "metadata": {"key": k},
            "config": {"max_output_tokens": 9},
        }
        for k, t in (("k1", "one"), ("k2", "two"))
    ]
    src.append(
        {"contents": [{"role": "model", "parts": [{"text": "<"}]}], "metadata": {"key": "k3"}}
    )
    job = genai_client.batches.create(model="gemini-2.5-flash", src=src)
    done = genai_client.batches.get(name=job.name)
    assert done.dest.file_name is None
    out = {r.metadata["key"]: r for r in done.dest.inlined_responses}
    assert out["k1"].response.text == "re:one" and out["k2"].response.text == "re:two"
    assert out["k3"].error.code == 3  # a trailing model turn
    monkeypatch.setattr(emu.gemini, "MAX_INLINE_BYTES", 100)
    with pytest.raises(errors.ClientError) as ei:
        genai_client.batches.create(model="gemini-2.5-flash", src=src)
    assert ei.value.code == 400
