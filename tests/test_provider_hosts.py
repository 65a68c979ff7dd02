"""xAI (its native named-batch API) and DeepInfra (OpenAI's batch format at its own URL and key):
golden result lines, xAI's status mapping, and both against the emulator over HTTP.

The expected files were written by hand from the providers' documents and a captured xAI results
page (see afbatch/emulator/xai.py), not copied from the code.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from provider_support import one_shard, shard_token, wait_ended
from test_providers import (
    GOLDEN,
    SECRET,
    _assert_clean_error,
    _ids,
    _requests,
    _results,
    emu,
)

from afbatch.errors import ProviderError
from afbatch.pricing import load_prices
from afbatch.providers import BatchStatus, Found, get_provider
from afbatch.providers.base import read_line
from afbatch.providers.xai import XAIProvider
from afbatch.spec import ModelSpec
from afbatch.types import Result, RowStatus

__all__ = ["emu"]  # the emulator fixture of test_providers (its responder echoes the row id)

GROK = ModelSpec(provider="xai", model="grok-4", label="grok")
DEEPINFRA = ModelSpec(provider="deepinfra", model="meta-llama/Meta-Llama-3.1-70B-Instruct")
CASES = {"xai/results.jsonl": GROK, "deepinfra/output.jsonl": DEEPINFRA}


# ============================================================================ golden result lines


@pytest.mark.parametrize("rel", sorted(CASES))
def test_golden_results(rel: str) -> None:
    provider = get_provider(CASES[rel])
    got = [
        {**(r := provider.parse(read_line(raw))).to_json(), "retryable": r.retryable}
        for raw in (GOLDEN / rel).read_text().splitlines()
        if raw.strip()
    ]
    expected = json.loads(
        (GOLDEN / rel).with_name(rel.split("/")[1].split(".")[0] + ".expected.json").read_text()
    )
    assert [g["id"] for g in got] == [e["id"] for e in expected]
    for g, e in zip(got, expected):
        assert g == e, f"{rel}: {g['id']}"
        fields = {k: v for k, v in e.items() if k != "retryable"}
        assert Result.from_json(fields).to_json() == fields


def test_golden_files_cover_the_awkward_cases() -> None:
    kinds = {
        rel: {
            e["status"] + ":" + e.get("error_kind", "")
            for e in json.loads(
                (GOLDEN / rel)
                .with_name(rel.split("/")[1].split(".")[0] + ".expected.json")
                .read_text()
            )
        }
        for rel in CASES
    }
    assert {
        "succeeded:",
        "errored:invalid_request",
        "errored:rate_limit",
        "errored:server_error",
        "canceled:canceled",
        "errored:malformed",
    } <= kinds["xai/results.jsonl"]
    assert {
        "succeeded:",
        "errored:invalid_request",
        "errored:rate_limit",
        "errored:server_error",
        "expired:expired",
        "canceled:canceled",
    } <= kinds["deepinfra/output.jsonl"]


# ============================================================================ xAI status


def _state(**counts: int) -> dict[str, int]:
    keys = ("num_requests", "num_pending", "num_success", "num_error", "num_cancelled")
    return {k: counts.get(k.removeprefix("num_"), 0) for k in keys}


FUTURE, PAST = "2099-01-01T00:00:00Z", "2020-01-01T00:00:00.5Z"


@pytest.mark.parametrize(
    "batch, want",
    [
        ({"state": _state(requests=4, pending=4), "expire_time": FUTURE}, BatchStatus.IN_PROGRESS),
        (
            {"state": _state(requests=4, success=3, error=1), "expire_time": FUTURE},
            BatchStatus.COMPLETED,
        ),
        (
            {"state": _state(requests=4, pending=2, success=2), "expire_time": PAST},
            BatchStatus.EXPIRED,
        ),
        (
            {"state": _state(requests=4, pending=2, success=2), "cancel_time": FUTURE},
            BatchStatus.CANCELLING,
        ),
        (
            {"state": _state(requests=4, success=2, cancelled=2), "cancel_time": PAST},
            BatchStatus.CANCELLED,
        ),
        (
            {"state": _state(requests=4, pending=1), "cancel_by_xai_message": "over quota"},
            BatchStatus.CANCELLING,
        ),
    ],
)
def test_xai_poll_maps_the_counts(
    batch: dict[str, Any], want: BatchStatus, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = XAIProvider(GROK)
    monkeypatch.setattr(p, "_call", lambda *a, **kw: {"batch_id": "b", **batch})
    info = p.poll("b")
    assert info.status == want
    assert info.counts == batch["state"] and "pending=" in info.raw_status


# ============================================================================ xAI over HTTP


@pytest.fixture
def grok(emu: Any, monkeypatch: pytest.MonkeyPatch) -> XAIProvider:
    monkeypatch.setenv("XAI_API_KEY", SECRET)
    p = get_provider(GROK)
    assert isinstance(p, XAIProvider)
    return p


def test_xai_submit_poll_fetch(emu: Any, grok: XAIProvider, tmp_path: Path) -> None:
    reqs = _requests(GROK, 4, bad=(2,))
    line = grok.render(reqs[0])
    assert set(line) == {"batch_request_id", "batch_request"}
    body = line["batch_request"]["chat_get_completion"]
    assert body["max_tokens"] == 64 and body["messages"][0]["role"] == "system"
    emu.processing_delay = 60
    token = shard_token()
    bid = grok.submit(one_shard(grok, reqs, tmp_path), 4, token, {"afbatch_run": "r"})
    assert grok.endpoint().startswith(emu.url + "/xai/v1")
    assert emu.xai.batches[bid].name == "afbatch-" + token
    info = grok.poll(bid)
    assert (info.status, info.counts["num_pending"]) == (BatchStatus.IN_PROGRESS, 4)
    emu.processing_delay = 0
    assert wait_ended(grok, bid).status == BatchStatus.COMPLETED
    got = _results(grok, bid, reqs)
    assert got[reqs[2].id].status == RowStatus.ERRORED
    assert got[reqs[2].id].error_kind == "rate_limit" and got[reqs[2].id].retryable
    ok = got[reqs[0].id]
    assert ok.text == f"<OUTPUT>{reqs[0].id}</OUTPUT>" and ok.usage.output_tokens == 7


def test_xai_results_come_in_pages(
    emu: Any, grok: XAIProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("afbatch.providers.xai.PAGE", 2)
    reqs = _requests(GROK, 5)
    bid = grok.submit(one_shard(grok, reqs, tmp_path), 5, shard_token(), {})
    wait_ended(grok, bid)
    assert len(_results(grok, bid, reqs)) == 5


def test_xai_adds_in_calls_within_the_payload_limit(
    emu: Any, grok: XAIProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reqs = _requests(GROK, 5)
    path = one_shard(grok, reqs, tmp_path)
    biggest = max(len(raw) for raw in Path(path).read_bytes().splitlines())
    limit = 2 * biggest + 100  # two requests per call at most
    monkeypatch.setattr("afbatch.providers.xai.MAX_ADD_BYTES", limit)
    monkeypatch.setattr(emu.xai, "MAX_ADD_BYTES", limit + 100)
    emu.faults.http("xai", "POST", r"/requests$", delay=0.001, times=10)  # counts the add calls
    bid = grok.submit(path, 5, shard_token(), {})
    calls = [f for f in emu.faults.fired if f[2].endswith("/requests")]
    assert len(calls) == 3
    wait_ended(grok, bid)
    assert len(_results(grok, bid, reqs)) == 5
    # over the service's limit, an add call is refused as the real one is
    monkeypatch.setattr("afbatch.providers.xai.MAX_ADD_BYTES", 10 * limit)
    with pytest.raises(ProviderError, match="HTTP 413") as ei:
        grok.submit(one_shard(grok, _requests(GROK, 5), tmp_path), 5, shard_token(), {})
    assert ei.value.rejects_request and not ei.value.retryable


def test_xai_lost_create_answer_is_found_by_its_name(
    emu: Any, grok: XAIProvider, tmp_path: Path
) -> None:
    """The batch was created but a gateway mangled the answer: submit finds it by its name and
    fills it; no second batch."""
    reqs = _requests(GROK, 3)
    emu.faults.http("xai", "POST", r"/batches$", 200, body="<html>gateway</html>", after=True)
    bid = grok.submit(one_shard(grok, reqs, tmp_path), 3, shard_token(), {})
    assert [b for _, b, *_ in emu.created] == [bid]
    wait_ended(grok, bid)
    assert len(_results(grok, bid, reqs)) == 3


def test_xai_find_adopts_only_its_named_batch_with_requests(
    emu: Any, grok: XAIProvider, tmp_path: Path
) -> None:
    since = time.time()
    token, other = shard_token(), shard_token()
    assert grok.find(token, _ids(2), since) == Found()
    bid = grok.submit(one_shard(grok, _requests(GROK, 2), tmp_path), 2, token, {})
    grok.submit(one_shard(grok, _requests(GROK, 2), tmp_path), 2, other, {})
    assert grok.find(token, _ids(2), since) == Found(bid)
    assert grok.find(token, _ids(2), since, claimed=frozenset({bid})) == Found()
    assert grok.find(token, _ids(2), since + 3600) == Found()  # made before the intent
    # a batch of that name holding no request billed nothing: not adopted, the shard is resent
    empty = shard_token()
    grok._call("create batch", "POST", "batches", json={"name": "afbatch-" + empty})
    assert grok.find(empty, _ids(2), since) == Found()


def test_xai_failed_add_after_the_first_leaves_the_batch_to_be_found(
    emu: Any, grok: XAIProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reqs = _requests(GROK, 4)
    path = one_shard(grok, reqs, tmp_path)
    biggest = max(len(raw) for raw in Path(path).read_bytes().splitlines())
    monkeypatch.setattr("afbatch.providers.xai.MAX_ADD_BYTES", 2 * biggest + 100)
    emu.faults.http("xai", "POST", r"/requests$", delay=0.001)  # the first add goes through
    emu.faults.http("xai", "POST", r"/requests$", 400)  # the second is refused
    token, since = shard_token(), time.time()
    with pytest.raises(ProviderError, match="2 of 4 requests were added") as ei:
        grok.submit(path, 4, token, {})
    assert ei.value.retryable  # the runner looks it up, not resends it
    found = grok.find(token, _ids(4), since)
    assert found.batch_id == emu.created[0][1]
    wait_ended(grok, found.batch_id)
    assert len(list(grok.fetch(found.batch_id))) == 2  # the others come back missing


def test_xai_refused_first_add_fails_the_shard(
    emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XAI_API_KEY", SECRET)
    p = get_provider(ModelSpec(provider="xai", model="gpt-4o"))  # not an xAI model
    token, since = shard_token(), time.time()
    with pytest.raises(ProviderError, match="not an xAI model") as ei:
        p.submit(one_shard(p, _requests(p.model, 2), tmp_path), 2, token, {})
    assert ei.value.rejects_request and not ei.value.retryable
    assert p.find(token, _ids(2), since) == Found()


def test_xai_cancel_and_expire(emu: Any, grok: XAIProvider, tmp_path: Path) -> None:
    emu.processing_delay = 60
    bid = grok.submit(one_shard(grok, _requests(GROK, 3), tmp_path), 3, shard_token(), {})
    grok.cancel(bid)
    info = grok.poll(bid)
    assert info.status == BatchStatus.CANCELLED and info.counts["num_cancelled"] == 3
    emu.processing_delay = 0
    emu.faults.batch("xai", "expired", fraction_done=0.5)
    reqs = _requests(GROK, 4)
    bid = grok.submit(one_shard(grok, reqs, tmp_path), 4, shard_token(), {})
    assert wait_ended(grok, bid).status == BatchStatus.EXPIRED
    assert len(list(grok.fetch(bid))) == 2


def test_xai_damaged_result_item_is_an_errored_row(
    emu: Any, grok: XAIProvider, tmp_path: Path
) -> None:
    reqs = _requests(GROK, 2)
    emu.faults.line("xai", "garbage")
    bid = grok.submit(one_shard(grok, reqs, tmp_path), 2, shard_token(), {})
    wait_ended(grok, bid)
    parsed = [grok.parse(line) for line in grok.fetch(bid)]
    bad = [r for r in parsed if r.status == RowStatus.ERRORED]
    assert len(bad) == 1 and bad[0].error_kind == "malformed" and bad[0].id in {r.id for r in reqs}


def test_xai_key_missing_or_echoed(
    emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("XAI_API_KEY")
    with pytest.raises(ProviderError, match="XAI_API_KEY"):
        get_provider(GROK).ready()
    monkeypatch.setenv("XAI_API_KEY", SECRET)
    p = get_provider(GROK)
    emu.faults.http(
        "xai",
        "POST",
        r"/batches$",
        401,
        body={"code": "Unauthenticated", "error": f"Incorrect API key {SECRET}"},
    )
    with pytest.raises(ProviderError) as ei:
        p.submit(one_shard(p, _requests(GROK, 1), tmp_path), 1, shard_token(), {})
    assert not ei.value.retryable and emu.created == []
    assert "Incorrect API key" in _assert_clean_error(ei.value, "xai")


# ============================================================================ DeepInfra


def test_deepinfra_goes_through_its_base_url_and_key(
    emu: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")  # only DEEPINFRA_BASE_URL may lead to the emulator
    with pytest.raises(ProviderError, match="DEEPINFRA_API_KEY"):
        get_provider(DEEPINFRA).ready()
    key = "deepinfra-SECRET-0123456789abcdef"
    monkeypatch.setenv("DEEPINFRA_API_KEY", key)
    monkeypatch.setenv("DEEPINFRA_BASE_URL", emu.url + "/v1")
    p = get_provider(DEEPINFRA)
    reqs = _requests(DEEPINFRA, 3, bad=(1,), prefill="<")
    assert p.render(reqs[0])["body"]["messages"][-1] == {"role": "assistant", "content": "<"}
    bid = p.submit(one_shard(p, reqs, tmp_path), 3, shard_token(), {})
    assert wait_ended(p, bid).status == BatchStatus.COMPLETED
    got = _results(p, bid, reqs)
    assert got[reqs[1].id].error_kind == "rate_limit"
    assert p.client.api_key == key and str(p.client.base_url).startswith(emu.url)


LLAMA_IDS = [
    "meta-llama/Meta-Llama-3.1-8B-Instruct",
    "meta-llama/Meta-Llama-3.1-70B-Instruct",
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
    "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo",
    "deepseek-ai/DeepSeek-V3.1",
    "Qwen/Qwen3-235B-A22B-Instruct-2507",
    "moonshotai/Kimi-K2-Instruct-0905",
]


def test_deepinfra_batch_is_twenty_percent_off_and_xai_half() -> None:
    raw = json.loads((Path(__file__).parents[1] / "afbatch/data/prices.json").read_text())
    assert raw["providers"]["deepinfra"]["batch_multiplier"] == 0.8
    assert raw["providers"]["xai"]["batch_multiplier"] == 0.5
    listed = {(m["provider"], m["model"]): m for m in raw["models"]}
    for model in LLAMA_IDS:
        entry = listed[("deepinfra", model)]
        assert entry["date"] and "LiteLLM" in entry["source"] and entry["token_family"]
    for model in ("grok-4", "grok-4.5", "grok-4-1-fast-non-reasoning"):
        assert listed[("xai", model)]["token_family"] == "grok"
    assert load_prices() is not None
