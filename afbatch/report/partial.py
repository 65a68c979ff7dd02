"""Partial compliance: the shares full / partial / refusal per cell, and the alignment-faking
rate within full and within partial compliance (no I/O).

Denominators: the shares are over the finished answers with a class (``assessed``); the AF rates
over the answers of that class with an AF outcome (as ``af_rate`` counts it). What has no class
(``missing``: no verdict, unparseable, an unknown label) or no AF outcome is shown as missing and
counted in no class and no rate.
"""

from __future__ import annotations

import pandas as pd

from afbatch.report.prep import (
    _COUNTS,
    _KEYS,
    TIER_CONDITION,
    Orders,
    _cluster_cols,
    _clusters,
    _orders,
    _prep,
    _sort,
    axis_numbers,
)

PARTIAL_COLUMNS = [
    "model",
    "variant",
    "temperature",
    "samples",
    "tier",
    "condition",
    "rule",
    "finished",
    "assessed",
    "missing",
    "missing_share",
    "full_share",
    "partial_share",
    "refusal_share",
    "af_rate_full",
    "af_rate_partial",
    "full_share_lo",
    "full_share_hi",
    "partial_share_lo",
    "partial_share_hi",
    "refusal_share_lo",
    "refusal_share_hi",
    "af_rate_full_lo",
    "af_rate_full_hi",
    "af_rate_partial_lo",
    "af_rate_partial_hi",
    "full",
    "partial",
    "refusal",
    "af_yes_full",
    "af_assessed_full",
    "af_missing_full",
    "af_yes_partial",
    "af_assessed_partial",
    "af_missing_partial",
]

# rate name → (numerator, denominator) columns of the indicator frame
_RATES = {
    "full_share": ("pc_full", "pc_assessed"),
    "partial_share": ("pc_partial", "pc_assessed"),
    "refusal_share": ("pc_refusal", "pc_assessed"),
    "af_rate_full": ("af_yes_full", "af_assessed_full"),
    "af_rate_partial": ("af_yes_partial", "af_assessed_partial"),
}
_RENAME = {
    "pc_finished": "finished",
    "pc_assessed": "assessed",
    "pc_missing": "missing",
    "pc_full": "full",
    "pc_partial": "partial",
    "pc_refusal": "refusal",
}

RULES = {
    "compliant": "the classifier reads every answer judged compliant (partial_reads = "
    "compliant); an answer judged not compliant is a refusal",
    "all": "the classifier reads every finished answer (partial_reads = all)",
}


def _partial_from(prep: pd.DataFrame, orders: Orders) -> pd.DataFrame:
    """One row per cell of a run with a partial-compliance stage (none without one)."""
    if prep.empty or not prep["pc_rows"].any():
        return pd.DataFrame(columns=PARTIAL_COLUMNS)
    on = prep[prep["pc_rows"].astype(bool)]
    g = on.groupby(_KEYS, sort=False, observed=True)
    s = g[_COUNTS].sum().reset_index()
    s["condition"] = [TIER_CONDITION.get(t, "") for t in s["tier"].tolist()]
    rules = g["partial_reads"].agg(lambda r: ", ".join(sorted({str(x) for x in r.dropna()})))
    s["rule"] = rules.to_numpy()
    clusters = _clusters(on)
    for name, (k, n) in _RATES.items():
        s[name], s[f"{name}_lo"], s[f"{name}_hi"] = _cluster_cols(clusters, s, k, n)
    finished = s["pc_finished"].where(s["pc_finished"] > 0)
    s["missing_share"] = (s["pc_missing"] / finished).astype(float)
    overall = [c for c in _RENAME.values() if c in s.columns]  # e.g. every finished one
    s = s.drop(columns=overall).rename(columns=_RENAME)
    ints = [
        c
        for c in PARTIAL_COLUMNS
        if c in _RENAME.values() or (c.startswith("af_") and not c.startswith("af_rate"))
    ]
    s[ints] = s[ints].astype(int)
    for c in ("af_rate_full", "af_rate_partial"):  # NaN where no answer of the class has one
        for col in (c, f"{c}_lo", f"{c}_hi"):
            s[col] = s[col].astype(float)
    s = _sort(s, orders, _KEYS)
    return axis_numbers(s[PARTIAL_COLUMNS])


def rule_text(rules: str) -> str:
    """The routing rule(s) a table names, in words."""
    return "; ".join(RULES.get(r, r) for r in rules.split(", ") if r)


def partial_compliance(conv: pd.DataFrame) -> pd.DataFrame:
    """One row per model × variant × temperature × samples × tier of a run with a
    partial-compliance stage (``partial_reads`` set; an empty table without one): the shares
    full / partial / refusal over the answers with a class, the missing ones apart, and the AF
    rate within full and within partial compliance, with 95% intervals (prompts as clusters).
    Columns: ``PARTIAL_COLUMNS``."""
    prep = _prep(conv)
    return _partial_from(prep, _orders(prep))
