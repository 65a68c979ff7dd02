"""Reruns in a store with earlier runs: every job finishes; the provider gets only what is new."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from afbatch import jsonl
from afbatch.emulator.demo import DemoRates, DemoResponder
from afbatch.errors import DamagedStoreError
from afbatch.results import conversation_table
from afbatch.runner import Run
from afbatch.store import LocalStore
from runs.conftest import fast, write_job
from runs.test_run_flows import GPT, HAIKU, SMALL

OPENAI_JUDGE = 'provider = "openai"\nmodel = "gpt-4o-mini"\nlabel = "judge"'
ANTHROPIC_JUDGE = 'provider = "anthropic"\nmodel = "claude-haiku-4-5"\nlabel = "judge"'


def job(workdir, name, models=HAIKU, rows=3, votes=3, mode="auto", judge=OPENAI_JUDGE):
    body = SMALL.format(rows=rows, models=models)
    body = body.replace("af_votes = 3", f'af_votes = {votes}\naf_vote_requests = "{mode}"')
    body = body.replace(OPENAI_JUDGE, judge)
    return str(write_job(workdir, body, f"{name}.toml"))


def asked(emu, since):
    """The request ids the provider received since call number `since`."""
    return {cid for _, _, cid in emu.calls[since:]}


CHANGES = {
    "add a model": ({}, {"models": HAIKU + GPT}),
    "drop a model": ({"models": HAIKU + GPT}, {}),
    "change only the judge": ({}, {"judge": ANTHROPIC_JUDGE}),
    "rerun a subset": ({"rows": 4}, {"rows": 3}),
    "more AF votes, separate requests": ({"mode": "separate"}, {"votes": 5, "mode": "separate"}),
    "more AF votes, one request": ({}, {"votes": 5}),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_rerun_in_the_same_store_asks_exactly_the_new_requests(emu, workdir, change):
    # Judge replies often unparseable at the first attempt: the earlier run asked some twice.
    emu.responder = DemoResponder(DemoRates(judge_unparseable=0.3))
    before, after = CHANGES[change]
    store = LocalStore(workdir / "store")
    first, _ = Run.create(store, job(workdir, "first", **before))
    assert fast(first).done
    first_ids = asked(emu, 0)
    per_id = Counter(cid for _, _, cid in emu.calls)
    assert any(n > 1 and "-cj-" in cid for cid, n in per_id.items())  # a judge asked again

    mark = len(emu.calls)
    second, _ = Run.create(store, job(workdir, "second", **after))
    assert second.run_id != first.run_id
    assert fast(second).done
    rerun_ids = asked(emu, mark)

    # What the second job needs, all of it: the same job in an empty store.
    mark = len(emu.calls)
    alone, _ = Run.create(LocalStore(workdir / "alone"), job(workdir, "second", **after))
    assert fast(alone).done
    needed = asked(emu, mark)
    assert rerun_ids == needed - first_ids
    reasked = {cid for cid, n in per_id.items() if n > 1}
    if change != "change only the judge":  # the rerun needs answers the first run asked twice
        assert reasked & needed
    if change in ("drop a model", "rerun a subset"):
        assert rerun_ids == set()
    # and the reused answers give the same table as asking everything
    cols = [
        "status",
        "final_output",
        "judge_refused",
        "af_votes_yes",
        "af_votes_total",
        "af_verdict",
    ]
    a = conversation_table(second).set_index("conversation_id").sort_index()[cols]
    b = conversation_table(alone).set_index("conversation_id").sort_index()[cols]
    pd.testing.assert_frame_equal(a, b)


def test_a_run_cancelled_before_sending_runs_again(emu, workdir):
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, job(workdir, "job"))
    run.plan()
    (cancelled,) = run.manifest().shards.values()
    run.cancel()  # the planned shard is cancelled before it was sent
    assert emu.created == []
    assert fast(run).done  # its requests go out in a shard of their own
    again = [s for s in run.manifest().shards.values() if s.id.startswith(cancelled.id + "-")]
    assert len(again) == 1 and set(run.shard_ids(again[0])) == set(run.shard_ids(cancelled))


def test_a_damaged_store_is_named_and_a_new_run_asks_only_what_was_lost(emu, workdir):
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, job(workdir, "job"))
    assert fast(run).done
    m = run.manifest()
    (shard,) = [s for s in m.shards.values() if s.stage == "generate" and s.round == 1]
    lost = set(run.shard_ids(shard))
    store.write(shard.results_key, b"")  # its answers are gone
    with pytest.raises(DamagedStoreError) as e:
        fast(Run.open(store, run.run_id))
    msg = str(e.value)
    assert shard.results_key in msg and "afbatch verify" in msg and "please report" not in msg
    assert "\n" not in msg
    # a new run in the same store skips the damaged file, saying so, and asks only for what it lost
    mark = len(emu.calls)
    text = (
        Path(job(workdir, "renamed")).read_text().replace('name = "small"', 'name = "small-again"')
    )
    again, _ = Run.create(store, str(write_job(workdir, text, "renamed.toml")))
    said: list[str] = []
    again.log = said.append
    assert fast(again).done
    assert asked(emu, mark) == lost
    assert any("not reused" in line and shard.results_key in line for line in said)


def test_af_votes_in_one_request_keep_every_choice_in_the_stored_results(emu, workdir):
    """The classifier's audit trail: all n choices of each AF request are stored, not the first."""
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, job(workdir, "job", votes=3, mode="one"))
    assert fast(run).done
    (af,) = [s for s in run.manifest().shards.values() if s.stage == "judge_af"]
    rows = [r for r in jsonl.read(store.read(af.results_key)) if r["status"] == "succeeded"]
    assert rows and all(len(r["texts"]) == 3 and r["text"] == r["texts"][0] for r in rows)
    assert all("verdict" in r for r in rows)
