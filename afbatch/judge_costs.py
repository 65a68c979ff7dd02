"""The judge stages' cost: compliance, alignment-faking votes (in one request or separate,
cached where the provider's cache stacks with batch) and partial compliance, one Row each."""

from __future__ import annotations

from afbatch.cost_table import Estimate, M, Row
from afbatch.errors import OfflineError
from afbatch.estimate_inputs import (
    Calibration,
    Rows,
    Sized,
    judge_text,
    mean_request_tokens,
    model_counter,
    tokens_of,
    turn_weights,
)
from afbatch.judge_templates import stage_template
from afbatch.pricing import Price, PriceTable
from afbatch.spec import LoadedJob
from afbatch.types import STAGE_AF, STAGE_COMPLIANCE, STAGE_PARTIAL


def judge_rows(
    loaded: LoadedJob,
    prices: PriceTable,
    rows_in: Rows,
    template: Sized,
    calibration: dict[str, Calibration],
    offline: bool,
    est_out: Estimate,
) -> list[Row]:
    job = loaded.job
    judge = job.judge
    assert judge is not None
    est = job.estimate
    jm = judge.model
    counter = model_counter(jm, prices, est_out)
    price = prices.lookup(jm)
    body = judge_text(loaded, "compliance", offline, est_out.notes)
    body_tokens = tokens_of(counter, body)
    request_tokens = mean_request_tokens(counter, rows_in)
    overhead = counter.per_message + counter.priming
    n_conv = 0
    resp_exp_sum = 0.0
    resp_max_sum = 0.0
    af_expected_requests = 0.0
    af_max_requests = 0.0
    scratch_exp_sum = 0.0
    scratch_max_sum = 0.0
    per_prompt = rows_in.count * len(job.prompts.tiers)
    # AF requests per compliant CoT conversation, and the answers (votes) each one returns
    per_conv, choices = (
        (1, judge.af_votes) if judge.af_votes_in_one_request else (judge.af_votes, 1)
    )
    for model in job.models:
        cal = calibration.get(model.name)
        mt = job.max_tokens_for(model)
        per_cell = per_prompt * job.conversations_per_cell(model)
        for v in job.variants:
            n = per_cell
            n_conv += n
            final_exp = min(est.output_tokens_no_cot, mt)
            resp_exp_sum += n * final_exp
            resp_max_sum += n * mt  # the final output sits inside one turn
            if v.cot and judge.af_template:
                rate = (
                    cal.compliance_rate
                    if cal and cal.compliance_rate is not None
                    else est.compliance_rate
                )
                if judge.classify == "all_cot":  # the classifier reads refusals too (state.to_af)
                    rate = 1.0
                out_cot = (
                    cal.output_tokens_cot if cal and cal.output_tokens_cot else None
                ) or est.output_tokens_cot
                weights = (
                    list(cal.turn_weights_cot)
                    if cal and cal.turn_weights_cot
                    else turn_weights(est.turns_cot, job.sampling.max_turns)
                )
                af_expected_requests += n * rate * per_conv
                af_max_requests += n * per_conv
                scratch_exp_sum += n * rate * per_conv * sum(weights) * min(out_cot, mt)
                scratch_max_sum += n * per_conv * job.sampling.max_turns * mt
    rows = []
    comp = Row(jm.name, jm.provider, STAGE_COMPLIANCE, requests=n_conv)
    fixed = body_tokens + request_tokens + overhead
    comp.input_tokens = n_conv * fixed + counter.scaled(resp_exp_sum)
    comp.input_tokens_max = n_conv * fixed + counter.scaled(resp_max_sum)
    comp.output_tokens_expected = n_conv * min(est.judge_output_tokens, judge.max_tokens)
    comp.output_tokens_max = n_conv * judge.max_tokens
    price_judge_row(comp, price, n_conv)
    rows.append(comp)
    if judge.af_template:
        am = judge.af_model or jm
        acounter = model_counter(am, prices, est_out)
        aprice = prices.lookup(am)
        abody = judge_text(loaded, "alignment_faking", offline, est_out.notes)
        afixed = tokens_of(acounter, abody) + mean_request_tokens(acounter, rows_in) + overhead
        af = Row(am.name, am.provider, STAGE_AF, requests=int(round(af_expected_requests)))
        af.input_tokens = af_expected_requests * afixed + acounter.scaled(scratch_exp_sum)
        af.input_tokens_max = af_max_requests * afixed + acounter.scaled(scratch_max_sum)
        af.output_tokens_expected = (
            af_expected_requests * choices * min(est.af_output_tokens, judge.max_tokens)
        )
        af.output_tokens_max = af_max_requests * choices * judge.max_tokens
        # The votes on one transcript send the same prompt: with caching that stacks with batch
        # (Anthropic), the first vote writes it and the other votes read it.
        votes_share = judge.af_votes if am.uses_cache and aprice.cache_stacks_with_batch else 0
        price_judge_row(
            af, aprice, max(af_expected_requests, 1.0), cache_group=votes_share, ttl=am.cache_ttl
        )
        rows.append(af)
    if judge.partial_template:
        rows.append(_partial_row(loaded, prices, rows_in, calibration, offline, est_out))
    return rows


