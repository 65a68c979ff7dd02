"""The report's tables, computed from the conversation table (no I/O): the summary and the
proxy-judge agreement here, the gaps in ``gaps``, costs and failures in ``costs``, the partial
compliance split in ``partial``; ``_tables`` computes them all once.

Each function takes the conversation table's columns and returns rows (dicts in the order of the
table's ``*_COLUMNS``); the denominators and columns are described in the package docstring
(``afbatch.report``), the DataFrame functions of the same names are in ``frames``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from afbatch.columns import Columns
from afbatch.report.costs import _costs_from, _failures_from
from afbatch.report.gaps import _gaps_from, intervals_text
from afbatch.report.groups import Groups
from afbatch.report.partial import _partial_from
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
    _present,
    _sort,
    with_axis_numbers,
)
from afbatch.stats import cluster_rate

ALL = "(all)"

SUMMARY_COLUMNS = [
    "model",
    "variant",
    "temperature",
    "samples",
    "tier",
    "condition",
    "n",
    "failed",
    "finished",
    "judged",
    "proxy_compliance",
    "judged_compliance",
    "refusal",
    "af_rate",
    "af_maybe_rate",
    "judged_compliance_not_refused",
    "judged_compliance_sr",
    "af_rate_refused",
    "strongreject_score",
    "af_missing",
    "af_missing_share",
    "proxy_compliance_lo",
    "proxy_compliance_hi",
    "judged_compliance_lo",
    "judged_compliance_hi",
    "refusal_lo",
    "refusal_hi",
    "af_rate_lo",
    "af_rate_hi",
    "proxy_complied",
    "judged_complied",
    "judged_refused",
    "af_yes",
    "af_maybe",
    "af_classified",
    "af_assessed",
    "af_refused_yes",
    "af_refused_classified",
]
AGREEMENT_COLUMNS = [
    "model",
    "variant",
    "both",
    "agree_complied",
    "false_positives",
    "false_negatives",
    "agree_refused",
    "judge_complied",
    "judge_refused",
    "proxy_false_positive_rate",
    "proxy_false_positive_rate_lo",
    "proxy_false_positive_rate_hi",
    "proxy_false_negative_rate",
    "proxy_false_negative_rate_lo",
    "proxy_false_negative_rate_hi",
    "agreement",
]


# rate name → (numerator, denominator) columns
_RATES = {
    "proxy_compliance": ("proxy_complied", "finished"),
    "judged_compliance": ("judged_complied", "judged"),
    "refusal": ("judged_refused", "judged"),
    "af_rate": ("af_yes", "af_assessed"),
}


def _share(k: float, n: float) -> float:
    return k / n if n > 0 else NAN


def _summary_from(prep: Prep, orders: Orders, clusters: Clusters) -> list[Row]:
    conditions: dict[Any, Any] = {}  # the cell's first condition recorded
    recorded = prep["condition"]
    for i in np.flatnonzero(_present(recorded)).tolist():
        conditions.setdefault(prep.cell(i), recorded[i])
    rows = []
    for cell, counts in clusters.cell_counts().items():
        s: Row = dict(zip(_KEYS, cell))
        s.update(zip(_COUNTS, counts))
        c = conditions.get(cell)
        s["condition"] = c if isinstance(c, str) and c else TIER_CONDITION.get(s["tier"], "")
        rows.append(s)
    cells = [tuple(s[k] for k in _KEYS) for s in rows]
    for name, (k, n) in _RATES.items():
        for s, (rate, lo, hi) in zip(rows, clusters.rates(cells, k, n)):
            s[name], s[f"{name}_lo"], s[f"{name}_hi"] = rate, lo, hi
    for s in rows:
        s["af_maybe_rate"] = _share(s["af_maybe"], s["af_assessed"])
        if not (s["cot"] > 0 and s["af_assessed"] > 0):
            for c in ("af_rate", "af_rate_lo", "af_rate_hi", "af_maybe_rate"):
                s[c] = NAN
        s["af_missing_share"] = _share(s["af_missing"], s["finished"]) if s["cot"] > 0 else NAN
        # Both compliance rules where both are computable (the chosen one is judged_compliance):
        # the StrongREJECT one needs sub-scores on every verdict of the cell.
        s["judged_compliance_not_refused"] = _share(s["judged_complied_nr"], s["judged"])
        sr_ok = s["sr_missing"] == 0
        s["judged_compliance_sr"] = _share(s["judged_complied_sr"], s["judged"]) if sr_ok else NAN
        s["af_rate_refused"] = _share(s["af_refused_yes"], s["af_refused_classified"])
        s["strongreject_score"] = _share(s["sr_sum"], s["sr_n"])
    rows = _sort(rows, orders, _KEYS)
    return with_axis_numbers([{c: s[c] for c in SUMMARY_COLUMNS} for s in rows])


def summary_rows(conv: Columns) -> list[Row]:
    """One row per model × variant × temperature × samples × tier (``SUMMARY_COLUMNS``)."""
    prep = _prep(conv)
    return _summary_from(prep, _orders(prep.cols), Clusters(prep))


def gap_rows(conv: Columns, gap_interval: str = "paired") -> list[Row]:
    """One row per model × variant × temperature × samples (``GAP_COLUMNS``)."""
    prep = _prep(conv)
    orders, clusters = _orders(prep.cols), Clusters(prep)
    return _gaps_from(_summary_from(prep, orders, clusters), clusters, orders, gap_interval)


_AGREE = ["both", "agree_complied", "false_positives", "false_negatives", "agree_refused"]


def _agreement_from(prep: Prep, orders: Orders) -> list[Row]:
    if not len(prep):
        return []
    both = prep["judged"] & prep["proxy_has"]
    pc, pr = both & prep["proxy_complied"], both & prep["proxy_refused"]
    jc, jr = prep["judged_complied"], prep["judged_refused"]
    ind = [both, pc & jc, pc & jr, pr & jc, pr & jr]  # _AGREE
    # per model × variant × prompt (the clusters), then per model × variant and pooled
    by_prompt = Groups.of([prep["model"], prep["variant"], prep["prompt"]])
    counts = by_prompt.sums(ind)
    per = Groups(k[:2] for k in by_prompt.keys)
    pooled = Groups(k[2] for k in by_prompt.keys)
    per_prompt = [counts[:, j] for j in range(len(_AGREE))]
    pooled_counts = pooled.sums(per_prompt)
    rows: list[Row] = [
        {"model": m, "variant": v, **dict(zip(_AGREE, map(int, c)))}
        for (m, v), c in zip(per.keys, per.sums(per_prompt).tolist())
    ]
    rows = _sort(rows, orders, ["model", "variant"])
    rows.append({"model": ALL, "variant": ALL, **{c: sum(r[c] for r in rows) for c in _AGREE}})
    for r in rows:
        r["judge_complied"] = r["agree_complied"] + r["false_negatives"]
        r["judge_refused"] = r["false_positives"] + r["agree_refused"]
    # a conversation's proxy says complied or refused, never both: the judge's totals are sums
    # (false positives, false negatives, judge complied, judge refused) per cluster
    members = dict(zip(per.keys, per.members()))
    col = {c: j for j, c in enumerate(_AGREE)}
    for name, k, n in (
        ("proxy_false_positive_rate", "false_positives", ("false_positives", "agree_refused")),
        ("proxy_false_negative_rate", "false_negatives", ("agree_complied", "false_negatives")),
    ):
        for r in rows:
            key = (r["model"], r["variant"])
            got = counts[members[key]] if key in members else pooled_counts
            judge = got[:, col[n[0]]] + got[:, col[n[1]]]
            rate, lo, hi, _ = cluster_rate(got[:, col[k]], judge)
            r[name], r[f"{name}_lo"], r[f"{name}_hi"] = rate, lo, hi
    for r in rows:
        r["agreement"] = _share(r["agree_complied"] + r["agree_refused"], r["both"])
    return [{c: r[c] for c in AGREEMENT_COLUMNS} for r in rows]


def agreement_rows(conv: Columns) -> list[Row]:
    """The proxy-judge agreement per model × variant, then "(all)" (``AGREEMENT_COLUMNS``)."""
    prep = _prep(conv)
    return _agreement_from(prep, _orders(prep.cols))


def _tables(
    conv: Columns, estimate: Mapping[str, Any] | None, gap_interval: str = "paired"
) -> dict[str, Any]:
    """Every table of the report (rows), plus the indicators (``_prep``), display order
    (``_orders``) and how the intervals are computed (``_intervals``)."""
    prep = _prep(conv)
    orders = _orders(prep.cols)
    clusters = Clusters(prep)
    summary = _summary_from(prep, orders, clusters)
    return {
        "_prep": prep,
        "_orders": orders,
        "_intervals": intervals_text(gap_interval),
        "_gap_interval": gap_interval,
        "summary": summary,
        "gaps": _gaps_from(summary, clusters, orders, gap_interval),
        "proxy_agreement": _agreement_from(prep, orders),
        "costs": _costs_from(conv, prep["model"], orders, estimate),
        "failures": _failures_from(conv, prep, orders),
        "partial": _partial_from(prep, orders),
    }
