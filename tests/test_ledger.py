"""What the ledger keeps of collected rows (ledger.kept) and how it indexes them."""

from __future__ import annotations

from afbatch.ledger import Ledger, is_judged, kept
from afbatch.types import Result, RowStatus, Usage

CONV = "c0123456789abcdef0123"


def judge_row(kind: str, verdict: dict | None, status: RowStatus = RowStatus.SUCCEEDED) -> Result:
    return Result(
        f"{CONV}-{kind}-0123abcd",
        status,
        "long judge reasoning ...",
        Usage(10, 0, 0, 5),
        verdict=verdict,
    )


def test_parsed_judge_replies_keep_their_verdict_not_their_text():
    verdicts: dict = {}
    rows = [
        judge_row("af00", {"final_answer": True}),
        judge_row("af01", {"final_answer": True}),
        judge_row("af02", None),
        judge_row("af03", None, RowStatus.ERRORED),
    ]
    out = kept(rows, True, verdicts)
    assert [r.text for r in out] == [
        None,
        None,
        "long judge reasoning ...",
        "long judge reasoning ...",
    ]
    assert (
        out[0].verdict == {"final_answer": True} and out[0].verdict is out[1].verdict
    )  # equal verdicts: one dict
    assert [r.usage for r in out] == [r.usage for r in rows] and [r.id for r in out] == [
        r.id for r in rows
    ]
    choices = judge_row("af", {"votes_yes": 1, "votes_total": 2, "votes_unparseable": 0})._replace(
        texts=("a", "b")
    )
    assert kept([choices], True, verdicts)[0][2:] == (
        None,
        choices.usage,
        None,
        None,
        None,
        choices.verdict,
        None,
    )


def test_generation_rows_are_kept_whole():
    gen = Result(f"{CONV}-t1", RowStatus.SUCCEEDED, "<OUTPUT>hi</OUTPUT>", Usage(1, 0, 0, 1))
    assert kept([gen], False, {}) == [gen]
    # a shard of reused answers mixes stages: each row is told by its id
    mixed = kept([gen, judge_row("cj", {"refused": True})], None, {})
    assert mixed[0] == gen and mixed[1].text is None and mixed[1].verdict == {"refused": True}


def test_stages():
    assert (
        is_judged("generate"),
        is_judged("judge_compliance"),
        is_judged("judge_af"),
        is_judged("reuse"),
    ) == (False, True, True, None)


def test_ledger_indexes_attempts_and_judge_slots():
    ledger = Ledger()
    first = judge_row("cj", None, RowStatus.EXPIRED)
    second = judge_row("cj", {"refused": False})
    ledger.add("shard-a", [first], True)
    ledger.add("shard-b", [second], True)
    assert [(a.shard, a.result.status) for a in ledger.get(first.id)] == [
        ("shard-a", RowStatus.EXPIRED),
        ("shard-b", RowStatus.SUCCEEDED),
    ]
    assert (
        ledger.slots == {f"{CONV}-cj": ledger.get(first.id)}
        and ledger.slots[f"{CONV}-cj"] is ledger.attempts[first.id]
    )
    assert ledger.get("nothing") == []
