"""A run whose last step changed nothing while nothing is at the provider: why, and what next.

Either the budget binds — shards planned when more of --max-cost was left are retired unsent, to
be planned again smaller, and when even the smallest cannot fit the run stops with BudgetError —
or the requests still wanted are held by shards whose stored results lack them, which only a store
changed by hand can cause: the run stops with those requests, their shards and the way out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from afbatch import layout, lifecycle
from afbatch.errors import BudgetError, RunError
from afbatch.manifest import Manifest, ShardState
from afbatch.shard_files import least_requests

if TYPE_CHECKING:
    from afbatch.runner import Run


def stop_or_replan(run: Run, m: Manifest, max_cost: float | None) -> None:
    """Nothing is at the provider and the last step changed nothing: the budget is spent, or a
    bug."""
    pending = [s for s in m.shards.values() if s.state == ShardState.PENDING]
    blocked = [s for s in pending if not lifecycle.fits(m, s, max_cost)]
    if blocked:
        limit = max_cost if max_cost is not None else m.max_cost
        assert limit is not None
        spent = m.spent_usd()
        split = [s.id for s in blocked if s.requests > least_requests(run.provider(s.model).limits)]
        if split:  # planned when more was left: retired unsent, the next plan cuts smaller ones

            def retire(latest: Manifest) -> None:
                for sid in split:
                    x = latest.shards[sid]
                    if x.state == ShardState.PENDING:
                        x.move(ShardState.CANCELLED)
                        x.message = "not sent: planned again smaller, to fit --max-cost"

            run.update(retire)
            run.log(
                f"{len(split)} shard(s) too big for what is left of --max-cost: "
                "planning smaller ones"
            )
            return
        raise BudgetError(
            f"run {run.run_id}: --max-cost ${limit:,.2f} reached — ${spent:,.2f} spent, "
            f"{sum(s.requests for s in pending):,} requests in {len(pending)} shard(s) not "
            f"sent (the next could bill up to ${min(s.bound_usd for s in blocked):,.2f}, "
            f"${max(limit - spent, 0):,.2f} is left) — continue with "
            f"`afbatch run {run.run_id} --max-cost <more USD>`"
        )
    if not pending:
        raise RunError(stuck_message(run, m))


def stuck_message(run: Run, m: Manifest) -> str:
    """Why nothing can be sent though the run is not done: which requests, held by which shards,
    and the way out. Planning and the ledger agree on every store afbatch wrote: this is for a
    store changed by hand."""
    name = f"run {run.run_id}"
    ids = {r.id for r in run.state(m).wanted}
    if not ids:
        return f"{name} cannot make progress: nothing is needed or in flight, yet it is not done"
    holders = []
    for s in sorted(m.shards.values(), key=lambda s: s.id):
        try:
            if ids.intersection(run.shard_ids(s)):
                holders.append(f"{s.id} ({s.state.value})")
        except KeyError:
            holders.append(f"{s.id} (its .ids file is missing)")
    some = ", ".join(sorted(ids)[:3]) + (", …" if len(ids) > 3 else "")
    held = (
        f"held by shard(s) {', '.join(holders[:5])} whose stored results lack them"
        if holders
        else "held by no shard, yet none could be planned"
    )
    return (
        f"{name} cannot make progress: {len(ids)} needed request(s) ({some}) are {held} — "
        f"the store under {layout.run_folder(run.run_id)}/ was changed. Restore it, or "
        "rename the job to start a new run in this store: it reuses every answer stored "
        "here and asks only for the rest"
    )
