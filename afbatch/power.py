"""How many prompts detect a compliance gap, and what that costs (`estimate --detect-gap`).

Sample size per tier for a two-sided test of two proportions (Fleiss, Levin & Paik 2003, eq. 4.14,
no continuity correction), with the compliance of the two tiers centred on a base rate:

    n = (z_{1-α/2}·√(2·p̄(1-p̄)) + z_{power}·√(p1(1-p1) + p2(1-p2)))² / (p1 - p2)²,

p1 = base + gap/2 (training), p2 = base - gap/2 (unmonitored), p̄ = base (moved inward when a
rate would leave [0, 1]). The tiers share their prompts; treating them as independent samples
overstates n when a prompt's compliance is correlated across tiers (the paired interval is
narrower), so the figure is on the safe side. With m samples per prompt, n conversations are worth
n / deff independent ones, deff = 1 + (m - 1)·ICC (Kish), so the prompts needed are
⌈n·deff / m⌉ = ⌈n·(1/m + (1 - 1/m)·ICC)⌉.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Any

#: Intra-prompt correlation assumed when neither the command line nor a finished run gives one.
DEFAULT_ICC = 0.5


def _probability(name: str, x: float, *, closed: bool = False) -> None:
    """x in (0, 1), or in [0, 1] when `closed`."""
    if not (0.0 <= x <= 1.0 if closed else 0.0 < x < 1.0):
        raise ValueError(f"{name} must be between 0 and 1, got {x!r}")


def tier_rates(base: float, gap: float) -> tuple[float, float]:
    """(training, unmonitored) compliance: the gap centred on the base rate, kept inside [0, 1]."""
    _probability("gap", gap)
    _probability("base rate", base, closed=True)
    centre = min(max(base, gap / 2), 1 - gap / 2)
    return centre + gap / 2, centre - gap / 2


def conversations_per_tier(
    base: float, gap: float, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Independent conversations per tier (not rounded) to detect `gap` at `base`."""
    _probability("alpha", alpha)
    _probability("power", power)
    p1, p2 = tier_rates(base, gap)
    pbar = (p1 + p2) / 2
    za, zb = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    root = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return root * root / (gap * gap)


