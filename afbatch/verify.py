"""Checking a run's store, and repairing what can be repaired.

Every object the manifest points to is checked: the pinned inputs and job file, each shard's
request file (its sha256) and request ids, and each collected shard's results and verdicts files
(present, every line a result row, one row per request id in the shard's order, and the sha256 and
line count recorded when the file was written). `verify` returns the problems as Findings; only the
CLI prints them.

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
import hashlib
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from afbatch import jsonl
from afbatch import layout
from afbatch import manifest as mf
from afbatch.errors import DamagedStoreError, ProviderError
from afbatch.manifest import Manifest, Shard, ShardState
from afbatch.store import Store
from afbatch.types import RowStatus

if TYPE_CHECKING:
    from afbatch.runner import Run

_STATUSES = frozenset(s.value for s in RowStatus)

# How a finding can be repaired.
REBUILD = "rebuild"  # from other objects in the store: free
REFETCH = "refetch"  # from the provider, which may still keep the batch's results: free
REASK = (
    "reask"  # the lost answers are asked again as a new attempt: costs money, needs confirmation
)
NONE = "none"  # afbatch cannot repair it


@dataclass(frozen=True)
class Finding:
    key: str  # the store key of the damaged (or missing) object
    problem: str
    repair: str  # REBUILD | REFETCH | REASK | NONE
    shard: str | None = None
    advice: str = ""

    def line(self) -> str:
        return (
            f"{self.key}: {self.problem} — {self.advice}"
            if self.advice
            else f"{self.key}: {self.problem}"
        )


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
    n, total, loads, statuses = 0, len(ids), jsonl.loads, _STATUSES
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


# --- verify ------------------------------------------------------------------------------------


def verify(store: Store, run_id: str) -> list[Finding]:
    """Every problem with the objects the run's manifest points to (empty: the run is intact)."""
    m, _ = mf.load(store, run_id)
    out: list[Finding] = []
    for key in [m.job_key, *(p.key for p in m.inputs.values())]:
        if not store.exists(key):
            out.append(
                Finding(
                    key, "missing", NONE, advice="copy it back from a backup (the run needs it)"
                )
            )
    for pin in m.inputs.values():
        if store.exists(pin.key) and hashlib.sha256(store.read(pin.key)).hexdigest() != pin.sha256:
            out.append(
                Finding(
                    pin.key,
                    f"does not match its pinned sha256 {pin.sha256[:12]}…",
                    NONE,
                    advice=f"copy {pin.ref} back from a backup",
                )
            )
    for s in sorted(m.shards.values(), key=lambda s: s.id):
        out += _verify_shard(store, s)
    return out


def _verify_shard(store: Store, s: Shard) -> list[Finding]:
    out: list[Finding] = []
    collected = s.state == ShardState.COLLECTED
    if s.provider != "reuse" and s.sha256:  # reuse shards have no request file of their own
        problem = None
        if not store.exists(s.key):
            problem = "missing"
        elif _sha(store, s.key) != s.sha256:
            problem = "does not match the sha256 recorded when the shard was planned (edited?)"
        if problem:
            advice = (
                "not needed again (the shard is collected); restore it from a backup for the record"
                if collected
                else "the shard cannot be sent: restore it from a backup"
            )
            out.append(Finding(s.key, problem, NONE, s.id, advice))
    try:
        ids: list[str] | None = read_ids(store, s)
    except DamagedStoreError as e:
        ids = None
        fix = REBUILD if collected and _results_intact(store, s) else NONE
        advice = (
            "`afbatch verify --repair` rebuilds it from the intact results file"
            if fix == REBUILD
            else "restore it from a backup"
        )
        out.append(Finding(s.ids_key, _problem(e), fix, s.id, advice))
    if not collected or not s.results_key:
        return out
    if ids is not None and _results_intact(store, s) and _ids_in(store, s.results_key) != ids:
        # The results file is as written, so the ids file was edited (reordered or replaced ids).
        out.append(
            Finding(
                s.ids_key,
                f"does not list the ids of {s.results_key}, which is intact (edited?)",
                REBUILD,
                s.id,
                "`afbatch verify --repair` rebuilds it from the results file",
            )
        )
        ids = None
    results_ok = _check_file(
        store, s.results_key, ids, s.ids_key, s.results_sha256, s.results_lines
    )
    if results_ok is not None:
        fix, advice = _results_fix(s)
        out.append(Finding(s.results_key, results_ok, fix, s.id, advice))
    if s.verdicts_key:
        problem = _check_file(
            store, s.verdicts_key, ids, s.ids_key, s.verdicts_sha256, s.verdicts_lines
        )
        if problem is not None:
            fix, advice = (
                (REBUILD, "`afbatch verify --repair` rebuilds it from the results file")
                if results_ok is None
                else _results_fix(s)
            )
            out.append(Finding(s.verdicts_key, problem, fix, s.id, advice))
    return out


