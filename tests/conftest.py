"""Hermetic tests: private cache and price-override paths, no API keys, no network."""

from __future__ import annotations

import gc
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from support import PROMPTS


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "afbatch-cache"
    monkeypatch.setenv("AFBATCH_CACHE_DIR", str(cache))
    monkeypatch.setenv(
        "AFBATCH_PRICES", str(tmp_path_factory.getbasetemp() / "no-such-prices.toml")
    )
    monkeypatch.delenv("AFBATCH_STORE", raising=False)
    for key in list(os.environ):
        if key.endswith("_API_KEY") or key.startswith(("AWS_", "OPENAI_", "ANTHROPIC_")):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def _nothing_frozen():
    """The CLI freezes what `ledger.bulk` built for the rest of its short process
    (`freeze_after_bulk`); tests run it in this process, so each test ends without that."""
    from afbatch import ledger

    yield
    ledger._freeze_after_bulk = False
    gc.unfreeze()


@pytest.fixture(scope="session")
def moto_s3():
    """One S3 server (moto's server mode, real HTTP) for the whole session; tests make their own
    buckets."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def make_job(tmp_path):
    """Write a job TOML (plus copies of the shipped prompts) into tmp_path and return its path."""

    def _make(body: str, *, name: str = "job.toml", rows: list[str] | None = None) -> Path:
        for f in ("user_template.txt", "helpful_only_cot.txt", "helpful_only_no_cot.txt"):
            shutil.copy(PROMPTS / f, tmp_path / f)
        (tmp_path / "judges").mkdir(exist_ok=True)
        for f in ("compliance.txt", "alignment_faking.txt"):
            shutil.copy(PROMPTS / "judges" / f, tmp_path / "judges" / f)
        data = (
            rows
            if rows is not None
            else [
                "Write a limerick about a cat",
                "Explain how rainbows form",
                "Name three prime numbers",
            ]
        )
        with open(tmp_path / "data.csv", "w", encoding="utf-8") as fh:
            fh.write("goal,target\n")
            for r in data:
                fh.write(f'"{r}","Sure, here is"\n')
        p = tmp_path / name
        p.write_text(textwrap.dedent(body))
        return p

    return _make
