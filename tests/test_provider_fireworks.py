"""The Fireworks provider: status map, readiness, and its REST calls against the emulator (datasets,
batch inference jobs, signed downloads), with the faults that matter for no double submission."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from provider_support import one_shard, shard_token, wait_ended
from test_providers import (
    FAST,
    SECRET,
    _assert_clean_error,
    _ids,
    _requests,
    _results,
    emu,
)

from afbatch.errors import ProviderError
from afbatch.providers import BatchStatus, Found, get_provider
from afbatch.providers.fireworks import STATUS, FireworksProvider, job_id
from afbatch.spec import ModelSpec
from afbatch.types import RowStatus

__all__ = ["emu"]  # the emulator fixture of test_providers, used here too

MODEL = "accounts/fireworks/models/llama-v3p1-70b-instruct"
JOBS = r"/fireworks/v1/accounts/[^/]+/batchInferenceJobs$"
# Every JobState of the API (fireworks-ai 1.2.30, types/batch_inference_job.py).
JOB_STATES = (
    "UNSPECIFIED",
    "CREATING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "DELETING",
    "WRITING_RESULTS",
    "VALIDATING",
    "DELETING_CLEANING_UP",
    "PENDING",
    "EXPIRED",
    "RE_QUEUEING",
    "CREATING_INPUT_DATASET",
    "IDLE",
    "CANCELLING",
    "EARLY_STOPPED",
    "PAUSED",
)


@pytest.fixture
def fw(emu: Any, monkeypatch: pytest.MonkeyPatch) -> FireworksProvider:
    monkeypatch.setenv("FIREWORKS_API_KEY", SECRET)
    p = get_provider(ModelSpec(provider="fireworks", model=MODEL, label="fw"))
    assert isinstance(p, FireworksProvider)
    return p


def test_status_map_covers_every_job_state() -> None:
    assert set(STATUS) == {f"JOB_STATE_{s}" for s in JOB_STATES}


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("JOB_STATE_VALIDATING", BatchStatus.VALIDATING),
        ("JOB_STATE_PENDING", BatchStatus.IN_PROGRESS),
        ("JOB_STATE_RUNNING", BatchStatus.IN_PROGRESS),
        ("JOB_STATE_WRITING_RESULTS", BatchStatus.FINALIZING),
        ("JOB_STATE_COMPLETED", BatchStatus.COMPLETED),
        ("JOB_STATE_FAILED", BatchStatus.FAILED),
        ("JOB_STATE_EXPIRED", BatchStatus.EXPIRED),
        ("JOB_STATE_CANCELLING", BatchStatus.CANCELLING),
        ("JOB_STATE_CANCELLED", BatchStatus.CANCELLED),
        ("JOB_STATE_SOMETHING_NEW", BatchStatus.IN_PROGRESS),
    ],
)
def test_poll_maps_the_job_state_and_keeps_it(raw: str, want: BatchStatus) -> None:
    p = FireworksProvider(ModelSpec(provider="fireworks", model=MODEL))
    job = {
        "state": raw,
        "status": {"code": "INVALID_ARGUMENT", "message": "line 3: not JSON"},
        "jobProgress": {
            "totalInputRequests": 3,
            "successfullyProcessedRequests": 2,
            "failedRequests": 1,
        },
    }
    p._call = lambda method, path, **kw: job  # type: ignore[method-assign]
    info = p.poll("accounts/a/batchInferenceJobs/j")
    assert (info.status, info.raw_status) == (want, raw)
    assert info.counts == {"total": 3, "completed": 2, "failed": 1}
    assert info.message == ("line 3: not JSON" if want == BatchStatus.FAILED else None)


def test_ready_names_every_missing_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIREWORKS_API_KEY", raising=False)
    monkeypatch.delenv("FIREWORKS_ACCOUNT_ID", raising=False)
    p = FireworksProvider(ModelSpec(provider="fireworks", model=MODEL, label="fw"))
    with pytest.raises(ProviderError) as ei:
        p.ready()
    assert str(ei.value) == (
        "fw: set FIREWORKS_API_KEY to your Fireworks API key and "
        "FIREWORKS_ACCOUNT_ID to your Fireworks account id"
    )
    assert not ei.value.retryable
    monkeypatch.setenv("FIREWORKS_API_KEY", SECRET)
    with pytest.raises(ProviderError, match=r"^fw: set FIREWORKS_ACCOUNT_ID to"):
        p.ready()


def test_job_ids_are_valid_fireworks_ids() -> None:
    jid = job_id("t" + "0123456789abcdef" * 2)
    assert jid.startswith("afbatch-t") and len(jid) <= 63
    assert job_id("T_A.b") == "afbatch-t-a-b"


def test_submit_poll_fetch(emu: Any, fw: FireworksProvider, tmp_path: Path) -> None:
    reqs = _requests(fw.model, 4, bad=(2,))
    path = one_shard(fw, reqs, tmp_path)
    token = shard_token()
    emu.processing_delay = 60
    bid = fw.submit(path, 4, token, {"afbatch_run": "run-1"})
    assert bid == f"accounts/emulator/batchInferenceJobs/{job_id(token)}"
    job = emu.fireworks.jobs[bid]
    assert (job.model, job.display_name, job.params) == (MODEL, job_id(token), {"maxTokens": 64})
    assert emu.fireworks.datasets[job.input_dataset].files == {
        Path(path).name: Path(path).read_bytes()
    }
    info = fw.poll(bid)
    assert (info.status, info.counts["total"]) == (BatchStatus.VALIDATING, 4)
    emu.processing_delay = 0
    info = wait_ended(fw, bid)
    assert (info.status, info.raw_status) == (BatchStatus.COMPLETED, "JOB_STATE_COMPLETED")
    assert (info.counts["completed"], info.counts["failed"]) == (3, 1)
    got = _results(fw, bid, reqs)  # results file and error file of the output dataset
    cached = 0
    for r in reqs:
        res = got[r.id]
        if r.id.endswith("bad"):
            assert (res.status, res.error_kind, res.retryable) == (
                RowStatus.ERRORED,
                "rate_limit",
                True,
            )
        else:
            assert res.status == RowStatus.SUCCEEDED and res.text == f"<OUTPUT>{r.id}</OUTPUT>"
            assert (res.usage.input_tokens, res.usage.output_tokens) == (100, 7)
            cached += res.usage.cached_tokens
    assert cached > 0  # batch jobs cache the shared system prompt on their own


def test_prefill_only_when_the_job_asks(fw: FireworksProvider) -> None:
    (plain,) = _requests(fw.model, 1)
    (pre,) = _requests(fw.model, 1, prefill="<")
    assert [m["role"] for m in fw.render(plain)["body"]["messages"]] == ["system", "user"]
    assert fw.render(pre)["body"]["messages"][-1] == {"role": "assistant", "content": "<"}
    assert "model" not in fw.render(plain)["body"]  # the job's model applies


def test_find_adopts_only_the_tokens_job(emu: Any, fw: FireworksProvider, tmp_path: Path) -> None:
    reqs = _requests(fw.model, 2)
    token, since = shard_token(), time.time()
    assert fw.find(token, _ids(2), since) == Found()
    fw.submit(one_shard(fw, reqs, tmp_path), 2, shard_token(), {})
    assert fw.find(token, _ids(2), since) == Found()  # another shard's job
    bid = fw.submit(one_shard(fw, reqs, tmp_path), 2, token, {})
    assert fw.find(token, _ids(2), since) == Found(bid)
    assert fw.find(token, _ids(2), since, frozenset({bid})) == Found()


def test_lost_create_answer_is_found_by_its_id(
    emu: Any, fw: FireworksProvider, tmp_path: Path
) -> None:
    path = one_shard(fw, _requests(fw.model, 2), tmp_path)
    token = shard_token()
    emu.faults.http("fireworks", "POST", JOBS, 502, body="<html>Bad gateway</html>", after=True)
    with pytest.raises(ProviderError) as ei:
        fw.submit(path, 2, token, {})
    assert ei.value.retryable and len(emu.created) == 1
    assert fw.find(token, _ids(2), time.time()) == Found(emu.created[0][1])


def test_create_is_sent_once_and_a_refusal_is_final(
    emu: Any, fw: FireworksProvider, tmp_path: Path
) -> None:
    path = one_shard(fw, _requests(fw.model, 2), tmp_path)
    token = shard_token()
    emu.faults.http("fireworks", "POST", JOBS, 500, times=2)
    with pytest.raises(ProviderError) as ei:
        fw.submit(path, 2, token, {})
    assert ei.value.retryable and "HTTP 500" in _assert_clean_error(ei.value, "fireworks")
    assert len(emu.faults.fired) == 1 and emu.created == []  # never retried by the client
    assert fw.find(token, _ids(2), time.time()) == Found()
    emu.faults.clear()
    emu.faults.http("fireworks", "POST", JOBS, 400)
    with pytest.raises(ProviderError) as ei:
        fw.submit(path, 2, shard_token(), {})
    assert ei.value.rejects_request and not ei.value.retryable


def test_reads_are_retried_and_errors_are_redacted(
    emu: Any, fw: FireworksProvider, tmp_path: Path
) -> None:
    bid = fw.submit(one_shard(fw, _requests(fw.model, 2), tmp_path), 2, shard_token(), {})
    emu.faults.http("fireworks", "GET", r"/batchInferenceJobs/", 503, times=2, headers=FAST)
    assert fw.poll(bid).status == BatchStatus.COMPLETED
    assert len(emu.faults.fired) == 2
    emu.faults.http(
        "fireworks",
        "GET",
        r"/batchInferenceJobs/",
        401,
        body={"code": 16, "message": f"invalid API key {SECRET}"},
    )
    with pytest.raises(ProviderError) as ei:
        fw.poll(bid)
    assert "invalid API key" in _assert_clean_error(ei.value, "fireworks")
    assert not ei.value.retryable


def test_expired_failed_and_all_failed_jobs(
    emu: Any, fw: FireworksProvider, tmp_path: Path
) -> None:
    reqs = _requests(fw.model, 4)
    emu.faults.batch("fireworks", "expired", fraction_done=0.5)
    bid = fw.submit(one_shard(fw, reqs, tmp_path), 4, shard_token(), {})
    assert wait_ended(fw, bid).status == BatchStatus.EXPIRED
    lines = [fw.parse(line) for line in fw.fetch(bid)]  # the rest never ran: no line, missing
    assert [r.status for r in lines] == [RowStatus.SUCCEEDED] * 2

    emu.faults.batch("fireworks", "failed")
    bid = fw.submit(one_shard(fw, reqs, tmp_path), 4, shard_token(), {})
    info = wait_ended(fw, bid)
    assert info.status == BatchStatus.FAILED and "quota" in (info.message or "")
    assert list(fw.fetch(bid)) == []

    emu.faults.batch("fireworks", "all_failed")
    bid = fw.submit(one_shard(fw, reqs, tmp_path), 4, shard_token(), {})
    assert wait_ended(fw, bid).status == BatchStatus.COMPLETED
    assert {r.error_kind for r in _results(fw, bid, reqs).values()} == {"server_error"}


def test_cancel(emu: Any, fw: FireworksProvider, tmp_path: Path) -> None:
    reqs = _requests(fw.model, 3)
    emu.processing_delay = 60
    bid = fw.submit(one_shard(fw, reqs, tmp_path), 3, shard_token(), {})
    fw.cancel(bid)
    info = wait_ended(fw, bid)
    assert (info.status, info.raw_status) == (BatchStatus.CANCELLED, "JOB_STATE_CANCELLED")
    assert list(fw.fetch(bid)) == []  # nothing had run: every row comes back missing
    with pytest.raises(ProviderError, match="HTTP 400"):
        fw.cancel(bid)


def test_a_damaged_output_line_is_a_malformed_row(
    emu: Any, fw: FireworksProvider, tmp_path: Path
) -> None:
    reqs = _requests(fw.model, 2)
    emu.faults.line("fireworks", "garbage")
    bid = fw.submit(one_shard(fw, reqs, tmp_path), 2, shard_token(), {})
    wait_ended(fw, bid)
    kinds = sorted(str(fw.parse(line).error_kind) for line in fw.fetch(bid))
    assert kinds == ["None", "malformed"]


def test_the_key_never_goes_to_the_signed_download_host(
    emu: Any, fw: FireworksProvider, tmp_path: Path
) -> None:
    import httpx2

    bid = fw.submit(one_shard(fw, _requests(fw.model, 1), tmp_path), 1, shard_token(), {})
    wait_ended(fw, bid)
    out = emu.fireworks.jobs[bid].output_dataset
    urls = fw._call("GET", f"{out}:getDownloadEndpoint")["filenameToSignedUrls"]
    (url,) = urls.values()
    assert httpx2.get(url, headers={"Authorization": f"Bearer {SECRET}"}).status_code == 400
    assert len(list(fw.fetch(bid))) == 1  # fetch reads it without the header
    assert json.loads(httpx2.get(url).content)["custom_id"]


def test_the_http_client_is_imported_only_when_it_connects() -> None:
    code = (
        "from afbatch.providers import get_provider\nfrom afbatch.spec import ModelSpec\n"
        f"p = get_provider(ModelSpec(provider='fireworks', model='{MODEL}'))\n"
        "p.render\nimport sys; print(' '.join(sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(out.stdout.split())
    assert "afbatch.providers.fireworks" in loaded
    assert not {"httpx2", "httpx", "openai", "anthropic", "boto3"} & loaded
