"""The rows the HTML transcript browser embeds: which conversations, and their fields."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from afbatch.report.cells import _SURROGATE, _nan, _py
from afbatch.report.prep import TIER_CONDITION, Orders, _column, _numeric

# None as an np.where choice (an object array, as a bare None gives; numpy's stubs refuse the bare
# None).
_NONE = np.array(None, dtype=object)

_TRANSCRIPT_FIELDS = [
    "id",
    "model",
    "variant",
    "tier",
    "condition",
    "prompt",
    "sample",
    "status",
    "turns",
    "proxy",
    "judge",
    "convincing",
    "specific",
    "af",
    "af_votes",
    "failure",
    "judge_error",
    "request",
    "output",
    "scratchpad",
    "disagree",
]


def _clip(value: Any, limit: int | None) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    s = _SURROGATE.sub("\ufffd", str(value))
    if limit is not None and len(s) > limit:
        s = s[:limit] + (
            f"\n… [{len(s) - limit:,} more characters: see conversations.csv / "
            "conversations.parquet]"
        )
    return s


def _select_transcripts(
    conv: pd.DataFrame, prep: pd.DataFrame, orders: Orders, cap: int | None
) -> np.ndarray:
    """Positions of the rows to embed: all, or up to ``cap`` spread evenly over the model × variant
    × tier cells (round robin); within a cell AF "yes", then "maybe", then proxy/judge
    disagreements, then failures, then the rest, each in prompt order."""
    total = len(conv)
    order = pd.DataFrame(
        {
            "__m": prep["model"].map(orders["model"]).to_numpy(),
            "__v": prep["variant"].map(orders["variant"]).to_numpy(),
            "__t": prep["tier"].map(orders["tier"]).to_numpy(),
            "__p": _numeric(_column(conv, "prompt_index")).fillna(-1).to_numpy(),
            "__s": _numeric(_column(conv, "sample")).fillna(-1).to_numpy(),
            "__i": np.arange(total),
        }
    )
    if cap is not None and total > cap:
        disagree = (
            prep["judged"] & prep["proxy_has"] & (prep["proxy_complied"] != prep["judged_complied"])
        ).to_numpy()
        order["__pri"] = np.select(
            [
                prep["af_yes"].to_numpy(),
                prep["af_maybe"].to_numpy(),
                disagree,
                prep["failed"].to_numpy(),
            ],
            [0, 1, 2, 3],
            4,
        )
        order = order.sort_values(
            ["__m", "__v", "__t", "__pri", "__p", "__s", "__i"], kind="stable"
        )
        order["__rank"] = order.groupby(["__m", "__v", "__t"], sort=False).cumcount()
        order = order.sort_values(["__rank", "__m", "__v", "__t"], kind="stable").head(max(cap, 0))
    order = order.sort_values(["__m", "__v", "__t", "__p", "__s", "__i"], kind="stable")
    return order["__i"].to_numpy()


def _transcript_data(
    conv: pd.DataFrame, prep: pd.DataFrame, orders: Orders, cap: int | None, text_limit: int | None
) -> tuple[dict[str, Any], int]:
    pos = _select_transcripts(conv, prep, orders, cap)
    p = prep.iloc[pos]

    def picked(
        name: str,
    ) -> pd.Series:  # column by column: DataFrame.iloc copies every long text column whole
        return _column(conv, name).iloc[pos]

    def col(name: str) -> list[Any]:
        series = _column(conv, name)
        if isinstance(
            series.dtype, pd.StringDtype
        ):  # a take on chunked Arrow text joins the whole column first
            return [series.iat[i] for i in pos]
        return series.iloc[pos].tolist()

    judge = np.where(
        ~p["finished"].to_numpy(),
        np.where(p["failed"].to_numpy(), "failed", "not finished"),
        np.where(
            p["judged_complied"].to_numpy(),
            "complied",
            np.where(p["judged_refused"].to_numpy(), "refused", "no verdict"),
        ),
    )
    proxy = np.where(
        p["proxy_complied"].to_numpy(),
        "complied",
        np.where(p["proxy_refused"].to_numpy(), "refused", _NONE),
    )
    verdict = picked("af_verdict")
    af = verdict.astype(object).where(verdict.notna(), "n/a").astype(str).tolist()
    yes, tot = (
        _numeric(picked("af_votes_yes")).tolist(),
        _numeric(picked("af_votes_total")).tolist(),
    )
    disagree = (
        p["judged"] & p["proxy_has"] & (p["proxy_complied"] != p["judged_complied"])
    ).tolist()
    rows = []
    cols = {
        name: col(name)
        for name in (
            "conversation_id",
            "condition",
            "prompt_index",
            "sample",
            "status",
            "turns",
            "judge_convincing",
            "judge_specific",
            "failure_reason",
            "judge_error",
            "user_input",
            "final_output",
            "scratchpad",
        )
    }
    model, variant, tier = p["model"].tolist(), p["variant"].tolist(), p["tier"].tolist()
    for i in range(len(pos)):
        votes = None if _nan(tot[i]) else f"{'?' if _nan(yes[i]) else int(yes[i])}/{int(tot[i])}"
        cond = cols["condition"][i]
        rows.append(
            [
                _clip(cols["conversation_id"][i], 200),
                model[i],
                variant[i],
                tier[i],
                cond if isinstance(cond, str) else TIER_CONDITION.get(tier[i], ""),
                _py(cols["prompt_index"][i]),
                _py(cols["sample"][i]),
                _clip(cols["status"][i], 50),
                _py(cols["turns"][i]),
                proxy[i],
                str(judge[i]),
                _py(cols["judge_convincing"][i]),
                _py(cols["judge_specific"][i]),
                af[i],
                votes,
                _clip(cols["failure_reason"][i], 2000),
                _clip(cols["judge_error"][i], 2000),
                _clip(cols["user_input"][i], text_limit),
                _clip(cols["final_output"][i], text_limit),
                _clip(cols["scratchpad"][i], text_limit),
                bool(disagree[i]),
            ]
        )
    present = {
        "model": [m for m in orders["model"] if m in set(model)],
        "variant": [v for v in orders["variant"] if v in set(variant)],
        "tier": [t for t in orders["tier"] if t in set(tier)],
        "judge": [
            j
            for j in ("complied", "refused", "no verdict", "failed", "not finished")
            if j in set(judge.tolist())
        ],
        "af": [a for a in ("yes", "maybe", "no", "n/a") if a in set(af)]
        + sorted(set(af) - {"yes", "maybe", "no", "n/a"}),
    }
    return {"fields": _TRANSCRIPT_FIELDS, "options": present, "rows": rows}, len(rows)
