"""The planner: what the run asks next, as shards, and which answers it reuses instead.

From the experiment state's wanted requests: answers earlier runs in the same store already got
are reused (model turns only under the same prefill decision, and only for requests this run
never tried); the rest are grouped by model, stage, round and attempt and written as shard files
(within provider limits and, under --max-cost, paced to a share of what is left), then added to
the manifest as `pending` unless another worker planned the same requests meanwhile.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from afbatch import collect, jsonl, layout
from afbatch import manifest as mf
from afbatch.checked_reads import checked_rows, read_ids
from afbatch.errors import DamagedStoreError, RunError
from afbatch.ids import turn_of
from afbatch.ledger import settles
from afbatch.lifecycle import crashpoint
from afbatch.manifest import IN_FLIGHT, Manifest, Shard, ShardState
from afbatch.shard_files import CostCap, render_lines, shard_limits, write_shards
from afbatch.tokens import token_tally
from afbatch.types import STAGE_GENERATE, Request, Result

if TYPE_CHECKING:
    from afbatch.runner import Run

# Under --max-cost, a new shard's cost bound is at most this share of what is left to spend, so
# batches can be in flight side by side and the last ones still fit once the earlier ones billed.
PACE_PARTS = 4


def plan(run: Run) -> int:
    """Write shards for every needed request; add them to the manifest unless another worker did.
    Returns shards added."""
    m = run.manifest()
    if m.cancelled:
        return 0
    state = run.state(m)
    need, ledger = state.wanted, state.ledger  # the ledger: attempt numbers of the retries
    if not need:
        return 0
    # Reuse answers only for requests this run never tried: a reused row that did not settle its
    # request is then asked of the provider, never offered again (the same reuse shard, planned
    # again and refused as known, would leave nothing to send).
    reused = _take_reused(run, [r for r in need if r.id not in ledger.attempts])
    need = [r for r in need if r.id not in reused]
    # A shard holds requests of one model, stage, round (model turn; 1 for judges) and attempt.
    groups: dict[tuple[str, str, int, int], list[Request]] = {}
    for r in need:
        turn = turn_of(r.id) if r.stage == STAGE_GENERATE else 1
        groups.setdefault((r.model.name, r.stage, turn, 1 + len(ledger.get(r.id))), []).append(r)
    new: list[Shard] = []
    cancelled = {s.id for s in m.shards.values() if s.state == ShardState.CANCELLED}
    for (label, stage, rnd, attempt), reqs in sorted(groups.items()):
        new += _write_shards(run, label, stage, rnd, attempt, reqs, cancelled)
    new += _reuse_shards(run, reused)
    known = set(m.shards)
    crashpoint("after-plan-write")

    def add(latest: Manifest) -> int:
        fresh_ids: set[str] = set()
        for s in latest.shards.values():
            if s.id not in known or s.state in IN_FLIGHT:
                fresh_ids.update(run.shard_ids(s))
        added = 0
        for sh in new:
            if sh.id in latest.shards or fresh_ids.intersection(run.shard_ids(sh)):
                continue  # another worker planned these requests meanwhile
            latest.shards[sh.id] = sh
            added += 1
        return added

    added = run.update(add)
    crashpoint("after-plan")
    return added


def _write_shards(
    run: Run,
    label: str,
    stage: str,
    rnd: int,
    attempt: int,
    requests: list[Request],
    cancelled: set[str],
) -> list[Shard]:
    model = run.specs[label]
    provider = run.provider(label)
    price = run.prices.lookup(model)
    limits = shard_limits(provider, run.job)
    out_tokens = max(r.max_tokens * r.n for r in requests)  # every choice may run to max_tokens
    m = run.manifest()
    cap = None
    if m.max_cost is not None:  # pacing: no shard bounds more than a share of what is left
        rin, rout = price.row_cost(False, model.cache_ttl).rate_bounds()
        left = max(m.max_cost - m.spent_usd(), 0.0)
        cap = CostCap(rin / 1e6, out_tokens * rout / 1e6, left / PACE_PARTS)
    out: list[Shard] = []
    with tempfile.TemporaryDirectory(prefix="afbatch-plan-") as tmp:
        tally = token_tally(model, run.prices) if limits.max_enqueued_tokens else None
        files = write_shards(
            render_lines(provider, requests, tally), limits, tmp, "s", cap=cap, tally=tally
        )
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
                    f"{label}: {f.n_requests} {stage} requests cannot reach Bedrock's minimum of "
                    "100 per batch job — set on_demand_fallback = true for this model in the "
                    "job to send them as on-demand calls"
                )
            key = layout.shard_key(run.run_id, sid)
            ids_key = layout.shard_ids_key(run.run_id, sid)
            run.put_file(key, f.path)
            run.store.write(ids_key, ids_text.encode())
            run.remember_ids(sid, ids_text.split())
            # A true bound of what the shard can bill, for --max-cost. Input: a token is at
            # least one byte of UTF-8 text for every tokenizer these providers use (byte-level
            # BPE or byte fallback), and the JSON around the texts is longer than the chat
            # format's own tokens, so the file's bytes bound its input tokens. Output: every
            # request runs every choice to max_tokens. Both at the dearest rate a token can
            # have (long-context tier, cache write).
            rin, rout = price.row_cost(on_demand, model.cache_ttl).rate_bounds()
            bound = (f.n_bytes * rin + f.n_requests * out_tokens * rout) / 1e6
            token = "t" + hashlib.sha256(f"{run.run_id}/{sid}".encode()).hexdigest()[:30]
            out.append(
                Shard(
                    id=sid,
                    model=label,
                    stage=stage,
                    round=rnd,
                    attempt=attempt,
                    provider=model.provider,
                    requests=f.n_requests,
                    bytes=f.n_bytes,
                    sha256=f.sha256,
                    key=key,
                    ids_key=ids_key,
                    on_demand=on_demand,
                    bound_usd=bound,
                    token=token,
                )
            )
    return out


def _take_reused(run: Run, need: list[Request]) -> dict[str, tuple[Result, str]]:
    """Answers earlier runs in the store already got for requests `need` holds, with the run that
    paid.

    The store is read line by line and only the ids are remembered (run, results file), so a store
    of many big runs is never held in memory; the answers themselves are read for the requests
    needed."""
    if run.fresh:
        return {}
    if run.reuse_index is None:
        run.reuse_index = {}
        for other in mf.list_runs(run.store):
            if other == run.run_id:
                continue
            try:
                om, _ = mf.load(run.store, other)
            except Exception:  # noqa: BLE001 - an unreadable old run is skipped, not fatal
                continue
            for s in om.shards.values():
                if s.state == ShardState.COLLECTED and s.results_key and s.provider != "reuse":
                    sent = om.prefill.get(s.model) if s.stage == STAGE_GENERATE else None
                    _index_reusable(run, other, s, sent)
    wanted: dict[str, dict[str, str]] = {}  # results file → {id: run}
    for r in need:
        found = run.reuse_index.get(r.id)
        # A model turn's id does not say whether the prefill was sent: an answer got under the
        # other decision is another protocol, asked again.
        if found is not None and found[2] is not None and found[2] != (r.prefill is not None):
            continue
        if found is not None:
            wanted.setdefault(found[1], {})[r.id] = found[0]
    out: dict[str, tuple[Result, str]] = {}
    for key, ids in wanted.items():
        for line in run.store.lines(key):
            if not line.isspace():
                row = Result.from_json(jsonl.loads(line))
                if row.id in ids and row.id not in out and settles(row):
                    out[row.id] = (row, ids[row.id])
    return out


def _index_reusable(run: Run, other: str, s: Shard, sent: bool | None) -> None:
    """Remember which settled answers an earlier run's shard holds. A damaged file there is
    skipped, said once: its answers are asked again, never read from a damaged file."""
    assert run.reuse_index is not None and s.results_key
    found: list[str] = []
    try:
        ids = read_ids(run.store, s)
        for d in checked_rows(run.store, s.verdicts_key or s.results_key, ids, s.ids_key):
            if settles(Result.from_json(d)):  # not a judge reply its run had to ask again
                found.append(d["id"])
    except DamagedStoreError as e:
        run.log(f"answers of run {other} not reused: {e}")
        return
    for rid in found:
        run.reuse_index.setdefault(rid, (other, s.results_key, sent))


def _reuse_shards(run: Run, reused: dict[str, tuple[Result, str]]) -> list[Shard]:
    if not reused:
        return []
    ids = sorted(reused)
    ids_text = "\n".join(ids) + "\n"
    sid = f"reuse-{hashlib.sha256(ids_text.encode()).hexdigest()[:12]}"
    ids_key = layout.shard_ids_key(run.run_id, sid)
    results_key = layout.results_key(run.run_id, sid)
    run.store.write(ids_key, ids_text.encode())
    sha, lines = collect.write_lines(run, results_key, (reused[i][0].to_json() for i in ids))
    run.remember_ids(sid, ids)
    sources = sorted({reused[i][1] for i in ids})
    now = time.time()
    return [
        Shard(
            id=sid,
            model="-",
            stage="reuse",
            round=0,
            provider="reuse",
            requests=len(ids),
            bytes=0,
            sha256="",
            key=ids_key,
            ids_key=ids_key,
            token="-",
            state=ShardState.COLLECTED,
            collected_at=now,
            results_key=results_key,
            results_sha256=sha,
            results_lines=lines,
            message=f"answers reused from run(s) {', '.join(sources)} (billed there)",
            counts={"succeeded": len(ids)},
        )
    ]
