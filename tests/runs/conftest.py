"""Fixtures for whole runs: the emulator (real SDKs over HTTP), moto S3, job files in a temp
folder."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from afbatch.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch, moto_s3: str) -> Iterator[Emulator]:
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/afbatch-test-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/afbatch-test-credentials")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_s3)
    monkeypatch.setenv("AFBATCH_RECONCILE_GRACE_SECONDS", "0")
    with Emulator(s3_endpoint=moto_s3) as e:
        for key, value in e.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("TOGETHER_BASE_URL", e.url + "/v1")
        monkeypatch.setenv("TOGETHER_API_KEY", "emulator-key")
        yield e


@pytest.fixture
def bucket(moto_s3: str, emu: Emulator, request: pytest.FixtureRequest) -> str:
    import boto3

    name = "afb-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[
        :40
    ].strip("-")
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    for f in ("user_template.txt", "helpful_only_cot.txt", "helpful_only_no_cot.txt"):
        shutil.copy(ROOT / "prompts" / f, tmp_path / f)
    shutil.copytree(ROOT / "prompts" / "judges", tmp_path / "judges")
    shutil.copy(ROOT / "prompts" / "sample_requests.csv", tmp_path / "sample_requests.csv")
    return tmp_path


def write_job(folder: Path, body: str, name: str = "job.toml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(body))
    return path


def fast(run: Any) -> Any:
    """Run a Run to completion without sleeping between polls."""
    return run.run(poll_interval=0, max_interval=0, sleep=lambda s: None)


@pytest.fixture(scope="session")
def crash_reference(moto_s3: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The crash matrix's uninterrupted runs (runs/crash_support.py), shared by its modules."""
    from runs.crash_support import References  # it imports test modules that import this one

    return References(tmp_path_factory)
