"""The report's per-model costs and its failure counts, from the conversation table (no I/O)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from afbatch.report.prep import (
    _KEYS,
    Orders,
    _column,
    _keys,
    _notna,
    _numeric,
    _orders,
    _prep,
    _sort,
    axis_numbers,
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


def _costs_from(
    conv: pd.DataFrame, keys: pd.DataFrame, orders: Orders, estimate: Any
) -> pd.DataFrame:
    num = pd.DataFrame({"model": keys["model"] if len(conv) else pd.Series(dtype=str)})
    for col in ("input_tokens", "cached_tokens", "output_tokens", "cost_usd", "judge_cost_usd"):
        num[col] = _numeric(_column(conv, col)).astype(float)
    has_sync = "cost_sync_usd" in conv.columns
    num["cost_sync_usd"] = _numeric(_column(conv, "cost_sync_usd")).astype(float)
    num["conversations"] = 1
    g = num.groupby("model", sort=False, observed=True)
    c = g[
        [
            "conversations",
            "input_tokens",
            "cached_tokens",
            "output_tokens",
            "cost_usd",
            "judge_cost_usd",
        ]
    ].sum()
    c["cost_sync_usd"] = g["cost_sync_usd"].sum(min_count=1) if has_sync else np.nan
    c = c.reset_index()
    if "provider" in conv.columns and len(conv):
        prov = conv["provider"].groupby(keys["model"], sort=False).first()
        c["provider"] = c["model"].map(prov)
    else:
        c["provider"] = None
    c = c.rename(
        columns={
            "cost_usd": "billed_generation_usd",
            "judge_cost_usd": "billed_judge_usd",
            "cost_sync_usd": "sync_equivalent_usd",
        }
    )
    c["billed_usd"] = c["billed_generation_usd"] + c["billed_judge_usd"]
    gen, judge = _estimate_by_model(estimate)
    extra = [m for m in [*gen, *judge] if m not in set(c["model"])]
    if extra:  # estimated but absent from the run's conversations (typically the judge model)
        c = pd.concat(
            [c, pd.DataFrame({"model": list(dict.fromkeys(extra)), "conversations": 0})],
            ignore_index=True,
        )
    estimated = c["model"].isin([*gen, *judge])  # a model the estimate does not mention stays null
    c["estimated_generation_usd"] = c["model"].map(gen).astype(float).fillna(0.0).where(estimated)
    c["estimated_judge_usd"] = c["model"].map(judge).astype(float).fillna(0.0).where(estimated)
    c["estimated_usd"] = c["estimated_generation_usd"] + c["estimated_judge_usd"]
    c = _sort(c, orders, ["model"]) if len(c) else c
    for t in ("conversations", "input_tokens", "cached_tokens", "output_tokens"):
        c[t] = c[t].fillna(0).astype(int)
    total: dict[str, Any] = {"model": TOTAL, "provider": None}
    for col in ("conversations", "input_tokens", "cached_tokens", "output_tokens"):
        total[col] = int(c[col].sum())
    for col in _USD_COLUMNS:
        total[col] = float(pd.to_numeric(c[col], errors="coerce").sum(min_count=1))
    c = pd.concat([c, pd.DataFrame([total])], ignore_index=True)
    for col in _USD_COLUMNS:
        c[col] = pd.to_numeric(c[col], errors="coerce").astype(float)
    c["provider"] = c["provider"].astype(object).where(c["provider"].notna(), None)
    return c[COST_COLUMNS]


_USD_COLUMNS = (
    "estimated_usd",
    "estimated_generation_usd",
    "estimated_judge_usd",
    "billed_generation_usd",
    "billed_judge_usd",
    "billed_usd",
    "sync_equivalent_usd",
)


def costs(conv: pd.DataFrame, estimate: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """Per model (then a ``"(total)"`` row): tokens, estimated, billed and sync-equivalent USD.

    ``estimated_usd`` sums ``cost_batch_cached_usd`` of the estimate's rows (``{"rows": [...]}``
    or an object with ``as_json()``) for the model over all stages (a row without it counts its
    ``cost_batch_usd``), split into ``estimated_generation_usd`` (stage "generate") and
    ``estimated_judge_usd`` (judge stages). The estimate books judge stages under the *judge*
    model's name (a row with 0 conversations if it generated nothing), while ``billed_judge_usd``
    (Σ judge_cost_usd) sits with the *judged* model: compare judge costs on the total row.
    ``billed_usd`` = Σ cost_usd + Σ judge_cost_usd; ``sync_equivalent_usd`` = Σ cost_sync_usd
    when ``conv`` has that column (else null).
    """
    keys = _keys(conv) if len(conv) else pd.DataFrame({k: pd.Series(dtype=str) for k in _KEYS})
    return _costs_from(conv, keys, _orders(keys), estimate)


def _failures_from(conv: pd.DataFrame, prep: pd.DataFrame, orders: Orders) -> pd.DataFrame:
    parts = []
    failed = prep["failed"].to_numpy(dtype=bool)
    if failed.any():
        reason = _column(conv, "failure_reason")[failed].astype(object)
        reason = reason.where(reason.notna(), "(no reason recorded)").astype(str)
        parts.append(prep.loc[failed, _KEYS].assign(stage="generation", reason=reason))
    err = _column(conv, "judge_error")
    no_verdict = (
        prep["finished"].to_numpy(dtype=bool) & ~prep["judged"].to_numpy(dtype=bool) & _notna(err)
    )
    if no_verdict.any():
        parts.append(
            prep.loc[no_verdict, _KEYS].assign(stage="judge", reason=err[no_verdict].astype(str))
        )
    if not parts:
        return pd.DataFrame(columns=FAILURE_COLUMNS)
    f = pd.concat(parts, ignore_index=True)
    f = (
        f.groupby([*_KEYS, "stage", "reason"], sort=False, observed=True)
        .size()
        .rename("count")
        .reset_index()
    )
    f["__stage"] = (f["stage"] == "judge").astype(int)
    f["__neg"] = -f["count"]
    f = _sort(f, orders, _KEYS, extra=["__stage", "__neg", "reason"]).drop(
        columns=["__stage", "__neg"]
    )
    f["count"] = f["count"].astype(int)
    return axis_numbers(f[FAILURE_COLUMNS])


def failures(conv: pd.DataFrame) -> pd.DataFrame:
    """Counts of why conversations have no result: generation failures (``failure_reason``) and
    finished conversations the judge gave no verdict for (``judge_error``), per model × variant ×
    temperature × samples × tier."""
    prep = _prep(conv)
    return _failures_from(conv, prep, _orders(prep))
