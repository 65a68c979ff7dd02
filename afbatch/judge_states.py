"""A judge request's state per conversation, derived from the ledger every step.

The compliance judge and the partial-compliance classifier send one request per conversation,
found by its slot (`ids.judge_slot`) so that judged texts are hashed only when the slot is empty;
the alignment-faking votes are one request per vote, or the choices of one request
(`af_votes_in_one_request`), counted into a yes/no outcome by `judge.af_outcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from afbatch.ids import judge_slot
from afbatch.judge import (
    af_ids,
    af_outcome,
    af_requests,
    compliance_id,
    compliance_request,
    partial_id,
    partial_request,
)
from afbatch.judge_templates import Template
from afbatch.judge_verdicts import vote_yes
from afbatch.ledger import ConversationState, Ledger, Status, attempts_usage, request_outcome
from afbatch.types import Request, RowStatus, Usage

_SUCCEEDED = RowStatus.SUCCEEDED


@dataclass(slots=True)
class JudgeState:
    status: Status
    verdict: dict[str, Any] | None = None
    reason: str | None = None
    requests: Sequence[Request] = ()  # one shared empty tuple: 100k states keep no empty lists
    usage: Usage = Usage()
    votes_yes: int = 0
    votes_total: int = 0
    af: str | None = None


def compliance_state(
    judge_spec: Any, tpl: Template, cs: ConversationState, ledger: Ledger, max_attempts: int
) -> JudgeState:
    return _one_request_state(
        judge_spec,
        ledger,
        judge_slot(cs.conv.id, "cj"),
        max_attempts,
        lambda: compliance_id(judge_spec, tpl, cs.conv, cs.final_output or ""),
        lambda: [compliance_request(judge_spec, tpl, cs.conv, cs.final_output or "")],
    )


def partial_state(
    judge_spec: Any, tpl: Template, cs: ConversationState, ledger: Ledger, max_attempts: int
) -> JudgeState:
    """The partial-compliance classifier's state (the texts are joined only when its slot is
    empty, as for the other one-request stages)."""
    return _one_request_state(
        judge_spec,
        ledger,
        judge_slot(cs.conv.id, "pc"),
        max_attempts,
        lambda: partial_id(judge_spec, tpl, cs.conv, cs.final_output or "", cs.reasoning),
        lambda: [partial_request(judge_spec, tpl, cs.conv, cs.final_output or "", cs.reasoning)],
    )


def _one_request_state(
    judge_spec: Any,
    ledger: Ledger,
    slot: str,
    max_attempts: int,
    request_id: Callable[[], str],
    requests: Callable[[], list[Request]],
) -> JudgeState:
    """A judge stage of one request per conversation, found by its slot (its id is worked out only
    when the slot is empty: that hashes the judged text)."""
    found = ledger.slots.get(slot)
    if found is None:
        rid = request_id()
        found = ledger.attempts.get(rid)
    else:
        rid = found[0].result.id
    if found is not None and len(found) == 1:  # the common case: one parsed reply
        r = found[0].result
        if r.status is _SUCCEEDED and r.verdict is not None:
            return JudgeState("finished", verdict=r.verdict, usage=r.usage)
    out = request_outcome(
        ledger, rid, max_attempts, judged=True, parse_retries=judge_spec.unparseable_retries
    )
    usage = attempts_usage(ledger.get(rid))
    if out.status == "needs":
        return JudgeState("needs", requests=requests(), usage=usage)
    if out.status == "finished":
        assert out.attempt is not None
        return JudgeState("finished", verdict=out.attempt.verdict, usage=usage)
    return JudgeState(out.status, reason=out.reason, usage=usage)


def af_state(
    judge_spec: Any, tpl: Template, cs: ConversationState, ledger: Ledger, max_attempts: int
) -> JudgeState:
    if judge_spec.af_votes_in_one_request:
        return _af_one_request_state(judge_spec, tpl, cs, ledger, max_attempts)
    get_slot, conv_id = ledger.slots.get, cs.conv.id
    by_slot = [get_slot(judge_slot(conv_id, "af", v)) for v in range(judge_spec.af_votes)]
    vote_ids = (
        [found[0].result.id for found in by_slot if found]
        if all(by_slot)
        else af_ids(judge_spec, tpl, cs.conv, cs.reasoning)
    )
    state = JudgeState("finished")
    reasons = []
    needed: list[int] = []
    all_attempts = ledger.attempts
    answered: list[Usage] = []
    yes_of: dict[int, bool] = {}  # equal verdicts are one dict (ledger.kept): count each kind once
    for vote, rid in enumerate(vote_ids):
        found = by_slot[vote] or all_attempts.get(rid)
        if found is not None and len(found) == 1:  # the common case: one parsed reply
            r = found[0].result
            v = r.verdict
            if r.status is _SUCCEEDED and v is not None:
                answered.append(r.usage)
                yes = yes_of.get(id(v))
                if yes is None:
                    yes = yes_of[id(v)] = vote_yes(v)
                state.votes_yes += yes
                continue
        out = request_outcome(
            ledger, rid, max_attempts, judged=True, parse_retries=judge_spec.unparseable_retries
        )
        state.usage = state.usage + attempts_usage(ledger.get(rid))
        if out.status == "needs":
            needed.append(vote)
        elif out.status == "waiting":
            state.status = "waiting"
        elif out.status == "finished":
            assert out.attempt is not None and out.attempt.verdict is not None
            state.votes_total += 1
            state.votes_yes += vote_yes(out.attempt.verdict)
        elif out.reason:
            reasons.append(out.reason)  # a vote that failed for good
    if answered:
        state.votes_total += len(answered)
        state.usage = state.usage + Usage(*map(sum, zip(*answered)))
    if needed:
        state.requests = af_requests(judge_spec, tpl, cs.conv, cs.reasoning, needed)
        state.status = "needs"
    if state.status == "finished":
        state.af = af_outcome(judge_spec, state.votes_yes, state.votes_total)
        if reasons:
            state.reason = f"{len(reasons)} of {len(vote_ids)} votes failed ({reasons[0]})"
        if state.votes_total == 0:
            state.status = "failed"
    return state


def _af_one_request_state(
    judge_spec: Any, tpl: Template, cs: ConversationState, ledger: Ledger, max_attempts: int
) -> JudgeState:
    """The votes as the choices of one request: its verdict (judge.votes_verdict) counts them."""
    state = _one_request_state(
        judge_spec,
        ledger,
        judge_slot(cs.conv.id, "af"),
        max_attempts,
        lambda: af_ids(judge_spec, tpl, cs.conv, cs.reasoning)[0],
        lambda: af_requests(judge_spec, tpl, cs.conv, cs.reasoning),
    )
    if state.status == "finished":
        assert state.verdict is not None
        v = state.verdict
        state.votes_yes, state.votes_total = int(v["votes_yes"]), int(v["votes_total"])
        state.af = af_outcome(judge_spec, state.votes_yes, state.votes_total)
        if v.get("votes_unparseable"):
            state.reason = f"{v['votes_unparseable']} of {judge_spec.af_votes} votes unparseable"
    return state
