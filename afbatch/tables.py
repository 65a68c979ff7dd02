"""Plain-text and markdown tables for the terminal and for saved files.

The one table renderer of afbatch: the status view, the estimate, the CLI and the report use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def text_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    right: set[int] | None = None,
    *,
    left_headers: bool = False,
) -> str:
    """Aligned columns; numeric-looking columns (or those in `right`) align right.

    Headers align like their column, or all left with `left_headers` (the report's tables).
    """
    cells = [[str(h) for h in headers]]
    cells += [["" if v is None else _cell(str(v)) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    right = (
        right
        if right is not None
        else {
            i for i in range(len(headers)) if all(_numeric(r[i]) for r in cells[1:]) and cells[1:]
        }
    )
    lines = []
    for n, row in enumerate(cells):
        flush_right = right if n or not left_headers else set()
        lines.append(
            "  ".join(
                c.rjust(widths[i]) if i in flush_right else c.ljust(widths[i])
                for i, c in enumerate(row)
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    right: set[int] | None = None,
    *,
    escape: Callable[[str], str] | None = None,
) -> str:
    """A markdown table; `escape` makes header and cell texts safe (default: `|`, line breaks)."""
    escape = escape or _md
    right = (
        right
        if right is not None
        else {i for i in range(len(headers)) if rows and all(_numeric(str(r[i])) for r in rows)}
    )
    out = [
        "| " + " | ".join(escape(str(h)) for h in headers) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|",
    ]
    for r in rows:
        out.append("| " + " | ".join(escape("" if v is None else str(v)) for v in r) + " |")
    return "\n".join(out)


def _cell(text: str) -> str:
    """A cell is one line: a line break inside it would start a row that is not there."""
    return " ".join(text.splitlines()) if "\n" in text or "\r" in text else text


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _numeric(text: str) -> bool:
    t = text.replace(",", "").replace("$", "").replace("%", "").strip().split(" (")[0]
    if t[-1:] in ("k", "M", "B"):
        t = t[:-1]
    if not t or t in {"-", "—"}:
        return True
    try:
        float(t)
        return True
    except ValueError:
        return False


def usd(x: float) -> str:
    if x >= 100:
        return f"${x:,.0f}"
    return f"${x:,.2f}"


def tokens(x: float) -> str:
    x = float(x)
    if x >= 1e9:
        return f"{x / 1e9:.2f}B"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    return f"{x:,.0f}"
