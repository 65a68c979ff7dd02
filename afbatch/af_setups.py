"""The alignment-faking classifier's equivalent set-ups (separate requests, cached or not; n
choices of one request) and what each would cost: the judge set-up is often the largest line."""

from __future__ import annotations

from afbatch.cost_table import Estimate
from afbatch.estimate_inputs import Calibration, Rows, Sized
from afbatch.judge_costs import judge_rows
from afbatch.pricing import PriceTable
from afbatch.providers.registry import capabilities
from afbatch.spec import JudgeSpec, LoadedJob, ModelSpec
from afbatch.types import STAGE_AF

# A judge that returns n choices per request, to price the votes billed once when the job's AF
# model cannot: the 2025 replication's classifier model.
REFERENCE_N_JUDGE = ModelSpec(provider="openai", model="gpt-4o", label="gpt-4o")


def af_setups(judge: JudgeSpec, prices: PriceTable) -> list[tuple[str, JudgeSpec]]:
    """The job's AF classifier set-up and the equivalent ones: the same votes as separate requests
    (uncached, and sharing one cached prompt where the provider caches it), and as n choices of
    one request on a judge that returns several (the transcript billed once)."""
    am = judge.af_model or judge.model
    n = judge.af_votes
    out = [("this job's", judge)]
    for cache in (False, True):
        cacheable = (
            capabilities(am.provider).cache_votes and prices.lookup(am).cache_stacks_with_batch
        )
        if cache and not cacheable:
            continue
        m = am.model_copy(update={"cache": cache})
        how = ", one cached prompt" if cache else ", uncached"
        out.append(
            (
                f"{n} separate requests on {am.name}{how}",
                judge.model_copy(update={"af_model": m, "af_vote_requests": "separate"}),
            )
        )
    nm = am if capabilities(am.provider).supports_n else REFERENCE_N_JUDGE
    out.append(
        (
            f"{n} votes as n choices of one request on {nm.provider} {nm.model}",
            judge.model_copy(update={"af_model": nm, "af_vote_requests": "one"}),
        )
    )
    return [s for i, s in enumerate(out) if i == 0 or _af_key(s[1]) != _af_key(judge)]


def _af_key(judge: JudgeSpec) -> tuple[str, str, bool, bool]:
    """What prices an AF set-up: its model, whether the votes share a request, whether cached."""
    m = judge.af_model or judge.model
    return m.provider, m.model, judge.af_votes_in_one_request, m.uses_cache


def af_setups_note(
    loaded: LoadedJob,
    prices: PriceTable,
    rows_in: Rows,
    template: Sized,
    calibration: dict[str, Calibration],
    offline: bool,
    est: Estimate,
) -> str:
    """What the AF classifier costs (batch + cache) under each equivalent set-up, and its share of
    this job's total: the judge set-up is often the largest line."""
    total = est.totals()["cost_batch_cached_usd"]
    parts = []
    for name, judge in af_setups(loaded.job.judge, prices):  # type: ignore[arg-type]
        job = loaded.job.model_copy(update={"judge": judge})
        scratch = Estimate(
            job=job.name, rows=[], notes=[], prices_as_of=est.prices_as_of, assumptions={}
        )
        rows = judge_rows(
            loaded.model_copy(update={"job": job}),
            prices,
            rows_in,
            template,
            calibration,
            offline,
            scratch,
        )
        row = next(r for r in rows if r.stage == STAGE_AF)  # not the last: partial follows it
        cost = row.cost_batch_cached_usd
        own = name == "this job's" and total
        share = f" ({cost / total:.0%} of this job's batch + cache total)" if own else ""
        parts.append(f"{name}: ${cost:,.2f}{share}")
    return "alignment-faking classifier set-ups, batch + cache cost — " + "; ".join(parts)
