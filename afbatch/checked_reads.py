"""Checked reads of a run's stored files: a shard's request ids, and the rows of its results and
verdicts files, each checked against the shard (a damaged file raises DamagedStoreError naming its
key, never a KeyError, and a file that lost lines is never read as unanswered requests)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

from afbatch import jsonl, layout
from afbatch.errors import DamagedStoreError
from afbatch.manifest import Shard
from afbatch.store import Store
from afbatch.types import RowStatus

STATUSES = frozenset(s.value for s in RowStatus)  # the statuses a result row can have


def damaged(store: Store, key: str, problem: str) -> DamagedStoreError:
    run_id = layout.run_of(key) or "RUN"
    return DamagedStoreError(
        f"{store.url}/{key}: {problem} — the store was damaged; `afbatch verify {run_id}` "
        f"lists every problem, `afbatch verify {run_id} --repair` restores what it can"
    )


def read_ids(store: Store, shard: Shard) -> list[str]:
    """A shard's request ids, checked against the request count the manifest recorded."""
    try:
        ids = store.read(shard.ids_key).decode("utf-8", "replace").split()
    except KeyError:
        raise damaged(
            store, shard.ids_key, "missing (the request ids of shard " + shard.id + ")"
        ) from None
    if len(ids) != shard.requests or len(set(ids)) != len(ids):
        raise damaged(
            store,
            shard.ids_key,
            f"{len(ids)} ids ({len(set(ids))} distinct) for the "
            f"{shard.requests} requests of shard {shard.id}",
        )
    return ids


def checked_rows(store: Store, key: str, ids: list[str], ids_key: str) -> Iterator[dict[str, Any]]:
    """The result rows of a results or verdicts file, one per request id in `ids` order (as collect
    writes them). A missing file, a line that is not a result row, an id out of place, or a line too
    many or too few raises DamagedStoreError naming the key: a results file that lost lines is never
    read as unanswered requests."""
    n, total, loads, statuses = 0, len(ids), jsonl.loads, STATUSES
    lines = store.lines(key)
    try:
        first = next(lines, None)  # a missing object raises here
    except KeyError:
        raise damaged(store, key, "missing") from None
    for line in itertools.chain(() if first is None else (first,), lines):
        if line.isspace():
            continue
        try:
            d = loads(line)
        except ValueError:
            raise damaged(store, key, f"line {n + 1} is not JSON (cut off, or edited)") from None
        if n >= total:
            raise damaged(store, key, f"more lines than the {total} request ids in {ids_key}")
        if type(d) is not dict or d.get("status") not in statuses:
            raise damaged(store, key, f"line {n + 1} is not a result row")
        if d.get("id") != ids[n]:
            raise damaged(
                store,
                key,
                f"line {n + 1} is for {d.get('id')!r}, but {ids_key} has {ids[n]!r} there",
            )
        n += 1
        yield d
    if n != total:
        raise damaged(
            store, key, f"{n} rows for the {total} request ids in {ids_key}: lines were lost"
        )


def digest(store: Store, key: str) -> tuple[str, int]:
    """sha256 and line count of a stored JSON-lines file, streamed."""
    h, n = hashlib.sha256(), 0
    for line in store.lines(key):
        h.update(line)
        n += not line.isspace()
    return h.hexdigest(), n


def ids_in(store: Store, key: str) -> list[str]:
    """The request ids of a results file, in line order (not checked: for repairs)."""
    return [jsonl.loads(line)["id"] for line in store.lines(key) if not line.isspace()]
