"""Repairing a damaged run store (`afbatch verify --repair`), from what `verify` found.

Repair never overwrites: results are append-only, so a repaired file is written under a new key, the
shard points to it by compare-and-swap, and the damaged file stays in the store, named in
`Shard.replaced`. In order of preference a damaged file is rebuilt from what the store still holds
(verdicts from the results, request ids from intact results), fetched again from the provider
(OpenAI and Anthropic keep batch results for about 29 days), or, when neither works, the answers
that are lost are asked again as a new attempt: only after saying how many and what that costs, and
with the caller's confirmation.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from afbatch import collect, jsonl
from afbatch.checked_reads import STATUSES, checked_rows, ids_in, read_ids
from afbatch.errors import DamagedStoreError, ProviderError
from afbatch.manifest import Manifest, Shard
from afbatch.store import Store
from afbatch.types import RowStatus
from afbatch.verify import NONE, Finding

if TYPE_CHECKING:
    from afbatch.runner import Run


@dataclass(frozen=True)
class Reask:
    shard: str
    lost: int
    requests: int
    about_usd: float | None  # None: not known here (answers reused from another run)
    at_most_usd: float | None
    reason: str

    def question(self) -> str:
        if self.about_usd is None or self.at_most_usd is None:
            cost = (
                "they were reused from another run: `afbatch run` reuses them again where "
                "that run still has them and pays for the others (cost not known here)"
            )
        else:
            cost = (
                f"asking them again costs about ${self.about_usd:,.2f} "
                f"(at most ${self.at_most_usd:,.2f})"
            )
        return (
            f"shard {self.shard}: {self.lost} of {self.requests} answers cannot be restored "
            f"({self.reason}); {cost}. Keep the readable rows and ask the lost ones again?"
        )


def repair(run: Run, findings: list[Finding], confirm: Callable[[Reask], bool]) -> list[str]:
    """Repair what `findings` (from verify) allow; returns what was (not) done, one line each
    ("repaired KEY: …" or "not repaired KEY: …"). Paid re-asks happen only when `confirm` says
    yes; the next `afbatch run` then sends them."""
    done: list[str] = []
    by_shard: dict[str, list[Finding]] = collections.defaultdict(list)
    for f in findings:
        if f.shard and f.repair != NONE:
            by_shard[f.shard].append(f)
    for sid, fs in sorted(by_shard.items()):
        s = run.manifest().shards[sid]
        keys = {f.key for f in fs}
        if s.ids_key in keys:
            done.append(_rebuild_ids(run, s))
            s = run.manifest().shards[sid]
        if s.results_key in keys:
            done.append(_repair_results(run, s, confirm))
        elif s.verdicts_key in keys:
            done.append(_rebuild_verdicts(run, s))
    run.forget()
    return [d for d in done if d]


def _new_key(store: Store, key: str) -> str:
    """A key beside `key` that is not taken: `<name>.repair<n><ext>`."""
    stem, dot, ext = key.rpartition("/")[2].partition(".")
    folder = key.rpartition("/")[0]
    n = 1
    while store.exists(f"{folder}/{stem}.repair{n}{dot}{ext}"):
        n += 1
    return f"{folder}/{stem}.repair{n}{dot}{ext}"


def _point(
    run: Run, sid: str, field: str, old: str, new: str, also: tuple[str, ...] = (), **more: Any
) -> bool:
    """Point shard `sid`'s `field` from `old` to `new` by compare-and-swap (unless another worker
    did), naming the replaced files (`old`, and `also`) in the shard; they stay in the store."""

    def swap(m: Manifest) -> bool:
        x = m.shards[sid]
        if getattr(x, field) != old:
            return False
        setattr(x, field, new)
        for k, v in more.items():
            setattr(x, k, v)
        x.replaced = [*x.replaced, old, *also]
        return True

    return bool(run.update(swap))


def _rebuild_ids(run: Run, s: Shard) -> str:
    assert s.results_key
    ids = ids_in(run.store, s.results_key)
    key = _new_key(run.store, s.ids_key)
    run.store.write(key, ("\n".join(ids) + "\n").encode())
    _point(run, s.id, "ids_key", s.ids_key, key)
    return f"repaired {s.ids_key}: rebuilt from {s.results_key} → {key}"


def _rebuild_verdicts(run: Run, s: Shard) -> str:
    assert s.results_key and s.verdicts_key
    ids = read_ids(run.store, s)
    rows = (
        {k: v for k, v in d.items() if k not in ("text", "texts")}
        for d in checked_rows(run.store, s.results_key, ids, s.ids_key)
    )
    key = _new_key(run.store, s.verdicts_key)
    sha, n = collect.write_lines(run, key, rows)
    _point(run, s.id, "verdicts_key", s.verdicts_key, key, verdicts_sha256=sha, verdicts_lines=n)
    return f"repaired {s.verdicts_key}: rebuilt from {s.results_key} → {key}"


def _repair_results(run: Run, s: Shard, confirm: Callable[[Reask], bool]) -> str:
    assert s.results_key
    ids = read_ids(run.store, s)
    reason = "no batch to fetch them from"
    if s.batch_id and s.provider != "reuse":
        try:
            rows = collect.fetch(run, s)  # the provider's lines, parsed as collect did
        except ProviderError as e:
            reason = f"the provider no longer has them: {e}"
        except DamagedStoreError as e:  # on-demand answers are kept in the store, in parts
            reason = "its on-demand parts are damaged too: " + str(e).split(" — ", 1)[0]
        else:
            counts = dict(collections.Counter(r.status.value for r in rows))
            if counts == s.counts:  # what the provider reported when the shard was collected
                return _write_results(
                    run, s, [r.to_json() for r in rows], "fetched again from the provider"
                )
            reason = f"the provider's copy differs from what was collected ({counts} vs {s.counts})"
    kept = _salvage(run.store, s.results_key, ids)
    lost = [rid for rid in ids if rid not in kept]
    if not lost:  # every row reads, yet the file is not what was written: which rows changed?
        return (
            f"not repaired {s.results_key}: every row reads but the file differs from what "
            f"was written ({reason}); restore it from a backup"
        )
    # About: what the shard was billed per row; at most: its worst-case bound per row.
    share = len(lost) / max(1, s.requests)
    about, at_most = (
        (None, None) if s.provider == "reuse" else (s.cost_usd * share, s.bound_usd * share)
    )
    ask = Reask(s.id, len(lost), s.requests, about, at_most, reason)
    if not confirm(ask):
        return f"not repaired {s.results_key}: {len(lost)} answers would have to be asked again"
    missing = {
        "status": RowStatus.MISSING.value,
        "error_kind": "missing",
        "error_message": "lost from the store (damaged results file): asked again",
    }
    rows_out = [kept.get(rid) or {"id": rid, **missing} for rid in ids]
    return _write_results(
        run,
        s,
        rows_out,
        f"{len(ids) - len(lost)} rows kept, {len(lost)} to ask again (`afbatch run` sends them)",
    )


def _salvage(store: Store, key: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The rows of a damaged results file that are still readable and belong to the shard."""
    wanted = set(ids)
    out: dict[str, dict[str, Any]] = {}
    try:
        for line in store.lines(key):
            try:
                d = jsonl.loads(line)
            except ValueError:
                continue
            if type(d) is dict and d.get("id") in wanted and d.get("status") in STATUSES:
                out.setdefault(d["id"], d)
    except KeyError:
        pass
    return out


def _write_results(run: Run, s: Shard, rows: list[dict[str, Any]], how: str) -> str:
    assert s.results_key
    key = _new_key(run.store, s.results_key)
    sha, n = collect.write_lines(run, key, rows)
    more: dict[str, Any] = {"results_sha256": sha, "results_lines": n}
    also: tuple[str, ...] = ()
    if s.verdicts_key:
        vkey = _new_key(run.store, s.verdicts_key)
        vsha, vn = collect.write_lines(
            run, vkey, ({k: v for k, v in d.items() if k not in ("text", "texts")} for d in rows)
        )
        more.update(verdicts_key=vkey, verdicts_sha256=vsha, verdicts_lines=vn)
        also = (s.verdicts_key,)
    if not _point(run, s.id, "results_key", s.results_key, key, also, **more):
        return f"not repaired {s.results_key}: another worker repaired it meanwhile"
    return f"repaired {s.results_key}: {how} → {key}"
