"""The Vertex AI batch-prediction provider: golden request and result lines (pure), its prices (the
cache discount takes precedence over the batch discount), and its I/O against the emulator with
the real google-genai (vertexai=True), google-cloud-storage and google-auth over HTTP.

The expected result files in tests/golden/results/vertex/ were written by hand from the Vertex AI
batch-prediction output format (predictions.jsonl lines: the input's columns, `response` a
GenerateContentResponse, `status` the error message of a failed row), not from the code.
"""

from __future__ import annotations

import datetime
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from provider_support import one_shard, shard_token, wait_ended

from afbatch.compile import first_requests
from afbatch.errors import ProviderError
from afbatch.pricing import load_prices
from afbatch.providers import BatchStatus, Found, get_provider
from afbatch.providers.base import read_line
from afbatch.providers.vertex import VertexProvider
from afbatch.redact import redact
from afbatch.shard_files import render_lines
from afbatch.spec import ModelSpec, load_job
from afbatch.types import Message, Request, Result, RowStatus, Usage

GOLDEN = Path(__file__).parent / "golden"
BUCKET = "afbatch-emulator"  # the emulator's own bucket
FLASH = ModelSpec(
    provider="vertex",
    model="gemini-3.6-flash",
    label="vertex-flash",
    gcs_uri=f"gs://{BUCKET}/afb/runs",
)


# ============================================================================ pure halves


