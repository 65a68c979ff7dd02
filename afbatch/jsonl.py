"""JSON Lines on the hot paths (results of 100k-row runs): orjson, falling back to the standard
library."""

# Not the `jsonlines` package: its reader is slower here (DESIGN.md, "Decisions worth knowing").

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _clean(obj: Any) -> Any:
    """Lone surrogates (say, an emoji cut in half by max_tokens, escaped as \\ud83d) become U+FFFD:
    no UTF-8 file or Arrow column can hold them, and one odd row must not stop a collect."""
    if isinstance(obj, str):
        return _LONE_SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, dict):
        return {_clean(k): _clean(v) for k, v in obj.items()}
    return obj


def _loads_lenient(data: bytes | str) -> Any:
    return _clean(json.loads(data))  # accepts lone surrogate escapes, which orjson rejects


try:
    import orjson

    def loads(data: bytes | str) -> Any:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            return _loads_lenient(
                data
            )  # still malformed JSON: the standard library's error is raised

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

    def dumps_line(obj: Any) -> bytes:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)

except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a broken install usable

    def loads(data: bytes | str) -> Any:
        return _loads_lenient(data)

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

    def dumps_line(obj: Any) -> bytes:
        return dumps(obj) + b"\n"


def read(data: bytes) -> list[Any]:
    """Every non-blank line, parsed."""
    return [loads(line) for line in data.splitlines() if line.strip()]


def write(objs: Iterable[Any]) -> bytes:
    return b"".join(dumps(o) + b"\n" for o in objs)
