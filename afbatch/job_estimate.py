"""Tokens x prices → cost tables, offline, before anything is spent.

Cost model (README "Cost model" explains it for users):
  - A conversation's turn t sends: system + user + earlier turns (each: assistant text incl.
    prefill, then a <NEXT/> user turn) + this turn's prefill, plus chat-format overhead.
  - Expected: CoT conversations reach turn t with weight w_t, from `turns_cot` (w_1 = 1,
    w_t = clamp(turns_cot - (t-1), 0, 1)), or observed weights from a finished run
    (--calibrate-from); each turn emits `output_tokens_cot` (no-CoT: one turn of
    `output_tokens_no_cot`).
  - Worst case: every CoT conversation uses all max_turns turns, every turn emits max_tokens;
    where caching is on and stacks with batch, every cacheable prefix is billed as a cache write.
  - batch = list x the provider's batch multiplier (or the table's explicit batch price);
    batch + cache applies cache reads/writes only where the provider's discounts stack
    (Anthropic, Fireworks); elsewhere it equals batch (an implicit cache that is not guaranteed is
    not budgeted). Cache: one write per variant per round, all other requests read.
  - Bedrock rows that cannot form a >=100-record job are priced on-demand (list price).

`estimate_job` puts the parts together: estimate_inputs.py (texts, token counts, calibration),
generation_costs.py and judge_costs.py (the rows), af_setups.py (the AF classifier's equivalent
set-ups), estimate_format.py (notes, table), cost_table.py (Row, Estimate); budget.py checks
--max-cost.
"""

from __future__ import annotations

import functools
from dataclasses import asdict

from afbatch.af_setups import af_setups_note
from afbatch.budget import check_budget
from afbatch.cost_table import Estimate, Row
from afbatch.datasets import read_source
from afbatch.estimate_format import (
    af_votes_note,
    format_estimate,
    partial_note,
    prefill_note,
    shortfall_notes,
)
from afbatch.estimate_inputs import (
    Calibration,
    dataset_rows,
    declared_or,
    model_counter,
    turn_weights,
)
from afbatch.generation_costs import generate_cells
from afbatch.grid import read_user_template
from afbatch.judge_costs import judge_rows
from afbatch.prefill import prefill_decision
from afbatch.pricing import PriceTable
from afbatch.protocol import PROFILES, prefill_record, protocol_record
from afbatch.spec import LoadedJob, VariantSpec
from afbatch.tokens import save_counts
from afbatch.types import STAGE_GENERATE

# The names callers import from here (the CLI, the Python API, results.py, the tests): the ones
# not defined here are re-exported from their modules above.
__all__ = [
    "Calibration",
    "Estimate",
    "Row",
    "check_budget",
    "estimate_job",
    "format_estimate",
    "turn_weights",
]


def estimate_job(
    loaded: LoadedJob,
    prices: PriceTable,
    *,
    by: str = "model",
    offline: bool = False,
    calibration: dict[str, Calibration] | None = None,
) -> Estimate:
    job = loaded.job
    notes: list[str] = []
    rows_in = dataset_rows(loaded, offline, notes)
    prompts = job.prompts
    template = declared_or(
        lambda: read_user_template(loaded, offline=offline).text,
        prompts.user_template,
        prompts.user_template_tokens,
        "[prompts] user_template_tokens",
        notes,
    )

    def system_text(v: VariantSpec) -> str:
        return read_source(
            loaded.resolve(v.system_prompt), offline=offline, expected_sha256=v.system_prompt_sha256
        ).text

    systems = {
        v.name: declared_or(
            functools.partial(system_text, v),
            v.system_prompt,
            v.expected_tokens,
            f"variant {v.name}: expected_tokens",
            notes,
        )
        for v in job.variants
    }
    calibration = calibration or {}
    est = Estimate(
        job=job.name,
        rows=[],
        notes=notes,
        prices_as_of=prices.as_of,
        assumptions=job.estimate.model_dump(),
        protocol=protocol_record(PROFILES[job.protocol.profile]),
    )
    if calibration:
        seen = [m.name for m in job.models if m.name in calibration]
        missing = [m.name for m in job.models if m.name not in calibration]
        notes.append(
            f"calibrated from a finished run for {', '.join(seen) or 'no model'}"
            + (f"; job assumptions kept for {', '.join(missing)}" if missing else "")
        )
        est.assumptions["calibrated"] = {
            k: {f: v for f, v in asdict(c).items() if v is not None} for k, c in calibration.items()
        }
    texts = {v.name: v.prefill_text for v in job.variants}
    for model in job.models:
        price = prices.lookup(model)
        decision = prefill_decision(model, prices)
        est.prefill[model.name] = prefill_record(decision.sent, decision.reason, texts)
        counter = model_counter(model, prices, est)
        cells = generate_cells(
            job,
            model,
            price,
            counter,
            decision.sent,
            rows_in,
            template,
            systems,
            calibration.get(model.name),
            notes,
        )
        if by == "condition":
            est.rows.extend(cells)
        else:
            total = Row(model.name, model.provider, STAGE_GENERATE)
            for c in cells:
                total.add(c)
            total.rounds_expected = max((c.rounds_expected for c in cells), default=1.0)
            total.rounds_max = max((c.rounds_max for c in cells), default=1)
            est.rows.append(total)
    notes.extend(shortfall_notes(job, rows_in.count))
    notes.append(prefill_note(est.prefill))
    if job.judge:
        est.rows.extend(judge_rows(loaded, prices, rows_in, template, calibration, offline, est))
        if job.judge.af_template:
            notes.append(af_votes_note(job.judge))
            notes.append(
                af_setups_note(loaded, prices, rows_in, template, calibration, offline, est)
            )
        if job.judge.partial_template:
            notes.append(partial_note(job.judge))
    save_counts()
    return est
