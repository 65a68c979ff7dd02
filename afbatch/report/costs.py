"""The report's per-model costs and its failure counts, from the conversation table (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from afbatch.columns import Columns, floats, is_null
from afbatch.report.prep import (
    _KEYS,
    NAN,
    Orders,
    Prep,
    Row,
    _sort,
    with_axis_numbers,
)

TOTAL = "(total)"

COST_COLUMNS = [
    "model",
    "provider",
    "conversations",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "estimated_usd",
    "estimated_generation_usd",
    "estimated_judge_usd",
    "billed_usd",
    "billed_generation_usd",
    "billed_judge_usd",
    "sync_equivalent_usd",
]
FAILURE_COLUMNS = ["model", "variant", "temperature", "samples", "tier", "stage", "reason", "count"]


GENERATE_STAGE = "generate"  # afbatch.types.STAGE_GENERATE; every other stage is a judge stage


def _estimate_by_model(estimate: Any) -> tuple[dict[str, float], dict[str, float]]:
    """(generation, judging) estimated USD per model name from an estimate's ``rows``."""
    gen: dict[str, float] = {}
    judge: dict[str, float] = {}
    if estimate is not None and hasattr(estimate, "as_json"):
        estimate = estimate.as_json()
    if not estimate:
        return gen, judge
    for row in estimate.get("rows", []) or []:
        model = row.get("model")
        if model is None:
            continue
        value = row.get("cost_batch_cached_usd")
        if value is None:  # a row without a cached figure: its batch price
            value = row.get("cost_batch_usd")
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isnan(value):
            continue
        target = gen if row.get("stage", GENERATE_STAGE) == GENERATE_STAGE else judge
        target[str(model)] = target.get(str(model), 0.0) + value
    return gen, judge


def _kahan_sum(values: list[float]) -> float:
    """Compensated sum, NaN skipped."""
    total = comp = 0.0
    for v in values:
        if v != v:
            continue
        y = v - comp
        t = total + y
        comp = t - total - y
        if comp != comp:
            comp = 0.0
        total = t
    return total


def _group_sums(values: np.ndarray, groups: Mapping[str, np.ndarray]) -> dict[str, float]:
    """A float column summed per group (NaN skipped) as pandas' group-by sums it, so the costs
    are the same to the last bit as the tables afbatch wrote before: numpy's reduction where
    every group is one run of rows and nothing is missing, else a compensated sum."""
    contiguous = all(idx[-1] - idx[0] + 1 == len(idx) for idx in groups.values())
    if contiguous and groups and not np.isnan(values).any():
        starts = [idx[0] for idx in groups.values()]
        return dict(zip(groups, np.add.reduceat(values, starts).tolist()))
    return {g: _kahan_sum(values[idx].tolist()) for g, idx in groups.items()}


def _costs_from(conv: Columns, models: list[str], orders: Orders, estimate: Any) -> list[Row]:
    by_model = {m: np.array(idx) for m, idx in group_rows_of(models).items()}
    sums = {
        col: _group_sums(floats(conv.get(col)), by_model)
        for col in ("input_tokens", "cached_tokens", "output_tokens", "cost_usd", "judge_cost_usd")
    }
    has_sync = "cost_sync_usd" in conv
    sync = floats(conv.get("cost_sync_usd"))
    sync_sums = _group_sums(sync, by_model)
    providers = conv.get("provider")
    rows: list[Row] = []
    for model, idx in by_model.items():
        r: Row = {"model": model, "conversations": len(idx)}
        for t in ("input_tokens", "cached_tokens", "output_tokens"):
            r[t] = int(sums[t][model])
        r["billed_generation_usd"] = sums["cost_usd"][model]
        r["billed_judge_usd"] = sums["judge_cost_usd"][model]
        r["billed_usd"] = r["billed_generation_usd"] + r["billed_judge_usd"]
        present = not np.isnan(sync[idx]).all()  # else null, not 0
        r["sync_equivalent_usd"] = sync_sums[model] if has_sync and present else NAN
        # the model's first provider recorded
        r["provider"] = next(
            (providers[i] for i in idx.tolist() if not is_null(providers[i])), None
        )
        rows.append(r)
    gen, judge = _estimate_by_model(estimate)
    for m in dict.fromkeys([*gen, *judge]):
        if m not in by_model:  # estimated but absent from the run's conversations (the judge)
            rows.append({"model": m, "provider": None, "conversations": 0})
            rows[-1].update({t: 0 for t in ("input_tokens", "cached_tokens", "output_tokens")})
            rows[-1].update({c: NAN for c in ("billed_generation_usd", "billed_judge_usd")})
            rows[-1].update(billed_usd=NAN, sync_equivalent_usd=NAN)
    for r in rows:  # a model the estimate does not mention stays null
        estimated = r["model"] in gen or r["model"] in judge
        r["estimated_generation_usd"] = gen.get(r["model"], 0.0) if estimated else NAN
        r["estimated_judge_usd"] = judge.get(r["model"], 0.0) if estimated else NAN
        r["estimated_usd"] = r["estimated_generation_usd"] + r["estimated_judge_usd"]
    rows = _sort(rows, orders, ["model"])
    total: Row = {"model": TOTAL, "provider": None}
    for col in ("conversations", "input_tokens", "cached_tokens", "output_tokens"):
        total[col] = sum(r[col] for r in rows)
    for col in _USD_COLUMNS:
        total[col] = _column_sum([r[col] for r in rows])
    rows.append(total)
    return [{c: r[c] for c in COST_COLUMNS} for r in rows]


def _column_sum(values: list[float]) -> float:
    """A table column's total as numpy sums it (pairwise, NaN as 0; all NaN: NaN), so the total
    row is the same to the last bit as the tables afbatch wrote before."""
    import numpy as np

    a = np.array(values, dtype=float)
    present = ~np.isnan(a)
    return float(np.where(present, a, 0.0).sum()) if present.any() else NAN


def group_rows_of(values: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, v in enumerate(values):
        out.setdefault(v, []).append(i)
    return out


_USD_COLUMNS = (
    "estimated_usd",
    "estimated_generation_usd",
    "estimated_judge_usd",
    "billed_generation_usd",
    "billed_judge_usd",
    "billed_usd",
    "sync_equivalent_usd",
)


def _failures_from(conv: Columns, prep: Prep, orders: Orders) -> list[Row]:
    counts: dict[tuple[Any, ...], int] = {}
    failed = prep["failed"]
    if failed.any():
        reasons = conv.get("failure_reason")
        for i in np.flatnonzero(failed).tolist():
            r = reasons[i]
            key = (*prep.cell(i), "generation", "(no reason recorded)" if is_null(r) else str(r))
            counts[key] = counts.get(key, 0) + 1
    no_verdict = prep["finished"] & ~prep["judged"]
    if no_verdict.any():
        errors = conv.get("judge_error")
        for i in np.flatnonzero(no_verdict).tolist():
            if not is_null(errors[i]):
                key = (*prep.cell(i), "judge", str(errors[i]))
                counts[key] = counts.get(key, 0) + 1
    rows = [dict(zip([*_KEYS, "stage", "reason", "count"], (*k, c))) for k, c in counts.items()]
    rows = _sort(rows, orders, _KEYS, lambda r: (r["stage"] == "judge", -r["count"], r["reason"]))
    return with_axis_numbers([{c: r[c] for c in FAILURE_COLUMNS} for r in rows])
