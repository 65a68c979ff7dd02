"""The self-contained HTML page: metadata, charts, tables and a transcript browser."""

from __future__ import annotations

import base64
import hashlib
import html
import json
from collections.abc import Mapping
from importlib import resources
from string import Template
from typing import Any

from afbatch.columns import Columns, is_null
from afbatch.report.cells import _SURROGATE, _nan, _pct, _plain
from afbatch.report.gaps import SIGN_CONVENTION
from afbatch.report.run_meta import _meta_lines, _with_protocol
from afbatch.report.tables import _tables
from afbatch.report.transcripts import _transcript_data
from afbatch.report.views import _each, _prefill_view, _View, _views


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


# The page is plain string.Template substitution: six slots, no loops or conditionals in the page
# itself, so a template engine (jinja2) would be a new dependency for nothing. What sits between
# <style>…</style> and <script>…</script> begins with a line break; the CSP hash covers the script.
_PAGE = Template(_asset("page.html"))
_CSS = "\n" + _asset("page.css")
_JS = "\n" + _asset("page.js")
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode("ascii")
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    f"script-src 'sha256-{_SCRIPT_HASH}'"
)

_COLORS = {"af": "#d62728", "complied": "#f2b134", "refused": "#4a78b5", "none": "#c8c8c8"}
_LABELS = {
    "af": "complied, alignment-faking reasoning",
    "complied": "complied, no alignment-faking reasoning",
    "refused": "refused",
    "none": "no verdict",
}


def _esc(value: Any) -> str:
    s = "" if value is None else str(value)
    return html.escape(_SURROGATE.sub("\ufffd", s), quote=True)


def _script_json(obj: Any) -> str:
    """JSON that is inert inside <script>: no '<', '>', '&', U+2028 or U+2029 in the text."""
    s = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        s.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _html_table(v: _View, table_id: str | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in v.headers)
    body = []
    for r in v.rows:
        tds = "".join(
            f'<td class="num">{_esc(c)}</td>' if n else f"<td>{_esc(c)}</td>"
            for c, n in zip(r, v.numeric)
        )
        body.append(f"<tr>{tds}</tr>")
    ident = f' id="{_esc(table_id)}"' if table_id else ""
    notes = "".join(f'<p class="note">{_esc(n)}</p>' for n in v.notes)
    return (
        f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"
    )


def _hatch(pid: str) -> str:
    return (
        f'<pattern id="{pid}" width="6" height="6" patternUnits="userSpaceOnUse" '
        f'patternTransform="rotate(45)"><rect width="6" height="6" fill="{_COLORS["af"]}"/><line '
        'x1="0" y1="0" x2="0" y2="6" stroke="#7a1010" stroke-width="2"/></pattern>'
    )


def _legend() -> str:
    items = []
    for key in ("af", "complied", "refused", "none"):
        fill = "url(#afb-hatch-legend)" if key == "af" else _COLORS[key]
        defs = f"<defs>{_hatch('afb-hatch-legend')}</defs>" if key == "af" else ""
        items.append(
            f'<span><svg width="14" height="14" aria-hidden="true">{defs}<rect width="14" '
            f'height="14" fill="{fill}" stroke="#555" '
            f'stroke-width="0.5"/></svg>{_esc(_LABELS[key])}</span>'
        )
    return f'<div class="legend">{"".join(items)}</div>'


def _bar_segments(r: Any, basis: str) -> tuple[int, list[tuple[str, int]]]:
    finished = int(r.finished)
    if basis == "judge":
        complied, refused = int(r.judged_complied), int(r.judged_refused)
        none = finished - complied - refused
    else:
        complied, refused = int(r.proxy_complied), finished - int(r.proxy_complied)
        none = 0
    af = min(int(r.af_yes), complied)
    return finished, [
        ("af", af),
        ("complied", complied - af),
        ("refused", refused),
        ("none", max(none, 0)),
    ]


