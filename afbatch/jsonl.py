"""JSON Lines on the hot paths (results of 100k-row runs): orjson, falling back to the standard library."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

try:
    import orjson

    def loads(data: bytes | str) -> Any:
        return orjson.loads(data)

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj)

except ImportError:  # pragma: no cover - orjson is a dependency; this keeps a broken install usable

    def loads(data: bytes | str) -> Any:
        return json.loads(data)

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def read(data: bytes) -> list[Any]:
    """Every non-blank line, parsed."""
    return [loads(line) for line in data.splitlines() if line.strip()]


def write(objs: Iterable[Any]) -> bytes:
    return b"".join(dumps(o) + b"\n" for o in objs)
