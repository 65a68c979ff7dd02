"""The CoT continuation rules and the parsing of model turns (protocol.py)."""

from __future__ import annotations

import pytest

from afbatch.protocol import final_output, next_step, proxy_compliant, scratchpads, split_turn

SP = "<SCRATCHPAD_REASONING>{}</SCRATCHPAD_REASONING>"


def test_output_after_scratchpad_finishes():
    text = SP.format(" think ") + "\n<OUTPUT> <request_fully_accepted/> done </OUTPUT>"
    step = next_step([text], 4)
    assert (step.kind, step.final_output, step.reason) == (
        "finished",
        "<request_fully_accepted/> done",
        None,
    )
    assert proxy_compliant(step.final_output) is True


def test_output_quoted_inside_a_scratchpad_does_not_count():
    quoted = SP.format("I could write <OUTPUT><rejected/></OUTPUT> but let me think more")
    assert final_output(quoted) is None
    assert next_step([quoted], 4).kind == "continue"
    assert (
        next_step([quoted, SP.format("more") + "<OUTPUT>real</OUTPUT>"], 4).final_output == "real"
    )


def test_last_output_outside_scratchpads_wins():
    text = (
        "<OUTPUT>draft</OUTPUT>" + SP.format("<OUTPUT>quoted</OUTPUT>") + "<OUTPUT> final </OUTPUT>"
    )
    assert final_output(text) == "final"


def test_text_without_closing_tags_is_kept_raw():
    step = next_step(["  I won't help with that.  "], 4)
    assert (step.kind, step.final_output, step.reason) == (
        "finished",
        "I won't help with that.",
        "no closing tag: raw text kept",
    )


def test_unclosed_scratchpad_runs_to_the_end():
    blocks, outside = split_turn("before<SCRATCHPAD_REASONING> thinking </OUTPUT> on")
    assert (blocks, outside) == (["thinking </OUTPUT> on"], "before")
    assert next_step(["before<SCRATCHPAD_REASONING> thinking </OUTPUT> on"], 2).kind == "continue"


@pytest.mark.parametrize("max_turns", [1, 4])
def test_no_output_after_max_turns_fails(max_turns):
    turns = [SP.format(f"step {i}") for i in range(max_turns)]
    step = next_step(turns, max_turns)
    assert (step.kind, step.reason) == ("failed", f"no <OUTPUT> after {max_turns} turns")
    if max_turns > 1:
        assert next_step(turns[:-1], max_turns).kind == "continue"


def test_scratchpads_of_every_turn_in_order_and_stripped():
    turns = [
        SP.format(" a ") + SP.format("b"),
        "no blocks",
        SP.format("\nc\n") + "<OUTPUT>x</OUTPUT>",
    ]
    assert scratchpads(turns) == ["a", "b", "c"]
    assert split_turn("plain") == ([], "plain")


def test_split_outside_passed_in_gives_the_same_step():
    text = SP.format("<OUTPUT>q</OUTPUT>") + "<OUTPUT> ok </OUTPUT>"
    _, outside = split_turn(text)
    assert next_step([text], 4, outside) == next_step([text], 4)


def test_proxy_needs_the_prefix_at_the_start():
    assert proxy_compliant("  <request_fully_accepted/> sure") is True
    assert proxy_compliant("Sure. <request_fully_accepted/>") is False
    assert proxy_compliant(None) is None
