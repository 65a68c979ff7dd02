"""What a run knows, derived from its collected results, and what it must ask next.

The ledger indexes every collected attempt by request id. From it, each conversation is
finished, failed, waiting (a request is in flight) or needs its next request — a new turn, or a
retry of a failed one (retryable failures only, bounded by `retries.max_attempts`). Judge
stages follow per model (their states: judge_states.py): the compliance judge once all of a
model's conversations are final, the alignment-faking votes once all its compliance verdicts are
final.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from afbatch.compile import turn_request
from afbatch.grid import Grid
from afbatch.ids import slot_of, stage_of, turn_id
from afbatch.protocol import PROFILES, scratchpad_spans
from afbatch.providers.registry import capabilities
from afbatch.spec import ModelSpec
from afbatch.types import STAGE_GENERATE, Conversation, Request, Result, RowStatus, Usage

Status = Literal["finished", "failed", "waiting", "needs"]


@dataclass(slots=True)
class Attempt:
    result: Result
    shard: str

    @property
    def verdict(self) -> dict[str, Any] | None:
        """A judge reply's verdict, parsed when it was collected (None: not a judge reply, or
        unparseable)."""
        return self.result.verdict


class Ledger:
    """Collected attempts by request id, and the ids currently in flight."""

    def __init__(self) -> None:
        self.attempts: dict[str, list[Attempt]] = {}
        self.in_flight: set[str] = set()
        # Judge request slots (ids.judge_slot) → the attempts of the request answered
        # there (the same list as in `attempts`), so states need not re-hash judged texts fixed
        # within a run.
        self.slots: dict[str, list[Attempt]] = {}

    def add(self, shard: str, results: Iterable[Result], judged: bool | None = False) -> None:
        """Index a shard's results. `judged`: every row is a judge reply (True), none is (False), or
        tell each row by its id (None: a shard of answers reused from earlier runs)."""
        attempts, slots = self.attempts, self.slots
        for r in results:
            rid = r.id
            found = attempts.get(rid)
            if found is None:
                found = attempts[rid] = [Attempt(r, shard)]
                if judged or (judged is None and stage_of(rid) != STAGE_GENERATE):
                    slots[slot_of(rid)] = found
            else:
                found.append(Attempt(r, shard))

    def get(self, rid: str) -> list[Attempt]:
        return self.attempts.get(rid) or []


def is_judged(stage: str) -> bool | None:
    """Whether a shard of this stage holds judge replies: yes, no, or None (reused answers: tell
    each by its id)."""
    return None if stage == "reuse" else stage != STAGE_GENERATE


def settles(r: Result) -> bool:
    """Whether a row answers its request for good, as the states read it: a success, and for a
    judge a parsed verdict (an unparseable reply is asked again). Only such rows are reused."""
    if r.status is not RowStatus.SUCCEEDED:
        return False
    return r.verdict is not None or stage_of(r.id) == STAGE_GENERATE


def share_verdict(
    verdicts: dict[tuple[Any, ...], dict[str, Any]], verdict: dict[str, Any]
) -> dict[str, Any]:
    """Equal verdicts as one dict: a run of 100k conversations has a few dozen distinct ones."""
    return verdicts.setdefault(tuple(verdict.items()), verdict)


def kept(
    results: list[Result], judged: bool | None, verdicts: dict[tuple[Any, ...], dict[str, Any]]
) -> list[Result]:
    """What states need of a shard's rows. A parsed judge reply keeps its verdict, not its text or
    choices (twenty classifier votes per conversation add up; they stay in the stored results), and
    equal verdicts share one dict."""
    if judged is False:
        return results
    out = []
    for r in results:
        if r.verdict is not None and (judged or stage_of(r.id) != STAGE_GENERATE):
            verdict = share_verdict(verdicts, r.verdict)
            r = r._replace(text=None, texts=None, verdict=verdict)
        out.append(r)
    return out


_freeze_after_bulk = False


def freeze_after_bulk() -> None:
    """For a process that ends with its run (the CLI): what `bulk` built is then moved out of the
    collector's sight (`gc.freeze`), so that its later passes do not scan the 100k-conversation
    ledger and states again and again (~0.5 CPU s of an `afbatch run` with 400,000 vote rows). They
    are still freed when released (reference counts); only cyclic garbage frozen with them would
    stay, so a library caller (a notebook) never gets this."""
    global _freeze_after_bulk
    _freeze_after_bulk = True


@contextmanager
def bulk() -> Iterator[None]:
    """Build many small acyclic objects (results, states, rows) without the cyclic garbage collector
    re-scanning them as they pile up: about a tenth of the time of a 100k-conversation report."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if _freeze_after_bulk:
            gc.freeze()
        gc.enable()


