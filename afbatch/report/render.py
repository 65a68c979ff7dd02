"""The report as one text: JSON, CSV, an aligned table for terminals, markdown or HTML."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from afbatch.columns import is_null
from afbatch.report.cells import _py
from afbatch.report.gaps import SIGN_CONVENTION
from afbatch.report.html import _html_from
from afbatch.report.run_meta import _meta_lines, _with_protocol
from afbatch.report.tables import SUMMARY_COLUMNS, _tables
from afbatch.report.views import _prefill_view, _View, _views
from afbatch.tables import markdown_table, text_table

REPORT_VERSION = 1
FORMATS = ("table", "markdown", "csv", "json", "html")


def _records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{c: _py(v) for c, v in r.items()} for r in rows]


def csv_cell(value: Any) -> Any:
    """A CSV field as the tables have always been written: empty for null, True/False, a float's
    shortest repr (1.0, 0.25), texts as they are."""
    if value is None or is_null(value):
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def write_csv(f: TextIO, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    """A header and rows, comma-separated, quoted where needed, each line ending in \\n."""
    w = csv.writer(f, lineterminator="\n")
    w.writerow(columns)
    for row in rows:
        w.writerow([csv_cell(v) for v in row])


def table_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    f = io.StringIO()
    write_csv(f, columns, ([r[c] for c in columns] for r in rows))
    return f.getvalue()


def _json_from(tables: Mapping[str, Any], meta: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "report_version": REPORT_VERSION,
        "run": _py(_with_protocol(meta, tables["_prep"])),
        "sign_convention": SIGN_CONVENTION,
        "intervals": tables["_intervals"],
        "summary": _records(tables["summary"]),
        "gaps": _records(tables["gaps"]),
        "proxy_agreement": _records(tables["proxy_agreement"]),
        "costs": _records(tables["costs"]),
        "failures": _records(tables["failures"]),
        "partial": _records(tables["partial"]),
    }


def report_json(
    conv: Any,
    estimate: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    gap_interval: str = "paired",
) -> dict[str, Any]:
    """The whole report as one JSON-ready dict (NaN → None); keys: see ``afbatch.report``.
    ``conv``: a DataFrame or the table's ``Columns``."""
    from afbatch.report.frames import columns_of

    return _json_from(_tables(columns_of(conv), estimate, gap_interval), meta)


def _right(v: _View) -> set[int]:
    return {i for i, numeric in enumerate(v.numeric) if numeric}


def _text_table(v: _View) -> str:
    table = text_table(v.headers, v.rows, right=_right(v), left_headers=True)
    return "\n".join([v.title, "=" * len(v.title), table, *v.notes])


def _md_cell(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_table(v: _View) -> str:
    table = markdown_table(v.headers, v.rows, right=_right(v), escape=_md_cell)
    parts = [f"## {_md_cell(v.title)}", "", table]
    if v.notes:
        parts.append("")
        parts += [_md_cell(n) for n in v.notes]
    return "\n".join(parts)


def render(
    conv: Any,
    fmt: str,
    estimate: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    *,
    max_transcripts: int | None = 5000,
    gap_interval: str = "paired",
) -> str:
    """The report as text: ``table`` (aligned, for terminals), ``markdown``, ``csv`` (summary),
    ``json`` or ``html``.

    ``gap_interval``: "paired" (default: the tiers share prompts) or "unpaired"; every format
    states the method (``intervals_text``). ``conv``: a DataFrame or the table's ``Columns``."""
    from afbatch.report.frames import columns_of

    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    conv = columns_of(conv)
    tables = _tables(conv, estimate, gap_interval)
    meta = _with_protocol(meta, tables["_prep"])
    if fmt == "csv":
        return table_csv(tables["summary"], SUMMARY_COLUMNS)
    if fmt == "json":
        return (
            json.dumps(_json_from(tables, meta), indent=2, ensure_ascii=False, allow_nan=False)
            + "\n"
        )
    if fmt == "html":
        return _html_from(conv, tables, meta, max_transcripts, 20000, None)
    prefill = _prefill_view(meta)
    views = ([prefill] if prefill else []) + _views(tables)
    meta_lines = _meta_lines(meta)
    if fmt == "table":
        head = ["afbatch report"] + [f"{k}: {v}" for k, v in meta_lines]
        head.append(tables["_intervals"] + ".")
        return "\n\n".join(["\n".join(head)] + [_text_table(v) for v in views]) + "\n"
    head = ["# afbatch report", ""] + [f"- **{_md_cell(k)}**: {_md_cell(v)}" for k, v in meta_lines]
    head += ["", f"Sign convention: {_md_cell(SIGN_CONVENTION)}."]
    head += ["", _md_cell(tables["_intervals"]) + "."]
    return "\n\n".join(["\n".join(head)] + [_md_table(v) for v in views]) + "\n"
