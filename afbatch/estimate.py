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
    (Anthropic); elsewhere it equals batch. Cache: one write per variant per round, all other
    requests read.
  - Bedrock rows that cannot form a >=100-record job are priced on-demand (list price).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from afbatch.compile import batch_shortfalls, judge_stages, prefill_decision, read_user_template
from afbatch.datasets import Dataset, load_dataset, read_source
from afbatch.errors import BudgetError, OfflineError
from afbatch.judge_templates import stage_template
from afbatch.pricing import Price, PriceTable
from afbatch.protocol import (
    NEXT,
    PROFILES,
    describe_prefill,
    prefill_record,
    protocol_record,
    render_user,
)
from afbatch.providers.registry import capabilities
from afbatch.spec import Job, JudgeRules, JudgeSpec, LoadedJob, ModelSpec, VariantSpec, is_url
from afbatch.tokens import FAMILY_FACTORS, Counter, counter_for, save_counts
from afbatch.types import STAGE_AF, STAGE_COMPLIANCE, STAGE_GENERATE, STAGE_PARTIAL

M = 1_000_000
COST_KEYS = ("cost_sync_usd", "cost_batch_usd", "cost_batch_cached_usd", "cost_worst_usd")


@dataclass
class Row:
    model: str
    provider: str
    stage: str
    requests: int = 0
    input_tokens: float = 0.0
    cached_input_tokens: float = 0.0
    output_tokens_expected: float = 0.0
    output_tokens_max: float = 0.0
    cost_sync_usd: float = 0.0
    cost_batch_usd: float = 0.0
    cost_batch_cached_usd: float = 0.0
    cost_worst_usd: float = 0.0
    input_tokens_max: float = 0.0
    rounds_expected: float = 1.0
    rounds_max: int = 1
    on_demand_requests: float = 0.0
    variant: str | None = None
    tier: str | None = None
    temperature: float | None = None  # per-condition rows of a job with a temperature axis
    samples: int | None = None  # per-condition rows of a job with a samples axis

    def add(self, other: Row) -> None:
        for k in (
            "requests",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens_expected",
            "output_tokens_max",
            "input_tokens_max",
            "on_demand_requests",
            *COST_KEYS,
        ):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in (
            "input_tokens",
            "cached_input_tokens",
            "output_tokens_expected",
            "output_tokens_max",
            "input_tokens_max",
            "on_demand_requests",
        ):
            d[k] = int(round(d[k]))
        for k in COST_KEYS:
            d[k] = round(d[k], 4)
        d["rounds_expected"] = round(d["rounds_expected"], 3)
        if d["variant"] is None:
            del d["variant"], d["tier"]
        if d["temperature"] is None:
            del d["temperature"]
        if d["samples"] is None:
            del d["samples"]
        return d


@dataclass
class Estimate:
    job: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    assumptions: dict[str, Any] = field(default_factory=dict)
    prices_as_of: str | None = None
    # per model label: protocol.prefill_record; the tokenizer's family, factor and source
    prefill: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokenizer: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)  # protocol.protocol_record of the job

    def totals(self) -> dict[str, float]:
        return {k: round(sum(getattr(r, k) for r in self.rows), 4) for k in COST_KEYS}

    def saving_pct(self, key: str = "cost_batch_cached_usd") -> float:
        t = self.totals()
        return 100.0 * (1 - t[key] / t["cost_sync_usd"]) if t["cost_sync_usd"] else 0.0

    def frame(self) -> Any:
        """The rows as a pandas DataFrame: the `rows` of `as_json()` (and of `--format json`)."""
        import pandas as pd

        return pd.DataFrame([r.as_json() for r in self.rows])

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "rows": [r.as_json() for r in self.rows],
            "totals": self.totals(),
            "saving_vs_sync_pct": {
                "batch": round(self.saving_pct("cost_batch_usd"), 2),
                "batch_cached": round(self.saving_pct(), 2),
            },
            "notes": self.notes,
            "assumptions": self.assumptions,
            "prices_as_of": self.prices_as_of,
            "prefill": self.prefill,
            "tokenizer": self.tokenizer,
            "protocol": self.protocol,
        }


@dataclass(frozen=True)
class Calibration:
    """Observed behaviour of one model (from a finished run), replacing the job's assumptions."""

    output_tokens_cot: float | None = None
    output_tokens_no_cot: float | None = None
    turn_weights_cot: tuple[float, ...] | None = None
    compliance_rate: float | None = None


