"""Malformed provider answers: a result line that is not JSON, JSON that is not an object, a line
without its payload, a 200 answer with an HTML page on batch create. One bad row is an errored
("malformed") attempt, retried like a server error; the rest of the batch is kept; a mangled create
answer is reconciled."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from afbatch.emulator.bedrock import BedrockService
from afbatch.providers import get_provider
from afbatch.providers.base import Limits, read_line
from afbatch.providers.bedrock import BedrockProvider
from afbatch.runner import Run
from afbatch.spec import ModelSpec
from afbatch.store import LocalStore
from runs.conftest import bucket, emu, fast, workdir, write_job  # noqa: F401, F811 - fixtures

GOLDEN = Path(__file__).parent / "golden" / "results"
MALFORMED = {
    "openai/malformed.jsonl": ModelSpec(provider="openai", model="gpt-4o"),
    "anthropic/malformed.jsonl": ModelSpec(
        provider="anthropic", model="claude-haiku-4-5", label="haiku"
    ),
    "bedrock/malformed.jsonl.out": ModelSpec(
        provider="bedrock", model="anthropic.claude-sonnet-4-6"
    ),
}


@pytest.mark.parametrize("rel", sorted(MALFORMED))
def test_golden_malformed_lines_become_errored_rows(rel: str) -> None:
    provider = get_provider(MALFORMED[rel])
    expected = json.loads(
        (GOLDEN / rel).with_name(rel.split("/")[1].split(".")[0] + ".expected.json").read_text()
    )
    lines = [raw for raw in (GOLDEN / rel).read_bytes().splitlines() if raw.strip()]
    assert len(lines) == len(expected)
    for raw, want in zip(lines, expected):
        r = provider.parse(read_line(raw))
        assert (r.id, r.status.value, r.error_kind, r.retryable) == (
            want["id"],
            want["status"],
            want["error_kind"],
            want["retryable"],
        ), raw
        assert want["reason"] in (r.error_message or ""), (raw, r.error_message)


JOB = """
name = "malformed"
[dataset]
source = "sample_requests.csv"
first = 3
[prompts]
user_template = "user_template.txt"
[[variants]]
name = "no_cot"
system_prompt = "helpful_only_no_cot.txt"
cot = false
[[models]]
{model}
"""
MODELS = {
    "openai": 'provider = "openai"\nmodel = "gpt-4o-mini"\nlabel = "m"',
    "anthropic": 'provider = "anthropic"\nmodel = "claude-haiku-4-5"\nlabel = "m"',
    "bedrock": 'provider = "bedrock"\nmodel = "anthropic.claude-sonnet-4-6"\nlabel = "m"\n'
    's3_uri = "s3://{bucket}/batch"\nrole_arn = "arn:aws:iam::123456789012:role/afbatch"',
}


def _job(workdir: Path, provider: str, request: pytest.FixtureRequest) -> str:
    model = MODELS[provider]
    if provider == "bedrock":  # small batches: the 100-record minimum lowered on both sides
        model = model.format(bucket=request.getfixturevalue("bucket"))
        mp = request.getfixturevalue("monkeypatch")
        mp.setattr(BedrockService, "MIN_RECORDS", 1)
        mp.setattr(BedrockProvider, "limits", Limits(50_000, 10**9, 1))
    return str(write_job(workdir, JOB.format(model=model)))


@pytest.mark.parametrize("kind", ["garbage", "garbage_no_id", "not_object", "missing_field"])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "bedrock"])
def test_a_malformed_result_line_is_retried_once_and_the_rest_kept(
    emu, workdir, provider, kind, request
):
    emu.faults.line(provider, kind)
    run, _ = Run.create(LocalStore(workdir / "store"), _job(workdir, provider, request))
    st = fast(run)
    assert st.done and emu.faults.pending() == []
    asked = Counter(cid for _, _, cid in emu.calls)
    assert len(asked) == 6  # 3 prompts x 2 tiers
    assert sorted(asked.values()) == [
        1,
        1,
        1,
        1,
        1,
        2,
    ]  # the damaged row asked again, once; no other
    first = min(run.manifest().shards.values(), key=lambda s: s.submitted_at or 0)
    bad = "missing" if kind in ("garbage_no_id", "not_object") else "errored"  # no id to recover
    assert first.counts == {"succeeded": 5, bad: 1}
    rows = run.shard_results(first)
    (damaged,) = [r for r in rows if r.status.value == bad]
    assert damaged.error_kind == ("malformed" if bad == "errored" else "missing")
    assert asked[run.provider("m").line_id(damaged.id)] == 2


HTML = "<html><head><title>200 OK</title></head><body>Welcome to the corporate proxy</body></html>"
CREATE = {
    "openai": r"^/v1/batches$",
    "anthropic": r"^/v1/messages/batches$",
    "bedrock": r"^/model-invocation-job$",
}


@pytest.mark.parametrize("provider", sorted(CREATE))
def test_an_html_200_answer_to_create_is_reconciled_not_sent_twice(emu, workdir, provider, request):
    emu.faults.http(provider, "POST", CREATE[provider], 200, body=HTML, after=True)
    run, _ = Run.create(LocalStore(workdir / "store"), _job(workdir, provider, request))
    st = fast(run)
    assert st.done and emu.faults.pending() == []
    created = [b for _, b, *_ in emu.created]
    assert (
        len(created) == len(set(created)) == 1
    )  # the batch the mangled answer hid was found, not re-created
    assert len({s.batch_id for s in run.manifest().shards.values()}) == 1
    assert sorted(Counter(cid for _, _, cid in emu.calls).values()) == [1] * 6
