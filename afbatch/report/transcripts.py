"""The rows the HTML transcript browser embeds: which conversations, and their fields."""

from __future__ import annotations

from typing import Any

import numpy as np

from afbatch.columns import Columns, as_floats, held_as_floats, is_null, number, numbers
from afbatch.report.cells import _SURROGATE, _nan, _py
from afbatch.report.prep import TIER_CONDITION, Orders, Prep

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
    if is_null(value):
        return None
    s = _SURROGATE.sub("\ufffd", str(value))
    if limit is not None and len(s) > limit:
        s = s[:limit] + (
            f"\n… [{len(s) - limit:,} more characters: see conversations.csv / "
            "conversations.parquet]"
        )
    return s


def _positions(values: list[Any]) -> np.ndarray:
    """Prompt or sample numbers to sort by; -1 where missing."""
    out: np.ndarray = np.nan_to_num(np.array(numbers(values), dtype=float), nan=-1.0)
    return out


def _select_transcripts(conv: Columns, prep: Prep, orders: Orders, cap: int | None) -> list[int]:
    """Positions of the rows to embed: all, or up to ``cap`` spread evenly over the model × variant
    × tier cells (round robin); within a cell AF "yes", then "maybe", then proxy/judge
    disagreements, then failures, then the rest, each in prompt order."""
    m, v, t = (np.array([orders[k][x] for x in prep[k]], dtype=np.int64) for k in _CELL)
    prompt, sample = _positions(conv.get("prompt_index")), _positions(conv.get("sample"))
    rows = np.arange(len(conv))
    if cap is not None and len(conv) > cap:
        pri = np.select(
            [prep["af_yes"], prep["af_maybe"], _disagree(prep), prep["failed"]], [0, 1, 2, 3], 4
        )
        # np.lexsort: the last key sorts first; ties keep their order
        ranked = np.lexsort((rows, sample, prompt, pri, t, v, m))
        cell = (m * (t.max() + 1) * (v.max() + 1) + v * (t.max() + 1) + t)[ranked]
        starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])  # each cell's first row
        rank = np.arange(len(ranked)) - np.repeat(starts, np.diff(np.r_[starts, len(ranked)]))
        keep = np.lexsort((t[ranked], v[ranked], m[ranked], rank))[: max(cap, 0)]
        rows = ranked[keep]
    order = np.lexsort((rows, sample[rows], prompt[rows], t[rows], v[rows], m[rows]))
    out: list[int] = rows[order].tolist()
    return out


def _disagree(prep: Prep) -> np.ndarray:
    both = prep["judged"] & prep["proxy_has"]
    out: np.ndarray = both & (prep["proxy_complied"] != prep["judged_complied"])
    return out


_CELL = ("model", "variant", "tier")
_TEXTS = ("conversation_id", "status", "failure_reason", "judge_error")
_LONG = ("user_input", "final_output", "scratchpad")
_NUMBERS = ("prompt_index", "sample", "turns", "judge_convincing", "judge_specific")


def _judge_of(finished: bool, failed: bool, complied: bool, refused: bool) -> str:
    if not finished:
        return "failed" if failed else "not finished"
    return "complied" if complied else "refused" if refused else "no verdict"


def _transcript_data(
    conv: Columns, prep: Prep, orders: Orders, cap: int | None, text_limit: int | None
) -> tuple[dict[str, Any], int]:
    pos = _select_transcripts(conv, prep, orders, cap)

    def at(name: str) -> list[Any]:
        col = prep[name]
        return [col[i] for i in pos] if isinstance(col, list) else col[pos].tolist()

    cols = {name: conv.take(name, pos) for name in (*_TEXTS, *_LONG, *_NUMBERS, "condition")}
    for name in _NUMBERS:  # as before: a column of integers with gaps shows them as 3.0
        if held_as_floats(conv.get(name)):
            cols[name] = as_floats(cols[name])
    judge = [
        _judge_of(*v)
        for v in zip(at("finished"), at("failed"), at("judged_complied"), at("judged_refused"))
    ]
    proxy = [
        "complied" if c else "refused" if r else None
        for c, r in zip(at("proxy_complied"), at("proxy_refused"))
    ]
    af = ["n/a" if is_null(v) else str(v) for v in conv.take("af_verdict", pos)]
    yes = [number(v) for v in conv.take("af_votes_yes", pos)]
    tot = [number(v) for v in conv.take("af_votes_total", pos)]
    disagree = _disagree(prep).tolist()
    model, variant, tier = at("model"), at("variant"), at("tier")
    rows = []
    for j, i in enumerate(pos):
        votes = None if _nan(tot[j]) else f"{'?' if _nan(yes[j]) else int(yes[j])}/{int(tot[j])}"
        cond = cols["condition"][j]
        rows.append(
            [
                _clip(cols["conversation_id"][j], 200),
                model[j],
                variant[j],
                tier[j],
                cond if isinstance(cond, str) else TIER_CONDITION.get(tier[j], ""),
                _py(cols["prompt_index"][j]),
                _py(cols["sample"][j]),
                _clip(cols["status"][j], 50),
                _py(cols["turns"][j]),
                proxy[j],
                judge[j],
                _py(cols["judge_convincing"][j]),
                _py(cols["judge_specific"][j]),
                af[j],
                votes,
                _clip(cols["failure_reason"][j], 2000),
                _clip(cols["judge_error"][j], 2000),
                _clip(cols["user_input"][j], text_limit),
                _clip(cols["final_output"][j], text_limit),
                _clip(cols["scratchpad"][j], text_limit),
                disagree[i],
            ]
        )
    present = {
        "model": [m for m in orders["model"] if m in set(model)],
        "variant": [v for v in orders["variant"] if v in set(variant)],
        "tier": [t for t in orders["tier"] if t in set(tier)],
        "judge": [
            j
            for j in ("complied", "refused", "no verdict", "failed", "not finished")
            if j in set(judge)
        ],
        "af": [a for a in ("yes", "maybe", "no", "n/a") if a in set(af)]
        + sorted(set(af) - {"yes", "maybe", "no", "n/a"}),
    }
    return {"fields": _TRANSCRIPT_FIELDS, "options": present, "rows": rows}, len(rows)