@dataclass(frozen=True)
class Rows:
    """The dataset as the estimate needs it: exact texts, or the job's declared fallback."""

    texts: list[str] | None
    count: int
    mean_tokens: float


def dataset_rows(loaded: LoadedJob, offline: bool, notes: list[str]) -> Rows:
    spec = loaded.job.dataset
    try:
        ds: Dataset = load_dataset(loaded, offline=offline)
        return Rows([t for _, t in ds.rows], len(ds.rows), 0.0)
    except OfflineError:
        if not (is_url(spec.source) and spec.expected_rows and spec.mean_tokens_per_row):
            raise
    total = spec.expected_rows or 0
    count = min(spec.first or spec.sample or total, total)
    notes.append(
        f"dataset {spec.source} is not cached and cannot be downloaded: assuming {count} of "
        f"{total} rows at {spec.mean_tokens_per_row:g} tokens each (dataset.expected_rows, "
        "mean_tokens_per_row); everything else is exact"
    )
    return Rows(None, count, float(spec.mean_tokens_per_row or 0))


# A text the estimate could not read, by its declared size: o200k tokens.
Sized = str | float


def declared_or(
    read: Callable[[], str], ref: str, declared: int | None, key: str, notes: list[str]
) -> Sized:
    """The text `read()` gives, or, when a URL is not cached and cannot be downloaded, its declared
    o200k token count (a note says so): as `expected_rows` stands in for a dataset."""
    try:
        return read()
    except OfflineError:
        if not (is_url(ref) and declared):
            raise
    notes.append(
        f"{ref} is not cached and cannot be downloaded: assuming {declared} o200k tokens ({key})"
    )
    return float(declared)


def _tokens(counter: Counter, text: Sized) -> float:
    return counter.count(text) if isinstance(text, str) else counter.scaled(text)