def _results_fix(s: Shard) -> tuple[str, str]:
    if s.batch_id and s.provider != "reuse":
        where = (
            "its on-demand parts in the store"
            if s.on_demand
            else f"the provider (batch {s.batch_id})"
        )
        return REFETCH, (
            f"`afbatch verify --repair` fetches it again from {where}; if that is gone too, it "
            "offers to ask the lost requests again (and says what that costs)"
        )
    return (
        REASK,
        "`afbatch verify --repair` offers to ask the lost requests again (and says what it costs)",
    )


def _check_file(
    store: Store, key: str, ids: list[str] | None, ids_key: str, sha: str | None, lines: int | None
) -> str | None:
    """The problem with a results/verdicts file, or None."""
    if not store.exists(key):
        return "missing"
    if ids is not None:
        try:
            for _ in checked_rows(store, key, ids, ids_key):
                pass
        except DamagedStoreError as e:
            return _problem(e)
    if sha is not None:
        got, n = digest(store, key)
        if lines is not None and n != lines:
            return f"{n} lines, {lines} were written: lines were lost or added"
        if got != sha:
            return "does not match the sha256 recorded when it was written (edited?)"
    return None


def _results_intact(store: Store, s: Shard) -> bool:
    """The results file matches what was written (only known when its sha256 was recorded)."""
    if not s.results_key or s.results_sha256 is None or not store.exists(s.results_key):
        return False
    got, n = digest(store, s.results_key)
    return got == s.results_sha256 and n == s.requests


def _ids_in(store: Store, key: str) -> list[str]:
    return [jsonl.loads(line)["id"] for line in store.lines(key) if not line.isspace()]


def _problem(e: DamagedStoreError) -> str:
    """The problem part of a damaged() message."""
    return str(e).split(": ", 1)[1].split(" — ", 1)[0]


def _sha(store: Store, key: str) -> str:
    h = hashlib.sha256()
    for line in store.lines(key):
        h.update(line)
    return h.hexdigest()


# --- repair ------------------------------------------------------------------------------------


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
    ids = _ids_in(run.store, s.results_key)
    key = _new_key(run.store, s.ids_key)
    run.store.write(key, ("\n".join(ids) + "\n").encode())
    _point(run, s.id, "ids_key", s.ids_key, key)
    return f"repaired {s.ids_key}: rebuilt from {s.results_key} → {key}"


def _rebuild_verdicts(run: Run, s: Shard) -> str:
    from afbatch import collect  # it reads through this module

    assert s.results_key and s.verdicts_key
    ids = read_ids(run.store, s)
    rows = (
        dict((k, v) for k, v in d.items() if k not in ("text", "texts"))
        for d in checked_rows(run.store, s.results_key, ids, s.ids_key)
    )
    key = _new_key(run.store, s.verdicts_key)
    sha, n = collect.write_lines(run, key, rows)
    _point(run, s.id, "verdicts_key", s.verdicts_key, key, verdicts_sha256=sha, verdicts_lines=n)
    return f"repaired {s.verdicts_key}: rebuilt from {s.results_key} → {key}"


def _repair_results(run: Run, s: Shard, confirm: Callable[[Reask], bool]) -> str:
    from afbatch import collect  # it reads through this module

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
    wanted, out = set(ids), {}
    try:
        for line in store.lines(key):
            try:
                d = jsonl.loads(line)
            except ValueError:
                continue
            if type(d) is dict and d.get("id") in wanted and d.get("status") in _STATUSES:
                out.setdefault(d["id"], d)
    except KeyError:
        pass
    return out


def _write_results(run: Run, s: Shard, rows: list[dict[str, Any]], how: str) -> str:
    from afbatch import collect  # it reads through this module

    assert s.results_key
    key = _new_key(run.store, s.results_key)
    sha, n = collect.write_lines(run, key, rows)
    more: dict[str, Any] = {"results_sha256": sha, "results_lines": n}
    also: tuple[str, ...] = ()
    if s.verdicts_key:
        vkey = _new_key(run.store, s.verdicts_key)
        vsha, vn = collect.write_lines(run, 
            vkey, ({k: v for k, v in d.items() if k not in ("text", "texts")} for d in rows)
        )
        more.update(verdicts_key=vkey, verdicts_sha256=vsha, verdicts_lines=vn)
        also = (s.verdicts_key,)
    if not _point(run, s.id, "results_key", s.results_key, key, also, **more):
        return f"not repaired {s.results_key}: another worker repaired it meanwhile"
    return f"repaired {s.results_key}: {how} → {key}"
