"""A run: one job's experiment in a store, moved by small idempotent steps, resumable after a crash.

`Run` is the facade the CLI, verify, the report and the tests use. Its parts, one concern each:
opening.py creates and reopens runs; state.py derives the experiment state once per step (read by
the planner, `status` and the report); planner.py turns what is wanted into shards; lifecycle.py
and collect.py move shards through their manifest states at the provider (submit, reconcile,
poll, collect, cancel); layout.py names every store key. The loop is here: step, back off, stop
when every row is final, the budget is spent, or the run was cancelled elsewhere; stalled.py
decides what a step that changed nothing, with nothing at the provider, leads to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from afbatch import collect, layout, lifecycle, opening, planner, stalled
from afbatch import manifest as mf
from afbatch.checked_reads import checked_rows, read_ids
from afbatch.compile import conversations
from afbatch.errors import CancelledError, RunError
from afbatch.grid import Grid
from afbatch.ledger import Ledger, bulk, is_judged, kept, share_verdict
from afbatch.lifecycle import worker_id
from afbatch.manifest import IN_FLIGHT, Manifest, Shard, ShardState
from afbatch.opening import check_ready, run_id_for
from afbatch.pricing import PriceTable
from afbatch.providers import Provider, get_provider
from afbatch.spec import ModelSpec
from afbatch.state import Deriver, ExperimentState, ModelProgress, shard_key
from afbatch.store import Store
from afbatch.types import Conversation, Result

__all__ = ["ModelProgress", "Run", "Status", "check_ready", "run_id_for"]

T = TypeVar("T")


@dataclass
class Status:
    run_id: str
    progress: list[ModelProgress]
    shards: dict[str, int]
    spent_usd: float
    estimate_usd: float | None
    done: bool
    cancelled: bool
    shard_rows: list[dict[str, Any]] = field(default_factory=list)


class Run:
    """One run in a store. Create it from a job (`Run.create`) or reopen it by id (`Run.open`)."""

    def __init__(
        self, store: Store, run_id: str, grid: Grid, prices: PriceTable, *, fresh: bool = False
    ):
        self.store, self.run_id, self.grid, self.prices, self.fresh = (
            store,
            run_id,
            grid,
            prices,
            fresh,
        )
        self.job = grid.job
        self.owner = worker_id()
        self.specs: dict[str, ModelSpec] = {m.name: m for m in self.job.models}
        if self.job.judge:
            self.specs[self.job.judge.model.name] = self.job.judge.model
            if self.job.judge.af_model:
                self.specs[self.job.judge.af_model.name] = self.job.judge.af_model
        self._providers: dict[str, Provider] = {}
        self._ids: dict[str, list[str]] = {}
        self._results: dict[str, list[Result]] = {}
        self._verdicts: dict[
            tuple[Any, ...], dict[str, Any]
        ] = {}  # equal judge verdicts share one dict
        self._convs: dict[str, list[Conversation]] = {}
        # The planner's index of earlier runs' answers, built once: answered id → (run, results
        # key, whether that run sent the prefill: model turns only)
        self.reuse_index: dict[str, tuple[str, str, bool | None]] | None = None
        self._state: ExperimentState | None = None
        self._deriver = Deriver(grid, self.convs)
        self.log: Callable[[str], None] = lambda msg: None

    def check_ready(self) -> None:
        """Every model's credentials and settings are in place (no network): fail before anything is
        sent."""
        for label in self.specs:
            self.provider(label).ready()

    # --- helpers ---------------------------------------------------------------------------

    def manifest(self) -> Manifest:
        return mf.load(self.store, self.run_id)[0]

    def update(self, mutate: Callable[[Manifest], T]) -> T:
        return mf.update(self.store, self.run_id, mutate)

    def provider(self, label: str) -> Provider:
        if label not in self._providers:
            self._providers[label] = get_provider(self.specs[label])
        return self._providers[label]

    def shard_ids(self, shard: Shard) -> list[str]:
        if shard.id not in self._ids:
            self._ids[shard.id] = read_ids(self.store, shard)
        return self._ids[shard.id]

    def shard_results(self, shard: Shard) -> list[Result]:
        """A collected shard's rows as the ledger keeps them (see ledger.kept), remembered for the
        next step."""
        if shard.id not in self._results:
            assert shard.results_key
            # Read checked: a damaged file raises, naming its key; lost lines never read as unasked.
            ids = self._ids.get(shard.id) or read_ids(self.store, shard)  # not kept: 2M vote ids
            if shard.verdicts_key:  # judge rows without their texts: only the verdicts to share
                from_json, verdicts = Result.from_json, self._verdicts
                rows = []
                for d in checked_rows(self.store, shard.verdicts_key, ids, shard.ids_key):
                    v = d.get("verdict")
                    if v is not None:
                        d["verdict"] = share_verdict(verdicts, v)
                    rows.append(from_json(d))
            else:
                got = checked_rows(self.store, shard.results_key, ids, shard.ids_key)
                rows = kept(
                    [Result.from_json(d) for d in got], is_judged(shard.stage), self._verdicts
                )
            self._results[shard.id] = rows
        return self._results[shard.id]

    def remember_ids(self, sid: str, ids: list[str]) -> None:
        """A shard's ids, as the planner just wrote them."""
        self._ids[sid] = ids

    def remember_results(self, shard: Shard, results: list[Result]) -> None:
        """A shard's rows, as collect just wrote them, kept as the ledger reads them."""
        self._results[shard.id] = kept(results, is_judged(shard.stage), self._verdicts)

    def forget(self) -> None:
        """Let go of what was read from the store (after a repair changed it)."""
        self._results.clear()
        self._ids.clear()
        self._state = None

    def convs(self, model: ModelSpec) -> list[Conversation]:
        """A model's conversations; their ids are stored with the run once, so they never change
        under it."""
        if model.name not in self._convs:
            key = layout.conversation_ids_key(self.run_id, model.name)
            try:
                known: list[str] | None = self.store.read(key).decode().split()
            except KeyError:
                known = None
            expected = (
                len(self.job.variants)
                * len(self.job.prompts.tiers)
                * len(self.grid.dataset.rows)
                * self.job.conversations_per_cell(model)
            )
            if known is not None and len(known) != expected:
                raise RunError(
                    f"run {self.run_id}: stored conversation ids of {model.name} do "
                    "not match the grid — the store was modified"
                )
            convs = list(conversations(self.grid, model, known))
            if known is None:
                self.store.write(key, ("\n".join(c.id for c in convs) + "\n").encode())
            self._convs[model.name] = convs
        return self._convs[model.name]

    def state(self, m: Manifest | None = None, *, for_report: bool = False) -> ExperimentState:
        """The experiment state `m` describes, derived once while its shard states stay the same:
        plan(), status() and the report of one loop step share it (100k conversations derived once).
        A reader that drains it (the report) uses it up: the run then lets go of it. `for_report`:
        keep every conversation's state if it is derived now, for the report that drains it next."""
        m = m or self.manifest()
        key = shard_key(m)
        st = self._state
        if st is None or st.key != key or st.drained:
            st = self._deriver.derive(m, self._build_ledger(m), keep_states=for_report)
            st.on_drain = self._drained
            self._state = st
        return st

    def _drained(self) -> None:
        # The rows' texts now go to the report's table: nothing here may keep them alive.
        self._state = None
        self._results.clear()

    def _build_ledger(self, m: Manifest) -> Ledger:
        ledger = Ledger()
        with bulk():
            for shard in sorted(m.shards.values(), key=lambda s: (s.collected_at or 0, s.id)):
                if shard.state == ShardState.COLLECTED:
                    ledger.add(shard.id, self.shard_results(shard), is_judged(shard.stage))
                elif shard.state in IN_FLIGHT:
                    ledger.in_flight.update(self.shard_ids(shard))
        return ledger

    def status(self) -> Status:
        m = self.manifest()
        progress = self.state(m).progress
        shards: dict[str, int] = {}
        for s in m.shards.values():
            shards[s.state.value] = shards.get(s.state.value, 0) + 1
        busy = any(s.state in IN_FLIGHT for s in m.shards.values())
        done = (
            not busy
            and all(p.waiting == 0 and p.pending == 0 for p in progress)
            and not m.cancelled
        )
        est = (m.estimate.get("totals") or {}).get("cost_batch_cached_usd")
        rows = [
            {
                "shard": s.id,
                "model": s.model,
                "stage": s.stage,
                "round": s.round,
                "attempt": s.attempt,
                "state": s.state.value,
                "provider_status": s.provider_status or s.status,
                "batch_id": s.batch_id,
                "requests": s.requests,
                "counts": s.counts,
                "cost_usd": round(s.cost_usd, 6),
                "message": s.message,
            }
            for s in sorted(
                m.shards.values(), key=lambda s: (s.model, s.stage, s.round, s.attempt, s.id)
            )
        ]
        return Status(self.run_id, progress, shards, m.spent_usd(), est, done, m.cancelled, rows)

    def put_file(self, key: str, path: str) -> None:
        self.store.put_file(key, path)

    # --- opening (opening.py) ----------------------------------------------------------------

    @classmethod
    def create(
        cls,
        store: Store,
        job_path: str,
        *,
        offline: bool = False,
        prices_file: str | None = None,
        estimate: dict[str, Any] | None = None,
        max_cost: float | None = None,
        fresh: bool = False,
    ) -> tuple[Run, bool]:
        """Create the run of a job, or open it if this job (same content, same inputs) already has
        one."""
        made, created = opening.create(
            store,
            job_path,
            offline=offline,
            prices_file=prices_file,
            estimate=estimate,
            max_cost=max_cost,
        )
        return cls(store, made.run_id, made.grid, made.prices, fresh=fresh), created

    @classmethod
    def open(
        cls, store: Store, run_id: str, *, prices_file: str | None = None, fresh: bool = False
    ) -> Run:
        """Reopen a run from its manifest and the inputs pinned in the store (no job file
        needed)."""
        made = opening.open_run(store, run_id, prices_file=prices_file)
        return cls(store, run_id, made.grid, made.prices, fresh=fresh)

    # --- the planner (planner.py) and the shard lifecycle (lifecycle.py, collect.py) ------------

    def plan(self) -> int:
        """Write shards for every needed request; add those no other worker added. Returns how
        many."""
        return planner.plan(self)

    def submit_pending(self, max_cost: float | None = None) -> int:
        return lifecycle.submit_pending(self, max_cost)

    def reconcile(self) -> int:
        """Shards left `submitting` by a dead worker: adopt the provider's batch, or send again."""
        return lifecycle.reconcile(self)

    def poll(self) -> int:
        return lifecycle.poll(self)

    def collect(self) -> int:
        return collect.collect(self)

    def cancel(self) -> list[str]:
        return lifecycle.cancel(self)

    def resume(self) -> None:
        """A cancelled run that is run again continues; its cancelled rows are retried."""

        def clear(m: Manifest) -> None:
            m.cancelled = False

        if self.manifest().cancelled:
            self.update(clear)

    # --- the loop ----------------------------------------------------------------------------

    def step(self, max_cost: float | None = None) -> bool:
        """One pass: reconcile, poll, collect, plan, submit. True when something changed."""
        if max_cost is not None and self.manifest().max_cost != max_cost:  # plan() cuts by it
            self.update(lambda m: setattr(m, "max_cost", max_cost))
        changed = self.reconcile()
        changed += self.poll()
        changed += self.collect()
        changed += self.plan()
        changed += self.submit_pending(max_cost)
        return bool(changed)

    def run(
        self,
        *,
        max_cost: float | None = None,
        poll_interval: float = 5.0,
        max_interval: float = 60.0,
        on_progress: Callable[[Status], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Status:
        """Until every row is final: step, report progress, back off while nothing changes."""
        self.resume()
        interval = poll_interval
        while True:
            changed = self.step(max_cost)
            st = self.status()
            if on_progress:
                on_progress(st)
            if st.done:
                self.update(lambda m: setattr(m, "finished_at", m.finished_at or time.time()))
                return st
            if st.cancelled:
                raise CancelledError(
                    f"run {self.run_id} was cancelled by `afbatch cancel` "
                    f"(another process); its batches are being stopped — "
                    f"`afbatch run {self.run_id}` resumes it"
                )
            m = self.manifest()
            if not changed and not any(s.state in mf.SENT for s in m.shards.values()):
                stalled.stop_or_replan(self, m, max_cost)
            interval = poll_interval if changed else min(interval * 1.5, max_interval)
            sleep(interval)