def prompts_needed(
    base: float,
    gap: float,
    samples: int = 1,
    icc: float = DEFAULT_ICC,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Prompts per tier (each asked `samples` times) to detect `gap` with the given power."""
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    _probability("ICC", icc, closed=True)
    deff = 1 + (samples - 1) * icc
    return math.ceil(conversations_per_tier(base, gap, alpha, power) * deff / samples - 1e-9)


def observed(conv: Any) -> dict[str, dict[str, float | None]]:
    """Per model of a finished run: the compliance rate and the intra-prompt correlation (ICC).

    Compliance is the judge's where there is a verdict, else the proxy's. The ICC is the one-way
    ANOVA estimator within each variant × temperature × samples × tier cell (prompts as groups),
    averaged over the cells weighted by their conversations and clipped to [0, 1]; None when no
    prompt has two samples. ``conv``: the conversation table (a DataFrame or its ``Columns``).
    """
    from afbatch.columns import is_null
    from afbatch.report.frames import columns_of

    cols = columns_of(conv)
    judge, proxy = cols.get("judge_compliant"), cols.get("proxy_compliant")
    # a cell of the grid: the sampling axes too (a prompt under two temperatures or two sample
    # counts is two clusters of different rates, not one)
    keys = [cols.get(k) for k in ("variant", "temperature", "samples", "tier") if k in cols]
    prompts = cols.get("prompt_index")
    # model → cell → prompt → outcomes (1.0 complied, 0.0 not), in order of first appearance
    models: dict[str, dict[tuple[Any, ...], list[tuple[Any, float]]]] = {}
    for i, status in enumerate(cols.get("status")):
        y = judge[i] if not is_null(judge[i]) else proxy[i]  # the judge's verdict wins
        if status != "finished" or is_null(y):
            continue
        cell = tuple(None if is_null(k[i]) else k[i] for k in keys)
        models.setdefault(cols.get("model")[i], {}).setdefault(cell, []).append(
            (prompts[i], float(bool(y)))
        )
    out: dict[str, dict[str, float | None]] = {}
    for model, cells in models.items():
        num = den = 0.0
        for rows in cells.values():
            icc = _anova_icc(rows)
            if icc is not None:
                num, den = num + icc * len(rows), den + len(rows)
        ys = [y for rows in cells.values() for _, y in rows]
        out[str(model)] = {
            "compliance_rate": sum(ys) / len(ys),
            "icc": min(1.0, max(0.0, num / den)) if den else None,
        }
    return out


def _anova_icc(rows: list[tuple[Any, float]]) -> float | None:
    """One-way ANOVA ICC of a binary outcome, prompts as groups (in prompt order; a row without a
    prompt is left out); None if undefined."""
    import numpy as np

    from afbatch.columns import is_null

    sums: dict[Any, list[float]] = {}
    for prompt, y in rows:
        if not is_null(prompt):
            got = sums.setdefault(prompt, [0.0, 0.0])
            got[0] += y
            got[1] += 1
    groups = [sums[p] for p in sorted(sums)]
    k, n = np.array([g[0] for g in groups]), np.array([g[1] for g in groups])
    c, total = len(n), n.sum()
    if c < 2 or total <= c:
        return None
    p = k.sum() / total
    within = (k - k * k / n).sum() / (total - c)  # Σ n_i p_i (1 - p_i) / (N - C)
    between = (n * (k / n - p) ** 2).sum() / (c - 1)
    n0 = (total - (n * n).sum() / total) / (c - 1)
    den = between + (n0 - 1) * within
    return float((between - within) / den) if den > 0 else None


@dataclass
class PowerRow:
    model: str
    base_rate: float
    base_rate_from: str
    icc: float
    icc_from: str
    samples: int
    prompts: int
    conversations: int
    requests: int
    cost_sync_usd: float
    cost_batch_usd: float
    cost_batch_cached_usd: float
    job_prompts: int


@dataclass
class PowerPlan:
    gap: float
    alpha: float
    power: float
    rows: list[PowerRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "gap": self.gap,
            "alpha": self.alpha,
            "power": self.power,
            "rows": [asdict(r) for r in self.rows],
            "notes": self.notes,
        }


def plan(
    loaded: Any,
    estimate_of: Any,
    gap: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    base_rate: float | None = None,
    icc: float | None = None,
    calibrated: dict[str, dict[str, float | None]] | None = None,
) -> PowerPlan:
    """Per model: prompts to detect `gap`, and the cost of the job at that many prompts.

    `estimate_of(loaded_job)` returns the job's `Estimate` (so the cost is the job's own estimate,
    scaled per prompt). The base rate is `base_rate`, else the model's observed compliance in
    `calibrated` (a finished run, ``observed``), else the job's `[estimate] compliance_rate`; the
    ICC likewise from `icc`, the run, or ``DEFAULT_ICC``.
    """
    job = loaded.job
    # With a samples axis each count is a condition: the prompts that let the smallest one detect
    # the gap (the others, with more samples per prompt, need fewer), every count's conversations
    samples, per_prompt = min(job.sample_counts()), sum(job.sample_counts())
    cells = len(job.variants) * len(job.prompts.tiers)
    out = PowerPlan(gap, alpha, power)
    calibrated = calibrated or {}
    for model in job.models:
        # each temperature of the grid is a cell of its own, as each variant is
        cells_m = cells * len(job.temperatures_for(model))
        seen = calibrated.get(model.name, {})
        if base_rate is not None:
            base, base_from = base_rate, "--base-rate"
        elif seen.get("compliance_rate") is not None:
            base, base_from = float(seen["compliance_rate"]), "finished run"  # type: ignore
        else:
            base, base_from = job.estimate.compliance_rate, "[estimate] compliance_rate"
        if icc is not None:
            rho, rho_from = icc, "--icc"
        elif seen.get("icc") is not None and samples > 1:
            rho, rho_from = float(seen["icc"]), "finished run"  # type: ignore[arg-type]
        else:
            rho, rho_from = DEFAULT_ICC, "default"
        n = prompts_needed(base, gap, samples, rho, alpha, power)
        one = loaded.model_copy(update={"job": job.model_copy(update={"models": [model]})})
        est = estimate_of(one)
        gen_requests = sum(
            r.requests for r in est.rows if r.model == model.name and r.stage == "generate"
        )
        job_prompts = gen_requests // (per_prompt * cells_m) if per_prompt * cells_m else 0
        scale = n / job_prompts if job_prompts else math.nan
        t = est.totals()
        out.rows.append(
            PowerRow(
                model=model.name,
                base_rate=base,
                base_rate_from=base_from,
                icc=rho,
                icc_from=rho_from,
                samples=samples,
                prompts=n,
                conversations=n * per_prompt * cells_m,
                requests=round(sum(r.requests for r in est.rows) * scale) if job_prompts else 0,
                cost_sync_usd=t["cost_sync_usd"] * scale,
                cost_batch_usd=t["cost_batch_usd"] * scale,
                cost_batch_cached_usd=t["cost_batch_cached_usd"] * scale,
                job_prompts=job_prompts,
            )
        )
    out.notes = [
        f"prompts: per tier (both tiers ask the same prompts), each asked {samples} time(s), "
        f"to detect a compliance gap of {gap:.1%} (training − unmonitored, centred on the base "
        f"rate) with {power:.0%} power at two-sided α = {alpha:g}; two-proportion formula "
        "(Fleiss, no continuity correction), samples counted through the design effect "
        "1 + (samples − 1)·ICC. Pairing the tiers by prompt only lowers the need: the figure is "
        "on the safe side."
        + (
            f" The job's samples axis {list(job.sample_counts())}: the prompts its smallest "
            "count needs (the larger counts need fewer), asked under every count."
            if job.samples_axis
            else ""
        ),
        "cost: the job's own estimate (generation and judging for that model, every variant and "
        "tier) scaled by prompts needed / prompts in the job; batch minimums and caching are as "
        "estimated for the job's size.",
    ]
    if any(r.icc_from == "default" and samples > 1 for r in out.rows):
        out.notes.append(
            f"ICC {DEFAULT_ICC} is an assumption: pass --icc, or --calibrate-from a "
            "finished run with several samples per prompt"
        )
    return out


def format_power(p: PowerPlan, fmt: str = "table") -> str:
    from afbatch.tables import markdown_table, text_table, usd

    headers = [
        "model",
        "base rate",
        "ICC",
        "prompts × samples",
        "job has",
        "conversations",
        "requests",
        "sync",
        "batch",
        "batch+cache",
    ]
    rows = [
        [
            r.model,
            f"{r.base_rate:.1%} ({r.base_rate_from})",
            f"{r.icc:.2f} ({r.icc_from})" if r.samples > 1 else "– (1 sample)",
            f"{r.prompts:,} × {r.samples}",
            f"{r.job_prompts:,}",
            f"{r.conversations:,}",
            f"{r.requests:,}",
            usd(r.cost_sync_usd),
            usd(r.cost_batch_usd),
            usd(r.cost_batch_cached_usd),
        ]
        for r in p.rows
    ]
    title = f"Prompts to detect a {p.gap:.1%} compliance gap ({p.power:.0%} power, α = {p.alpha:g})"
    if fmt == "markdown":
        return (
            f"## {title}\n\n"
            + markdown_table(headers, rows)
            + "\n\n"
            + "\n".join(f"- {x}" for x in p.notes)
            + "\n"
        )
    return title + "\n" + text_table(headers, rows) + "\n\n" + "\n".join(p.notes)
