"""The experiment state: what a run knows after its collected attempts, derived once per step.

From the manifest and the collected attempts (the ledger) come every conversation's state, the
judge states, what the run must ask next and per-model progress. The planner and `status` read
`wanted` and `progress`; the tidy table drains it, row by row (`drain`). The rule of
which conversation goes to which judge is here, once: the compliance judge reads every finished
conversation, once all of its model's conversations are final; the alignment-faking classifier
reads every CoT conversation the compliance judge found compliant (under the job's
`compliance_rule`; with `classify = "all_cot"` every CoT conversation with a verdict), once all of
its model's compliance verdicts are final; the partial-compliance classifier, at the same point,
every answer judged compliant (`partial_reads = "all"`: every finished answer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from afbatch.grid import Grid
from afbatch.judge_states import JudgeState, af_state, compliance_state, partial_state
from afbatch.judge_verdicts import complied
from afbatch.ledger import ConversationState, Ledger, bulk, conversation_state
from afbatch.manifest import IN_FLIGHT, Manifest, ShardState
from afbatch.spec import JudgeSpec, ModelSpec
from afbatch.types import (
    STAGE_AF,
    STAGE_COMPLIANCE,
    STAGE_GENERATE,
    STAGE_PARTIAL,
    Conversation,
    Request,
)

# What a state depends on: which shards are collected and which are in flight.
ShardKey = tuple[tuple[str, bool, bool], ...]
# A model's judge states (compliance, alignment faking, partial compliance) by conversation index
# (None: that judge does not read it); kept only when every judge stage of the model was open.
Judged = tuple[list[JudgeState | None], list[JudgeState | None], list[JudgeState | None]]


def shard_key(m: Manifest) -> ShardKey:
    return tuple(
        sorted(
            (s.id, s.state == ShardState.COLLECTED, s.state in IN_FLIGHT) for s in m.shards.values()
        )
    )


def to_compliance(cs: ConversationState) -> bool:
    """Whether the compliance judge reads this conversation."""
    return cs.status == "finished"


def to_partial(cs: ConversationState, compliance: JudgeState, judge: JudgeSpec) -> bool:
    """Whether the partial-compliance classifier reads this (finished) conversation, given its
    compliance: with `partial_reads = "compliant"` (the default) an answer the judge found
    compliant under the job's `compliance_rule` (a judged refusal is the class refusal without
    being read); with "all", every finished answer."""
    if judge.partial_reads == "all":
        return True
    return compliance.verdict is not None and complied(compliance.verdict, judge.compliance_rule)


def to_af(cs: ConversationState, compliance: JudgeState, judge: JudgeSpec) -> bool:
    """Whether the alignment-faking classifier reads this conversation, given its compliance:
    a CoT answer with a verdict, compliant under the job's `compliance_rule` — or any, with
    `classify = "all_cot"` (the report keeps the refusals' verdicts apart)."""
    if not cs.conv.cot or compliance.verdict is None:
        return False
    return judge.classify == "all_cot" or complied(compliance.verdict, judge.compliance_rule)


@dataclass
class ModelProgress:
    model: str
    stage: str
    total: int = 0
    finished: int = 0
    failed: int = 0
    waiting: int = 0
    pending: int = 0  # needs a request that is not sent yet


@dataclass(slots=True)
class Row:
    """One conversation as the tidy table reads it."""

    model: ModelSpec
    state: ConversationState
    compliance: JudgeState | None = None  # None: not for the compliance judge (or no judge)
    af: JudgeState | None = None  # None: not for the alignment-faking classifier
    partial: JudgeState | None = None  # None: not for the partial-compliance classifier


@dataclass
class ExperimentState:
    """Derived from the manifest's shard states (`key`) and the attempts they collected."""

    key: ShardKey
    ledger: Ledger
    wanted: list[Request]  # every request needed now: not in flight, not answered
    progress: list[ModelProgress]
    prefill: dict[str, bool] = field(default_factory=dict)  # per model, as the manifest records
    # Every conversation's state by model, kept when nothing is left to ask or wait for (the
    # report comes next and reads them, instead of deriving them a second time) or when derived
    # for a report.
    states: dict[str, list[Any]] | None = None
    judged: dict[str, Judged] | None = None  # kept with `states`: the report does not judge again
    drained: bool = False
    deriver: Deriver | None = field(default=None, repr=False)
    on_drain: Callable[[], None] = field(default=lambda: None, repr=False)

    @property
    def settled(self) -> bool:
        return not self.wanted and not self.ledger.in_flight

    def drain(self) -> Iterator[Row]:
        """Every conversation's row (see Deriver.drain); the state is used up."""
        assert self.deriver is not None
        return self.deriver.drain(self)


class Deriver:
    """Derives the experiment state of one run's grid; `convs` gives a model's conversations."""

    def __init__(self, grid: Grid, convs: Callable[[ModelSpec], list[Conversation]]):
        self.grid, self.job, self.convs = grid, grid.job, convs
        self.judge = self.job.judge
        self.max_attempts = self.job.retries.max_attempts
        templates = grid.judge_templates
        self.comp_tpl = templates.get("compliance") if self.judge else None
        self.af_tpl = templates.get("alignment_faking") if self.judge else None
        self.partial_tpl = templates.get("partial_compliance") if self.judge else None

    def derive(self, m: Manifest, ledger: Ledger, keep_states: bool = False) -> ExperimentState:
        need: list[Request] = []
        progress: list[ModelProgress] = []
        kept: dict[str, list[Any]] = {}
        judged: dict[str, Judged] = {}
        with bulk():
            for model in self.job.models:
                states = self._states(m, model, ledger)
                found = self._judged(model.name, states, ledger, need, progress)
                kept[model.name] = states
                if found is not None:
                    judged[model.name] = found
        state = ExperimentState(
            key=shard_key(m),
            ledger=ledger,
            wanted=need,
            progress=progress,
            prefill=dict(m.prefill),
            deriver=self,
        )
        if keep_states or state.settled:
            state.states, state.judged = kept, judged
        return state

    def _states(self, m: Manifest, model: ModelSpec, ledger: Ledger) -> list[ConversationState]:
        prefill, grid, max_attempts = m.prefill.get(model.name, False), self.grid, self.max_attempts
        return [
            conversation_state(grid, model, c, ledger, prefill, max_attempts)
            for c in self.convs(model)
        ]

    def _judged(
        self,
        name: str,
        states: list[ConversationState],
        ledger: Ledger,
        need: list[Request],
        progress: list[ModelProgress],
    ) -> Judged | None:
        """Adds what one model needs and its progress per stage. A judge stage opens once the
        stage before it is final for all of the model's conversations. Returns the judge states
        when every stage was open (None otherwise: the report derives them itself)."""
        progress.append(_progress(name, STAGE_GENERATE, [s.status for s in states]))
        need += [s.request for s in states if s.status == "needs" and s.request is not None]
        judge, max_attempts, comp_tpl = self.judge, self.max_attempts, self.comp_tpl
        if not judge or comp_tpl is None or any(s.status in ("needs", "waiting") for s in states):
            return None
        comp = [
            compliance_state(judge, comp_tpl, s, ledger, max_attempts) if to_compliance(s) else None
            for s in states
        ]
        read = [j for j in comp if j is not None]
        progress.append(_progress(name, STAGE_COMPLIANCE, [j.status for j in read]))
        need += [r for j in read for r in j.requests]
        af_tpl, partial_tpl = self.af_tpl, self.partial_tpl
        af: list[JudgeState | None] = [None] * len(states)
        partial: list[JudgeState | None] = [None] * len(states)
        if not af_tpl and not partial_tpl:
            return comp, af, partial
        if any(j.status in ("needs", "waiting") for j in read):
            return None
        if af_tpl:
            af = [
                af_state(judge, af_tpl, s, ledger, max_attempts)
                if j is not None and to_af(s, j, judge)
                else None
                for s, j in zip(states, comp)
            ]
            afs = [a for a in af if a is not None]
            progress.append(_progress(name, STAGE_AF, [a.status for a in afs]))
            need += [r for a in afs for r in a.requests]
        if partial_tpl:
            partial = [
                partial_state(judge, partial_tpl, s, ledger, max_attempts)
                if j is not None and to_partial(s, j, judge)
                else None
                for s, j in zip(states, comp)
            ]
            pcs = [p for p in partial if p is not None]
            progress.append(_progress(name, STAGE_PARTIAL, [p.status for p in pcs]))
            need += [r for p in pcs for r in p.requests]
        return comp, af, partial

    def drain(self, state: ExperimentState) -> Iterator[Row]:
        """Every conversation's row, model by model, each released once read: its texts leave the
        ledger as the reader goes (the report holds them in its table). A state is drained once.
        Conversation and judge states the state did not keep are derived here, row by row."""
        assert not state.drained, "an experiment state is drained once"
        state.drained = True
        state.on_drain()
        ledger, kept, kept_judged = state.ledger, state.states or {}, state.judged or {}
        state.states = state.judged = None
        judge, max_attempts = self.judge, self.max_attempts
        comp_tpl, af_tpl, partial_tpl = self.comp_tpl, self.af_tpl, self.partial_tpl
        attempts = ledger.attempts
        if all(
            m.name in kept and (comp_tpl is None or m.name in kept_judged) for m in self.job.models
        ):
            # The rows need nothing more of the ledger (each state holds its own attempts): its
            # judge rows (400,000 with separate votes) go before the table is built, not after.
            attempts.clear()
            ledger.slots.clear()
        for model in self.job.models:
            states, judged = kept.get(model.name), kept_judged.get(model.name)
            prefill = state.prefill.get(model.name, False)
            for i, conv in enumerate(self.convs(model)):
                if states is not None:
                    cs, states[i] = states[i], None  # released once read
                else:
                    cs = conversation_state(self.grid, model, conv, ledger, prefill, max_attempts)
                row = Row(model, cs)
                if judged is not None:  # as the derivation judged it; released once read
                    comp, af, partial = judged
                    row.compliance, row.af, row.partial = comp[i], af[i], partial[i]
                    comp[i] = af[i] = partial[i] = None
                elif judge is not None and comp_tpl and to_compliance(cs):
                    row.compliance = compliance_state(judge, comp_tpl, cs, ledger, max_attempts)
                    if af_tpl and to_af(cs, row.compliance, judge):
                        row.af = af_state(judge, af_tpl, cs, ledger, max_attempts)
                    if partial_tpl and to_partial(cs, row.compliance, judge):
                        row.partial = partial_state(judge, partial_tpl, cs, ledger, max_attempts)
                yield row
                for rid in cs.turn_ids:
                    attempts.pop(rid, None)  # this conversation's texts are in its row now


def _progress(model: str, stage: str, statuses: list[str]) -> ModelProgress:
    p = ModelProgress(model, stage, total=len(statuses))
    for st in statuses:
        if st == "finished":
            p.finished += 1
        elif st == "failed":
            p.failed += 1
        elif st == "waiting":
            p.waiting += 1
        else:
            p.pending += 1
    return p
