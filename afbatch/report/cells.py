"""One value as a table cell's display string (rates, intervals, money, counts, printable text),
or as a JSON-safe value, for every renderer of the report."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from afbatch.columns import is_null


def _py(value: Any) -> Any:
    """A JSON-safe Python value: NaN/NA → None, numpy scalars and arrays → Python values."""
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        value = value.tolist()
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, Mapping):
        return {str(k): _py(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_py(v) for v in value]
    if is_null(value):  # pandas' NA and NaT
        return None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _plain(value: Any, limit: int = 160) -> str:
    """One printable line: control characters (terminal escapes) and newlines become spaces."""
    s = "" if value is None else str(value)
    s = _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", s.replace("\n", " ").replace("\t", " ")))
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _nan(x: Any) -> bool:
    return is_null(x)


def _pct(x: Any) -> str:
    return "–" if _nan(x) else f"{100 * float(x):.1f}%"


def _ci(lo: Any, hi: Any) -> str:
    return "" if _nan(lo) or _nan(hi) else f"[{100 * lo:.1f}, {100 * hi:.1f}]"


def _rate_ci(rate: Any, lo: Any, hi: Any) -> str:
    return "–" if _nan(rate) else f"{_pct(rate)} {_ci(lo, hi)}"


def _pp(x: Any) -> str:
    return "–" if _nan(x) else f"{100 * x:+.1f} pp"


def _gap_ci(d: Any, lo: Any, hi: Any) -> str:
    return "–" if _nan(d) else f"{_pp(d)} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _usd(x: Any) -> str:
    if _nan(x):
        return "–"
    x = float(x)
    return f"${x:,.2f}" if abs(x) >= 10 else f"${x:,.4f}"


def _int(x: Any) -> str:
    return "–" if _nan(x) else f"{int(x):,}"


def _missing(count: Any, share: Any) -> str:
    return "–" if _nan(share) else f"{_int(count)} ({_pct(share)})"
