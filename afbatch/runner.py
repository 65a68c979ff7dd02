"""Submit, poll and collect: small idempotent steps over a run's manifest, resumable after any crash.

Every step reads the latest manifest, does one provider call or store write, and records its
outcome by compare-and-swap before the next. Before a batch is created, its shard is marked
`submitting` with an idempotency token; a shard found `submitting` after a crash or a failed create
is reconciled with the provider (OpenAI: batch metadata; Anthropic: the batch created after the
intent whose results are exactly the shard's request ids; Bedrock: clientRequestToken / job name)
before anything is created again. While the provider cannot tell yet (an Anthropic candidate still
processing), the shard stays `submitting` and is asked about again: never adopted, never resent.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import signal
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afbatch import jsonl, layout
from afbatch import manifest as mf
from afbatch.compile import (CostCap, Grid, check_batch_minimums, conversations, least_requests,
                             load_grid, prefill_decision, render_lines, shard_limits,
                             write_shards)
from afbatch.datasets import Source, read_source, sha256_bytes
from afbatch.errors import (BudgetError, CancelledError, DamagedStoreError, InputError,
                            ProviderError, RunError)
from afbatch.ids import check as check_id
from afbatch.ids import turn_of
from afbatch.judge import votes_verdict
from afbatch.judge_templates import refused
from afbatch.ledger import Ledger, bulk, is_judged, kept, settles, share_verdict
from afbatch.manifest import IN_FLIGHT, InputPin, Manifest, Shard, ShardState
from afbatch.pricing import PriceTable, load_prices
from afbatch.providers import BatchStatus, Found, Provider, get_provider
from afbatch.redact import redact
from afbatch.spec import Job, ModelSpec, load_job, parse_job
from afbatch.state import Deriver, ExperimentState, ModelProgress, shard_key
from afbatch.store import Store
from afbatch.types import STAGE_AF, STAGE_COMPLIANCE, STAGE_GENERATE, Conversation, Request, Result, RowStatus, Usage
from afbatch.verify import checked_rows, damaged, read_ids

LEASE_SECONDS = float(os.environ.get("AFBATCH_LEASE_SECONDS", "600"))
# After a crash, wait this long after the recorded intent before concluding nothing was created:
# a create request that reached the provider just before the crash may still be in progress there.
RECONCILE_GRACE_SECONDS = float(os.environ.get("AFBATCH_RECONCILE_GRACE_SECONDS", "20"))
MAX_SUBMIT_ERRORS = 5
# Under --max-cost, a new shard's cost bound is at most this share of what is left to spend, so
# batches can be in flight side by side and the last ones still fit once the earlier ones billed.
PACE_PARTS = 4
ON_DEMAND_CHUNK = 25


def _crashpoint(name: str) -> None:
    """Test hook: AFBATCH_CRASH_AT=<name>[:<n>] kills this process (SIGKILL) the n-th time it passes <name>."""
    spec = os.environ.get("AFBATCH_CRASH_AT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _CRASH_COUNTS[name] = _CRASH_COUNTS.get(name, 0) + 1
    if _CRASH_COUNTS[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_CRASH_COUNTS: dict[str, int] = {}


def _proc_start(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except OSError:
        return "?"


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_proc_start(os.getpid())}"


def owner_alive(owner: str | None) -> bool:
    """True unless the owner is a process on this host that is gone. Other hosts: assume alive (the lease decides)."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return _proc_start(int(pid)) == start


