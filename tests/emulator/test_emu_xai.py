"""The emulated xAI Batch API (``/xai/v1``), spoken to over plain HTTP as the xai provider does:
what it accepts, what it refuses, paging, processing, and fault injection under the name "xai"."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest

from afbatch.emulator import Emulator, Reply, RowError


@pytest.fixture
def x(emu: Emulator) -> Any:
    return httpx2.Client(base_url=emu.url + "/xai/v1/", headers={"Authorization": "Bearer k"})


def item(i: int, model: str = "grok-4", **body: Any) -> dict[str, Any]:
    return {
        "batch_request_id": f"req-{i}",
        "batch_request": {
            "chat_get_completion": {
                "model": model,
                "messages": [
                    {"role": "system", "content": "Be terse."},
                    {"role": "user", "content": f"Q{i}"},
                ],
                "max_tokens": 64,
                **body,
            }
        },
    }


def new_batch(x: Any, name: str = "afbatch-t1") -> str:
    r = x.post("batches", json={"name": name})
    assert r.status_code == 200, r.text
    return str(r.json()["batch_id"])


def test_create_add_process_and_read_results(emu: Emulator, x: Any) -> None:
    emu.responder = lambda c: (
        RowError("overloaded", "busy")
        if c.custom_id == "req-1"
        else Reply(f"A:{c.messages[-1]['content']}", output_tokens=5)
    )
    bid = new_batch(x)
    got = x.get(f"batches/{bid}").json()
    assert got["name"] == "afbatch-t1" and got["state"]["num_requests"] == 0
    assert got["create_time"].endswith("Z") and "cancel_time" not in got
    assert (
        x.post(
            f"batches/{bid}/requests", json={"batch_requests": [item(0), item(1), item(2)]}
        ).status_code
        == 200
    )
    state = x.get(f"batches/{bid}").json()["state"]
    assert state == {
        "num_requests": 3,
        "num_pending": 0,
        "num_success": 2,
        "num_error": 1,
        "num_cancelled": 0,
    }
    results = x.get(f"batches/{bid}/results").json()
    assert results["pagination_token"] is None
    by_id = {r["batch_request_id"]: r["batch_result"] for r in results["results"]}
    done = by_id["req-2"]["response"]["chat_get_completion"]
    assert done["choices"][0]["message"]["content"] == "A:Q2"
    assert done["usage"]["completion_tokens"] == 5 and done["model"] == "grok-4"
    assert by_id["req-1"] == {"error": {"code": 14, "message": "busy"}}
    assert [c[0] for c in emu.calls] == ["xai"] * 3


def test_pages_of_batches_and_of_results(emu: Emulator, x: Any) -> None:
    bids = [new_batch(x, f"afbatch-{i}") for i in range(3)]
    first = x.get("batches", params={"limit": 2}).json()
    assert [b["batch_id"] for b in first["batches"]] == bids[::-1][:2]
    rest = x.get("batches", params={"limit": 2, "pagination_token": first["pagination_token"]})
    assert [b["batch_id"] for b in rest.json()["batches"]] == [bids[0]]
    assert rest.json()["pagination_token"] is None
    x.post(f"batches/{bids[0]}/requests", json={"batch_requests": [item(i) for i in range(5)]})
    seen, token = [], None
    while True:
        page = x.get(
            f"batches/{bids[0]}/results",
            params={"limit": 2, **({"pagination_token": token} if token else {})},
        ).json()
        seen += [r["batch_request_id"] for r in page["results"]]
        token = page["pagination_token"]
        if not token:
            break
    assert sorted(seen) == [f"req-{i}" for i in range(5)]
    assert x.get("batches", params={"pagination_token": "x"}).status_code == 400


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"batch_requests": [item(0), item(0)]}, 400, "already in the batch"),
        ({"batch_requests": []}, 400, "non-empty list"),
        ({"batch_requests": [item(0)], "extra": 1}, 400, "nothing else"),
        ({"batch_requests": [item(0, model="gpt-4o")]}, 400, "not an xAI model"),
        ({"batch_requests": [item(0, max_completion_tokens=5)]}, 400, "unknown field"),
        ({"batch_requests": [item(0, temperature=3)]}, 400, "temperature"),
        (
            {"batch_requests": [{"batch_request_id": "a", "batch_request": {"image": {}}}]},
            400,
            "only chat_get_completion",
        ),
    ],
)
def test_add_refuses_what_the_api_refuses(
    emu: Emulator, x: Any, body: dict[str, Any], status: int, words: str
) -> None:
    bid = new_batch(x)
    r = x.post(f"batches/{bid}/requests", json=body)
    assert r.status_code == status and words in r.json()["error"]
    assert x.get(f"batches/{bid}").json()["state"]["num_requests"] == 0  # nothing was added


def test_ids_stay_unique_across_add_calls_and_limits_hold(
    emu: Emulator, x: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bid = new_batch(x)
    assert x.post(f"batches/{bid}/requests", json={"batch_requests": [item(0)]}).status_code == 200
    again = x.post(f"batches/{bid}/requests", json={"batch_requests": [item(0)]})
    assert again.status_code == 400 and "already in the batch" in again.json()["error"]
    monkeypatch.setattr(emu.xai, "MAX_ADD_BYTES", 200)
    big = x.post(f"batches/{bid}/requests", json={"batch_requests": [item(1), item(2)]})
    assert big.status_code == 413


def test_unknown_ids_auth_and_create_checks(emu: Emulator, x: Any) -> None:
    assert x.get("batches/batch_nope").status_code == 404
    assert (
        x.post("batches/batch_nope/requests", json={"batch_requests": [item(0)]}).status_code == 404
    )
    assert x.get("batches/batch_nope/results").status_code == 404
    assert x.post("batches", json={}).status_code == 400
    assert x.post("batches", json={"name": "n", "model": "grok-4"}).status_code == 400
    anon = httpx2.get(emu.url + "/xai/v1/batches")
    assert anon.status_code == 401 and "error" in anon.json()
    assert x.get("nothing-here").status_code == 404
    assert emu.created == []


def test_cancel_keeps_done_rows_and_refuses_more(emu: Emulator, x: Any) -> None:
    emu.processing_delay = 60
    bid = new_batch(x)
    x.post(f"batches/{bid}/requests", json={"batch_requests": [item(0), item(1)]})
    cancelled = x.post(f"batches/{bid}:cancel").json()
    assert cancelled["state"]["num_cancelled"] == 2 and cancelled["state"]["num_pending"] == 0
    assert "cancel_time" in cancelled
    assert x.get(f"batches/{bid}/results").json()["results"] == []
    late = x.post(f"batches/{bid}/requests", json={"batch_requests": [item(5)]})
    assert late.status_code == 400


def test_faults_apply_under_the_xai_name(emu: Emulator, x: Any) -> None:
    emu.faults.http("xai", "POST", r"/batches$", 503)
    assert x.post("batches", json={"name": "n"}).status_code == 503
    assert emu.created == []
    emu.faults.batch("xai", "expired", fraction_done=0.5)
    bid = new_batch(x)
    x.post(f"batches/{bid}/requests", json={"batch_requests": [item(i) for i in range(4)]})
    got = x.get(f"batches/{bid}").json()
    assert got["state"]["num_pending"] == 2 and got["expire_time"] < got["create_time"]
    emu.faults.line("xai", "missing_field")
    bid = new_batch(x, "second")
    x.post(f"batches/{bid}/requests", json={"batch_requests": [item(0)]})
    (only,) = x.get(f"batches/{bid}/results").json()["results"]
    assert only == {"batch_request_id": "req-0"}
    emu.faults.line("xai", "garbage")
    bid = new_batch(x, "third")
    x.post(f"batches/{bid}/requests", json={"batch_requests": [item(0)]})
    (cut,) = x.get(f"batches/{bid}/results").json()["results"]
    assert isinstance(cut, str) and '"req-0"' in cut
    with pytest.raises(ValueError):
        json.loads(cut)
