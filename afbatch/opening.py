"""Creating and reopening runs: a run's id, its pinned inputs and job, its first manifest.

A run is created from a job file (its inputs read, sha256-pinned and copied into the store) and
reopened by id from what the store holds alone, so a run never depends on files that may change.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afbatch import layout
from afbatch import manifest as mf
from afbatch.batch_minimums import check_batch_minimums
from afbatch.checked_reads import damaged
from afbatch.datasets import Source, read_source, sha256_bytes
from afbatch.errors import ConflictError, InputError, RunError
from afbatch.grid import Grid, load_grid
from afbatch.manifest import InputPin, Manifest
from afbatch.prefill import prefill_decision
from afbatch.pricing import PriceTable, load_prices
from afbatch.providers import get_provider
from afbatch.spec import Job, LoadedJob, load_job, parse_job
from afbatch.store import Store


@dataclass
class Opened:
    run_id: str
    grid: Grid
    prices: PriceTable


def run_id_for(grid: Grid) -> str:
    pins = {k: v["sha256"] for k, v in grid.inputs.items()}
    digest = hashlib.sha256(
        (grid.loaded.fingerprint + json.dumps(pins, sort_keys=True)).encode()
    ).hexdigest()
    return f"{grid.job.name}-{digest[:10]}"


def create(
    store: Store,
    job_path: str,
    *,
    offline: bool = False,
    prices_file: str | None = None,
    estimate: dict[str, Any] | None = None,
    max_cost: float | None = None,
) -> tuple[Opened, bool]:
    """Create the run of a job, or find it if this job (same content, same inputs) already has
    one. True when this call created it."""
    loaded = load_job(job_path)
    grid = load_grid(loaded, offline=offline)
    check_batch_minimums(grid)  # before anything is written: no run that cannot start
    prices = load_prices(
        prices_file or (loaded.resolve(loaded.job.prices) if loaded.job.prices else None)
    )
    for model in loaded.job.models:
        prices.lookup(model)
    run_id = run_id_for(grid)
    created = False
    if not store.exists(layout.manifest_key(run_id)):
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
        manifest = Manifest(
            run_id=run_id,
            job_name=loaded.job.name,
            job_fingerprint=loaded.fingerprint,
            job_key=layout.job_key(run_id),
            job_path=str(loaded.path),
            inputs=pins,
            created_at=now,
            updated_at=now,
            estimate=estimate or {},
            max_cost=max_cost,
            prefill={name: d.sent for name, d in prefill.items()},
            prefill_reason={name: d.reason for name, d in prefill.items()},
        )
        try:
            mf.create(store, manifest)
            created = True
        except ConflictError:  # another process created it meanwhile
            pass
    if max_cost is not None:
        mf.update(store, run_id, lambda m: setattr(m, "max_cost", max_cost))
    return Opened(run_id, grid, prices), created


def open_run(store: Store, run_id: str, *, prices_file: str | None = None) -> Opened:
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
            raise RunError(
                f"run {run_id}: stored copy of {ref} does not match its sha256 {pin.sha256}"
            )
        return Source(ref=ref, data=data, sha256=pin.sha256)

    try:
        job_text = store.read(m.job_key).decode()
    except KeyError:
        raise damaged(store, m.job_key, "missing (the job of this run)") from None
    loaded = parse_job(job_text, Path(m.job_path))
    grid = load_grid(loaded, read=read)
    own = loaded.resolve(loaded.job.prices) if loaded.job.prices else None
    prices = load_prices(prices_file or (own if own and os.path.exists(own) else None))
    return Opened(run_id, grid, prices)


def check_ready(job: Job) -> None:
    """Every model's credentials and settings are in place (no network), for a job without a run."""
    judge = job.judge
    specs = [
        *job.models,
        *([judge.model, *([judge.af_model] if judge.af_model else [])] if judge else []),
    ]
    for spec in specs:
        get_provider(spec).ready()


def prepare(job_path: str, *, offline: bool = False) -> tuple[LoadedJob, str]:
    """A job checked as far as it can be before anything is written or sent (its inputs, batch
    minimums, every model's keys and settings), and the id of its run."""
    loaded = load_job(job_path)
    grid = load_grid(loaded, offline=offline)
    check_batch_minimums(grid)
    check_ready(loaded.job)  # keys and settings before anything else
    return loaded, run_id_for(grid)