def test_golden_request_lines() -> None:
    """The golden job's first round for a Vertex model: the Gemini API's `{key, request}` lines
    (Vertex passes `key` through to its output), no prefill."""
    from afbatch.grid import load_grid

    grid = load_grid(load_job(GOLDEN / "job" / "job.toml"))
    provider = get_provider(FLASH)
    lines = [
        line.decode()
        for _, line in render_lines(provider, first_requests(grid, FLASH, load_prices()))
    ]
    assert lines == (GOLDEN / "requests" / "vertex-flash.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {"key", "request"}
    assert set(first["request"]) == {"contents", "system_instruction", "generation_config"}
    assert [c["role"] for c in first["request"]["contents"]] == ["user"]


def _parsed(rel: str) -> list[Result]:
    provider = get_provider(FLASH)
    raw = (GOLDEN / "results" / "vertex" / rel).read_bytes().splitlines()
    return [provider.parse(read_line(line)) for line in raw if line.strip()]


def test_golden_results() -> None:
    expected = json.loads((GOLDEN / "results" / "vertex" / "results.expected.json").read_text())
    got = [{**r.to_json(), "retryable": r.retryable} for r in _parsed("results.jsonl")]
    assert [g["id"] for g in got] == [e["id"] for e in expected]
    for g, e in zip(got, expected):
        assert g == e, g["id"]


def test_golden_malformed_lines_become_errored_rows() -> None:
    expected = json.loads((GOLDEN / "results" / "vertex" / "malformed.expected.json").read_text())
    got = _parsed("malformed.jsonl")
    assert len(got) == len(expected)
    for r, want in zip(got, expected):
        assert (r.id, r.status.value, r.error_kind, r.retryable) == (
            want["id"],
            want["status"],
            want["error_kind"],
            want["retryable"],
        )
        assert want["reason"] in (r.error_message or "")


def test_results_are_joined_on_key_not_on_the_echoed_request() -> None:
    """Two lines echoing the same request are told apart by their keys alone."""
    request = {"contents": [{"role": "user", "parts": [{"text": "same"}]}]}
    resp = {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": "STOP"}]}
    p = get_provider(FLASH)
    rows = [p.parse({"key": k, "request": request, "response": resp, "status": ""}) for k in "ab"]
    assert [r.id for r in rows] == ["a", "b"]


# ============================================================================ prices


def test_vertex_cache_reads_are_not_batch_discounted_again() -> None:
    """Vertex: the implicit-cache discount takes precedence over the 50% batch discount. 10k
    prompt tokens, 6k of them cached, 1k output on gemini-3.6-flash (list 1.5 / 7.5, cache read
    0.15, batch 0.75 / 3.75): 4k x 0.75 + 6k x 0.15 + 1k x 3.75."""
    price = load_prices().lookup(FLASH)
    assert price.cache_takes_precedence and not price.cache_stacks_with_batch
    cost = price.row_cost(False, "1h")
    assert cost(Usage(10_000, 6_000, 0, 1_000)) == pytest.approx(
        (4_000 * 0.75 + 6_000 * 0.15 + 1_000 * 3.75) / 1e6
    )
    # the Gemini API's same model: reads at the batch-discounted cache rate, as before
    gemini = load_prices().lookup(ModelSpec(provider="gemini", model="gemini-3.6-flash"))
    assert gemini.row_cost(False, "1h")(Usage(10_000, 6_000, 0, 1_000)) == pytest.approx(
        (4_000 * 0.75 + 6_000 * 0.075 + 1_000 * 3.75) / 1e6
    )


def test_the_estimate_does_not_budget_the_implicit_cache(tmp_path: Path) -> None:
    """Vertex's implicit cache is not guaranteed: batch+cache is the batch price, as for the Gemini
    API (the realised cost still bills cached tokens at the cache-read rate, test above)."""
    from afbatch.job_estimate import estimate_job

    for f in (GOLDEN / "job").iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    job = (GOLDEN / "job" / "job.toml").read_text().split("[[models]]")[0]
    job += '[[models]]\nprovider = "vertex"\nmodel = "gemini-3.6-flash"\n'
    job += 'gcs_uri = "gs://b/p"\n'
    (tmp_path / "job.toml").write_text(job)
    est = estimate_job(load_job(tmp_path / "job.toml"), load_prices(), by="condition")
    rows = [r for r in est.rows if r.stage == "generate"]
    assert rows
    for row in rows:
        assert row.cost_batch_usd > 0
        assert row.cost_batch_cached_usd == pytest.approx(row.cost_batch_usd)


# ============================================================================ I/O, emulated


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from afbatch.emulator import Emulator, Reply, RowError

    def responder(ctx: Any) -> Any:
        if any("FAIL THIS ROW" in m["content"] for m in ctx.messages):
            return RowError("rate_limit", "Too many requests for this row.")
        return Reply(f"<OUTPUT>{ctx.custom_id}</OUTPUT>", input_tokens=100, output_tokens=7)

    with Emulator(responder) as e:
        for key, value in e.env().items():
            monkeypatch.setenv(key, value)
        yield e
        assert e.errors == [], f"emulator/responder errors: {e.errors!r}"


@pytest.fixture
def vx(emu: Any) -> VertexProvider:
    p = get_provider(FLASH)
    assert isinstance(p, VertexProvider)
    return p


def _requests(n: int, bad: tuple[int, ...] = ()) -> list[Request]:
    return [
        Request(
            id=f"c{uuid.uuid4().hex[:20]}-t1",
            model=FLASH,
            system="Answer in <OUTPUT>.",
            messages=(Message("user", f"Question {i}" + (" FAIL THIS ROW" if i in bad else "")),),
            max_tokens=64,
            temperature=1.0,
        )
        for i in range(n)
    ]


def test_submit_poll_fetch(emu: Any, vx: VertexProvider, tmp_path: Path) -> None:
    reqs = _requests(4, bad=(2,))
    path = one_shard(vx, reqs, tmp_path)
    token = shard_token()
    emu.processing_delay = 60
    bid = vx.submit(path, 4, token, {"afbatch_run": "r"})
    assert bid.startswith("projects/afbatch-emulator/locations/us-central1/batchPredictionJobs/")
    job = emu.vertex.jobs[bid.rsplit("/", 1)[1]]
    assert job.display_name == f"afbatch-{token}"
    assert job.source == f"gs://{BUCKET}/afb/runs/afbatch-input/{token}.jsonl"
    assert job.dest == f"gs://{BUCKET}/afb/runs/afbatch-output/{token}/"
    uploaded = emu.gcs.read(BUCKET, f"afb/runs/afbatch-input/{token}.jsonl")
    assert uploaded.data == Path(path).read_bytes()
    assert not vx.poll(bid).status.terminal
    emu.processing_delay = 0
    info = wait_ended(vx, bid)
    assert (info.status, info.raw_status) == (
        BatchStatus.COMPLETED,
        "JOB_STATE_PARTIALLY_SUCCEEDED",
    )
    assert info.counts == {"succeeded": 3, "failed": 1}
    got = {r.id: r for r in (vx.parse(line) for line in vx.fetch(bid))}
    assert sorted(got) == sorted(r.id for r in reqs)
    for r in reqs:
        res = got[r.id]
        if "FAIL" in r.messages[0].content:
            assert (res.status, res.error_kind, res.retryable) == (
                RowStatus.ERRORED,
                "rate_limit",
                True,
            )
        else:
            assert res.status == RowStatus.SUCCEEDED and res.text == f"<OUTPUT>{r.id}</OUTPUT>"
            assert (res.usage.input_tokens, res.usage.output_tokens) == (100, 7)


def test_a_second_upload_of_a_shard_overwrites_its_object(
    emu: Any, vx: VertexProvider, tmp_path: Path
) -> None:
    """A crash between upload and create: the shard goes up again to the same object."""
    token = shard_token()
    path = one_shard(vx, _requests(2), tmp_path)
    emu.faults.http("vertex", "POST", r"/batchPredictionJobs$", 503, times=1)
    with pytest.raises(ProviderError) as ei:
        vx.submit(path, 2, token, {})
    assert ei.value.retryable and emu.created == []
    vx.submit(path, 2, token, {})
    inputs = [n for b, n in emu.gcs.objects if "afbatch-input" in n]
    assert inputs == [f"afb/runs/afbatch-input/{token}.jsonl"]


def test_every_predictions_file_is_read(emu: Any, vx: VertexProvider, tmp_path: Path) -> None:
    emu.vertex.LINES_PER_FILE = 2
    reqs = _requests(5)
    bid = vx.submit(one_shard(vx, reqs, tmp_path), 5, shard_token(), {})
    wait_ended(vx, bid)
    files = [n for _, n in emu.gcs.objects if "/predictions" in n]
    assert len(files) == 3
    assert sorted(vx.parse(line).id for line in vx.fetch(bid)) == sorted(r.id for r in reqs)


def test_find_by_display_name(emu: Any, vx: VertexProvider, tmp_path: Path) -> None:
    reqs = _requests(2)
    token, since = shard_token(), time.time()
    assert vx.find(token, [], since) == Found()
    other = vx.submit(one_shard(vx, reqs, tmp_path), 2, shard_token(), {})
    assert vx.find(token, [], since) == Found()  # another shard's token
    bid = vx.submit(one_shard(vx, reqs, tmp_path), 2, token, {})
    assert bid != other and vx.find(token, [], since) == Found(bid)
    assert vx.find(token, [], since, frozenset({bid})) == Found()  # claimed by another shard


def test_lost_create_answer_is_found_by_token(emu: Any, vx: VertexProvider, tmp_path: Path) -> None:
    path = one_shard(vx, _requests(2), tmp_path)
    token = shard_token()
    emu.faults.http("vertex", "POST", r"/batchPredictionJobs$", 502, after=True)
    with pytest.raises(ProviderError) as ei:
        vx.submit(path, 2, token, {})
    assert ei.value.retryable and len(emu.created) == 1  # one attempt: no SDK retry of a create
    assert vx.find(token, [], time.time() - 5) == Found(emu.created[0][1])


def test_create_answer_without_a_name_is_retryable(
    emu: Any, vx: VertexProvider, tmp_path: Path
) -> None:
    emu.faults.http("vertex", "POST", r"/batchPredictionJobs$", 200, body={}, after=True)
    with pytest.raises(ProviderError, match="may exist") as ei:
        vx.submit(one_shard(vx, _requests(1), tmp_path), 1, shard_token(), {})
    assert ei.value.retryable


def test_unknown_model_is_rejected_not_retried(emu: Any, tmp_path: Path) -> None:
    p = get_provider(FLASH.model_copy(update={"model": "not-a-model"}))
    with pytest.raises(ProviderError) as ei:
        p.submit(one_shard(p, _requests(1), tmp_path), 1, shard_token(), {})
    assert not ei.value.retryable and ei.value.rejects_request and "HTTP 404" in str(ei.value)


def test_a_missing_bucket_stops_the_upload(emu: Any, tmp_path: Path) -> None:
    p = get_provider(FLASH.model_copy(update={"gcs_uri": "gs://no-such-bucket/x"}))
    with pytest.raises(ProviderError, match="upload to Cloud Storage.*HTTP 404") as ei:
        p.submit(one_shard(p, _requests(1), tmp_path), 1, shard_token(), {})
    assert not ei.value.retryable and not ei.value.rejects_request


def test_cancel(emu: Any, vx: VertexProvider, tmp_path: Path) -> None:
    emu.processing_delay = 60
    bid = vx.submit(one_shard(vx, _requests(3), tmp_path), 3, shard_token(), {})
    vx.cancel(bid)
    info = wait_ended(vx, bid)
    assert (info.status, info.raw_status) == (BatchStatus.CANCELLED, "JOB_STATE_CANCELLED")
    assert list(vx.fetch(bid)) == []  # cancelled before any row ran: no predictions


def test_expired_and_failed_jobs(emu: Any, vx: VertexProvider, tmp_path: Path) -> None:
    emu.faults.batch("vertex", "expired", fraction_done=0.5)
    reqs = _requests(4)
    bid = vx.submit(one_shard(vx, reqs, tmp_path), 4, shard_token(), {})
    info = wait_ended(vx, bid)
    assert (info.status, info.raw_status) == (BatchStatus.EXPIRED, "JOB_STATE_EXPIRED")
    assert len([vx.parse(line) for line in vx.fetch(bid)]) == 2  # what finished is kept
    emu.faults.batch("vertex", "failed")
    bid = vx.submit(one_shard(vx, reqs, tmp_path), 4, shard_token(), {})
    info = wait_ended(vx, bid)
    assert info.status == BatchStatus.FAILED and "Injected fault" in (info.message or "")
    assert list(vx.fetch(bid)) == []


def test_a_damaged_output_line_is_one_malformed_row(
    emu: Any, vx: VertexProvider, tmp_path: Path
) -> None:
    emu.faults.line("vertex", "garbage_no_id")
    bid = vx.submit(one_shard(vx, _requests(3), tmp_path), 3, shard_token(), {})
    wait_ended(vx, bid)
    rows = [vx.parse(line) for line in vx.fetch(bid)]
    assert sorted(r.status.value for r in rows) == ["errored", "succeeded", "succeeded"]
    assert [r.error_kind for r in rows if r.status == RowStatus.ERRORED] == ["malformed"]


def test_other_calls_keep_sdk_retries(emu: Any, vx: VertexProvider, tmp_path: Path) -> None:
    bid = vx.submit(one_shard(vx, _requests(1), tmp_path), 1, shard_token(), {})
    emu.faults.http("vertex", "GET", r"/batchPredictionJobs/\d+$", 503, times=1)
    assert vx.poll(bid).status == BatchStatus.COMPLETED
    assert len(emu.faults.fired) == 1


# ============================================================================ setup and secrets


def test_calls_carry_the_access_token_from_the_credentials_file(
    emu: Any, vx: VertexProvider, tmp_path: Path
) -> None:
    """google-auth refreshed the ADC file's refresh token at the emulator's token endpoint; the
    Vertex and Cloud Storage calls carried the token it issued (else they get 401)."""
    assert emu.vertex.tokens == set()
    vx.submit(one_shard(vx, _requests(1), tmp_path), 1, shard_token(), {})
    assert vx._credentials.token in emu.vertex.tokens
    assert vx._credentials.token not in redact(f"a message with {vx._credentials.token}")


def test_an_expired_access_token_is_refreshed(emu: Any, vx: VertexProvider, tmp_path: Path) -> None:
    """Every call refused with 401 until the credentials fetch a new token, as Google's are."""
    path = one_shard(vx, _requests(1), tmp_path)
    vx.submit(path, 1, shard_token(), {})
    old = vx._credentials.token
    emu.vertex.tokens.clear()
    vx._credentials.expiry = datetime.datetime(2000, 1, 1)  # as an hour later
    vx.submit(path, 1, shard_token(), {})
    assert vx._credentials.token != old and len(emu.created) == 2


def test_a_revoked_refresh_token_is_an_auth_error_and_no_secret_is_shown(
    emu: Any, vx: VertexProvider, tmp_path: Path
) -> None:
    from afbatch.emulator.vertex import CLIENT_SECRET, REFRESH_TOKEN

    path = one_shard(vx, _requests(1), tmp_path)
    vx.submit(path, 1, shard_token(), {})
    token = vx._credentials.token
    emu.vertex.tokens.clear()  # revoked, with the refresh token: every call gets 401
    emu.vertex.refresh_token = "another"
    with pytest.raises(ProviderError) as ei:
        vx.submit(path, 1, shard_token(), {})
    msg = str(ei.value)
    assert "credentials refused" in msg and not ei.value.retryable and "\n" not in msg
    for secret in (token, REFRESH_TOKEN, CLIENT_SECRET):
        assert secret not in msg


def test_setup_errors_are_one_line_each(emu: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProviderError, match=r"needs `gcs_uri` \(gs://bucket/prefix\)"):
        get_provider(FLASH.model_copy(update={"gcs_uri": None})).ready()
    monkeypatch.delenv("GOOGLE_CLOUD_LOCATION")
    with pytest.raises(ProviderError, match="GOOGLE_CLOUD_LOCATION"):
        get_provider(FLASH).ready()
    get_provider(FLASH.model_copy(update={"location": "europe-west4"})).ready()
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    with pytest.raises(ProviderError, match="GOOGLE_CLOUD_PROJECT"):
        get_provider(FLASH.model_copy(update={"location": "europe-west4"})).ready()
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/adc.json")
    with pytest.raises(ProviderError, match="credentials") as ei:
        get_provider(FLASH).ready()
    assert "\n" not in str(ei.value) and not ei.value.retryable
    for name in ("google.cloud.storage", "google.cloud"):  # as if the extra were not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ProviderError, match=r"pip install 'afbatch\[vertex\]'"):
        get_provider(FLASH).ready()


def test_project_and_location_of_the_model_entry_win(emu: Any) -> None:
    spec = FLASH.model_copy(update={"project": "other-project", "location": "europe-west4"})
    p = get_provider(spec)
    assert (p.client._api_client.project, p.client._api_client.location) == (
        "other-project",
        "europe-west4",
    )


def test_endpoint_is_the_emulator(emu: Any, vx: VertexProvider) -> None:
    assert vx.endpoint() == f"{emu.url}/vertex, Cloud Storage {emu.url}/gcs"
