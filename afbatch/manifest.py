"""The run manifest: the single source of truth of a run, versioned, changed only by
compare-and-swap.

It holds the job's fingerprint, the pinned inputs, the estimate, and every shard with its
provider id and state. Requests and results live in immutable store objects the manifest
points to (`shards/<id>.jsonl`, `shards/<id>.ids`, `results/<id>.jsonl`): each shard is one
attempt of its requests, and its results file is that attempt's outcome — attempts are never
overwritten, a retry is a new shard.

Shard states and the only legal moves:

    pending ──▶ submitting ──▶ submitted ──▶ ended ──▶ collected
                    │  ▲                       ▲
                    │  └── (nothing was created: back to pending)
                    └──────────────────────────┘ (the provider refused the batch)
    pending | submitting ──▶ cancelled
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from afbatch import layout
from afbatch.errors import ConflictError, RunError, StoreError
from afbatch.store import Store

MANIFEST_VERSION: Final = 1
T = TypeVar("T")


class ShardState(StrEnum):
    PENDING = "pending"  # request file stored, nothing sent
    SUBMITTING = (
        "submitting"  # intent recorded with its idempotency token; the create call may be in flight
    )
    SUBMITTED = "submitted"  # the provider's batch id is known
    ENDED = "ended"  # the provider reports a terminal status; results not stored yet
    COLLECTED = "collected"  # results stored: final
    CANCELLED = "cancelled"  # cancelled before anything was created


TRANSITIONS: dict[ShardState, frozenset[ShardState]] = {
    ShardState.PENDING: frozenset({ShardState.SUBMITTING, ShardState.CANCELLED}),
    ShardState.SUBMITTING: frozenset(
        {ShardState.SUBMITTED, ShardState.PENDING, ShardState.ENDED, ShardState.CANCELLED}
    ),
    ShardState.SUBMITTED: frozenset({ShardState.ENDED}),
    ShardState.ENDED: frozenset({ShardState.COLLECTED}),
    ShardState.COLLECTED: frozenset(),
    ShardState.CANCELLED: frozenset(),
}
IN_FLIGHT = frozenset(
    {ShardState.PENDING, ShardState.SUBMITTING, ShardState.SUBMITTED, ShardState.ENDED}
)
# May bill, and what it billed is not known yet.
SENT = frozenset({ShardState.SUBMITTING, ShardState.SUBMITTED, ShardState.ENDED})


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Usage(_Model):
    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0


class Shard(_Model):
    id: str
    model: str = Field(description="Model label (the judge model's label for judge stages).")
    stage: str
    round: int = Field(description="Model turn for generation; 1 for judges.")
    attempt: int = Field(
        1, description="Attempt of the requests it holds (a retry is a new shard)."
    )
    provider: str
    requests: int
    bytes: int
    sha256: str
    key: str = Field(description="Store key of the provider JSONL.")
    ids_key: str = Field(description="Store key of the request ids, in line order.")
    on_demand: bool = Field(
        False, description="Sent as on-demand calls (Bedrock rows under the 100-record minimum)."
    )
    bound_usd: float = Field(0.0, description="The most this shard can bill (for --max-cost).")
    state: ShardState = ShardState.PENDING
    token: str = Field(description="Idempotency token sent to the provider.")
    owner: str | None = None
    intent_at: float | None = None
    submit_errors: int = 0
    batch_id: str | None = None
    provider_status: str | None = None
    status: str | None = Field(None, description="Normalised provider status (BatchStatus).")
    message: str | None = Field(None, description="The provider's own words when the batch failed.")
    submitted_at: float | None = None
    ended_at: float | None = None
    collected_at: float | None = None
    results_key: str | None = None
    verdicts_key: str | None = Field(
        None,
        description=(
            "Judge shards: the same rows without the reply texts, which states and reports read."
        ),
    )
    # Recorded when the files are written (optional: runs collected by older versions have none), so
    # `afbatch verify` can tell a damaged results file from an intact one.
    results_sha256: str | None = None
    results_lines: int | None = None
    verdicts_sha256: str | None = None
    verdicts_lines: int | None = None
    replaced: list[str] = Field(
        default_factory=list,
        description="Damaged files `afbatch verify --repair` replaced (kept in the store).",
    )
    counts: dict[str, int] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float = 0.0

    def move(self, to: ShardState) -> None:
        if to not in TRANSITIONS[self.state]:
            raise RunError(f"shard {self.id}: illegal state change {self.state} → {to}")
        self.state = to


class InputPin(_Model):
    ref: str
    sha256: str
    key: str


class Manifest(_Model):
    version: Literal[1] = MANIFEST_VERSION
    run_id: str
    job_name: str
    job_fingerprint: str
    job_key: str
    job_path: str = Field(
        description="Where the job file was; paths inside it resolve against its folder."
    )
    inputs: dict[str, InputPin]
    prefill: dict[str, bool] = Field(
        default_factory=dict, description="Per model label: whether the prefill is sent."
    )
    prefill_reason: dict[str, str] = Field(
        default_factory=dict, description="Per model label: why the prefill is sent or not."
    )
    created_at: float
    updated_at: float
    estimate: dict[str, Any] = Field(default_factory=dict)
    max_cost: float | None = None
    cancelled: bool = False
    shards: dict[str, Shard] = Field(default_factory=dict)
    finished_at: float | None = None

    def spent_usd(self) -> float:
        return sum(s.cost_usd for s in self.shards.values())

    def committed_usd(self) -> float:
        """Spent, plus the bound of everything sent or being sent (pending costs nothing yet)."""
        return self.spent_usd() + sum(s.bound_usd for s in self.shards.values() if s.state in SENT)


def manifest_key(run_id: str) -> str:
    return layout.manifest_key(run_id)


def dumps(m: Manifest) -> bytes:
    return json.dumps(m.model_dump(mode="json"), indent=1, sort_keys=True).encode()


def load(store: Store, run_id: str) -> tuple[Manifest, str]:
    got = store.read_versioned(manifest_key(run_id))
    if got is None:
        raise RunError(
            f"no run {run_id!r} in {store.url} — `afbatch runs` lists the runs there "
            "(or pass --store)"
        )
    data, version = got
    try:
        raw = json.loads(data)
    except ValueError as e:
        raise StoreError(
            f"{store.url}/{manifest_key(run_id)}: not JSON ({e}) — the file is damaged"
        ) from None
    except RecursionError:
        raise StoreError(
            f"{store.url}/{manifest_key(run_id)}: not a manifest "
            "(JSON nested too deeply) — the file is damaged"
        ) from None
    if not isinstance(raw, dict):
        raise StoreError(
            f"{store.url}/{manifest_key(run_id)}: not a JSON object — the file is damaged"
        )
    if raw.get("version") != MANIFEST_VERSION:
        raise RunError(
            f"run {run_id}: manifest version {raw.get('version')} is not supported by "
            f"this afbatch (expects {MANIFEST_VERSION})"
        )
    try:
        return Manifest.model_validate(raw), version
    except ValidationError as e:
        first = e.errors()[0]
        raise StoreError(
            f"{store.url}/{manifest_key(run_id)}: invalid manifest at "
            f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None


def create(store: Store, m: Manifest) -> str:
    return store.create(manifest_key(m.run_id), dumps(m))


def update(store: Store, run_id: str, mutate: Callable[[Manifest], T], attempts: int = 50) -> T:
    """Apply `mutate` to the latest manifest and save it by compare-and-swap, reloading on every
    conflict.

    `mutate` must decide from the manifest it is given (it may run several times) and may raise to
    abort.
    """
    for _ in range(attempts):
        m, version = load(store, run_id)
        result = mutate(m)
        m.updated_at = time.time()
        try:
            store.replace(manifest_key(run_id), dumps(m), version)
            return result
        except ConflictError:
            time.sleep(0.01)
    raise RunError(
        f"run {run_id}: the manifest kept changing under {attempts} attempts to update it — retry"
    )


def list_runs(store: Store) -> list[str]:
    found = (layout.run_of_manifest(k) for k in store.list(layout.ROOT))
    return sorted({run for run in found if run is not None})
