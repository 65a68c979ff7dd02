"""The report's files: conversations (CSV, parquet), summary.csv, gaps.csv, report.json/.html."""

from __future__ import annotations

import concurrent.futures
import contextlib
import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from afbatch.report.html import _html_from
from afbatch.report.render import _json_from
from afbatch.report.tables import _tables

PARQUET_HINT = "pip install 'afbatch[parquet]'"


def _have_pyarrow() -> bool:
    return importlib.util.find_spec("pyarrow") is not None


_BOOL_COLUMNS = ("cot", "proxy_compliant", "judge_refused", "judge_compliant")
_INT_COLUMNS = (
    "prompt_index",
    "sample",
    "samples",
    "turns",
    "judge_convincing",
    "judge_specific",
    "af_votes_yes",
    "af_votes_total",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
)


def _typed(conv: pd.DataFrame) -> pd.DataFrame:
    """Nullable dtypes for the known columns, so parquet keeps booleans and integers with gaps."""
    out = conv.copy(deep=False)  # only the converted columns are new; the texts are shared
    for c in _BOOL_COLUMNS:
        if c in out.columns and out[c].dtype != bool:
            with contextlib.suppress(TypeError, ValueError):
                out[c] = out[c].astype("boolean")
    for c in _INT_COLUMNS:
        if c in out.columns and not pd.api.types.is_integer_dtype(out[c]):
            with contextlib.suppress(TypeError, ValueError):
                out[c] = pd.to_numeric(out[c]).astype("Int64")
    return out


def _write_conversations(conv: pd.DataFrame, out: Path) -> tuple[list[str], str | None]:
    """conversations.csv and conversations.parquet; with pyarrow both come from one Arrow table."""
    path = out / "conversations.csv"
    if not _have_pyarrow():
        conv.to_csv(path, index=False, lineterminator="\n")
        return [
            str(path)
        ], f"note: conversations.parquet skipped: pyarrow is not installed ({PARQUET_HINT})"
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(_typed(conv), preserve_index=False)
    pacsv.write_csv(
        table, path
    )  # several times faster than pandas on long transcripts; booleans as true/false
    pq.write_table(table, out / "conversations.parquet")
    return [str(path), str(out / "conversations.parquet")], None


def _write_small(tables: Mapping[str, Any], out: Path) -> list[str]:
    written = []
    for name, key in (("summary.csv", "summary"), ("gaps.csv", "gaps"), ("partial.csv", "partial")):
        if key == "partial" and tables[key].empty:  # a run without a partial-compliance stage
            continue
        path = out / name
        tables[key].to_csv(path, index=False, lineterminator="\n")
        written.append(str(path))
    return written


def write_tables(conv: pd.DataFrame, out_dir: str | Path) -> list[str]:
    """Write conversations.csv, conversations.parquet (needs pyarrow), summary.csv and gaps.csv.

    Returns the written paths; when pyarrow is missing the parquet file is skipped and the list
    ends with a note (a string starting with ``"note:"``) saying ``pip install 'afbatch[parquet]'``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, note = _write_conversations(conv, out)
    written += _write_small(_tables(conv, None), out)
    return written + ([note] if note else [])


def write_all(
    conv: pd.DataFrame,
    out_dir: str | Path,
    estimate: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
    gap_interval: str = "paired",
) -> list[str]:
    """Every report file: the tables of ``write_tables``, report.json and report.html.

    The tables are computed once; the long conversation files are written by Arrow in a second
    thread (it releases the GIL) while this one renders the HTML, so a 2-core machine uses both.
    """
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