def run_id_for(grid: Grid) -> str:
    pins = {k: v["sha256"] for k, v in grid.inputs.items()}
    digest = hashlib.sha256((grid.loaded.fingerprint + json.dumps(pins, sort_keys=True)).encode()).hexdigest()
    return f"{grid.job.name}-{digest[:10]}"


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

    def __init__(self, store: Store, run_id: str, grid: Grid, prices: PriceTable, *, fresh: bool = False):
        self.store, self.run_id, self.grid, self.prices, self.fresh = store, run_id, grid, prices, fresh
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
        self._verdicts: dict[tuple[Any, ...], dict[str, Any]] = {}  # equal judge verdicts share one dict
        self._convs: dict[str, list[Conversation]] = {}
        # answered id → (run, results key, whether that run sent the prefill: model turns only)
        self._reuse: dict[str, tuple[str, str, bool | None]] | None = None
        self._state: ExperimentState | None = None
        self._deriver = Deriver(grid, self.convs)
        self.log: Callable[[str], None] = lambda msg: None

    # --- opening ---------------------------------------------------------------------------

    @classmethod
    def create(cls, store: Store, job_path: str, *, offline: bool = False, prices_file: str | None = None,
               estimate: dict[str, Any] | None = None, max_cost: float | None = None, fresh: bool = False) -> tuple[Run, bool]:
        """Create the run of a job, or open it if this job (same content, same inputs) already has one."""
        loaded = load_job(job_path)
        grid = load_grid(loaded, offline=offline)
        check_batch_minimums(grid)  # before anything is written: no run that cannot start
        prices = load_prices(prices_file or (loaded.resolve(loaded.job.prices) if loaded.job.prices else None))
        for m in loaded.job.models:
            prices.lookup(m)
        run_id = run_id_for(grid)
        key = mf.manifest_key(run_id)
        created = False
        if not store.exists(key):
            pins: dict[str, InputPin] = {}
            for name, pin in grid.inputs.items():
                data = read_source(pin["ref"], offline=offline).data
                if sha256_bytes(data) != pin["sha256"]:
                    raise InputError(f"{pin['ref']} changed while the run was being created — rerun")
                ikey = layout.input_key(run_id, pin["sha256"])
                store.write(ikey, data)
                pins[name] = InputPin(ref=pin["ref"], sha256=pin["sha256"], key=ikey)
            store.write(layout.job_key(run_id), loaded.text.encode())
            now = time.time()
            prefill = {mm.name: prefill_decision(mm, prices) for mm in loaded.job.models}
            m = Manifest(run_id=run_id, job_name=loaded.job.name, job_fingerprint=loaded.fingerprint,
                         job_key=layout.job_key(run_id), job_path=str(loaded.path), inputs=pins, created_at=now,
                         updated_at=now, estimate=estimate or {}, max_cost=max_cost,
                         prefill={name: d.sent for name, d in prefill.items()},
                         prefill_reason={name: d.reason for name, d in prefill.items()})
            try:
                mf.create(store, m)
                created = True
            except Exception as e:  # noqa: BLE001
                from afbatch.errors import ConflictError

                if not isinstance(e, ConflictError):
                    raise
        run = cls(store, run_id, grid, prices, fresh=fresh)
        if max_cost is not None:
            mf.update(store, run_id, lambda m: setattr(m, "max_cost", max_cost))
        return run, created

    @classmethod
    def open(cls, store: Store, run_id: str, *, prices_file: str | None = None, fresh: bool = False) -> Run:
        """Reopen a run from its manifest and the inputs pinned in the store (no job file needed)."""
        m, _ = mf.load(store, run_id)
        by_ref = {p.ref: p for p in m.inputs.values()}

        def read(ref: str, offline: bool = False, expected_sha256: str | None = None) -> Source:
            pin = by_ref.get(ref)
            if pin is None:
                raise RunError(f"run {run_id}: input {ref} is not pinned in the store")
            try:
                data = store.read(pin.key)
            except KeyError:
                raise damaged(store, pin.key, f"missing (the pinned copy of {ref})") from None
            if sha256_bytes(data) != pin.sha256:
                raise RunError(f"run {run_id}: stored copy of {ref} does not match its sha256 {pin.sha256}")
            return Source(ref=ref, data=data, sha256=pin.sha256)

        try:
            job_text = store.read(m.job_key).decode()
        except KeyError:
            raise damaged(store, m.job_key, "missing (the job of this run)") from None
        loaded = parse_job(job_text, Path(m.job_path))
        grid = load_grid(loaded, read=read)
        prices = load_prices(prices_file or (loaded.resolve(loaded.job.prices) if loaded.job.prices and os.path.exists(loaded.resolve(loaded.job.prices)) else None))
        return cls(store, run_id, grid, prices, fresh=fresh)

    def check_ready(self) -> None:
        """Every model's credentials and settings are in place (no network): fail before anything is sent."""
        for label in self.specs:
            self.provider(label).ready()

    # --- helpers ---------------------------------------------------------------------------

    def manifest(self) -> Manifest:
        return mf.load(self.store, self.run_id)[0]

    def update(self, mutate: Callable[[Manifest], Any]) -> Any:
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
        """A collected shard's rows as the ledger keeps them (see ledger.kept), remembered for the next step."""
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
                rows = kept([Result.from_json(d) for d in got], is_judged(shard.stage),
                            self._verdicts)
            self._results[shard.id] = rows
        return self._results[shard.id]

    def forget(self) -> None:
        """Let go of what was read from the store (after a repair changed it)."""
        self._results.clear()
        self._ids.clear()
        self._state = None

    def convs(self, model: ModelSpec) -> list[Conversation]:
        """A model's conversations; their ids are stored with the run once, so they never change under it."""
        if model.name not in self._convs:
            key = layout.conversation_ids_key(self.run_id, model.name)
            try:
                known: list[str] | None = self.store.read(key).decode().split()
            except KeyError:
                known = None
            expected = len(self.job.variants) * len(self.job.prompts.tiers) * len(self.grid.dataset.rows) * self.job.sampling.samples
            if known is not None and len(known) != expected:
                raise RunError(f"run {self.run_id}: stored conversation ids of {model.name} do not match the grid — the store was modified")
            convs = list(conversations(self.grid, model, known))
            if known is None:
                self.store.write(key, ("\n".join(c.id for c in convs) + "\n").encode())
            self._convs[model.name] = convs
        return self._convs[model.name]

    def state(self, m: Manifest | None = None) -> ExperimentState:
        """The experiment state `m` describes, derived once while its shard states stay the same:
        plan(), status() and the report of one loop step share it (100k conversations derived once).
        A reader that drains it (the report) uses it up: the run then lets go of it."""
        m = m or self.manifest()
        key = shard_key(m)
        st = self._state
        if st is None or st.key != key or st.drained:
            st = self._deriver.derive(m, self._build_ledger(m))
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

    @contextmanager
    def _local_file(self, key: str) -> Iterator[str]:
        local = getattr(self.store, "local_path", None)
        if local:
            yield local(key)
            return
        with tempfile.TemporaryDirectory(prefix="afbatch-") as tmp:
            path = os.path.join(tmp, os.path.basename(key))
            try:
                self.store.download(key, path)
            except KeyError:
                raise damaged(self.store, key, "missing") from None
            yield path

    def status(self) -> Status:
        m = self.manifest()
        progress = self.state(m).progress
        shards: dict[str, int] = {}
        for s in m.shards.values():
            shards[s.state.value] = shards.get(s.state.value, 0) + 1
        busy = any(s.state in IN_FLIGHT for s in m.shards.values())
        done = not busy and all(p.waiting == 0 and p.pending == 0 for p in progress) and not m.cancelled
        est = (m.estimate.get("totals") or {}).get("cost_batch_cached_usd")
        rows = [{"shard": s.id, "model": s.model, "stage": s.stage, "round": s.round, "attempt": s.attempt,
                 "state": s.state.value, "provider_status": s.provider_status or s.status, "batch_id": s.batch_id,
                 "requests": s.requests, "counts": s.counts, "cost_usd": round(s.cost_usd, 6), "message": s.message}
                for s in sorted(m.shards.values(), key=lambda s: (s.model, s.stage, s.round, s.attempt, s.id))]
        return Status(self.run_id, progress, shards, m.spent_usd(), est, done, m.cancelled, rows)

    # --- plan: turn what is needed into shards ----------------------------------------------------

    def plan(self) -> int:
        """Write shards for every needed request; add them to the manifest unless another worker did. Returns shards added."""
        m = self.manifest()
        if m.cancelled:
            return 0
        state = self.state(m)
        need, ledger = state.wanted, state.ledger  # the ledger: attempt numbers of the retries
        if not need:
            return 0
        # Reuse answers only for requests this run never tried: a reused row that did not settle its
        # request is then asked of the provider, never offered again (the same reuse shard, planned
        # again and refused as known, would leave nothing to send).
        reused = self._take_reused([r for r in need if r.id not in ledger.attempts])
        need = [r for r in need if r.id not in reused]
        # A shard holds requests of one model, stage, round (model turn; 1 for judges) and attempt.
        groups: dict[tuple[str, str, int, int], list[Request]] = {}
        for r in need:
            turn = turn_of(r.id) if r.stage == STAGE_GENERATE else 1
            groups.setdefault((r.model.name, r.stage, turn, 1 + len(ledger.get(r.id))), []).append(r)
        new: list[Shard] = []
        cancelled = {s.id for s in m.shards.values() if s.state == ShardState.CANCELLED}
        for (label, stage, rnd, attempt), reqs in sorted(groups.items()):
            new += self._write_shards(label, stage, rnd, attempt, reqs, cancelled)
        new += self._reuse_shards(reused)
        known = set(m.shards)
        _crashpoint("after-plan-write")

        def add(latest: Manifest) -> int:
            fresh_ids: set[str] = set()
            for s in latest.shards.values():
                if s.id not in known or s.state in IN_FLIGHT:
                    fresh_ids.update(self.shard_ids(s))
            added = 0
            for sh in new:
                if sh.id in latest.shards or fresh_ids.intersection(self.shard_ids(sh)):
                    continue  # another worker planned these requests meanwhile
                latest.shards[sh.id] = sh
                added += 1
            return added

        added = self.update(add)
        _crashpoint("after-plan")
        return added

    def _write_shards(self, label: str, stage: str, rnd: int, attempt: int, requests: list[Request],
                      cancelled: set[str]) -> list[Shard]:
        model = self.specs[label]
        provider = self.provider(label)
        price = self.prices.lookup(model)
        limits = shard_limits(provider, self.job)
        out_tokens = max(r.max_tokens * r.n for r in requests)  # every choice may run to max_tokens
        m = self.manifest()
        cap = None
        if m.max_cost is not None:  # pacing: no shard bounds more than a share of what is left
            rin, rout = price.row_cost(False, model.cache_ttl).rate_bounds()
            left = max(m.max_cost - m.spent_usd(), 0.0)
            cap = CostCap(rin / 1e6, out_tokens * rout / 1e6, left / PACE_PARTS)
        out: list[Shard] = []
        with tempfile.TemporaryDirectory(prefix="afbatch-plan-") as tmp:
            files = write_shards(render_lines(provider, requests), limits, tmp, "s", cap=cap)
            for f in files:
                ids_text = Path(f.ids_path).read_text()
                digest = hashlib.sha256(ids_text.encode()).hexdigest()[:12]
                base = sid = f"{stage}-{label}-r{rnd}-a{attempt}-{digest}"
                # A shard cancelled before it was sent holds no attempt: its requests, asked again,
                # need a new id (the same one would be refused as planned, and nothing sent).
                copy = 1
                while sid in cancelled:
                    copy += 1
                    sid = f"{base}-{copy}"
                on_demand = f.below_minimum
                if on_demand and not model.on_demand_fallback:
                    raise RunError(
                        f"{label}: {f.n_requests} {stage} requests cannot reach Bedrock's minimum of 100 per batch job — "
                        f"set on_demand_fallback = true for this model in the job to send them as on-demand calls"
                    )
                key = layout.shard_key(self.run_id, sid)
                ids_key = layout.shard_ids_key(self.run_id, sid)
                self.put_file(key, f.path)
                self.store.write(ids_key, ids_text.encode())
                self._ids[sid] = ids_text.split()
                # A true bound of what the shard can bill, for --max-cost. Input: a token is at
                # least one byte of UTF-8 text for every tokenizer these providers use (byte-level
                # BPE or byte fallback), and the JSON around the texts is longer than the chat
                # format's own tokens, so the file's bytes bound its input tokens. Output: every
                # request runs every choice to max_tokens. Both at the dearest rate a token can
                # have (long-context tier, cache write).
                rin, rout = price.row_cost(on_demand, model.cache_ttl).rate_bounds()
                bound = (f.n_bytes * rin + f.n_requests * out_tokens * rout) / 1e6
                token = "t" + hashlib.sha256(f"{self.run_id}/{sid}".encode()).hexdigest()[:30]
                out.append(Shard(id=sid, model=label, stage=stage, round=rnd, attempt=attempt, provider=model.provider, requests=f.n_requests,
                                 bytes=f.n_bytes, sha256=f.sha256, key=key, ids_key=ids_key, on_demand=on_demand,
                                 bound_usd=bound, token=token))
        return out

    def put_file(self, key: str, path: str) -> None:
        self.store.put_file(key, path)

    # --- reuse of answers from earlier runs in the same store ------------------------------------

    def _take_reused(self, need: list[Request]) -> dict[str, tuple[Result, str]]:
        """Answers earlier runs in the store already got for requests `need` holds, with the run that paid.

        The store is read line by line and only the ids are remembered (run, results file), so a store of
        many big runs is never held in memory; the answers themselves are read for the requests needed."""
        if self.fresh:
            return {}
        if self._reuse is None:
            self._reuse = {}
            for other in mf.list_runs(self.store):
                if other == self.run_id:
                    continue
                try:
                    om, _ = mf.load(self.store, other)
                except Exception:  # noqa: BLE001 - an unreadable old run is skipped, not fatal
                    continue
                for s in om.shards.values():
                    if s.state == ShardState.COLLECTED and s.results_key and s.provider != "reuse":
                        sent = om.prefill.get(s.model) if s.stage == STAGE_GENERATE else None
                        self._index_reusable(other, s, sent)
        wanted: dict[str, dict[str, str]] = {}  # results file → {id: run}
        for r in need:
            found = self._reuse.get(r.id)
            # A model turn's id does not say whether the prefill was sent: an answer got under the
            # other decision is another protocol, asked again.
            if found is not None and found[2] is not None and found[2] != (r.prefill is not None):
                continue
            if found is not None:
                wanted.setdefault(found[1], {})[r.id] = found[0]
        out: dict[str, tuple[Result, str]] = {}
        for key, ids in wanted.items():
            for line in self.store.lines(key):
                if not line.isspace():
                    row = Result.from_json(jsonl.loads(line))
                    if row.id in ids and row.id not in out and settles(row):
                        out[row.id] = (row, ids[row.id])
        return out

    def _index_reusable(self, other: str, s: Shard, sent: bool | None) -> None:
        """Remember which settled answers an earlier run's shard holds. A damaged file there is
        skipped, said once: its answers are asked again, never read from a damaged file."""
        assert self._reuse is not None and s.results_key
        found: list[str] = []
        try:
            ids = read_ids(self.store, s)
            for d in checked_rows(self.store, s.verdicts_key or s.results_key, ids, s.ids_key):
                if settles(Result.from_json(d)):  # not a judge reply its run had to ask again
                    found.append(d["id"])
        except DamagedStoreError as e:
            self.log(f"answers of run {other} not reused: {e}")
            return
        for rid in found:
            self._reuse.setdefault(rid, (other, s.results_key, sent))

    def _reuse_shards(self, reused: dict[str, tuple[Result, str]]) -> list[Shard]:
        if not reused:
            return []
        ids = sorted(reused)
        ids_text = "\n".join(ids) + "\n"
        sid = f"reuse-{hashlib.sha256(ids_text.encode()).hexdigest()[:12]}"
        ids_key = layout.shard_ids_key(self.run_id, sid)
        results_key = layout.results_key(self.run_id, sid)
        self.store.write(ids_key, ids_text.encode())
        sha, lines = self._write_lines(results_key, (reused[i][0].to_json() for i in ids))
        self._ids[sid] = ids
        sources = sorted({reused[i][1] for i in ids})
        now = time.time()
        return [Shard(id=sid, model="-", stage="reuse", round=0, provider="reuse", requests=len(ids), bytes=0, sha256="",
                      key=ids_key, ids_key=ids_key, token="-", state=ShardState.COLLECTED, collected_at=now,
                      results_key=results_key, results_sha256=sha, results_lines=lines,
                      message=f"answers reused from run(s) {', '.join(sources)} (billed there)",
                      counts={"succeeded": len(ids)})]

    # --- submit ----------------------------------------------------------------------------

    def submit_pending(self, max_cost: float | None = None) -> int:
        submitted = 0
        for sid in [s.id for s in self.manifest().shards.values() if s.state == ShardState.PENDING]:
            if self._submit(sid, max_cost):
                submitted += 1
        return submitted

    def _submit(self, sid: str, max_cost: float | None) -> bool:
        now = time.time()

        def claim(m: Manifest) -> Shard | None:
            s = m.shards[sid]
            if s.state != ShardState.PENDING or m.cancelled:
                return None
            if not _fits(m, s, max_cost):
                return None  # waits: batches in flight free budget as they end (see run())
            s.move(ShardState.SUBMITTING)
            s.owner, s.intent_at = self.owner, now
            return s.model_copy()

        shard = self.update(claim)
        if shard is None:
            return False
        _crashpoint("after-claim")
        if shard.on_demand:
            self._run_on_demand(shard)
            return True
        provider = self.provider(shard.model)
        try:
            with self._local_file(shard.key) as path:
                self._check_shard_file(shard, path)
                batch_id = provider.submit(path, shard.requests, shard.token,
                                           {"afbatch_run": self.run_id[:500], "afbatch_shard": shard.id[:500]})
        except ProviderError as e:
            self._submit_failed(shard, e)
            return False
        _crashpoint("after-create")
        self._mark_submitted(shard.id, batch_id)
        self.log(f"submitted {shard.id} → {batch_id}")
        _crashpoint("after-submitted")
        return True

    def _check_shard_file(self, shard: Shard, path: str) -> None:
        try:
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except FileNotFoundError:
            raise damaged(self.store, shard.key,
                          f"missing (the request file of shard {shard.id})") from None
        if digest != shard.sha256:
            raise damaged(self.store, shard.key,
                          f"the request file of shard {shard.id} does not match its sha256")
        rids = self.shard_ids(shard)
        if len(rids) != len(set(rids)) or len(rids) != shard.requests:
            raise RunError(f"shard {shard.id}: request ids are not unique — refusing to submit")
        for rid in rids:
            check_id(rid, f"shard {shard.id}")

    def _mark_submitted(self, sid: str, batch_id: str) -> None:
        def done(m: Manifest) -> None:
            s = m.shards[sid]
            if s.state == ShardState.SUBMITTING:
                s.move(ShardState.SUBMITTED)
                s.batch_id, s.submitted_at, s.owner = batch_id, time.time(), None

        self.update(done)

    def _submit_failed(self, shard: Shard, e: ProviderError) -> None:
        undecided = None
        if e.retryable:
            # The create may or may not have happened: find it before concluding it did not.
            try:
                found = self._find(shard)
            except ProviderError as fe:
                found = Found(undecided=f"cannot look for it yet: {fe}")
            if found.batch_id:
                self._mark_submitted(shard.id, found.batch_id)
                return
            undecided = found.undecided

        def back(m: Manifest) -> None:
            s = m.shards[shard.id]
            if s.state != ShardState.SUBMITTING:
                return
            s.message = redact(str(e))
            s.submit_errors += 1
            if undecided:  # neither resubmit nor adopt: reconcile decides later (no owner: anyone)
                s.message = redact(f"{e}; whether a batch was created is not known: {undecided}")
                s.owner = None
            elif e.rejects_request:
                s.move(ShardState.ENDED)  # the provider refused it: its rows fail with the provider's message
                s.status, s.ended_at, s.owner = BatchStatus.FAILED.value, time.time(), None
            else:  # try again later; a missing key or permission stops the run below, and costs no row
                s.move(ShardState.PENDING)
                s.owner = None

        self.update(back)
        if not e.rejects_request and (not e.retryable or shard.submit_errors + 1 >= MAX_SUBMIT_ERRORS):
            raise e
        self.log(f"submit of {shard.id} failed: {redact(str(e))}")

    def _claimed(self) -> frozenset[str]:
        return frozenset(s.batch_id for s in self.manifest().shards.values() if s.batch_id)

    def _find(self, shard: Shard) -> Found:
        """Ask the provider which batch, if any, this `submitting` shard created."""
        provider = self.provider(shard.model)
        line_ids = [provider.line_id(rid) for rid in self.shard_ids(shard)]
        return provider.find(shard.token, line_ids, shard.intent_at or time.time(), self._claimed())

    # --- on-demand (Bedrock rows under the batch minimum) ------------------------------------------

    def _run_on_demand(self, shard: Shard) -> None:
        provider = self.provider(shard.model)
        invoke = getattr(provider, "invoke", None)
        if invoke is None:
            raise RunError(f"{shard.model}: on-demand calls are only available for Bedrock")
        with self._local_file(shard.key) as path:
            lines = jsonl.read(Path(path).read_bytes())
        # Progress is kept in immutable chunks, so a crash never repeats a paid call that finished.
        for start in range(0, len(lines), ON_DEMAND_CHUNK):
            key = layout.part_key(self.run_id, shard.id, start // ON_DEMAND_CHUNK)
            if self.store.exists(key):
                continue
            out = [invoke(line) for line in lines[start:start + ON_DEMAND_CHUNK]]
            self.store.write(key, jsonl.write(out))
            _crashpoint("after-on-demand-chunk")

        def ended(m: Manifest) -> None:
            s = m.shards[shard.id]
            if s.state == ShardState.SUBMITTING:
                s.move(ShardState.SUBMITTED)
                s.move(ShardState.ENDED)
                s.batch_id, s.status, s.ended_at, s.owner = "on-demand", BatchStatus.COMPLETED.value, time.time(), None

        self.update(ended)

    # --- reconcile ---------------------------------------------------------------------------

    def reconcile(self) -> int:
        """Shards left `submitting` by a dead worker: adopt the batch the provider has, or send them again."""
        m = self.manifest()
        now = time.time()
        fixed = 0
        for s in m.shards.values():
            if s.state != ShardState.SUBMITTING or s.owner == self.owner:
                continue
            stale = not owner_alive(s.owner) or now - (s.intent_at or 0) > LEASE_SECONDS
            if not stale or now - (s.intent_at or 0) < RECONCILE_GRACE_SECONDS:
                continue
            if s.on_demand:
                self._take_over(s)
                self._run_on_demand(s)
                fixed += 1
                continue
            try:
                outcome = self._find(s)
            except ProviderError as e:
                self.log(f"reconcile of {s.id} postponed: {e}")
                continue
            if outcome.undecided:  # stays `submitting`, in flight: asked again at the next step
                self.log(f"reconcile of {s.id} waits: {outcome.undecided}")
                continue
            found, stale_owner = outcome.batch_id, s.owner

            def settle(latest: Manifest, sid: str = s.id, found: str | None = found, stale_owner: str | None = stale_owner) -> None:
                x = latest.shards[sid]
                if x.state != ShardState.SUBMITTING or x.owner != stale_owner:
                    return
                if found:
                    x.move(ShardState.SUBMITTED)
                    x.batch_id, x.submitted_at = found, time.time()
                else:
                    x.move(ShardState.PENDING)
                x.owner = None

            self.update(settle)
            self.log(f"reconciled {s.id}: " + (f"found {found}" if found else "nothing was created; will resubmit"))
            fixed += 1
        return fixed

    def _take_over(self, s: Shard) -> None:
        def take(latest: Manifest) -> None:
            x = latest.shards[s.id]
            if x.state == ShardState.SUBMITTING:
                x.owner, x.intent_at = self.owner, time.time()

        self.update(take)

    # --- poll --------------------------------------------------------------------------------

    def poll(self) -> int:
        ended = 0
        for s in [s for s in self.manifest().shards.values() if s.state == ShardState.SUBMITTED]:
            try:
                info = self.provider(s.model).poll(s.batch_id or "")
            except ProviderError as e:
                self.log(f"poll of {s.id} failed: {e}")
                continue
            if not info.status.terminal:
                if s.provider_status != info.raw_status:
                    self.update(lambda m, sid=s.id, raw=info.raw_status: setattr(m.shards[sid], "provider_status", raw))
                continue

            def end(m: Manifest, sid: str = s.id, info: Any = info) -> None:
                x = m.shards[sid]
                if x.state == ShardState.SUBMITTED:
                    x.move(ShardState.ENDED)
                    x.status, x.provider_status, x.ended_at = info.status.value, info.raw_status, time.time()
                    x.message = redact(info.message) if info.message else x.message

            self.update(end)
            ended += 1
            _crashpoint("after-ended")
        return ended

    # --- collect -----------------------------------------------------------------------------

    def collect(self) -> int:
        collected = 0
        for s in [s for s in self.manifest().shards.values() if s.state == ShardState.ENDED]:
            try:
                with bulk():
                    results = self._fetch(s)
            except ProviderError as e:
                self.log(f"collect of {s.id} postponed: {e}")
                continue
            key = layout.results_key(self.run_id, s.id)
            written = self._write_lines(key, (r.to_json() for r in results))
            verdicts_key, verdicts_written = None, (None, None)
            if is_judged(s.stage):  # the verdicts alone: a report reads 20 votes per conversation, not their texts
                verdicts_key = layout.verdicts_key(self.run_id, s.id)
                verdicts_written = self._write_lines(
                    verdicts_key, (r._replace(text=None, texts=None).to_json() for r in results))
            self._results[s.id] = kept(results, is_judged(s.stage), self._verdicts)
            _crashpoint("after-results-written")
            usage, cost, counts = self._account(s, results)

            def done(m: Manifest, sid: str = s.id, usage: Usage = usage, cost: float = cost, counts: dict[str, int] = counts,
                     key: str = key, verdicts_key: str | None = verdicts_key,
                     written: Any = written, verdicts_written: Any = verdicts_written) -> None:
                x = m.shards[sid]
                if x.state == ShardState.ENDED:
                    x.move(ShardState.COLLECTED)
                    x.results_key, x.verdicts_key, x.collected_at, x.counts, x.cost_usd = key, verdicts_key, time.time(), counts, cost
                    x.results_sha256, x.results_lines = written  # what verify checks against
                    x.verdicts_sha256, x.verdicts_lines = verdicts_written
                    x.usage = mf.Usage(input_tokens=usage.input_tokens, cached_tokens=usage.cached_tokens,
                                       cache_write_tokens=usage.cache_write_tokens, output_tokens=usage.output_tokens)

            self.update(done)
            collected += 1
            _crashpoint("after-collected")
        return collected

    def _write_lines(self, key: str, objs: Any) -> tuple[str, int]:
        """Stream JSON lines to a temp file, then store it (no second copy of a big result file in
        memory). Returns the file's sha256 and line count, recorded in the manifest for verify."""
        fd, tmp = tempfile.mkstemp(prefix="afbatch-", suffix=".jsonl")
        h, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as f:
            dumps_line = jsonl.dumps_line
            for obj in objs:
                line = dumps_line(obj)
                h.update(line)
                f.write(line)
                n += 1
        self.store.put_file(key, tmp)
        return h.hexdigest(), n

    def _fetch(self, s: Shard) -> list[Result]:
        provider = self.provider(s.model)
        ids = self.shard_ids(s)
        by_line = {provider.line_id(rid): rid for rid in ids}
        if s.on_demand:
            parts = sorted(self.store.list(layout.part_prefix(self.run_id, s.id)))
            raw: Any = (self._part_line(key, line) for key in parts for line in self.store.lines(key)
                        if line.strip())
        else:  # a batch the provider refused at creation has no batch id and no lines
            raw = provider.fetch(s.batch_id) if s.batch_id else iter(())
        tpl = self.grid.judge_templates.get({STAGE_COMPLIANCE: "compliance", STAGE_AF: "alignment_faking"}.get(s.stage, ""))
        parse = tpl.parse if tpl else None  # judge replies get their verdict now, once
        votes_as_choices = s.stage == STAGE_AF and self.job.judge is not None and self.job.judge.af_votes_in_one_request
        got: dict[str, Result] = {}
        for line in raw:
            r = provider.parse(line)
            rid = by_line.get(r.id)
            if rid is None or rid in got:
                continue  # not ours, or a duplicate line
            verdict = None
            if parse and r.status == RowStatus.SUCCEEDED:
                if votes_as_choices:  # every choice is a vote (a host that ignored n returned one)
                    verdict = votes_verdict([parse(t) for t in (r.texts or (r.text or "",))])
                else:
                    verdict = parse(r.text or "")
            if verdict is not None or rid != r.id:
                r = r._replace(id=rid, verdict=verdict)  # by name: every choice's text is kept
            got[rid] = r
        missing = _missing_result(s)
        return [got.get(rid) or Result(rid, *missing) for rid in ids]

    def _part_line(self, key: str, line: bytes) -> Any:
        """A stored on-demand answer: a line that is not JSON is damage to the store, named as such."""
        try:
            return jsonl.loads(line)
        except ValueError:
            raise damaged(self.store, key, "a line is not JSON (cut off, or edited)") from None

    def _account(self, s: Shard, results: list[Result]) -> tuple[Usage, float, dict[str, int]]:
        cost_of = self.prices.lookup(self.specs[s.model]).row_cost(s.on_demand, self.specs[s.model].cache_ttl)
        usages = [r.usage for r in results]
        usage = Usage(*(sum(column) for column in zip(*usages))) if usages else Usage()
        counts = dict(collections.Counter(r.status.value for r in results))
        return usage, sum(map(cost_of, usages)), counts

    # --- cancel ------------------------------------------------------------------------------

    def cancel(self) -> list[str]:
        def mark(m: Manifest) -> list[str]:
            m.cancelled = True
            for s in m.shards.values():
                if s.state == ShardState.PENDING:
                    s.move(ShardState.CANCELLED)
            return [s.id for s in m.shards.values() if s.state == ShardState.SUBMITTED]

        to_cancel = self.update(mark)
        done = []
        for sid in to_cancel:
            s = self.manifest().shards[sid]
            try:
                self.provider(s.model).cancel(s.batch_id or "")
                done.append(sid)
            except ProviderError as e:
                self.log(f"cancel of {sid} failed: {e}")
        return done

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

    def run(self, *, max_cost: float | None = None, poll_interval: float = 5.0, max_interval: float = 60.0,
            on_progress: Callable[[Status], None] | None = None, sleep: Callable[[float], None] = time.sleep) -> Status:
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
                raise CancelledError(f"run {self.run_id} was cancelled by `afbatch cancel` "
                                     f"(another process); its batches are being stopped — "
                                     f"`afbatch run {self.run_id}` resumes it")
            m = self.manifest()
            if not changed and not any(s.state in mf.SENT for s in m.shards.values()):
                self._stuck(m, max_cost)
            interval = poll_interval if changed else min(interval * 1.5, max_interval)
            sleep(interval)

    def _stuck(self, m: Manifest, max_cost: float | None) -> None:
        """Nothing is at the provider and the last step changed nothing: the budget is spent, or a
        bug."""
        pending = [s for s in m.shards.values() if s.state == ShardState.PENDING]
        blocked = [s for s in pending if not _fits(m, s, max_cost)]
        if blocked:
            limit = max_cost if max_cost is not None else m.max_cost
            assert limit is not None
            spent = m.spent_usd()
            split = [s.id for s in blocked
                     if s.requests > least_requests(self.provider(s.model).limits)]
            if split:  # planned when more was left: retired unsent, the next plan cuts smaller ones
                def retire(latest: Manifest) -> None:
                    for sid in split:
                        x = latest.shards[sid]
                        if x.state == ShardState.PENDING:
                            x.move(ShardState.CANCELLED)
                            x.message = "not sent: planned again smaller, to fit --max-cost"

                self.update(retire)
                self.log(f"{len(split)} shard(s) too big for what is left of --max-cost: "
                         "planning smaller ones")
                return
            raise BudgetError(
                f"run {self.run_id}: --max-cost ${limit:,.2f} reached — ${spent:,.2f} spent, "
                f"{sum(s.requests for s in pending):,} requests in {len(pending)} shard(s) not "
                f"sent (the next could bill up to ${min(s.bound_usd for s in blocked):,.2f}, "
                f"${max(limit - spent, 0):,.2f} is left) — continue with "
                f"`afbatch run {self.run_id} --max-cost <more USD>`")
        if not pending:
            raise RunError(self._stuck_message(m))


    def _stuck_message(self, m: Manifest) -> str:
        """Why nothing can be sent though the run is not done: which requests, held by which shards,
        and the way out. Planning and the ledger agree on every store afbatch wrote: this is for a
        store changed by hand."""
        run = f"run {self.run_id}"
        ids = {r.id for r in self.state(m).wanted}
        if not ids:
            return f"{run} cannot make progress: nothing is needed or in flight, yet it is not done"
        holders = []
        for s in sorted(m.shards.values(), key=lambda s: s.id):
            try:
                if ids.intersection(self.shard_ids(s)):
                    holders.append(f"{s.id} ({s.state.value})")
            except KeyError:
                holders.append(f"{s.id} (its .ids file is missing)")
        some = ", ".join(sorted(ids)[:3]) + (", …" if len(ids) > 3 else "")
        held = (f"held by shard(s) {', '.join(holders[:5])} whose stored results lack them"
                if holders else "held by no shard, yet none could be planned")
        return (f"{run} cannot make progress: {len(ids)} needed request(s) ({some}) are {held}"
                f" — the store under {layout.run_folder(self.run_id)}/ was changed. Restore it, or rename the job"
                " to start a new run in this store: it reuses every answer stored here and asks"
                " only for the rest")


def _fits(m: Manifest, s: Shard, max_cost: float | None) -> bool:
    """Whether sending `s` now keeps spend plus the bounds of all that may still bill in the cap."""
    limit = max_cost if max_cost is not None else m.max_cost
    return limit is None or m.committed_usd() + s.bound_usd <= limit


def _missing_result(s: Shard) -> tuple[RowStatus, None, Usage, str, str]:
    """What a row without an output line means, given how its batch ended."""
    status = s.status or ""
    message = s.message or f"batch ended {status} without a line for this request"
    if status == BatchStatus.FAILED.value:
        low = message.lower()
        kind = "rate_limit" if ("token_limit" in low or "rate" in low or "quota" in low) else "invalid_request"
        return RowStatus.ERRORED, None, Usage(), kind, message
    if status == BatchStatus.EXPIRED.value:
        return RowStatus.EXPIRED, None, Usage(), "expired", "the batch expired before this request ran"
    if status == BatchStatus.CANCELLED.value:
        return RowStatus.CANCELED, None, Usage(), "canceled", "the batch was cancelled before this request ran"
    return RowStatus.MISSING, None, Usage(), "missing", message


def check_ready(job: Job) -> None:
    """The same check for a job that has no run yet."""
    specs = [*job.models, *([job.judge.model, *([job.judge.af_model] if job.judge.af_model else [])] if job.judge else [])]
    for spec in specs:
        get_provider(spec).ready()
