"""The report's files: conversations (CSV, parquet), summary.csv, gaps.csv, report.json/.html."""

from __future__ import annotations

import concurrent.futures
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from afbatch.columns import Columns, as_floats, held_as_floats
from afbatch.report.gaps import GAP_COLUMNS
from afbatch.report.html import _html_from
from afbatch.report.partial import PARTIAL_COLUMNS
from afbatch.report.render import _json_from, table_csv, write_csv
from afbatch.report.tables import SUMMARY_COLUMNS, _tables

PARQUET_HINT = "pip install 'afbatch[parquet]'"


def _have_pyarrow() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


def _plain_csv(conv: Columns, path: Path) -> None:
    """conversations.csv without pyarrow: True/False, empty for null, a float's repr."""
    cols = []
    for name in conv.names:
        values = conv.get(name)
        if held_as_floats(values):
            values = as_floats(values)
        cols.append(values)
    with path.open("w", encoding="utf-8", newline="") as f:
        write_csv(f, conv.names, zip(*cols))


def _write_conversations(conv: Columns, out: Path) -> tuple[list[str], str | None]:
    """conversations.csv and conversations.parquet; with pyarrow both come from one Arrow table."""
    path = out / "conversations.csv"
    if not _have_pyarrow():
        _plain_csv(conv, path)
        return [
            str(path)
        ], f"note: conversations.parquet skipped: pyarrow is not installed ({PARQUET_HINT})"
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from afbatch.arrow_table import arrow_table

    table = arrow_table(conv)
    # several times faster than Python's csv on long transcripts; booleans as true/false
    pacsv.write_csv(table, path)
    pq.write_table(table, out / "conversations.parquet")
    return [str(path), str(out / "conversations.parquet")], None


_SMALL = (
    ("summary.csv", "summary", SUMMARY_COLUMNS),
    ("gaps.csv", "gaps", GAP_COLUMNS),
    ("partial.csv", "partial", PARTIAL_COLUMNS),
)


def _write_small(tables: Mapping[str, Any], out: Path) -> list[str]:
    written = []
    for name, key, columns in _SMALL:
        if key == "partial" and not tables[key]:  # a run without a partial-compliance stage
            continue
        path = out / name
        path.write_text(table_csv(tables[key], columns), encoding="utf-8")
        written.append(str(path))
    return written


def write_tables(conv: Any, out_dir: str | Path) -> list[str]:
    """Write conversations.csv, conversations.parquet (needs pyarrow), summary.csv and gaps.csv.
    ``conv``: a DataFrame or the table's ``Columns``.

    Returns the written paths; when pyarrow is missing the parquet file is skipped and the list
    ends with a note (a string starting with ``"note:"``) saying ``pip install 'afbatch[parquet]'``.
    """
    from afbatch.report.frames import columns_of

    conv = columns_of(conv)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, note = _write_conversations(conv, out)
    written += _write_small(_tables(conv, None), out)
    return written + ([note] if note else [])


def write_all(
    conv: Any,
    out_dir: str | Path,
    estimate: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    gap_interval: str = "paired",
) -> list[str]:
    """Every report file: the tables of ``write_tables``, report.json and report.html.
    ``conv``: a DataFrame or the table's ``Columns``.

    The tables are computed once; the long conversation files are written by Arrow in a second
    thread (it releases the GIL) while this one renders the HTML, so a 2-core machine uses both.
    """
    from afbatch.report.frames import columns_of

    conv = columns_of(conv)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = _tables(conv, estimate, gap_interval)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        big = pool.submit(_write_conversations, conv, out)
        written = _write_small(tables, out)
        (out / "report.json").write_text(
            json.dumps(_json_from(tables, meta), indent=1, allow_nan=False), encoding="utf-8"
        )
        (out / "report.html").write_text(
            _html_from(conv, tables, meta, 5000, 20000, None), encoding="utf-8"
        )
        conversations, note = big.result()
    return (
        conversations
        + written
        + [str(out / "report.json"), str(out / "report.html")]
        + ([note] if note else [])
    )
