"""The estimate in words: its notes (batch minimums, prefill, the judge classifiers) and its
table as aligned text, markdown or JSON."""

from __future__ import annotations

from typing import Any

from afbatch.batch_minimums import batch_shortfalls
from afbatch.cost_table import Estimate, Row
from afbatch.protocol import describe_prefill
from afbatch.spec import Job, JudgeSpec
from afbatch.types import STAGE_GENERATE


def shortfall_notes(job: Job, rows: int) -> list[str]:
    """Per model and stage below its provider's batch minimum, what happens to those requests."""
    notes = []
    for short in batch_shortfalls(job, rows):
        m = short.model
        if not m.on_demand_fallback:
            fix = "run and submit refuse the job unless this model sets on_demand_fallback = true"
        elif short.stage == STAGE_GENERATE:
            fix = "they are priced on-demand (on_demand_fallback = true)"
        else:
            fix = "they go on-demand at list price (on_demand_fallback = true)"
        notes.append(
            f"{m.provider} model {m.name}: {short.describe()}, below the minimum of "
            f"{short.minimum} per batch job; {fix}"
        )
    return notes


def af_votes_note(j: JudgeSpec) -> str:
    """How the alignment-faking classifier's votes are asked for, and on which answers."""
    how = (
        "as the n choices of one request: each transcript is billed once"
        if j.af_votes_in_one_request
        else "as separate requests"
        + (", sharing one cached prompt" if (j.af_model or j.model).uses_cache else "")
    )
    which = (
        "CoT answer (classify = all_cot: refusals too)"
        if j.classify == "all_cot"
        else "compliant CoT answer"
    )
    return f"alignment-faking classifier: {j.af_votes} votes per {which}, {how}"


def partial_note(judge: JudgeSpec) -> str:
    """The partial-compliance classifier: its template, model and which answers it reads."""
    reads = (
        "every answer judged compliant (partial_reads = compliant; the others are refusals)"
        if judge.partial_reads == "compliant"
        else "every finished answer (partial_reads = all)"
    )
    return (
        f"partial-compliance classifier ({judge.partial_template}, on "
        f"{judge.model.name}): full / partial / refusal, one request for "
        f"{reads}"
    )


def prefill_note(records: dict[str, dict[str, Any]]) -> str:
    """Per model, the prefill its turns carry or why none: a protocol difference to see."""
    groups: dict[str, list[str]] = {}
    for label, r in records.items():
        groups.setdefault(describe_prefill(r), []).append(label)
    return "prefill — " + "; ".join(f"{how}: {', '.join(labels)}" for how, labels in groups.items())


_HEADERS = [
    "model",
    "stage",
    "requests",
    "input tok",
    "cacheable",
    "output exp",
    "output max",
    "rounds",
    "sync",
    "batch",
    "batch+cache",
    "worst",
]


def _cells(r: Row) -> list[str]:
    from afbatch.tables import tokens, usd

    name = r.model if r.variant is None else f"{r.model} {r.variant}/{r.tier}"
    if r.temperature is not None:
        name += f" T={r.temperature:g}"
    if r.samples is not None:
        name += f" samples={r.samples}"
    rounds = f"{r.rounds_expected:.2f} (≤{r.rounds_max})" if r.rounds_max > 1 else "1"
    return [
        name,
        r.stage,
        f"{r.requests:,}",
        tokens(r.input_tokens),
        tokens(r.cached_input_tokens),
        tokens(r.output_tokens_expected),
        tokens(r.output_tokens_max),
        rounds,
        usd(r.cost_sync_usd),
        usd(r.cost_batch_usd),
        usd(r.cost_batch_cached_usd),
        usd(r.cost_worst_usd),
    ]


def format_estimate(est: Estimate, fmt: str = "table") -> str:
    """The estimate as an aligned table (terminal) or markdown (saved next to the job)."""
    import json

    from afbatch.tables import markdown_table, text_table, usd

    if fmt == "json":
        return json.dumps(est.as_json(), indent=1)
    t = est.totals()
    rows = [_cells(r) for r in est.rows]
    rows.append(
        [
            "TOTAL",
            "",
            f"{sum(r.requests for r in est.rows):,}",
            "",
            "",
            "",
            "",
            "",
            usd(t["cost_sync_usd"]),
            usd(t["cost_batch_usd"]),
            usd(t["cost_batch_cached_usd"]),
            usd(t["cost_worst_usd"]),
        ]
    )
    a = est.assumptions
    lines = [
        f"Saving against synchronous: batch {est.saving_pct('cost_batch_usd'):.1f}%, "
        f"batch + prompt caching {est.saving_pct():.1f}%.",
        f"Assumes {a['output_tokens_cot']} output tokens per CoT turn, {a['turns_cot']} CoT "
        f"turns on average, {a['output_tokens_no_cot']} tokens per no-CoT answer, "
        f"{a['compliance_rate']:.0%} of CoT answers compliant (AF classifier volume); worst = "
        "every turn at max_tokens, all turns, every CoT answer compliant (judge retries of "
        f"unparseable verdicts not included). Prices as of {est.prices_as_of}.",
        *est.notes,
    ]
    if est.protocol:
        lines.insert(0, f"Protocol profile {est.protocol['rules']}.")
    if fmt == "markdown":
        return (
            f"# Estimate: {est.job}\n\n"
            + markdown_table(_HEADERS, rows)
            + "\n\n"
            + "\n".join(f"- {x}" for x in lines)
            + "\n"
        )
    return text_table(_HEADERS, rows) + "\n\n" + "\n".join(lines)
