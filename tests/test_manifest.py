"""The run manifest: shard state machine, (de)serialisation, load errors, compare-and-swap updates,
runs, costs."""

from __future__ import annotations

import itertools
import json

import pytest
from pydantic import ValidationError

from afbatch import manifest as mf
from afbatch.errors import ConflictError, RunError, StoreError
from afbatch.manifest import IN_FLIGHT, MANIFEST_VERSION, TRANSITIONS, Manifest, ShardState
from afbatch.store import LocalStore
from s3_fixtures import (  # noqa: F401 - fixtures, used as test parameters
    moto_endpoint,
    new_manifest,
    new_shard,
    s3_bucket,
    s3_env,
    s3_url,
    store,
    twin,
)

P, SG, SD, E, C, X = (
    ShardState.PENDING,
    ShardState.SUBMITTING,
    ShardState.SUBMITTED,
    ShardState.ENDED,
    ShardState.COLLECTED,
    ShardState.CANCELLED,
)

# The diagram in manifest.py's docstring, written out: the only legal moves.
DIAGRAM = {(P, SG), (SG, SD), (SD, E), (E, C), (SG, P), (SG, E), (P, X), (SG, X)}


@pytest.fixture
def local(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


def two_shard_manifest(run_id: str = "r1") -> Manifest:
    return new_manifest(
        run_id,
        shards=[
            new_shard("s1", bound_usd=1.5),
            new_shard(
                "s2",
                model="gpt",
                provider="openai",
                state=ShardState.SUBMITTED,
                batch_id="batch_abc",
                submitted_at=1001.0,
                owner="host:1",
            ),
        ],
        estimate={"totals": {"cost_worst_usd": 3.0}},
        max_cost=10.0,
        prefill={"haiku": True, "gpt": False},
    )


# --- state machine -------------------------------------------------------------------------------


def test_transitions_match_the_documented_diagram():
    assert set(TRANSITIONS) == set(ShardState)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == DIAGRAM
    assert IN_FLIGHT == {s for s in ShardState if TRANSITIONS[s]}  # in flight = not final
    assert TRANSITIONS[C] == TRANSITIONS[X] == frozenset()


@pytest.mark.parametrize("src,dst", sorted(DIAGRAM))
def test_every_legal_move(src, dst):
    s = new_shard("s1", state=src)
    s.move(dst)
    assert s.state == dst


@pytest.mark.parametrize(
    "src,dst", sorted(set(itertools.product(ShardState, ShardState)) - DIAGRAM)
)
def test_every_illegal_move_raises_and_changes_nothing(src, dst):
    s = new_shard("shard-7", state=src)
    with pytest.raises(RunError, match=f"shard-7: illegal state change {src} → {dst}"):
        s.move(dst)
    assert s.state == src


def test_a_shard_walks_the_happy_path_and_a_retry_path():
    s = new_shard("s1")
    for to in (
        SG,
        P,
        SG,
        SD,
        E,
        C,
    ):  # nothing created the first time: back to pending, then all the way
        s.move(to)
    assert s.state == C
    refused = new_shard("s2")
    for to in (SG, E, C):  # the provider refused the batch
        refused.move(to)
    assert refused.state == C


# --- serialisation -------------------------------------------------------------------------------


def test_dumps_is_sorted_json_with_the_version():
    m = two_shard_manifest()
    raw = json.loads(mf.dumps(m))
    assert raw["version"] == MANIFEST_VERSION == 1
    assert raw["shards"]["s2"]["state"] == "submitted" and raw["shards"]["s1"]["state"] == "pending"
    assert list(raw) == sorted(raw)
    assert mf.dumps(Manifest.model_validate(raw)) == mf.dumps(m)  # deterministic


def test_create_then_load_round_trips(store):
    m = two_shard_manifest()
    version = mf.create(store, m)
    assert mf.manifest_key("r1") == "runs/r1/manifest.json"
    assert store.exists("runs/r1/manifest.json")
    loaded, v = mf.load(store, "r1")
    assert loaded == m and v == version
    assert loaded.shards["s2"].state is ShardState.SUBMITTED
    assert loaded.inputs["dataset"].sha256 == "a" * 64


def test_create_twice_conflicts(local):
    mf.create(local, two_shard_manifest())
    with pytest.raises(ConflictError):
        mf.create(local, new_manifest("r1"))
    assert len(mf.load(local, "r1")[0].shards) == 2


def test_models_reject_unknown_fields():
    with pytest.raises(ValidationError):
        new_manifest("r1", surprise=1)
    with pytest.raises(ValidationError):
        new_shard("s1", surprise=1)
    with pytest.raises(ValidationError):
        new_shard("s1", state="lost")


# --- load errors ----------------------------------------------------------------------------------


def test_load_of_a_missing_run_names_the_store(local):
    with pytest.raises(RunError) as ei:
        mf.load(local, "r-missing")
    assert "r-missing" in str(ei.value) and local.url in str(ei.value)


def _raw(m: Manifest) -> dict:
    return json.loads(mf.dumps(m))


@pytest.mark.parametrize("version", [2, 0, None])
def test_load_of_another_manifest_version_is_a_clear_run_error(local, version):
    raw = _raw(two_shard_manifest())
    raw["version"] = version
    if version is None:
        del raw["version"]
    local.write("runs/r1/manifest.json", json.dumps(raw).encode())
    with pytest.raises(RunError) as ei:
        mf.load(local, "r1")
    msg = str(ei.value)
    assert "r1" in msg and f"version {version}" in msg and f"expects {MANIFEST_VERSION}" in msg


@pytest.mark.parametrize(
    "damage", [b"{not json", b"", b"\xff\xfe\x00garbage", b'{"version": 1, "run_id": "r1"']
)
def test_load_of_a_damaged_manifest_is_a_store_error_naming_the_key(local, damage):
    local.write("runs/r1/manifest.json", damage)
    with pytest.raises(StoreError) as ei:
        mf.load(local, "r1")
    assert f"{local.url}/runs/r1/manifest.json" in str(ei.value) and "damaged" in str(ei.value)


@pytest.mark.parametrize("damage", [b"[]", b"null", b'"manifest"', b"42"])
def test_load_of_json_that_is_not_an_object_is_a_store_error(local, damage):
    local.write("runs/r1/manifest.json", damage)
    with pytest.raises(StoreError, match="runs/r1/manifest.json"):
        mf.load(local, "r1")


@pytest.mark.parametrize(
    "edit,where",
    [
        (lambda raw: raw.pop("job_name"), "job_name"),
        (lambda raw: raw["shards"]["s1"].update(state="lost"), "shards.s1.state"),
        (lambda raw: raw.update(surprise=1), "surprise"),
    ],
)
def test_load_of_an_invalid_manifest_is_a_store_error_naming_the_field(local, edit, where):
    raw = _raw(two_shard_manifest())
    edit(raw)
    local.write("runs/r1/manifest.json", json.dumps(raw).encode())
    with pytest.raises(StoreError) as ei:
        mf.load(local, "r1")
    assert f"{local.url}/runs/r1/manifest.json: invalid manifest at {where}:" in str(ei.value)


# --- update: compare-and-swap with retries --------------------------------------------------------


def test_update_saves_the_mutation_and_returns_its_result(store):
    v0 = mf.create(store, two_shard_manifest())

    def submit(m: Manifest) -> str:
        m.shards["s1"].move(ShardState.SUBMITTING)
        m.shards["s1"].owner = "me"
        return "done"

    assert mf.update(store, "r1", submit) == "done"
    m, v1 = mf.load(store, "r1")
    assert v1 != v0
    assert m.shards["s1"].state is ShardState.SUBMITTING and m.shards["s1"].owner == "me"
    assert m.updated_at > 1000.0 and m.created_at == 1000.0


def test_update_that_raises_writes_nothing(local):
    v0 = mf.create(local, two_shard_manifest())

    def illegal(m: Manifest) -> None:
        m.max_cost = 99.0
        m.shards["s2"].move(ShardState.COLLECTED)  # submitted → collected skips ended

    with pytest.raises(RunError, match="illegal state change"):
        mf.update(local, "r1", illegal)
    m, v = mf.load(local, "r1")
    assert v == v0 and m.max_cost == 10.0


def test_update_of_a_missing_run_is_a_run_error(local):
    with pytest.raises(RunError, match="no run 'nope'"):
        mf.update(local, "nope", lambda m: None)


class RacingStore:
    """Delegates to a real store; before the first `replace`, another worker's update lands."""

    def __init__(self, inner, competitor):
        self.inner, self.competitor, self.url = inner, competitor, inner.url
        self.replaces = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def replace(self, key, data, version):
        self.replaces += 1
        if self.replaces == 1:
            mf.update(
                self.competitor,
                "r1",
                lambda m: m.shards.__setitem__("theirs", new_shard("theirs", bound_usd=2.0)),
            )
        return self.inner.replace(key, data, version)  # the real compare-and-swap decides


def test_update_retries_on_conflict_and_reruns_mutate_on_the_fresh_manifest(store):
    mf.create(store, two_shard_manifest())
    racing = RacingStore(store, twin(store))
    seen: list[set[str]] = []

    def mine(m: Manifest) -> int:
        seen.append(set(m.shards))
        m.shards["mine"] = new_shard("mine", bound_usd=4.0)
        return len(seen)

    assert mf.update(racing, "r1", mine) == 2
    assert seen == [
        {"s1", "s2"},
        {"s1", "s2", "theirs"},
    ]  # the second run saw the competitor's change
    assert racing.replaces == 2
    m, _ = mf.load(store, "r1")
    assert set(m.shards) == {"s1", "s2", "theirs", "mine"}  # neither update is lost


def test_update_gives_up_after_its_attempts(local):
    mf.create(local, two_shard_manifest())

    class AlwaysConflicting:
        url = local.url
        read_versioned = staticmethod(local.read_versioned)

        def replace(self, key, data, version):
            raise ConflictError(f"{key} changed since it was read")

    calls = []
    with pytest.raises(RunError, match="3 attempts"):
        mf.update(AlwaysConflicting(), "r1", lambda m: calls.append(1), attempts=3)
    assert len(calls) == 3


def test_update_does_not_retry_other_store_errors(local):
    mf.create(local, two_shard_manifest())

    class Broken:
        url = local.url
        read_versioned = staticmethod(local.read_versioned)

        def replace(self, key, data, version):
            raise StoreError(f"{key}: cannot write: disk full")

    calls = []
    with pytest.raises(StoreError, match="disk full") as ei:
        mf.update(Broken(), "r1", lambda m: calls.append(1))
    assert not isinstance(ei.value, ConflictError) and len(calls) == 1


# --- runs -----------------------------------------------------------------------------------------


def test_list_runs(store):
    assert mf.list_runs(store) == []
    for run_id in ("r2", "r10", "r1"):
        mf.create(store, new_manifest(run_id))
    store.write("runs/r3/job.toml", b"no manifest yet")
    store.write("runs/r4/sub/manifest.json", b"{}")  # nested: not a run
    store.write("runs/manifest.json", b"{}")
    store.write("other/r5/manifest.json", b"{}")
    store.write("runs/r1/shards/s1.jsonl", b"")
    assert mf.list_runs(store) == ["r1", "r10", "r2"]


# --- costs ----------------------------------------------------------------------------------------


def test_spent_and_committed_usd():
    assert new_manifest().spent_usd() == 0 and new_manifest().committed_usd() == 0
    shards = [
        new_shard(f"s-{st}", state=st, bound_usd=2.0**i, cost_usd=2.0 ** (i + 8))
        for i, st in enumerate(ShardState)
    ]
    m = new_manifest(shards=shards)
    by = {s.state: s for s in shards}
    spent = sum(s.cost_usd for s in shards)
    assert m.spent_usd() == spent  # every shard's cost counts, whatever its state
    in_flight = sum(by[s].bound_usd for s in (SG, SD, E))
    assert (
        m.committed_usd() == spent + in_flight
    )  # plus the bounds of what is, or may be, at the provider
    assert m.committed_usd() == spent + 2 + 4 + 8  # submitting, submitted, ended; nothing else


def test_committed_usd_follows_the_state():
    s = new_shard("s1", bound_usd=5.0)
    m = new_manifest(shards=[s])
    assert (m.spent_usd(), m.committed_usd()) == (0.0, 0.0)  # nothing sent: nothing can bill yet
    for to in (SG, SD, E):
        m.shards["s1"].move(to)
        assert m.committed_usd() == 5.0
    m.shards["s1"].move(C)
    m.shards["s1"].cost_usd = 1.25
    assert (m.spent_usd(), m.committed_usd()) == (1.25, 1.25)
    other = new_manifest(shards=[new_shard("s2", bound_usd=5.0)])
    other.shards["s2"].move(X)
    assert other.committed_usd() == 0.0
