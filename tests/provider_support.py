"""Helpers the provider test modules share: a shard token, one shard written the runner's way,
and polling a batch until it ends."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from afbatch.shard_files import render_lines, write_shards
from afbatch.types import Request


def shard_token() -> str:
    return "t" + uuid.uuid4().hex[:30]  # the runner's shape: "t" + 30 hex


def one_shard(provider: Any, requests: list[Request], tmp_path: Path) -> str:
    """The requests rendered and written as the runner writes them: exactly one shard."""
    folder = tmp_path / uuid.uuid4().hex[:8]
    shards = write_shards(render_lines(provider, requests), provider.limits, folder, "s")
    assert len(shards) == 1 and shards[0].n_requests == len(requests)
    return shards[0].path


def wait_ended(provider: Any, batch_id: str, polls: int = 50) -> Any:
    """The batch's BatchInfo once terminal (the emulator ends a batch within a few polls)."""
    info = None
    for _ in range(polls):
        info = provider.poll(batch_id)
        if info.status.terminal:
            return info
        time.sleep(0.01)
    raise AssertionError(f"{batch_id} did not end: {info}")
