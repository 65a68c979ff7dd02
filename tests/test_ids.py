"""The id grammar (afbatch/ids.py): what the builders make, the parsers read and submit checks."""

from __future__ import annotations

import pytest

from afbatch import ids
from afbatch.errors import RunError

CONV = ids.conversation_id("openai", "m", "cot", "0" * 64, "hello", 0, 0, None, 100, "")
DIGEST = ids.text_digest("judged")


def test_every_built_id_follows_the_grammar_and_reads_back():
    turn = ids.turn_id(CONV, 12)
    cj = ids.judge_id(CONV, "cj", DIGEST)
    af_one = ids.judge_id(CONV, "af", DIGEST)
    votes = [ids.judge_id(CONV, "af", DIGEST, vote=v) for v in (0, 7, 19)]
    for rid in (turn, cj, af_one, *votes):
        assert ids.is_request_id(rid) and ids.ID_RE.match(rid)
        assert ids.conversation_of(rid) == CONV
        ids.check(rid, "here")
    assert ids.turn_of(turn) == 12 and ids.stage_of(turn) == "generate"
    assert ids.stage_of(cj) == "judge_compliance" and ids.stage_of(votes[1]) == "judge_af"
    assert ids.slot_of(cj) == ids.judge_slot(CONV, "cj") == f"{CONV}-cj"
    assert ids.slot_of(af_one) == ids.judge_slot(CONV, "af")
    assert [ids.slot_of(v) for v in votes] == [ids.judge_slot(CONV, "af", v) for v in (0, 7, 19)]
    # the two AF modes never share a slot
    assert len(set(map(ids.slot_of, (cj, af_one, *votes)))) == 5


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "hello",
        CONV,
        f"{CONV}-t0",
        f"{CONV}-t",
        f"{CONV}-tx",
        f"{CONV}-cj",
        f"{CONV}-cj07-{DIGEST}",
        f"{CONV}-af7-{DIGEST}",
        f"{CONV}-af-{DIGEST}0",
        f"{CONV}-xx-{DIGEST}",
        f"{CONV.upper()}-t1",
        f"{CONV}-t1 ",
        f"{CONV}-t1\n",
        f"{CONV[:-1]}-t1",
    ],
)
def test_ids_outside_the_grammar_are_refused(bad):
    assert not ids.is_request_id(bad)
    with pytest.raises(RunError, match="shard s1: request id .* is not of the form"):
        ids.check(bad, "shard s1")
