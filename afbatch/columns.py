"""The conversation table as columns: what the report computes from and writes, without pandas.

Each column is a list of Python values (None: missing), or, for a long text column of a run's
table when pyarrow is installed, a chunked Arrow ``large_string`` array: a 100k-conversation run
must not hold every transcript twice (once as Python strings, once in Arrow). ``afbatch.report``
turns a pandas DataFrame into one of these at its edge (``afbatch.report.frames``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def is_null(value: Any) -> bool:
    """None, NaN (and pandas' NA/NaT, which are not equal to themselves or are None-like)."""
    if value is None:
        return True
    kind = type(value)
    if kind is float:
        return bool(value != value)
    if kind is str or kind is int or kind is bool:
        return False
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(value != value)  # NaN-like scalars
    except (TypeError, ValueError):
        return type(value).__name__ in ("NAType", "NaTType")


def truths(values: list[Any]) -> list[bool | None]:
    """``truth`` of each value (booleans and None as they are)."""
    return [v if v is None or v is True or v is False else truth(v) for v in values]


def numbers(values: list[Any]) -> list[float]:
    """``number`` of each value (ints and floats directly)."""
    return [
        math.nan if v is None else float(v) if type(v) in (int, float) else number(v)
        for v in values
    ]


def floats(values: list[Any]) -> Any:
    """``numbers`` as a numpy float array (None: NaN)."""
    import numpy as np

    try:
        return np.array(values, dtype=float)
    except (TypeError, ValueError):  # texts, pandas' NA…: value by value
        return np.array(numbers(values), dtype=float)


def truth(value: Any) -> bool | None:
    """A nullable boolean cell as a bool (None: missing or not a boolean): True/False, 1/0, and
    the texts "true"/"false"/"1"/"0" (a table read back from CSV)."""
    if is_null(value):
        return None
    if isinstance(value, (bool, int, float)) or type(value).__name__ == "bool_":
        return True if value == 1 else False if value == 0 else None
    text = str(value).strip().lower()
    return True if text in ("true", "1") else False if text in ("false", "0") else None


def number(value: Any) -> float:
    """A numeric cell as a float (NaN: missing or not a number)."""
    if is_null(value):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def held_as_floats(values: list[Any]) -> bool:
    """Whether a column's numbers are shown as floats (1.0): with any float, or integers with a
    gap, as pandas held such a column, so conversations.csv (without pyarrow) and the page's
    transcripts show them as before."""
    types = set(map(type, values))
    if float in types and any(v == v for v in values if type(v) is float):
        return True
    return int in types and (type(None) in types or float in types)


def as_floats(values: list[Any]) -> list[Any]:
    """The numbers as floats, nulls and booleans as they are."""
    return [v if is_null(v) or isinstance(v, bool) else float(v) for v in values]


class Columns:
    """Named columns of one length, in table order. ``data`` maps a name to a list, or to a
    chunked Arrow array (a long text column: ``is_arrow``)."""

    def __init__(self, data: dict[str, Any], length: int):
        self.data = data
        self.length = length

    @property
    def names(self) -> list[str]:
        return list(self.data)

    def __len__(self) -> int:
        return self.length

    def __contains__(self, name: object) -> bool:
        return name in self.data

    def is_arrow(self, name: str) -> bool:
        return name in self.data and not isinstance(self.data[name], list)

    def get(self, name: str) -> list[Any]:
        """The column as a list (None where missing); all None when the table lacks it. An Arrow
        text column is converted whole: meant for short texts (reasons, labels)."""
        if name not in self.data:
            return [None] * self.length
        col = self.data[name]
        if isinstance(col, list):
            return col
        out: list[Any] = col.to_pylist()
        return out

    def take(self, name: str, positions: Sequence[int]) -> list[Any]:
        """The values at ``positions`` (an Arrow column element by element: a take on chunked
        text would join the whole column first)."""
        if name not in self.data:
            return [None] * len(positions)
        col = self.data[name]
        if isinstance(col, list):
            return [col[i] for i in positions]
        return [col[i].as_py() for i in positions]

    def notnull(self, name: str) -> list[bool]:
        if name not in self.data:
            return [False] * self.length
        col = self.data[name]
        if isinstance(col, list):
            return [v is not None and v == v for v in col]
        return [v for chunk in col.chunks for v in chunk.is_valid().to_pylist()]