def turn_weights(turns: float, max_turns: int) -> list[float]:
    return [1.0] + [min(1.0, max(0.0, turns - (t - 1))) for t in range(2, max_turns + 1)]


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
        counter = _counter(model, prices, est)
        cells = _generate_cells(
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
    for short in batch_shortfalls(job, rows_in.count):
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
    notes.append(_prefill_note(est.prefill))
    if job.judge:
        est.rows.extend(_judge_rows(loaded, prices, rows_in, template, calibration, offline, est))
        if job.judge.af_template:
            j = job.judge
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
            notes.append(f"alignment-faking classifier: {j.af_votes} votes per {which}, {how}")
            notes.append(
                _af_setups_note(loaded, prices, rows_in, template, calibration, offline, est)
            )
        if job.judge.partial_template:
            reads = (
                "every answer judged compliant (partial_reads = compliant; the others are refusals)"
                if job.judge.partial_reads == "compliant"
                else "every finished answer (partial_reads = all)"
            )
            notes.append(
                f"partial-compliance classifier ({job.judge.partial_template}, on "
                f"{job.judge.model.name}): full / partial / refusal, one request for "
                f"{reads}"
            )
    save_counts()
    return est


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


def _af_setups_note(
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
        rows = _judge_rows(
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


def _counter(model: ModelSpec, prices: PriceTable, est: Estimate) -> Counter:
    """The model's token counter. The estimate records its family, factor and source, and says so
    in a note when the catalog does not know the model: the default factor is an assumption."""
    fact = prices.token_family(model)
    counter = counter_for(model, fact.family)
    own = model.token_factor is not None
    est.tokenizer.setdefault(
        model.name,
        {
            "family": fact.family,
            "factor": counter.factor,
            "exact": counter.exact,
            "source": "job token_factor" if own else (fact.via or "default: not in the catalog"),
        },
    )
    if (fact.via is None or fact.by_price_as) and not own:
        how = (
            f"as its price_as model {model.price_as} ({fact.family})"
            if fact.by_price_as
            else "the default for any other model"
        )
        note = (
            f"tokens of {model.name} ({model.provider} {model.model}): not in the model "
            f"catalog, so counted as o200k × {FAMILY_FACTORS[fact.family]:.2f}, {how} — set "
            "token_factor on the model, or token_family in a price override entry"
        )
        if note not in est.notes:
            est.notes.append(note)
    return counter


def _prefill_note(records: dict[str, dict[str, Any]]) -> str:
    """Per model, the prefill its turns carry or why none: a protocol difference to see."""
    groups: dict[str, list[str]] = {}
    for label, r in records.items():
        groups.setdefault(describe_prefill(r), []).append(label)
    return "prefill — " + "; ".join(f"{how}: {', '.join(labels)}" for how, labels in groups.items())


def _generate_cells(
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
    cache_on = (model.uses_cache and info.caching == "explicit") or (
        info.caching == "automatic" and price.cache_stacks_with_batch
    )
    # On-demand: rounds that cannot reach the provider's record minimum (Bedrock's 100).
    has_minimum = model.on_demand_fallback and info.limits.min_requests > 1
    minimum = info.limits.min_requests if has_minimum else 0
    stacks = price.cache_stacks_with_batch and cache_on
    out: list[Row] = []
    for variant in job.variants:
        sys_tokens = _tokens(counter, systems[variant.name])
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
        per_row = counter.scaled(template) + _mean_request_tokens(counter, rows_in)
        return rows_in.count * per_row
    if rows_in.texts is not None:
        return sum(
            counter.count(render_user(template, tier, text, tier_format)) for text in rows_in.texts
        )
    shell = counter.count(render_user(template, tier, "", tier_format))
    return rows_in.count * (shell + counter.scaled(rows_in.mean_tokens))


def _judge_rows(
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
    counter = _counter(jm, prices, est_out)
    price = prices.lookup(jm)
    body = _judge_text(loaded, "compliance", offline, est_out.notes)
    body_tokens = _tokens(counter, body)
    request_tokens = _mean_request_tokens(counter, rows_in)
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
    _price_row(comp, price, n_conv)
    rows.append(comp)
    if judge.af_template:
        am = judge.af_model or jm
        acounter = _counter(am, prices, est_out)
        aprice = prices.lookup(am)
        abody = _judge_text(loaded, "alignment_faking", offline, est_out.notes)
        afixed = _tokens(acounter, abody) + _mean_request_tokens(acounter, rows_in) + overhead
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
        _price_row(
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
    counter = _counter(jm, prices, est_out)
    body = _judge_text(loaded, "partial_compliance", offline, est_out.notes)
    fixed = (
        _tokens(counter, body)
        + _mean_request_tokens(counter, rows_in)
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
    _price_row(row, prices.lookup(jm), max(requests, 1.0))
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


def _judge_text(loaded: LoadedJob, stage: str, offline: bool, notes: list[str]) -> Sized:
    """A judge stage's prompt with its placeholders empty, or its declared size."""
    for st, ref, rules, key in judge_stages(loaded.job):
        if st == stage:
            read = functools.partial(_judge_template_text, loaded, ref, stage, rules, key, offline)
            return declared_or(
                read,
                ref,
                rules.expected_tokens if rules else None,
                f"judge.{key}.expected_tokens",
                notes,
            )
    raise KeyError(stage)


def _judge_template_text(
    loaded: LoadedJob, ref: str, stage: str, rules: JudgeRules | None, key: str, offline: bool
) -> str:
    tpl, _ = stage_template(loaded.resolve(ref), stage, rules, f"judge.{key}", offline=offline)
    return tpl.render(request="", response="", reasoning="")


def _mean_request_tokens(counter: Counter, rows_in: Rows) -> float:
    if rows_in.texts is not None:
        return sum(counter.count(t) for t in rows_in.texts) / max(len(rows_in.texts), 1)
    return counter.scaled(rows_in.mean_tokens)


def _price_row(
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


def check_budget(est: Estimate, max_cost: float | None) -> str | None:
    """Refuse a cap below the expected cost; a cap below the worst case is a hard cap the run is
    paced to (returns the line saying so), since the worst case is 10-25x the expected cost."""
    if max_cost is None:
        return None
    t = est.totals()
    expected, worst = t["cost_batch_cached_usd"], t["cost_worst_usd"]
    if expected > max_cost:
        raise BudgetError(
            f"expected cost ${expected:,.2f} exceeds --max-cost ${max_cost:,.2f} — raise the "
            "limit, lower max_tokens/max_turns/samples, or drop models"
        )
    if worst > max_cost:
        return (
            f"the worst case ${worst:,.2f} exceeds --max-cost ${max_cost:,.2f}: the run is "
            "paced so that spend never passes it, and stops (exit 3, resumable with a higher "
            "--max-cost) if the real cost would"
        )
    return None


# --- presentation ---------------------------------------------------------------------------

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