def _partial_row(
    loaded: LoadedJob,
    prices: PriceTable,
    rows_in: Rows,
    calibration: dict[str, Calibration],
    offline: bool,
    est_out: Estimate,
) -> Row:
    """The partial-compliance classifier: one request per answer it reads (partial_reads: the
    compliant ones at the expected compliance rate, or all), on the compliance judge's model;
    the reasoning too where its template reads it. Worst case: every answer read."""
    job, est = loaded.job, loaded.job.estimate
    judge = job.judge
    assert judge is not None
    jm = judge.model
    counter = model_counter(jm, prices, est_out)
    body = judge_text(loaded, "partial_compliance", offline, est_out.notes)
    fixed = (
        tokens_of(counter, body)
        + mean_request_tokens(counter, rows_in)
        + counter.per_message
        + counter.priming
    )
    reads_reasoning = _reads_reasoning(loaded, offline)
    requests = requests_max = text_exp = text_max = 0.0
    for model in job.models:
        cal = calibration.get(model.name)
        mt = job.max_tokens_for(model)
        n = rows_in.count * len(job.prompts.tiers) * job.conversations_per_cell(model)
        rate = 1.0
        if judge.partial_reads == "compliant":  # state.to_partial
            rate = (
                cal.compliance_rate
                if cal and cal.compliance_rate is not None
                else est.compliance_rate
            )
        for v in job.variants:
            requests += n * rate
            requests_max += n
            text_exp += n * rate * min(est.output_tokens_no_cot, mt)
            text_max += n * mt
            if v.cot and reads_reasoning:
                out_cot = (
                    cal.output_tokens_cot if cal and cal.output_tokens_cot else None
                ) or est.output_tokens_cot
                weights = (
                    list(cal.turn_weights_cot)
                    if cal and cal.turn_weights_cot
                    else turn_weights(est.turns_cot, job.sampling.max_turns)
                )
                text_exp += n * rate * sum(weights) * min(out_cot, mt)
                text_max += n * job.sampling.max_turns * mt
    row = Row(jm.name, jm.provider, STAGE_PARTIAL, requests=round(requests))
    row.input_tokens = requests * fixed + counter.scaled(text_exp)
    row.input_tokens_max = requests_max * fixed + counter.scaled(text_max)
    row.output_tokens_expected = requests * min(est.judge_output_tokens, judge.max_tokens)
    row.output_tokens_max = requests_max * judge.max_tokens
    price_judge_row(row, prices.lookup(jm), max(requests, 1.0))
    return row


def _reads_reasoning(loaded: LoadedJob, offline: bool) -> bool:
    """Whether the partial-compliance template shows the judge the reasoning; for a published
    text that cannot be read, whether its rules map a placeholder to it."""
    judge = loaded.job.judge
    assert judge is not None and judge.partial_template is not None
    rules = judge.partial_rules
    try:
        tpl, _ = stage_template(
            loaded.resolve(judge.partial_template),
            "partial_compliance",
            rules,
            "judge.partial_rules",
            offline=offline,
        )
    except OfflineError:
        if rules is None:
            raise
        return "reasoning" in rules.placeholders or "{reasoning}" in (rules.user or "")
    return "{reasoning}" in tpl.body + (tpl.user or "")


def price_judge_row(
    row: Row, price: Price, n_requests: float, cache_group: int = 0, ttl: str = "1h"
) -> None:
    """Price a judge row; with cache_group = k, each group of k identical prompts is 1 cache write +
    k-1 reads."""
    per_req = row.input_tokens / n_requests if n_requests else 0
    lin, lout = price.list_rates(per_req)
    bin_, bout = price.batch_rates(per_req)
    row.cost_sync_usd = (row.input_tokens * lin + row.output_tokens_expected * lout) / M
    row.cost_batch_usd = (row.input_tokens * bin_ + row.output_tokens_expected * bout) / M
    row.cost_batch_cached_usd = row.cost_batch_usd
    row.cached_input_tokens = 0.0
    if cache_group > 1:
        reads = row.input_tokens * (cache_group - 1) / cache_group
        writes = row.input_tokens / cache_group
        row.cached_input_tokens = reads
        m = price.batch_multiplier
        row.cost_batch_cached_usd = (
            writes * price.cache_write_rate(ttl) * m
            + reads * price.cache_read_rate() * m
            + row.output_tokens_expected * bout
        ) / M
    wi, wo = price.batch_rates(row.input_tokens_max / max(n_requests, 1))
    row.cost_worst_usd = (row.input_tokens_max * wi + row.output_tokens_max * wo) / M
    if cache_group > 1:  # worst: every vote misses the cache and writes it
        row.cost_worst_usd += (
            row.input_tokens_max * (price.cache_write_rate(ttl) * price.batch_multiplier - wi) / M
        )
