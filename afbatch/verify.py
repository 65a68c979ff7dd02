"""Checking a run's store (`afbatch verify`).

Every object the manifest points to is checked: the pinned inputs and job file, each shard's
request file (its sha256) and request ids, and each collected shard's results and verdicts files
(present, every line a result row, one row per request id in the shard's order, and the sha256 and
line count recorded when the file was written). `verify` returns the problems as Findings, each
saying how it can be repaired (`repair.py`); only the CLI prints them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from afbatch import manifest as mf
from afbatch.checked_reads import checked_rows, digest, ids_in, read_ids
from afbatch.errors import DamagedStoreError
from afbatch.manifest import Shard, ShardState
from afbatch.store import Store

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
    if ids is not None and _results_intact(store, s) and ids_in(store, s.results_key) != ids:
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


def _problem(e: DamagedStoreError) -> str:
    """The problem part of a damaged() message."""
    return str(e).split(": ", 1)[1].split(" — ", 1)[0]


def _sha(store: Store, key: str) -> str:
    h = hashlib.sha256()
    for line in store.lines(key):
        h.update(line)
    return h.hexdigest()
