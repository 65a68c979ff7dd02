"""TOML text: parsing with a nesting-depth guard, and one-line error messages that name the
file, the line of the key and how to fix it (job files and price files)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from afbatch.errors import AfbatchError

# tomllib recurses once per level of nesting: a file nested thousands deep would exhaust the stack.
MAX_TOML_DEPTH = 50


def load_toml(text: str, where: str | Path, error: type[AfbatchError]) -> dict[str, Any]:
    """Parse TOML, raising `error` with one line naming the file (and the line when known)."""
    line = _too_deep(text)
    if line is not None:
        raise error(
            f"{where}:{line}: arrays or inline tables nested more than {MAX_TOML_DEPTH} "
            "deep — flatten the value"
        )
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise error(
            f"{where}: invalid TOML: {e} — check quoting, brackets and `key = value` syntax"
        ) from None
    except RecursionError:  # the scan above should make this unreachable
        raise error(f"{where}: invalid TOML: nested too deeply — flatten the value") from None


def _too_deep(text: str) -> int | None:
    """The line where brackets or braces outside strings and comments nest too deep."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                if c == '"' and text[j] == "\\":
                    j += 1  # an escaped character
                elif text[j] == "\n":
                    if len(quote) == 1:
                        break  # an unterminated one-line string: tomllib will say so
                    line += 1
                j += 1
            i = j + len(quote)
            continue
        elif c in "[{":
            depth += 1
            if depth > MAX_TOML_DEPTH:
                return line
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return None


# --- one-line validation errors -------------------------------------------------------------


def format_validation_error(path: Path, text: str, err: ValidationError) -> str:
    errors = err.errors()
    first = errors[0]
    loc = tuple(first["loc"])
    key = loc_str(loc)
    line = toml_line_of(text, loc)
    where = f"{path}:{line}" if line else str(path)
    more = (
        f" (+{len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
        if len(errors) > 1
        else ""
    )
    return f"{where}: {key or 'job'}: {_explain(first)}{more}"


def place(path: Path, text: str, loc: tuple[Any, ...]) -> str:
    """`file:line: key` for a message about the job's key at `loc` (the line when it is found)."""
    line = toml_line_of(text, loc)
    return f"{path}:{line}: {loc_str(loc)}" if line else f"{path}: {loc_str(loc)}"


def loc_str(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "literal[", "list[", "dict[")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def _explain(e: ErrorDetails) -> str:
    kind = e["type"]
    msg = e["msg"]
    if kind == "extra_forbidden":
        return "unknown key — remove it or fix its spelling (`afbatch schema` lists every key)"
    if kind == "missing":
        return "required key is missing — add it (`afbatch schema` shows its type)"
    if kind == "literal_error":
        return f"{msg.replace('Input should be', 'must be')}, got {e.get('input')!r}"
    if kind == "string_pattern_mismatch":
        pattern = e.get("ctx", {}).get("pattern", "")
        return (
            f"{e.get('input')!r} does not match {pattern} — use letters, digits, '-', '_' "
            "(labels may add '.')"
        )
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{msg} (got {e.get('input')!r})"


def toml_line_of(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort 1-based line of the key at `loc` (e.g. ('models', 2, 'max_tokens'))."""
    keys = [
        p
        for p in loc
        if isinstance(p, (str, int)) and not str(p).startswith(("function-", "literal["))
    ]
    table: list[Any] = []
    counters: dict[tuple[Any, ...], int] = {}
    best: tuple[int, int] | None = None  # (matched depth, line)
    header_re = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    key_re = re.compile(r"^\s*([A-Za-z0-9_\-\"'.]+)\s*=")
    for n, raw in enumerate(text.splitlines(), start=1):
        m = header_re.match(raw)
        if m:
            parts = [s.strip().strip("\"'") for s in m.group(2).split(".")]
            if m.group(1) == "[[":
                k = tuple(parts)
                counters[k] = counters.get(k, -1) + 1
                table = [*parts[:-1], parts[-1], counters[k]]
            else:
                table = _with_indices(parts, counters)
            path = table
        else:
            km = key_re.match(raw)
            if not km:
                continue
            path = [*table, *[s.strip("\"'") for s in km.group(1).split(".")]]
        depth = _match_depth(path, keys)
        if depth and (best is None or depth > best[0]):
            best = (depth, n)
    return best[1] if best else None


def _with_indices(parts: list[str], counters: dict[tuple[Any, ...], int]) -> list[Any]:
    """[judge.model] stays as is; [models.x] under an array of tables gets the current index."""
    out: list[Any] = []
    for i, part in enumerate(parts):
        out.append(part)
        key = tuple(parts[: i + 1])
        if key in counters and i < len(parts) - 1:
            out.append(counters[key])
    return out


def _match_depth(path: list[Any], keys: list[Any]) -> int:
    if len(path) > len(keys):
        return 0
    for a, b in zip(path, keys):
        if a != b:
            return 0
    return len(path)
