"""A per-batch enqueued-token limit (Gemini's per-model limit): no shard holds more estimated input
tokens than it allows; a job's `[shards] max_enqueued_tokens` replaces the provider's default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from afbatch.compile import compile_job
from afbatch.errors import LimitError
from afbatch.grid import load_grid
from afbatch.pricing import load_prices
from afbatch.providers import get_provider
from afbatch.providers.registry import PROVIDERS, Limits, capabilities
from afbatch.shard_files import shard_limits, write_shards
from afbatch.spec import load_job

GOLDEN_JOB = Path(__file__).parent / "golden" / "job"


class Tally:
    """A stand-in for tokens.TokenTally with fixed counts."""

    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = dict(counts)

    def take(self, request_id: str) -> int:
        return self.counts.pop(request_id)


def _lines(n: int) -> list[tuple[str, bytes]]:
    return [(f"r{i}", b'{"x": 1}') for i in range(n)]


def test_shards_are_cut_at_the_token_limit(tmp_path: Path) -> None:
    counts = {"r0": 40, "r1": 40, "r2": 30, "r3": 90, "r4": 5}
    limits = Limits(100, 10**6, max_enqueued_tokens=100)
    tally = Tally(counts)
    shards = write_shards(_lines(5), limits, tmp_path, "s", tally=tally)  # type: ignore[arg-type]
    ids = [Path(s.ids_path).read_text().split() for s in shards]
    assert ids == [["r0", "r1"], ["r2"], ["r3", "r4"]]  # 40+40+30 > 100; 30+90 > 100
    assert [s.n_tokens for s in shards] == [80, 30, 95]


def test_a_request_over_the_limit_is_refused(tmp_path: Path) -> None:
    limits = Limits(100, 10**6, max_enqueued_tokens=100)
    with pytest.raises(LimitError, match="over the 100-token enqueued limit"):
        tally = Tally({"r0": 101})
        write_shards(_lines(1), limits, tmp_path, "s", tally=tally)  # type: ignore[arg-type]


def test_without_a_tally_the_bytes_bound_the_tokens(tmp_path: Path) -> None:
    """No tokenizer makes more tokens than UTF-8 bytes: the line's size is a true bound."""
    lines = _lines(4)
    size = len(lines[0][1]) + 1
    shards = write_shards(lines, Limits(100, 10**6, max_enqueued_tokens=2 * size), tmp_path, "s")
    assert [s.n_requests for s in shards] == [2, 2]


def test_no_limit_no_counting(tmp_path: Path) -> None:
    shards = write_shards(_lines(4), Limits(100, 10**6), tmp_path, "s")
    assert len(shards) == 1 and shards[0].n_tokens == 0


def test_only_gemini_declares_a_default_limit() -> None:
    assert capabilities("gemini").limits.max_enqueued_tokens == 3_000_000
    others = [p for p in PROVIDERS.values() if p.name != "gemini"]
    assert all(p.limits.max_enqueued_tokens is None for p in others)


def _gemini_job(tmp_path: Path, limit: int | None) -> Path:
    text = (GOLDEN_JOB / "job.toml").read_text().split("[[models]]")[0]
    text += '[[models]]\nprovider = "gemini"\nmodel = "gemini-2.5-flash"\nlabel = "flash"\n'
    if limit is not None:
        text += f"\n[shards]\nmax_enqueued_tokens = {limit}\n"
    for f in GOLDEN_JOB.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_compile_cuts_gemini_shards_at_the_jobs_limit(tmp_path: Path) -> None:
    whole = compile_job(
        load_grid(load_job(_gemini_job(tmp_path, None))), tmp_path / "a", load_prices()
    )[0].shards
    assert len(whole) == 1  # 3M by default: the small golden grid fits in one batch
    per_request = whole[0].n_tokens / whole[0].n_requests
    limit = int(per_request * 2.5)  # about two requests per shard
    loaded = load_job(_gemini_job(tmp_path, limit))
    assert shard_limits(get_provider(loaded.job.models[0]), loaded.job).max_enqueued_tokens == limit
    shards = compile_job(load_grid(loaded), tmp_path / "b", load_prices())[0].shards
    assert len(shards) > 2 and sum(s.n_requests for s in shards) == whole[0].n_requests
    assert all(s.n_tokens <= limit for s in shards)
    assert sum(s.n_tokens for s in shards) == whole[0].n_tokens  # the same estimate, cut up
    index = json.loads((tmp_path / "b" / "index.json").read_text())
    assert len(index["shards"]) == len(shards)


def test_the_limit_leaves_the_run_id_alone(tmp_path: Path) -> None:
    """An account's tier, not the experiment: raising it keeps the run (and its answers)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = load_job(_gemini_job(tmp_path / "a", None))
    b = load_job(_gemini_job(tmp_path / "b", 10**8))
    assert a.fingerprint == b.fingerprint