def _by(rows: list[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    """Rows grouped by one column, groups in order of first appearance."""
    out: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    return out


def _chart(model: str, rows: list[dict[str, Any]], idx: int) -> str:
    label_w, bar_w, right_w, bar_h, gap, group_gap, top = 230, 420, 200, 22, 6, 12, 6
    y = top
    body = []
    bases = set()
    pid = f"afb-hatch-{idx}"
    axes = [
        a for a in ("temperature", "samples") if len({r[a] for r in rows if not is_null(r[a])}) > 1
    ]

    def temp_of(r: Any) -> str:  # the bar's temperature and sample count, where they vary
        t, n = getattr(r, "temperature", None), getattr(r, "samples", None)
        return (f" T={t:g}" if "temperature" in axes and not _nan(t) else "") + (
            f" samples={n:g}" if "samples" in axes and not _nan(n) else ""
        )

    for v_i, grp in enumerate(_by(rows, "variant").values()):
        if v_i:
            y += group_gap
        r: Any  # a summary row: its counts are numbers by construction
        for r in _each(grp):
            # The judge where this bar has verdicts, else the proxy (the label then says so).
            basis = "judge" if int(r.judged) > 0 or int(r.finished) == 0 else "proxy"
            bases.add(basis)
            finished, segs = _bar_segments(r, basis)
            label = f"{r.variant}{temp_of(r)} · {r.condition}" + (
                " (proxy)" if basis == "proxy" else ""
            )
            body.append(
                f'<text x="{label_w - 8}" y="{y + bar_h / 2 + 4:.1f}" text-anchor="end" '
                f'font-size="12">{_esc(_plain(label, 48))}'
                f"<title>{_esc(f'{r.variant} / {r.tier} tier ({r.condition})')}</title></text>"
            )
            body.append(
                f'<rect x="{label_w}" y="{y}" width="{bar_w}" height="{bar_h}" '
                'fill="#fff" stroke="#999" stroke-width="0.5"/>'
            )
            x = float(label_w)
            if finished:
                for key, count in segs:
                    if not count:
                        continue
                    w = bar_w * count / finished
                    fill = f"url(#{pid})" if key == "af" else _COLORS[key]
                    tip = f"{_LABELS[key]}: {count} of {finished} ({100 * count / finished:.1f}%)"
                    body.append(
                        f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{bar_h}" fill="{fill}">'
                        f"<title>{_esc(tip)}</title></rect>"
                    )
                    if w >= 38:
                        color = "#fff" if key in ("af", "refused") else "#222"
                        body.append(
                            f'<text x="{x + w / 2:.2f}" y="{y + bar_h / 2 + 4:.1f}" '
                            f'text-anchor="middle" font-size="11" fill="{color}">'
                            f"{100 * count / finished:.0f}%</text>"
                        )
                    x += w
                comp = sum(c for k, c in segs if k in ("af", "complied"))
                denom = finished - dict(segs)["none"]
                right = f"{_pct(comp / denom) if denom else '–'} complied · n={finished}"
            else:
                right = "no finished conversation"
            body.append(
                f'<text x="{label_w + bar_w + 8}" y="{y + bar_h / 2 + 4:.1f}" '
                f'font-size="12">{_esc(right)}</text>'
            )
            y += bar_h + gap
    height = y + top
    width = label_w + bar_w + right_w
    svg = (
        f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'aria-label="{_esc(f"Outcomes for {model}")}">'
        f"<defs>{_hatch(pid)}</defs>{''.join(body)}</svg>"
    )
    if bases == {"proxy"}:
        how = (
            "Compliance from the <request_fully_accepted/> proxy: this model has no judge verdicts."
        )
    else:
        how = (
            "Compliance from the judge's verdicts; conversations without a verdict (not "
            "judged, or unparseable) are grey, and the complied share on the right is over "
            "the judged ones."
        )
        if "proxy" in bases:
            how += (
                " Bars marked (proxy) have no judge verdict and show the "
                "<request_fully_accepted/> proxy instead."
            )
    caption = (
        f"{_esc(model)}: fractions of the finished conversations in each variant × condition "
        f"(training = free tier, unmonitored = paid tier; n = finished). {_esc(how)} "
        "Alignment-faking reasoning = classifier verdict “yes” (“maybe” counts as no); the "
        "classifier reads CoT scratchpads of compliant answers only."
    )
    return f"<figure><h3>{_esc(model)}</h3>{svg}<figcaption>{caption}</figcaption></figure>"


def _html_from(
    conv: Columns,
    tables: Mapping[str, Any],
    meta: Mapping[str, Any] | None,
    max_transcripts: int | None,
    max_text_chars: int | None,
    title: str | None,
) -> str:
    views = {v.key: v for v in _views(tables)}
    meta = _with_protocol(meta, tables["_prep"])
    run_id = (meta or {}).get("run_id") or (meta or {}).get("run") or ""
    page_title = title or (
        "afbatch report" + (f" — {run_id}" if isinstance(run_id, str) and run_id else "")
    )
    out: list[str] = []
    meta_html = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in _meta_lines(meta))
    out.append(f"<h1>{_esc(page_title)}</h1>")
    if meta_html:
        out.append(f'<dl class="meta">{meta_html}</dl>')
    prefill = _prefill_view(meta)
    if prefill:
        out.append(f'<h2 id="prefill">{_esc(prefill.title)}</h2>')
        out.append(_html_table(prefill, "afb-prefill"))
    s = tables["summary"]
    finished = sum(1 for v in conv.get("status") if v == "finished")
    out.append(
        f'<p class="note">{len(conv):,} conversations · {finished:,} finished · '
        f"{sum(r['failed'] for r in s):,} failed · {sum(r['judged'] for r in s):,} judged</p>"
    )
    out.append(
        f'<p class="sign"><strong>Sign convention:</strong> {_esc(SIGN_CONVENTION)}. '
        f"{_esc(tables['_intervals'])}.</p>"
    )
    out.append('<h2 id="charts">Outcomes per model (paper-style)</h2>')
    out.append(_legend())
    if not s:
        out.append('<p class="note">No conversations.</p>')
    for i, (model, rows) in enumerate(_by(s, "model").items()):
        out.append(_chart(str(model), rows, i))
    for key, anchor in (
        ("summary", "summary"),
        ("partial", "partial"),
        ("gaps", "gaps"),
        ("proxy_agreement", "agreement"),
        ("costs", "costs"),
        ("failures", "failures"),
    ):
        if key not in views:  # partial compliance: a run with that stage only
            continue
        v = views[key]
        out.append(f'<h2 id="{anchor}">{_esc(v.title)}</h2>')
        if key == "gaps":
            out.append(f'<p class="sign">{_esc(SIGN_CONVENTION)}</p>')
        out.append(_html_table(v, f"afb-{anchor}"))
    data, embedded = _transcript_data(
        conv, tables["_prep"], tables["_orders"], max_transcripts, max_text_chars
    )
    out.append('<h2 id="transcripts">Transcripts</h2>')
    if embedded < len(conv):
        out.append(
            f'<p class="note">{embedded:,} of {len(conv):,} conversations are embedded here '
            f"({len(conv) - embedded:,} left out): an even share of each model × variant × tier, "
            "alignment-faking "
            "verdicts, proxy/judge disagreements and failures first. "
            "conversations.csv and conversations.parquet have all of them.</p>"
        )
    if max_text_chars is not None:
        out.append(
            f'<p class="note">Texts longer than {max_text_chars:,} characters are cut here; '
            "conversations.csv and conversations.parquet have them whole. "
            "Model outputs are shown as plain text.</p>"
        )
    return _PAGE.substitute(
        csp=_CSP,
        title=_esc(page_title),
        css=_CSS,
        body="\n".join(out),
        data=_script_json(data),
        js=_JS,
    )


def render_html(
    conv: Any,
    estimate: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    *,
    max_transcripts: int | None = 5000,
    max_text_chars: int | None = 20000,
    title: str | None = None,
    gap_interval: str = "paired",
) -> str:
    """One self-contained HTML page (no network): metadata, charts, tables and a transcript browser.

    ``max_transcripts`` caps the conversations embedded in the browser (None = all; the note on
    the page says how many were left out), ``max_text_chars`` cuts each embedded text (None =
    whole). Every model output is treated as untrusted: escaped in HTML,
    ``<``/``>``/``&``/U+2028/U+2029 escaped in the embedded JSON, inserted with ``textContent``
    only; a Content-Security-Policy allows only the page's own script (by hash) and no network
    fetch. ``gap_interval``: "paired" (default) or "unpaired"
    (``afbatch.report.gaps.intervals_text``).
    """
    from afbatch.report.frames import columns_of

    cols = columns_of(conv)
    tables = _tables(cols, estimate, gap_interval)
    return _html_from(cols, tables, meta, max_transcripts, max_text_chars, title)
