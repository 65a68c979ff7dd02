"""The Store protocol, for a local folder and for S3 (moto over HTTP): objects, compare-and-swap,
races, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from afbatch import manifest as mf
from afbatch.errors import ConflictError, StoreError
from afbatch.store import DEFAULT_STORE, LocalStore, S3Store, open_store
from s3_fixtures import (  # noqa: F401 - fixtures, used as test parameters
    SECRET,
    boto_client,
    moto_endpoint,
    new_manifest,
    s3_bucket,
    s3_env,
    s3_url,
    store,
    twin,
)

# --- objects -----------------------------------------------------------------------------------


def test_write_read_exists(store):
    store.write("runs/r1/shards/s1.jsonl", b'{"a": 1}\n')
    assert store.read("runs/r1/shards/s1.jsonl") == b'{"a": 1}\n'
    assert store.exists("runs/r1/shards/s1.jsonl")
    assert not store.exists("runs/r1/shards/s2.jsonl")
    assert not store.exists("runs/r2/manifest.json")  # nor its folder
    data, version = store.read_versioned("runs/r1/shards/s1.jsonl")
    assert data == b'{"a": 1}\n' and isinstance(version, str) and version
    store.write("runs/r1/shards/s1.jsonl", b"second")  # unconditional
    assert store.read("runs/r1/shards/s1.jsonl") == b"second"
    assert store.read_versioned("runs/r1/shards/s1.jsonl")[1] != version
    store.write("empty", b"")
    assert store.read("empty") == b"" and store.exists("empty")


def test_missing_object(store):
    with pytest.raises(KeyError):
        store.read("runs/nope/manifest.json")
    assert store.read_versioned("runs/nope/manifest.json") is None
    with pytest.raises(KeyError):
        store.download("runs/nope/manifest.json", "unused")


def test_download(store, tmp_path):
    store.write("runs/r1/inputs/abc", b"goal,target\nx,y\n")
    out = tmp_path / "copy.csv"
    store.download("runs/r1/inputs/abc", str(out))
    assert out.read_bytes() == b"goal,target\nx,y\n"


def test_list_recursive_under_prefix(store):
    keys = [
        "runs/r1/manifest.json",
        "runs/r1/shards/s1.jsonl",
        "runs/r1/shards/deep/s2.ids",
        "runs/r2/manifest.json",
        "other/x.txt",
    ]
    for k in keys:
        store.write(k, k.encode())
    # create/replace take a lock next to the key (local): it must not show up as an object
    v = store.create("runs/r3/manifest.json", b"{}")
    store.replace("runs/r3/manifest.json", b'{"x": 1}', v)
    keys.append("runs/r3/manifest.json")
    if isinstance(
        store, LocalStore
    ):  # a temp file left by a crash mid-write is not an object either
        (store.root / "runs" / "r1" / ".tmp-abc123").write_bytes(b"half")
    assert sorted(store.list("runs/r1/")) == [
        "runs/r1/manifest.json",
        "runs/r1/shards/deep/s2.ids",
        "runs/r1/shards/s1.jsonl",
    ]
    assert sorted(store.list("runs/")) == sorted(k for k in keys if k.startswith("runs/"))
    assert sorted(store.list("")) == sorted(keys)
    assert list(store.list("nothing/")) == []
    for k in store.list(""):
        assert store.read(k) in (k.encode(), b'{"x": 1}')  # listed keys are readable as given


def test_list_of_an_empty_store(store):
    assert list(store.list("")) == []
    assert list(store.list("runs/")) == []


def test_s3_keys_live_under_the_prefix(s3_url, s3_bucket):
    st = S3Store(s3_url)
    assert (st.bucket, st.prefix) == (s3_bucket, "team/af-runs")
    st.write("runs/r1/manifest.json", b"m")
    raw = boto_client()
    assert (
        raw.get_object(Bucket=s3_bucket, Key="team/af-runs/runs/r1/manifest.json")["Body"].read()
        == b"m"
    )
    # objects outside the prefix, including one whose name merely starts with it, are not the
    # store's
    raw.put_object(Bucket=s3_bucket, Key="team/af-runs-old/runs/r9/manifest.json", Body=b"no")
    raw.put_object(Bucket=s3_bucket, Key="elsewhere/runs/r8/manifest.json", Body=b"no")
    assert list(st.list("")) == ["runs/r1/manifest.json"]
    assert list(st.list("runs/")) == ["runs/r1/manifest.json"]
    whole = S3Store(f"s3://{s3_bucket}")
    assert whole.prefix == ""
    assert sorted(whole.list("")) == [
        "elsewhere/runs/r8/manifest.json",
        "team/af-runs-old/runs/r9/manifest.json",
        "team/af-runs/runs/r1/manifest.json",
    ]


# --- compare-and-swap --------------------------------------------------------------------------


def test_create_only_once(store):
    v = store.create("runs/r1/manifest.json", b"first")
    assert isinstance(v, str) and v
    assert store.read_versioned("runs/r1/manifest.json") == (b"first", v)
    with pytest.raises(ConflictError):
        store.create("runs/r1/manifest.json", b"second")
    assert store.read_versioned("runs/r1/manifest.json") == (b"first", v)


def test_create_over_an_unconditionally_written_object_conflicts(store):
    store.write("k", b"written")
    with pytest.raises(ConflictError):
        store.create("k", b"created")
    assert store.read("k") == b"written"


def test_replace_with_current_version(store):
    v1 = store.create("runs/r1/manifest.json", b"one")
    v2 = store.replace("runs/r1/manifest.json", b"two", v1)
    assert v2 != v1
    assert store.read_versioned("runs/r1/manifest.json") == (b"two", v2)
    v3 = store.replace(
        "runs/r1/manifest.json", b"three", v2
    )  # the returned version is the one to use next
    assert store.read_versioned("runs/r1/manifest.json") == (b"three", v3)


def test_replace_with_stale_version_changes_nothing(store):
    v1 = store.create("runs/r1/manifest.json", b"one")
    v2 = twin(store).replace("runs/r1/manifest.json", b"two", v1)  # another worker got there first
    with pytest.raises(ConflictError):
        store.replace("runs/r1/manifest.json", b"mine", v1)
    assert store.read_versioned("runs/r1/manifest.json") == (b"two", v2)
    with pytest.raises(ConflictError):
        store.replace("runs/r1/manifest.json", b"mine", "not-a-version")
    assert store.read("runs/r1/manifest.json") == b"two"


def test_replace_of_a_missing_object_conflicts_and_creates_nothing(store):
    with pytest.raises(ConflictError):
        store.replace("runs/r1/manifest.json", b"x", "whatever")
    assert not store.exists("runs/r1/manifest.json")


def test_concurrent_creates_exactly_one_wins(store):
    n = 8
    handles = [twin(store) for _ in range(n)]
    gate = threading.Barrier(n)
    won: list[int] = []
    lost: list[int] = []
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        gate.wait()
        try:
            handles[i].create("runs/r1/manifest.json", f"worker {i}".encode())
            won.append(i)
        except ConflictError:
            lost.append(i)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(won) == 1 and len(lost) == n - 1
    assert store.read("runs/r1/manifest.json") == f"worker {won[0]}".encode()


def _bump(worker: int, i: int):
    def mutate(m):
        m.max_cost = (m.max_cost or 0) + 1
        m.estimate[f"w{worker}-{i}"] = len(m.estimate)  # which updates landed, and in which order
        return m.max_cost

    return mutate


def _check_every_update_landed(st, run_id: str, workers: int, each: int) -> None:
    m, _ = mf.load(st, run_id)
    assert m.max_cost == workers * each
    assert set(m.estimate) == {f"w{w}-{i}" for w in range(workers) for i in range(each)}
    assert sorted(m.estimate.values()) == list(range(workers * each))  # each saw all earlier ones


@pytest.mark.parametrize("workers,each", [(4, 15)])
def test_concurrent_updates_from_threads_lose_nothing(store, workers, each):
    mf.create(store, new_manifest("r1", max_cost=0))
    handles = [twin(store) for _ in range(workers)]
    gate = threading.Barrier(workers)
    errors: list[BaseException] = []
    returned: list[float] = []

    def worker(w: int) -> None:
        gate.wait()
        try:
            for i in range(each):
                returned.append(mf.update(handles[w], "r1", _bump(w, i)))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    _check_every_update_landed(store, "r1", workers, each)
    assert sorted(returned) == list(
        range(1, workers * each + 1)
    )  # every update saw a distinct state


_PROCESS_WORKER = textwrap.dedent("""
    import os, sys, time
    from afbatch import manifest as mf
    from afbatch.store import LocalStore
    root, w, each, gate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    st = LocalStore(root)
    open(f"{gate}.ready{w}", "w").close()
    deadline = time.time() + 30
    while not os.path.exists(gate) and time.time() < deadline:
        time.sleep(0.002)
    for i in range(each):
        def mutate(m, i=i):
            m.max_cost = (m.max_cost or 0) + 1
            m.estimate[f"w{w}-{i}"] = len(m.estimate)
        mf.update(st, "r1", mutate)
