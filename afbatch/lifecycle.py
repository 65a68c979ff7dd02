"""The shard lifecycle at the provider: submit, reconcile, poll, cancel (collect: collect.py).

Every step reads the latest manifest, does one provider call or store write, and records its
outcome by compare-and-swap, as one legal transition of the shard (manifest.py):
pending → submitting (claim, before the create) → submitted (create answered, or reconcile found
the batch) → ended (poll saw it end; a create the provider refused ends at once); submitting →
pending (reconcile: nothing was created); pending → cancelled (cancel before sending).
A shard found `submitting` after a crash or a failed create is reconciled with the provider
(OpenAI: batch metadata; Anthropic: the batch created after the intent whose results are exactly
the shard's request ids; Bedrock: clientRequestToken / job name) before anything is created again.
While the provider cannot tell yet, the shard stays `submitting` and is asked about again.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afbatch import jsonl, layout
from afbatch.checked_reads import damaged
from afbatch.errors import ProviderError, RunError
from afbatch.ids import check as check_id
from afbatch.manifest import Manifest, Shard, ShardState
from afbatch.providers import BatchStatus, Found
from afbatch.redact import redact

if TYPE_CHECKING:
    from afbatch.runner import Run

LEASE_SECONDS = float(os.environ.get("AFBATCH_LEASE_SECONDS", "600"))
# After a crash, wait this long after the recorded intent before concluding nothing was created:
# a create request that reached the provider just before the crash may still be in progress there.
RECONCILE_GRACE_SECONDS = float(os.environ.get("AFBATCH_RECONCILE_GRACE_SECONDS", "20"))
MAX_SUBMIT_ERRORS = 5
ON_DEMAND_CHUNK = 25


def crashpoint(name: str) -> None:
    """Test hook: AFBATCH_CRASH_AT=<name>[:<n>] kills this process (SIGKILL) the n-th time it passes
    <name>."""
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
    """True unless the owner is a process on this host that is gone. Other hosts: assume alive (the
    lease decides)."""
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


def fits(m: Manifest, s: Shard, max_cost: float | None) -> bool:
    """Whether sending `s` now keeps spend plus the bounds of all that may still bill in the cap."""
    limit = max_cost if max_cost is not None else m.max_cost
    return limit is None or m.committed_usd() + s.bound_usd <= limit


@contextmanager
def _local_file(run: Run, key: str) -> Iterator[str]:
    local = getattr(run.store, "local_path", None)
    if local:
        yield local(key)
        return
    with tempfile.TemporaryDirectory(prefix="afbatch-") as tmp:
        path = os.path.join(tmp, os.path.basename(key))
        try:
            run.store.download(key, path)
        except KeyError:
            raise damaged(run.store, key, "missing") from None
        yield path


def submit_pending(run: Run, max_cost: float | None = None) -> int:
    submitted = 0
    for sid in [s.id for s in run.manifest().shards.values() if s.state == ShardState.PENDING]:
        if _submit(run, sid, max_cost):
            submitted += 1
    return submitted


def _submit(run: Run, sid: str, max_cost: float | None) -> bool:
    now = time.time()

    def claim(m: Manifest) -> Shard | None:
        s = m.shards[sid]
        if s.state != ShardState.PENDING or m.cancelled:
            return None
        if not fits(m, s, max_cost):
            return None  # waits: batches in flight free budget as they end (see run())
        s.move(ShardState.SUBMITTING)
        s.owner, s.intent_at = run.owner, now
        return s.model_copy()

    shard = run.update(claim)
    if shard is None:
        return False
    crashpoint("after-claim")
    if shard.on_demand:
        _run_on_demand(run, shard)
        return True
    provider = run.provider(shard.model)
    try:
        with _local_file(run, shard.key) as path:
            _check_shard_file(run, shard, path)
            batch_id = provider.submit(
                path,
                shard.requests,
                shard.token,
                {"afbatch_run": run.run_id[:500], "afbatch_shard": shard.id[:500]},
            )
    except ProviderError as e:
        _submit_failed(run, shard, e)
        return False
    crashpoint("after-create")
    _mark_submitted(run, shard.id, batch_id)
    run.log(f"submitted {shard.id} → {batch_id}")
    crashpoint("after-submitted")
    return True


def _check_shard_file(run: Run, shard: Shard, path: str) -> None:
    try:
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except FileNotFoundError:
        raise damaged(
            run.store, shard.key, f"missing (the request file of shard {shard.id})"
        ) from None
    if digest != shard.sha256:
        raise damaged(
            run.store, shard.key, f"the request file of shard {shard.id} does not match its sha256"
        )
    rids = run.shard_ids(shard)
    if len(rids) != len(set(rids)) or len(rids) != shard.requests:
        raise RunError(f"shard {shard.id}: request ids are not unique — refusing to submit")
    for rid in rids:
        check_id(rid, f"shard {shard.id}")


def _mark_submitted(run: Run, sid: str, batch_id: str) -> None:
    def done(m: Manifest) -> None:
        s = m.shards[sid]
        if s.state == ShardState.SUBMITTING:
            s.move(ShardState.SUBMITTED)
            s.batch_id, s.submitted_at, s.owner = batch_id, time.time(), None

    run.update(done)


def _submit_failed(run: Run, shard: Shard, e: ProviderError) -> None:
    undecided = None
    if e.retryable:
        # The create may or may not have happened: find it before concluding it did not.
        try:
            found = _find(run, shard)
        except ProviderError as fe:
            found = Found(undecided=f"cannot look for it yet: {fe}")
        if found.batch_id:
            _mark_submitted(run, shard.id, found.batch_id)
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
            s.move(
                ShardState.ENDED
            )  # the provider refused it: its rows fail with the provider's message
            s.status, s.ended_at, s.owner = BatchStatus.FAILED.value, time.time(), None
        else:  # try again later; a missing key or permission stops the run below, and costs no row
            s.move(ShardState.PENDING)
            s.owner = None

    run.update(back)
    if not e.rejects_request and (not e.retryable or shard.submit_errors + 1 >= MAX_SUBMIT_ERRORS):
        raise e
    run.log(f"submit of {shard.id} failed: {redact(str(e))}")


def _claimed(run: Run) -> frozenset[str]:
    return frozenset(s.batch_id for s in run.manifest().shards.values() if s.batch_id)


def _find(run: Run, shard: Shard) -> Found:
    """Ask the provider which batch, if any, this `submitting` shard created."""
    provider = run.provider(shard.model)
    line_ids = [provider.line_id(rid) for rid in run.shard_ids(shard)]
    return provider.find(shard.token, line_ids, shard.intent_at or time.time(), _claimed(run))


def _run_on_demand(run: Run, shard: Shard) -> None:
    provider = run.provider(shard.model)
    invoke = getattr(provider, "invoke", None)
    if invoke is None:
        raise RunError(f"{shard.model}: on-demand calls are only available for Bedrock")
    with _local_file(run, shard.key) as path:
        lines = jsonl.read(Path(path).read_bytes())
    # Progress is kept in immutable chunks, so a crash never repeats a paid call that finished.
    for start in range(0, len(lines), ON_DEMAND_CHUNK):
        key = layout.part_key(run.run_id, shard.id, start // ON_DEMAND_CHUNK)
        if run.store.exists(key):
            continue
        out = [invoke(line) for line in lines[start : start + ON_DEMAND_CHUNK]]
        run.store.write(key, jsonl.write(out))
        crashpoint("after-on-demand-chunk")

    def ended(m: Manifest) -> None:
        s = m.shards[shard.id]
        if s.state == ShardState.SUBMITTING:
            s.move(ShardState.SUBMITTED)
            s.move(ShardState.ENDED)
            s.batch_id, s.status, s.ended_at, s.owner = (
                "on-demand",
                BatchStatus.COMPLETED.value,
                time.time(),
                None,
            )

    run.update(ended)


def reconcile(run: Run) -> int:
    """Shards left `submitting` by a dead worker: adopt the batch the provider has, or send them
    again."""
    m = run.manifest()
    now = time.time()
    fixed = 0
    for s in m.shards.values():
        if s.state != ShardState.SUBMITTING or s.owner == run.owner:
            continue
        stale = not owner_alive(s.owner) or now - (s.intent_at or 0) > LEASE_SECONDS
        if not stale or now - (s.intent_at or 0) < RECONCILE_GRACE_SECONDS:
            continue
        if s.on_demand:
            _take_over(run, s)
            _run_on_demand(run, s)
            fixed += 1
            continue
        try:
            outcome = _find(run, s)
        except ProviderError as e:
            run.log(f"reconcile of {s.id} postponed: {e}")
            continue
        if outcome.undecided:  # stays `submitting`, in flight: asked again at the next step
            run.log(f"reconcile of {s.id} waits: {outcome.undecided}")
            continue
        found, stale_owner = outcome.batch_id, s.owner

        def settle(
            latest: Manifest,
            sid: str = s.id,
            found: str | None = found,
            stale_owner: str | None = stale_owner,
        ) -> None:
            x = latest.shards[sid]
            if x.state != ShardState.SUBMITTING or x.owner != stale_owner:
                return
            if found:
                x.move(ShardState.SUBMITTED)
                x.batch_id, x.submitted_at = found, time.time()
            else:
                x.move(ShardState.PENDING)
            x.owner = None

        run.update(settle)
        run.log(
            f"reconciled {s.id}: "
            + (f"found {found}" if found else "nothing was created; will resubmit")
        )
        fixed += 1
    return fixed


def _take_over(run: Run, s: Shard) -> None:
    def take(latest: Manifest) -> None:
        x = latest.shards[s.id]
        if x.state == ShardState.SUBMITTING:
            x.owner, x.intent_at = run.owner, time.time()

    run.update(take)


def poll(run: Run) -> int:
    ended = 0
    for s in [s for s in run.manifest().shards.values() if s.state == ShardState.SUBMITTED]:
        try:
            info = run.provider(s.model).poll(s.batch_id or "")
        except ProviderError as e:
            run.log(f"poll of {s.id} failed: {e}")
            continue
        if not info.status.terminal:
            if s.provider_status != info.raw_status:

                def note(m: Manifest, sid: str = s.id, raw: str = info.raw_status) -> None:
                    m.shards[sid].provider_status = raw

                run.update(note)
            continue

        def end(m: Manifest, sid: str = s.id, info: Any = info) -> None:
            x = m.shards[sid]
            if x.state == ShardState.SUBMITTED:
                x.move(ShardState.ENDED)
                x.status, x.provider_status, x.ended_at = (
                    info.status.value,
                    info.raw_status,
                    time.time(),
                )
                x.message = redact(info.message) if info.message else x.message

        run.update(end)
        ended += 1
        crashpoint("after-ended")
    return ended


def cancel(run: Run) -> list[str]:
    def mark(m: Manifest) -> list[str]:
        m.cancelled = True
        for s in m.shards.values():
            if s.state == ShardState.PENDING:
                s.move(ShardState.CANCELLED)
        return [s.id for s in m.shards.values() if s.state == ShardState.SUBMITTED]

    to_cancel = run.update(mark)
    done = []
    for sid in to_cancel:
        s = run.manifest().shards[sid]
        try:
            run.provider(s.model).cancel(s.batch_id or "")
            done.append(sid)
        except ProviderError as e:
            run.log(f"cancel of {sid} failed: {e}")
    return done
