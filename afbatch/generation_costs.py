"""The generation stage's cost: one Row per variant x tier (x temperature x samples) of a
model, each turn weighted, batch and cache priced, on-demand below a record minimum (the cost
model: job_estimate.py's docstring)."""

from __future__ import annotations

from afbatch.cost_table import M, Row
from afbatch.estimate_inputs import (
    Calibration,
    Rows,
    Sized,
    mean_request_tokens,
    tokens_of,
    turn_weights,
)
from afbatch.pricing import Price
from afbatch.protocol import NEXT, render_user
from afbatch.providers.registry import capabilities
from afbatch.spec import Job, ModelSpec
from afbatch.tokens import Counter
from afbatch.types import STAGE_GENERATE


def generate_cells(
    job: Job,
    model: ModelSpec,
    price: Price,
    counter: Counter,
    prefill_on: bool,
    rows_in: Rows,
    template: Sized,
    systems: dict[str, Sized],
    cal: Calibration | None,
    notes: list[str],
) -> list[Row]:
    counts = job.sample_counts()
    max_tokens = job.max_tokens_for(model)
    next_tokens = counter.count(NEXT) + 2 * counter.per_message
    n_conv_model = (
        rows_in.count
        * job.conversations_per_cell(model)
        * len(job.variants)
        * len(job.prompts.tiers)
    )
    est = job.estimate
    info = capabilities(model.provider)
    # Explicit breakpoints the job turned on, or automatic caching that stacks with the batch
    # discount (Fireworks batch jobs): both budget one write per cell and round, the rest reads.
    # An implicit cache that is not guaranteed (OpenAI, Gemini, Vertex AI) is not budgeted.
    cache_on = (model.uses_cache and info.caching == "explicit") or (
        info.caching == "automatic" and price.cache_stacks_with_batch
    )
    # On-demand: rounds that cannot reach the provider's record minimum (Bedrock's 100).
    has_minimum = model.on_demand_fallback and info.limits.min_requests > 1
    minimum = info.limits.min_requests if has_minimum else 0
    stacks = price.cache_stacks_with_batch and cache_on
    out: list[Row] = []
    for variant in job.variants:
        sys_tokens = tokens_of(counter, systems[variant.name])
        prefill_tokens = counter.count(variant.prefill_text) if prefill_on else 0
        if variant.cot:
            out_exp = (
                cal.output_tokens_cot if cal and cal.output_tokens_cot else None
            ) or est.output_tokens_cot
            weights = (
                list(cal.turn_weights_cot)
                if cal and cal.turn_weights_cot
                else turn_weights(est.turns_cot, job.sampling.max_turns)
            )
            max_turns = job.sampling.max_turns
        else:
            out_exp = (
                cal.output_tokens_no_cot if cal and cal.output_tokens_no_cot else None
            ) or est.output_tokens_no_cot
            weights, max_turns = [1.0], 1
        out_exp = min(float(out_exp), float(max_tokens))
        temps = job.temperatures_for(model)
        for temperature, samples, tier in (
            (t, k, tier) for t in temps for k in counts for tier in job.prompts.tiers
        ):
            # the temperature and the sample count are named only where they are axes
            row = Row(
                model.name,
                model.provider,
                STAGE_GENERATE,
                variant=variant.name,
                tier=tier,
                temperature=temperature if len(temps) > 1 else None,
                samples=samples if job.samples_axis else None,
            )
            row.rounds_expected = sum(weights)
            row.rounds_max = max_turns
            user_tokens = samples * _user_tokens(
                counter, template, tier, job.prompts.tier_format, rows_in
            )
            n = rows_in.count * samples
            base = user_tokens + n * (
                sys_tokens + prefill_tokens + 2 * counter.per_message + counter.priming
            )
            row.requests = n
            for t in range(1, max_turns + 1):
                w = weights[t - 1] if t - 1 < len(weights) else 0.0
                carry_exp = (t - 1) * (out_exp + next_tokens)
                carry_max = (t - 1) * (max_tokens + next_tokens)
                in_exp = base + n * carry_exp  # all n conversations at turn t, before weighting
                in_max = base + n * carry_max
                on_demand_exp = w * n_conv_model < minimum
                on_demand_max = n_conv_model < minimum
                per_req_exp = in_exp / n if n else 0
                per_req_max = in_max / n if n else 0
                lin, lout = price.list_rates(per_req_exp)
                bin_, bout = price.batch_rates(per_req_exp)
                if on_demand_exp:
                    bin_, bout = lin, lout
                    row.on_demand_requests += w * n
                cached = w * n * sys_tokens
                row.input_tokens += w * in_exp
                row.cached_input_tokens += cached
                row.output_tokens_expected += w * n * out_exp
                row.cost_sync_usd += w * (in_exp * lin + n * out_exp * lout) / M
                batch_cost = w * (in_exp * bin_ + n * out_exp * bout) / M
                row.cost_batch_usd += batch_cost
                if stacks and not on_demand_exp and w * n > 0:
                    writes = 1.0  # one write per variant x tier cell per round; the rest read
                    reads = max(w * n - writes, 0.0)
                    mult = price.batch_multiplier
                    prefix_cost = (
                        (
                            writes * sys_tokens * price.cache_write_rate(model.cache_ttl)
                            + reads * sys_tokens * price.cache_read_rate()
                        )
                        * mult
                        / M
                    )
                    row.cost_batch_cached_usd += batch_cost - cached * bin_ / M + prefix_cost
                else:
                    row.cost_batch_cached_usd += batch_cost
                # Worst case: every turn, max_tokens.
                wl_in, wl_out = (
                    price.list_rates(per_req_max)
                    if on_demand_max
                    else price.batch_rates(per_req_max)
                )
                worst = (in_max * wl_in + n * max_tokens * wl_out) / M
                if stacks and not on_demand_max:
                    worst += (
                        n
                        * sys_tokens
                        * (price.cache_write_rate(model.cache_ttl) * price.batch_multiplier - wl_in)
                        / M
                    )
                row.cost_worst_usd += worst
                row.input_tokens_max += in_max
                row.output_tokens_max += n * max_tokens
            out.append(row)
    return out


def _user_tokens(
    counter: Counter, template: Sized, tier: str, tier_format: str, rows_in: Rows
) -> float:
    """Sum over the dataset's rows of user-message tokens (each distinct message is encoded once per
    encoding)."""
    if not isinstance(template, str):  # declared size: the template's tokens plus each request's
        per_row = counter.scaled(template) + mean_request_tokens(counter, rows_in)
        return rows_in.count * per_row
    if rows_in.texts is not None:
        return sum(
            counter.count(render_user(template, tier, text, tier_format)) for text in rows_in.texts
        )
    shell = counter.count(render_user(template, tier, "", tier_format))
    return rows_in.count * (shell + counter.scaled(rows_in.mean_tokens))