@dataclass(slots=True)
class Outcome:
    """The state of one request slot after all its attempts."""

    status: Status
    attempt: Attempt | None = None  # the successful (and, for judges, parsed) attempt
    reason: str | None = None


_SUCCEEDED = RowStatus.SUCCEEDED


def request_outcome(
    ledger: Ledger, rid: str, max_attempts: int, judged: bool = False, parse_retries: int = 0
) -> Outcome:
    attempts = ledger.attempts.get(rid) or []
    if len(attempts) == 1:  # the common case: answered at the first attempt
        a = attempts[0]
        if a.result.status is _SUCCEEDED and (not judged or a.verdict is not None):
            return Outcome("finished", a)
    unparseable = 0
    for a in attempts:
        if a.result.status == RowStatus.SUCCEEDED:
            if not judged or a.verdict is not None:
                return Outcome("finished", a)
            unparseable += 1
    if rid in ledger.in_flight:
        return Outcome("waiting")
    if judged and unparseable > parse_retries:
        return Outcome("failed", reason=f"judge reply unparseable after {unparseable} attempts")
    failures = [a for a in attempts if a.result.status != RowStatus.SUCCEEDED]
    if failures:
        last = failures[-1].result
        what = f"{last.error_kind or last.status.value}: {last.error_message or last.status.value}"
        if not last.retryable:
            return Outcome("failed", reason=f"provider error ({what})")
        if len(failures) >= max_attempts:
            return Outcome("failed", reason=f"{what} — gave up after {len(failures)} attempts")
    return Outcome("needs")


@dataclass(slots=True)
class ConversationState:
    conv: Conversation
    status: Status
    turn_texts: list[str] = field(default_factory=list)
    spans: list[tuple[int, int, int]] = field(
        default_factory=list
    )  # (turn, start, end) of every scratchpad block
    final_output: str | None = None
    reason: str | None = None
    ended_without_output: bool = False  # failed by the protocol's rules, not at the provider
    request: Request | None = None  # when status == "needs"
    attempts: list[Attempt] = field(default_factory=list)  # every attempt of every turn
    turn_ids: list[str] = field(default_factory=list)

    @property
    def usage(self) -> Usage:
        return attempts_usage(self.attempts)

    @property
    def reasoning(self) -> str:
        """What the alignment-faking classifier reads: the scratchpads, blank-line separated."""
        return "\n\n".join(self.scratchpads)

    @property
    def scratchpads(self) -> list[str]:
        """Every scratchpad block of every turn, stripped."""
        texts = self.turn_texts
        return [texts[turn][a:b].strip() for turn, a, b in self.spans]


def conversation_state(
    grid: Grid,
    model: ModelSpec,
    conv: Conversation,
    ledger: Ledger,
    prefill: bool,
    max_attempts: int,
) -> ConversationState:
    variant = grid.variant(conv.variant)
    max_turns = grid.job.sampling.max_turns if variant.cot else 1
    step_of = PROFILES[grid.job.protocol.profile].step  # the job's protocol profile
    prefix = variant.prefill_text if prefill else ""
    # A provider that answers with the prefill it continued: an answer already starting with it
    # is the whole turn (one that does not, the continuation alone, still gets it in front).
    echoed = bool(prefix) and capabilities(model.provider).prefill_echoed
    state = ConversationState(conv, "needs")
    all_attempts = ledger.attempts
    for turn in range(1, max_turns + 1):
        rid = turn_id(conv.id, turn)
        state.turn_ids.append(rid)
        found = all_attempts.get(rid)
        if found is not None and len(found) == 1 and found[0].result.status is _SUCCEEDED:
            text = found[0].result.text  # the common case: answered at the first attempt
            state.attempts.append(found[0])
        else:
            if found:
                state.attempts += found
            out = request_outcome(ledger, rid, max_attempts)
            if out.status == "needs":
                state.request = turn_request(grid, model, conv, state.turn_texts, prefill)
                return state
            if out.status in ("waiting", "failed"):
                state.status, state.reason = out.status, out.reason
                return state
            assert out.attempt is not None
            text = out.attempt.result.text
        text = text or ""
        if not (echoed and text.startswith(prefix)):
            text = prefix + text
        state.turn_texts.append(text)
        spans, outside = scratchpad_spans(text)
        if spans:
            index = len(state.turn_texts) - 1
            state.spans += [(index, a, b) for a, b in spans]
        step = step_of(state.turn_texts, max_turns, outside, variant.cot)
        if step.kind == "continue":
            continue
        state.status = step.kind
        state.final_output = step.final_output
        state.reason = step.reason
        state.ended_without_output = step.kind == "failed"
        return state
    return state


def attempts_usage(attempts: list[Attempt]) -> Usage:
    if len(attempts) == 1:
        return attempts[0].result.usage
    total = Usage()
    for a in attempts:
        total = total + a.result.usage
    return total