""")


def test_concurrent_updates_from_processes_lose_nothing(tmp_path):
    workers, each = 4, 15
    st = LocalStore(tmp_path / "store")
    mf.create(st, new_manifest("r1", max_cost=0))
    gate = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_WORKER, str(st.root), str(w), str(each), str(gate)],
            stderr=subprocess.PIPE,
        )
        for w in range(workers)
    ]
    deadline = time.time() + 30
    while (
        not all((tmp_path / f"go.ready{w}").exists() for w in range(workers))
        and time.time() < deadline
    ):
        time.sleep(0.01)
    gate.touch()  # all imported: start together
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    _check_every_update_landed(st, "r1", workers, each)
    assert sorted(st.list("")) == ["runs/r1/manifest.json"]


# --- open_store --------------------------------------------------------------------------------


def test_open_store_default_is_the_manifests_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    st = open_store()
    assert DEFAULT_STORE == "manifests"
    assert isinstance(st, LocalStore) and st.root == tmp_path.resolve() / "manifests"
    st.write("runs/r1/manifest.json", b"m")
    assert (tmp_path / "manifests" / "runs" / "r1" / "manifest.json").read_bytes() == b"m"


def test_open_store_from_env_and_argument(tmp_path, monkeypatch):
    monkeypatch.setenv("AFBATCH_STORE", str(tmp_path / "from-env"))
    assert open_store().root == (tmp_path / "from-env").resolve()
    assert (
        open_store(str(tmp_path / "from-arg")).root == (tmp_path / "from-arg").resolve()
    )  # the flag wins
    monkeypatch.setenv("AFBATCH_STORE", "s3://env-bucket/some/prefix")
    st = open_store()
    assert isinstance(st, S3Store) and (st.bucket, st.prefix) == ("env-bucket", "some/prefix")


@pytest.mark.parametrize(
    "url,bucket,prefix,canonical",
    [
        ("s3://bkt", "bkt", "", "s3://bkt"),
        ("s3://bkt/", "bkt", "", "s3://bkt"),
        ("s3://bkt/runs", "bkt", "runs", "s3://bkt/runs"),
        ("s3://bkt/a/b/c/", "bkt", "a/b/c", "s3://bkt/a/b/c"),
    ],
)
def test_open_store_parses_s3_urls(url, bucket, prefix, canonical):
    st = open_store(url)
    assert isinstance(st, S3Store)
    assert (st.bucket, st.prefix, st.url) == (bucket, prefix, canonical)
    assert st._key("runs/r1/manifest.json") == (
        f"{prefix}/runs/r1/manifest.json" if prefix else "runs/r1/manifest.json"
    )


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix", "s3:////"])
def test_open_store_rejects_an_s3_url_without_bucket(url):
    with pytest.raises(StoreError, match="s3://bucket/prefix"):
        open_store(url)


def test_open_store_does_not_touch_s3_until_used(monkeypatch):
    import boto3

    monkeypatch.setattr(
        boto3, "client", lambda *a, **k: pytest.fail("boto3 client made by open_store")
    )
    open_store("s3://bkt/p")


# --- LocalStore: paths, atomicity ----------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["../x", "a/../../x", "runs/../../store-sibling/x", "/etc/passwd", "/tmp/x", ".."]
)
def test_local_store_refuses_keys_escaping_its_root(tmp_path, key):
    st = LocalStore(tmp_path / "store")
    for op in (
        lambda: st.read(key),
        lambda: st.write(key, b"x"),
        lambda: st.exists(key),
        lambda: st.create(key, b"x"),
        lambda: st.replace(key, b"x", "v"),
        lambda: list(st.list(key)),
        lambda: st.read_versioned(key),
    ):
        with pytest.raises(StoreError, match="escapes"):
            op()
    assert not (tmp_path / "x").exists() and not (tmp_path / "store-sibling").exists()


def test_local_store_allows_dotdot_that_stays_inside(tmp_path):
    st = LocalStore(tmp_path / "store")
    st.write("runs/r1/../r2/manifest.json", b"m")
    assert st.read("runs/r2/manifest.json") == b"m"


def test_local_store_root_with_tilde_and_relative_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert LocalStore("~/runs").root == tmp_path / "home" / "runs"
    monkeypatch.chdir(tmp_path)
    assert LocalStore("rel").root == tmp_path.resolve() / "rel"


def test_local_read_of_a_folder_is_a_store_error(tmp_path):
    st = LocalStore(tmp_path / "store")
    st.write("runs/r1/manifest.json", b"m")
    with pytest.raises(StoreError, match="cannot read"):
        st.read("runs/r1")


def test_local_write_where_a_file_blocks_the_folder_is_a_store_error(tmp_path):
    st = LocalStore(tmp_path / "store")
    st.write("runs", b"a file, not a folder")
    with pytest.raises(StoreError, match=r"store/runs: is a file where a folder is needed"):
        st.write("runs/r1/manifest.json", b"m")


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".tmp-")]


def test_local_writes_go_through_a_temp_file_and_os_replace(tmp_path, monkeypatch):
    st = LocalStore(tmp_path / "store")
    calls: list[tuple[str, str]] = []
    real = os.replace

    def spy(src, dst):
        calls.append((str(src), str(dst)))
        assert (
            Path(dst).exists() is False or Path(dst).read_bytes() == b"old"
        )  # target untouched until the swap
        assert Path(src).read_bytes() in (b"old", b"new")  # complete bytes before the swap
        real(src, dst)

    monkeypatch.setattr("afbatch.store.os.replace", spy)
    st.write("runs/r1/x", b"old")
    v = st.create("runs/r1/m", b"old")
    st.replace("runs/r1/m", b"new", v)
    st.write("runs/r1/x", b"new")
    target_x, target_m = str(st.root / "runs/r1/x"), str(st.root / "runs/r1/m")
    assert [dst for _, dst in calls] == [target_x, target_m, target_m, target_x]
    for src, dst in calls:
        assert Path(src).parent == Path(dst).parent and Path(src).name.startswith(".tmp-")
    assert _temp_files(st.root) == []


@pytest.mark.parametrize("failure", [OSError(5, "Input/output error"), KeyboardInterrupt()])
def test_local_write_failing_at_the_swap_keeps_the_old_content(tmp_path, monkeypatch, failure):
    st = LocalStore(tmp_path / "store")
    v = st.create("runs/r1/manifest.json", b"old manifest")
    st.write("runs/r1/shard", b"old shard")

    def boom(src, dst):
        raise failure

    monkeypatch.setattr("afbatch.store.os.replace", boom)
    expected = StoreError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        st.write("runs/r1/shard", b"new shard")
    with pytest.raises(expected):
        st.replace("runs/r1/manifest.json", b"new manifest", v)
    with pytest.raises(expected):
        st.create("runs/r1/other.json", b"new")
    monkeypatch.undo()
    assert st.read("runs/r1/shard") == b"old shard"
    assert st.read_versioned("runs/r1/manifest.json") == (b"old manifest", v)
    assert not st.exists("runs/r1/other.json")
    assert _temp_files(st.root) == []
    # the lock was released: the store still works
    assert st.replace("runs/r1/manifest.json", b"new manifest", v)
    assert st.create("runs/r1/other.json", b"new")


def test_local_readers_never_see_half_a_write(tmp_path):
    st = LocalStore(tmp_path / "store")
    a, b = b"a" * 300_000, b"b" * 300_000
    st.write("big", a)
    stop = threading.Event()
    seen: list[bytes] = []

    def reader() -> None:
        while not stop.is_set():
            data = st.read("big")
            if data not in (a, b):
                seen.append(data[:20] + b"..." + data[-20:])

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(20):
            st.write("big", b if i % 2 == 0 else a)
    finally:
        stop.set()
        t.join(10)
    assert seen == []


# --- S3 errors -----------------------------------------------------------------------------------


def _assert_one_clean_line(e: StoreError, url_part: str) -> None:
    msg = str(e)
    assert url_part in msg
    assert "\n" not in msg
    assert SECRET not in msg and "S3CR3T" not in msg


def test_s3_missing_bucket_is_a_one_line_store_error(s3_env):
    st = S3Store("s3://no-such-bucket-afb/pre")
    for what, op in [
        ("read", lambda: st.read("runs/r1/manifest.json")),
        ("read", lambda: st.read_versioned("runs/r1/manifest.json")),
        ("write", lambda: st.write("runs/r1/manifest.json", b"x")),
        ("create", lambda: st.create("runs/r1/manifest.json", b"x")),
        ("replace", lambda: st.replace("runs/r1/manifest.json", b"x", '"abc"')),
        ("list", lambda: list(st.list("runs/"))),
    ]:
        with pytest.raises(StoreError) as ei:
            op()
        assert not isinstance(ei.value, ConflictError), (
            what
        )  # not a lost race: retrying cannot help
        _assert_one_clean_line(ei.value, "s3://no-such-bucket-afb/pre/")
        assert f"cannot {what}" in str(ei.value) and "NoSuchBucket" in str(ei.value)


def test_s3_exists_in_a_missing_bucket_is_a_store_error(s3_env):
    st = S3Store("s3://no-such-bucket-afb/pre")
    with pytest.raises(StoreError) as ei:
        st.exists("runs/r1/manifest.json")
    _assert_one_clean_line(ei.value, "s3://no-such-bucket-afb/pre/")


def test_s3_manifest_load_in_a_missing_bucket_names_the_url(s3_env):
    with pytest.raises(StoreError) as ei:
        mf.load(S3Store("s3://no-such-bucket-afb/pre"), "r1")
    _assert_one_clean_line(ei.value, "s3://no-such-bucket-afb/pre/runs/r1/manifest.json")


def test_s3_unreachable_endpoint_is_a_store_error(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    st = S3Store("s3://bkt/pre")
    for op in (
        lambda: st.read("k"),
        lambda: st.write("k", b"x"),
        lambda: st.create("k", b"x"),
        lambda: st.exists("k"),
        lambda: list(st.list("")),
    ):
        with pytest.raises(StoreError) as ei:
            op()
        assert not isinstance(ei.value, ConflictError)
        _assert_one_clean_line(ei.value, "s3://bkt/pre/")


def test_s3_without_credentials_is_a_store_error(s3_bucket, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    import boto3

    monkeypatch.setattr(
        boto3, "DEFAULT_SESSION", None
    )  # the bucket was made with a session that holds credentials
    st = S3Store(f"s3://{s3_bucket}/pre")
    with pytest.raises(StoreError) as ei:
        st.read("k")
    _assert_one_clean_line(ei.value, f"s3://{s3_bucket}/pre/k")
    assert "credentials" in str(ei.value).lower()


def test_local_put_file_across_filesystems_copies_in_pieces(tmp_path, monkeypatch):
    import errno

    st = LocalStore(tmp_path / "store")
    src = tmp_path / "staged.jsonl"
    payload = b"".join(b'{"id": "r%d"}\n' % i for i in range(200_000))  # several copy pieces
    src.write_bytes(payload)
    real_replace = os.replace

    def cross_device(a, b):
        if str(a) == str(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", cross_device)
    monkeypatch.setattr(st, "write", lambda *a: pytest.fail("the whole file was read into memory"))
    st.put_file("runs/r1/results/s.jsonl", str(src))
    assert st.read("runs/r1/results/s.jsonl") == payload
    assert not src.exists()
    assert [p.name for p in (tmp_path / "store" / "runs" / "r1" / "results").iterdir()] == [
        "s.jsonl"
    ]  # no temp left
