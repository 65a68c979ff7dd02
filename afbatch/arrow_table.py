"""The conversation table as one Arrow table, for conversations.csv and conversations.parquet.

Arrays are built from buffers (``from_buffers``, ``Table.from_arrays``): pyarrow's conversion of
Python lists (``pa.array``, ``pa.table``) imports pandas on first use, ~35 MiB of a small run's
peak memory. Column types: booleans and integers nullable, floats double (NaN written as null),
texts ``large_string``, a column with no value at all ``null``; the schema carries the pandas
metadata pandas' own writer put there, so ``pandas.read_parquet`` gives the nullable dtypes
(``boolean``, ``Int64``) it always gave.
"""

from __future__ import annotations

import json
from importlib import metadata
from typing import Any

from afbatch.columns import Columns, is_null

BOOL_COLUMNS = ("cot", "proxy_compliant", "judge_refused", "judge_compliant")
INT_COLUMNS = (
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


def arrow_text(pa: Any, values: Any) -> Any:
    """A large_string Arrow array of texts (None: null), from one join and one encode: about three
    times faster than pa.array on long transcripts, which converts them one by one."""
    import numpy as np

    n = len(values)
    nulls = values.count(None) if isinstance(values, list) else sum(v is None for v in values)
    texts = [v if v is not None else "" for v in values] if nulls else values
    joined = "".join(texts)
    data = joined.encode()
    if len(data) == len(joined):  # all ASCII: a character is a byte
        lengths = np.fromiter(map(len, texts), np.int64, n)
    else:  # UTF-8 lengths: a str knows whether it is ASCII, and then its length is its byte length
        lengths = np.fromiter(
            (len(v) if v.isascii() else len(v.encode()) for v in texts), np.int64, n
        )
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    valid = _validity(pa, values) if nulls else None
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(data), valid, nulls
    )


def _validity(pa: Any, values: Any) -> Any:
    """The validity bitmap of values (None: null)."""
    import numpy as np

    valid = np.array([v is not None for v in values], dtype=bool)
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _is_flag(v: Any) -> bool:
    return isinstance(v, (bool, int, float)) and v in (0, 1)


def _is_whole(v: Any) -> bool:
    return isinstance(v, (bool, int)) or (isinstance(v, float) and v.is_integer())


_NONE = type(None)


def _kind(name: str, values: list[Any]) -> str:
    """bool, int, float, text or null: the column's Arrow type, as pandas' writer chose it."""
    types = set(map(type, values))
    if float in types and not any(v == v for v in values if type(v) is float):
        types = (types - {float}) | {_NONE}  # NaN only: missing values
    if not types <= {_NONE, bool, int, float, str}:  # numpy scalars, pandas' NA…: value by value
        values = [None if is_null(v) else v for v in values]
        types = set(map(type, values))
    present = types - {_NONE}
    if name in BOOL_COLUMNS and (present <= {bool} or all(map(_is_flag, _given(values)))):
        return "bool"
    if name in INT_COLUMNS and (present <= {int, bool} or all(map(_is_whole, _given(values)))):
        return "int"
    if not present:
        return "null"
    if present == {bool}:
        return "bool"
    if present == {int}:
        return "int" if _NONE not in types else "float"
    if present <= {int, float}:
        return "float"
    return "text"


def _given(values: list[Any]) -> list[Any]:
    return [v for v in values if not is_null(v)]


def _array(pa: Any, kind: str, values: list[Any]) -> Any:
    import numpy as np

    n = len(values)
    if kind == "null":
        return pa.nulls(n)
    types = set(map(type, values))
    if kind == "text":
        if not types <= {str, _NONE}:
            values = [v if v is None or type(v) is str else str(v) for v in values]
        return arrow_text(pa, values)
    if kind == "float":  # None and NaN are nulls, as pandas' writer made them
        floats = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        present = ~np.isnan(floats)
        nulls = n - int(present.sum())
        bitmap = pa.py_buffer(np.packbits(present, bitorder="little")) if nulls else None
        return pa.Array.from_buffers(pa.float64(), n, [bitmap, pa.py_buffer(floats)], nulls)
    clean = [None if is_null(v) else v for v in values] if float in types else values
    nulls = clean.count(None)
    valid = _validity(pa, clean) if nulls else None
    if kind == "bool":
        bits = np.array([v is not None and bool(v) for v in clean], dtype=bool)
        data = pa.py_buffer(np.packbits(bits, bitorder="little"))
        return pa.Array.from_buffers(pa.bool_(), n, [valid, data], nulls)
    if not nulls and types <= {int}:
        ints = np.array(clean, dtype=np.int64)
    else:
        ints = np.array([0 if v is None else int(v) for v in clean], dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), n, [valid, pa.py_buffer(ints)], nulls)


_PANDAS_TYPES = {  # kind → (pandas_type, numpy_type without nulls, with nulls)
    "bool": ("bool", "bool", "boolean"),
    "int": ("int64", "int64", "Int64"),
    "float": ("float64", "float64", "float64"),
    "text": ("object", "str", "str"),
    "null": ("empty", "object", "object"),
}


def arrow_table(conv: Columns) -> Any:
    """One Arrow table of every column, in the table's order."""
    import pyarrow as pa

    arrays, fields = [], []
    for name in conv.names:
        col = conv.data[name]
        if conv.is_arrow(name):  # a long text column, already Arrow
            arrays.append(col)
            kind, nulls = "text", col.null_count > 0
        else:
            kind = _kind(name, col)
            arrays.append(_array(pa, kind, col))
            nulls = arrays[-1].null_count > 0
        pandas_type, numpy_type, nullable = _PANDAS_TYPES[kind]
        fields.append(
            {
                "name": name,
                "field_name": name,
                "pandas_type": pandas_type,
                "numpy_type": nullable if nulls else numpy_type,
                "metadata": None,
            }
        )
    table = pa.Table.from_arrays(arrays, names=conv.names)
    return table.replace_schema_metadata({"pandas": json.dumps(_pandas_metadata(pa, fields))})


def _pandas_metadata(pa: Any, fields: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        version = metadata.version("pandas")
    except metadata.PackageNotFoundError:
        version = "2.1.0"  # the oldest afbatch supports
    return {
        "index_columns": [],
        "column_indexes": [],
        "columns": fields,
        "attributes": {},
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": version,
    }
