"""S3 fixtures for the store and manifest tests: one moto S3 server per test session, a fresh bucket
per test.

Import the fixtures into a test module (`from s3_fixtures import moto_endpoint, s3_env, s3_url,
store`). conftest.py strips every AWS_* variable before each test; `s3_env` sets them back, per
test, through monkeypatch, so nothing leaks into other tests.

moto's S3 checks `If-Match` / `If-None-Match` and then writes in two separate steps, so two
concurrent conditional puts can both pass the check. Real S3 decides a conditional put atomically,
and afbatch's compare-and-swap relies on that. The server therefore handles one request at a time
(clients still talk to it concurrently over HTTP): a lost update seen by these tests is afbatch's,
not moto's.
"""

from __future__ import annotations

import atexit
import logging
import threading
import uuid

import pytest

from afbatch.store import LocalStore, S3Store

# set as AWS_SECRET_ACCESS_KEY: must never appear in an error
SECRET = "recognisable-S3CR3T-value-1234567890"

_server: dict[str, str] = {}
_lock = threading.Lock()


def _start() -> str:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
    app = DomainDispatcherApplication(create_backend_app)
    serial = threading.Lock()

    def one_at_a_time(environ, start_response):
        with serial:
            return list(app(environ, start_response))

    server = make_server(
        "127.0.0.1", 0, one_at_a_time, threaded=True, request_handler=MotoRequestHandler
    )
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    atexit.register(server.shutdown)
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    """The endpoint URL of a moto S3 server, started once for the whole session (shared by test
    modules)."""
    with _lock:
        if "url" not in _server:
            _server["url"] = _start()
        return _server["url"]


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch, tmp_path) -> str:
    """Point boto3 at moto, with dummy credentials and no other credential source; returns the
    endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTTESTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    import boto3

    monkeypatch.setattr(
        boto3, "DEFAULT_SESSION", None
    )  # botocore caches credentials in the default session
    return moto_endpoint


def boto_client():
    import boto3

    return boto3.client("s3")


@pytest.fixture
def s3_bucket(s3_env) -> str:
    """A new, empty bucket for this test."""
    name = f"afb-{uuid.uuid4().hex[:16]}"
    boto_client().create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_url(s3_bucket) -> str:
    return f"s3://{s3_bucket}/team/af-runs"


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    """The same tests against a LocalStore and an S3Store (moto over HTTP, under a two-level
    prefix)."""
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return S3Store(request.getfixturevalue("s3_url"))


def twin(store):
    """Another handle on the same store, as a second worker would open it (its own S3 client, made
    now, in this thread)."""
    if isinstance(store, LocalStore):
        return LocalStore(store.root)
    other = S3Store(store.url)
    _ = other.client
    return other


# --- small manifest builders shared by test_store.py and test_manifest.py -----------------------


def new_shard(shard_id: str, **kw):
    from afbatch.manifest import Shard

    fields = dict(
        id=shard_id,
        model="haiku",
        stage="generate",
        round=1,
        provider="anthropic",
        requests=10,
        bytes=1000,
        sha256="0" * 64,
        key=f"shards/{shard_id}.jsonl",
        ids_key=f"shards/{shard_id}.ids",
        token=f"tok-{shard_id}",
    )
    fields.update(kw)
    return Shard(**fields)


def new_manifest(run_id: str = "r1", shards=(), **kw):
    from afbatch.manifest import InputPin, Manifest

    fields = dict(
        run_id=run_id,
        job_name="t",
        job_fingerprint="f" * 64,
        job_key=f"runs/{run_id}/job.toml",
        job_path="/jobs/t.toml",
        created_at=1000.0,
        updated_at=1000.0,
        inputs={
            "dataset": InputPin(
                ref="data.csv", sha256="a" * 64, key=f"runs/{run_id}/inputs/{'a' * 64}"
            )
        },
    )
    fields.update(kw)
    return Manifest(shards={s.id: s for s in shards}, **fields)
