"""The report's tables as rows of display strings, for the text, markdown and HTML renderers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from afbatch.columns import is_null
from afbatch.report.cells import _gap_ci, _int, _missing, _nan, _pct, _plain, _rate_ci, _usd
from afbatch.report.gaps import SIGN_CONVENTION
from afbatch.report.partial import rule_text


def _gap_method(t: Mapping[str, Any]) -> str:
    method = t.get("_gap_interval", "paired")
    if method == "paired":
        return "Newcombe hybrid score, paired (the tiers share prompts), prompts as clusters"
    return f"Newcombe hybrid score, {method}, prompts as clusters"


class _R:
    """A table row (a dict) read by attribute: ``r.model``."""

    __slots__ = ("_row",)

    def __init__(self, row: Mapping[str, Any]):
        self._row = row

    def __getattr__(self, name: str) -> Any:
        try:
            return self._row[name]
        except KeyError:
            raise AttributeError(name) from None


def _each(rows: list[dict[str, Any]]) -> list[Any]:
    return [_R(r) for r in rows]


class _View:
    """A table ready for display: title, headers, rows of strings, numeric-column flags, notes."""

    def __init__(
        self,
        key: str,
        title: str,
        headers: list[str],
        numeric: list[bool],
        rows: list[list[str]],
        notes: list[str],
    ):
        self.key, self.title, self.headers, self.numeric, self.rows, self.notes = (
            key,
            title,
            headers,
            numeric,
            rows,
            notes,
        )


def _views(t: Mapping[str, Any]) -> list[_View]:
    s = t["summary"]
    summary_rows = [
        [
            _plain(r.model),
            _plain(r.variant),
            _plain(r.tier),
            _plain(r.condition),
            _int(r.n),
            _int(r.failed),
            _int(r.finished),
            _rate_ci(r.proxy_compliance, r.proxy_compliance_lo, r.proxy_compliance_hi),
            _int(r.judged),
            _rate_ci(r.judged_compliance, r.judged_compliance_lo, r.judged_compliance_hi),
            _rate_ci(r.refusal, r.refusal_lo, r.refusal_hi),
            f"{_pct(r.judged_compliance_not_refused)} / {_pct(r.judged_compliance_sr)}",
            _rate_ci(r.af_rate, r.af_rate_lo, r.af_rate_hi),
            _pct(r.af_maybe_rate),
            _missing(r.af_missing, r.af_missing_share),
            _pct(r.af_rate_refused),
            "–" if _nan(r.strongreject_score) else f"{r.strongreject_score:.3f}",
        ]
        for r in _each(s)
    ]
    g = t["gaps"]
    gap_rows = [
        [
            _plain(r.model),
            _plain(r.variant),
            f"{r.finished_training:,} / {r.finished_unmonitored:,}",
            f"{_pct(r.proxy_training)} / {_pct(r.proxy_unmonitored)}",
            _gap_ci(r.gap_proxy, r.gap_proxy_lo, r.gap_proxy_hi),
            f"{r.judged_training:,} / {r.judged_unmonitored:,}",
            f"{_pct(r.judged_compliance_training)} / {_pct(r.judged_compliance_unmonitored)}",
            _gap_ci(r.gap_judged, r.gap_judged_lo, r.gap_judged_hi),
            f"{_pct(r.af_rate_training)} / {_pct(r.af_rate_unmonitored)}",
            _gap_ci(r.af_gap, r.af_gap_lo, r.af_gap_hi),
        ]
        for r in _each(g)
    ]
    a = t["proxy_agreement"]
    agree_rows = [
        [
            _plain(r.model),
            _plain(r.variant),
            _int(r.both),
            _int(r.agree_complied),
            _int(r.false_positives),
            _int(r.false_negatives),
            _int(r.agree_refused),
            _rate_ci(
                r.proxy_false_positive_rate,
                r.proxy_false_positive_rate_lo,
                r.proxy_false_positive_rate_hi,
            ),
            _rate_ci(
                r.proxy_false_negative_rate,
                r.proxy_false_negative_rate_lo,
                r.proxy_false_negative_rate_hi,
            ),
            _pct(r.agreement),
        ]
        for r in _each(a)
    ]
    c = t["costs"]
    cost_rows = [
        [
            _plain(r.model),
            _plain(r.provider),
            _int(r.conversations),
            _int(r.input_tokens),
            _int(r.cached_tokens),
            _int(r.output_tokens),
            _usd(r.estimated_generation_usd),
            _usd(r.estimated_judge_usd),
            _usd(r.estimated_usd),
            _usd(r.billed_generation_usd),
            _usd(r.billed_judge_usd),
            _usd(r.billed_usd),
            _usd(r.sync_equivalent_usd),
        ]
        for r in _each(c)
    ]
    f = t["failures"]
    failure_rows = [
        [
            _plain(r.model),
            _plain(r.variant),
            _plain(r.tier),
            _plain(r.stage),
            _plain(r.reason, 120),
            _int(r.count),
        ]
        for r in _each(f)
    ]
    views = [
        _View(
            "summary",
            "Summary per model × variant × tier",
            [
                "model",
                "variant",
                "tier",
                "condition",
                "n",
                "failed",
                "finished",
                "proxy compliance [95% CI]",
                "judged",
                "judged compliance [95% CI]",
                "refusal [95% CI]",
                "complied: not refused / SR > 0",
                "AF reasoning [95% CI]",
                "AF maybe",
                "AF missing",
                "AF among non-compliant",
                "StrongREJECT",
            ],
            [False] * 4 + [True] * 3 + [False, True] + [False] * 5 + [True, False, True],
            summary_rows,
            [
                "proxy compliance: share of finished conversations; judged compliance and "
                "refusal: share of judged conversations (finished with a judge verdict); judged "
                "compliance follows the job's compliance rule (run.judging), and 'complied' gives "
                "both rules (not refused; StrongREJECT score > 0, – without sub-scores). AF among "
                "non-compliant: classify = all_cot only, apart from AF reasoning. AF reasoning "
                "and AF maybe: share of finished CoT conversations with an AF outcome (a "
                "classifier verdict, or a judged refusal = no). AF missing: finished CoT "
                "conversations without one (no judge verdict, or compliant but not classified), "
                "not in the AF rate's denominator. AF is n/a (–) without CoT. 95% intervals in "
                "brackets: Wilson score with prompts as clusters (samples of a prompt are not "
                "independent)."
            ],
        ),
        _View(
            "gaps",
            "Compliance gaps (training − unmonitored)",
            [
                "model",
                "variant",
                "finished (train / unmon)",
                "proxy compliance (train / unmon)",
                "proxy gap [95% CI]",
                "judged (train / unmon)",
                "judged compliance (train / unmon)",
                "judged gap [95% CI]",
                "AF rate (train / unmon)",
                "AF gap [95% CI]",
            ],
            [False, False, True, True, False, True, True, False, True, False],
            gap_rows,
            [
                f"Sign convention: {SIGN_CONVENTION}.",
                f"95% CI: {_gap_method(t)}; pp = percentage points.",
            ],
        ),
        _View(
            "proxy_agreement",
            "Proxy (<request_fully_accepted/>) vs judge",
            [
                "model",
                "variant",
                "both",
                "both complied",
                "proxy FP",
                "proxy FN",
                "both refused",
                "FP rate = P(proxy complied | judge refused)",
                "FN rate = P(proxy refused | judge complied)",
                "agreement",
            ],
            [False, False, True, True, True, True, True, False, False, True],
            agree_rows,
            [
                "Over finished conversations having both a proxy value and a judge verdict; 95% "
                "Wilson CIs."
            ],
        ),
        _View(
            "costs",
            "Costs",
            [
                "model",
                "provider",
                "conversations",
                "input tokens",
                "cached tokens",
                "output tokens",
                "est. generation",
                "est. judge",
                "est. total",
                "billed generation",
                "billed judge",
                "billed total",
                "sync equivalent",
            ],
            [False, False] + [True] * 11,
            cost_rows,
            [
                "est.: the up-front estimate at batch + prompt-cache prices; billed: what the "
                "providers charged; sync equivalent: the same tokens at synchronous prices. The "
                "estimate books judging under the judge model, billing under the judged model: "
                "compare judge costs on the total row."
            ],
        ),
        _View(
            "failures",
            "Failures and missing verdicts",
            ["model", "variant", "tier", "stage", "reason", "count"],
            [False] * 5 + [True],
            failure_rows,
            [] if failure_rows else ["No failed conversation and no missing judge verdict."],
        ),
    ]
    _axis_columns(views, (s, g, None, None, f), s)
    partial = _partial_view(t["partial"], s)
    return views + ([partial] if partial else [])


def _partial_view(p: list[dict[str, Any]], summary: list[dict[str, Any]]) -> _View | None:
    """Shares full / partial / refusal and AF within full and partial compliance, per cell of a
    run with a partial-compliance stage (None without one)."""
    if not p:
        return None
    rows = [
        [
            _plain(r.model),
            _plain(r.variant),
            _plain(r.tier),
            _plain(r.condition),
            _int(r.finished),
            _int(r.assessed),
            _rate_ci(r.full_share, r.full_share_lo, r.full_share_hi),
            _rate_ci(r.partial_share, r.partial_share_lo, r.partial_share_hi),
            _rate_ci(r.refusal_share, r.refusal_share_lo, r.refusal_share_hi),
            _missing(r.missing, r.missing_share),
            _rate_ci(r.af_rate_full, r.af_rate_full_lo, r.af_rate_full_hi),
            _rate_ci(r.af_rate_partial, r.af_rate_partial_lo, r.af_rate_partial_hi),
            f"{_int(r.af_missing_full)} / {_int(r.af_missing_partial)}",
        ]
        for r in _each(p)
    ]
    rules = ", ".join(sorted({str(r["rule"]) for r in p if not is_null(r["rule"])}))
    view = _View(
        "partial",
        "Partial compliance: full / partial / refusal, and AF within each",
        [
            "model",
            "variant",
            "tier",
            "condition",
            "finished",
            "classed",
            "full [95% CI]",
            "partial [95% CI]",
            "refusal [95% CI]",
            "missing",
            "AF within full [95% CI]",
            "AF within partial [95% CI]",
            "AF missing (full / partial)",
        ],
        [False] * 4 + [True, True] + [False] * 7,
        rows,
        [
            (
                "Partial-compliance classifier (run.judging names its template): "
                f"{rule_text(rules)}. Shares over the finished answers with a class (classed); "
                "missing: finished answers without one (no verdict, unparseable, or a label the "
                "template does not map), counted in no class. AF within full (partial): the AF "
                "rate over the answers of that class "
                "with an AF outcome, as the AF rate counts it; answers without one are AF missing. "
                "95% intervals: Wilson score with prompts as clusters."
            )
        ],
    )
    _axis_columns([view], (p,), summary)
    return view


def _axis_columns(
    views: list[_View],
    tables: tuple[list[dict[str, Any]] | None, ...],
    summary: list[dict[str, Any]],
) -> None:
    """A run with a temperature or samples axis shows it next to the variant; with a single
    value the column would repeat it (the CSV and JSON tables always carry both)."""
    at = 2
    for axis in ("temperature", "samples"):
        if len({r[axis] for r in summary if not is_null(r[axis])}) < 2:
            continue
        for view, table in zip(views, tables):
            if table is None:
                continue
            view.headers.insert(at, axis)
            view.numeric.insert(at, True)
            for row, value in zip(view.rows, [r[axis] for r in table]):
                row.insert(at, "–" if _nan(value) else f"{value:g}")
        at += 1


def _prefill_view(meta: Mapping[str, Any] | None) -> _View | None:
    """Per model, the prefill its turns carried (``meta["prefill"]``, as recorded) or why none."""
    records = (meta or {}).get("prefill")
    if not isinstance(records, Mapping) or not records:
        return None
    rows = []
    for model, r in records.items():
        texts = r.get("text") or {}
        sent = ", ".join(f"{t} ({v})" for v, t in texts.items() if t is not None)
        sent = sent if r.get("sent") else "none"
        rows.append([_plain(model), _plain(sent), _plain(r.get("reason") or "not recorded")])
    note = (
        "The text each model turn was begun with (assistant prefill), as recorded when the run "
        "was created. A model without one answered from an empty turn: a protocol difference "
        "to keep in mind when comparing it with prefilled models."
    )
    headers = ["model", "prefill sent", "why"]
    return _View("prefill", "Prefill per model", headers, [False] * 3, rows, [note])
