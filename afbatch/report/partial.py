"""Partial compliance: the shares full / partial / refusal per cell, and the alignment-faking
rate within full and within partial compliance (no I/O).

Denominators: the shares are over the finished answers with a class (``assessed``); the AF rates
over the answers of that class with an AF outcome (as ``af_rate`` counts it). What has no class
(``missing``: no verdict, unparseable, an unknown label) or no AF outcome is shown as missing and
counted in no class and no rate.
"""

from __future__ import annotations

import numpy as np

from afbatch.columns import Columns, is_null
from afbatch.report.prep import (
    _COUNTS,
    _KEYS,
    NAN,
    TIER_CONDITION,
    Clusters,
    Orders,
    Prep,
    Row,
    _orders,
    _prep,
    _sort,
    with_axis_numbers,
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


def _partial_from(prep: Prep, orders: Orders) -> list[Row]:
    """One row per cell of a run with a partial-compliance stage (none without one)."""
    on = prep["pc_rows"]
    if not len(prep) or not on.any():
        return []
    clusters = Clusters(prep, on)
    reads: dict[tuple[str, ...], set[str]] = {}
    read = prep["partial_reads"]
    for i in np.flatnonzero(on).tolist():
        reads.setdefault(prep.cell(i), set()).update(() if is_null(read[i]) else (str(read[i]),))
    rows = []
    for cell, counts in clusters.cell_counts().items():
        s: Row = dict(zip(_KEYS, cell))
        s.update(zip(_COUNTS, counts))
        s["condition"] = TIER_CONDITION.get(s["tier"], "")
        s["rule"] = ", ".join(sorted(reads[cell]))
        rows.append(s)
    keys = [tuple(s[k] for k in _KEYS) for s in rows]
    for name, (k, n) in _RATES.items():
        for s, (rate, lo, hi) in zip(rows, clusters.rates(keys, k, n)):
            s[name], s[f"{name}_lo"], s[f"{name}_hi"] = rate, lo, hi
    for s in rows:
        s["missing_share"] = s["pc_missing"] / s["pc_finished"] if s["pc_finished"] > 0 else NAN
        for old, new in _RENAME.items():
            s[new] = s[old]
    rows = _sort(rows, orders, _KEYS)
    return with_axis_numbers([{c: s[c] for c in PARTIAL_COLUMNS} for s in rows])


def rule_text(rules: str) -> str:
    """The routing rule(s) a table names, in words."""
    return "; ".join(RULES.get(r, r) for r in rules.split(", ") if r)


def partial_rows(conv: Columns) -> list[Row]:
    """One row per model × variant × temperature × samples × tier of a run with a
    partial-compliance stage (``partial_reads`` set; an empty table without one): the shares
    full / partial / refusal over the answers with a class, the missing ones apart, and the AF
    rate within full and within partial compliance, with 95% intervals (prompts as clusters).
    Columns: ``PARTIAL_COLUMNS``."""
    prep = _prep(conv)
    return _partial_from(prep, _orders(prep.cols))
