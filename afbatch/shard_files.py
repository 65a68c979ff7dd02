"""Provider request lines and the shard files they are streamed into, within every limit.

Writing streams: each line is written as soon as it is rendered, so memory stays flat as the grid
grows. The shared system prompt is JSON-encoded once per variant and spliced into each line, so
long prompts cost a copy, not a re-encode.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from afbatch.errors import LimitError
from afbatch.providers import Limits, Provider
from afbatch.spec import Job
from afbatch.tokens import TokenTally
from afbatch.types import Request


@dataclass
class Shard:
    """One provider batch file: `<stem>-NNN.jsonl` plus `<stem>-NNN.ids` (request ids in line
    order)."""

    path: str
    ids_path: str
    n_requests: int = 0
    n_bytes: int = 0
    n_tokens: int = 0  # estimated input tokens, counted where the provider limits them
    sha256: str = ""
    below_minimum: bool = False
    offsets: list[int] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class CostCap:
    """Pacing under --max-cost: a shard's cost bound, bytes x per_byte + requests x per_request,
    stays within usd."""

    per_byte: float
    per_request: float
    usd: float

    def fits(self, n_bytes: int, n_requests: int) -> bool:
        return n_bytes * self.per_byte + n_requests * self.per_request <= self.usd


def least_requests(limits: Limits) -> int:
    """The fewest requests a shard cut by a CostCap holds (twice a provider minimum)."""
    return 2 * limits.min_requests if limits.min_requests > 1 else 1


def shard_limits(provider: Provider, job: Job) -> Limits:
    lim = provider.limits
    return Limits(
        max_requests=min(lim.max_requests, job.shards.max_requests or lim.max_requests),
        max_bytes=min(lim.max_bytes, job.shards.max_bytes or lim.max_bytes),
        min_requests=lim.min_requests,
        # the account's tier sets it: a job's value replaces the provider's default
        max_enqueued_tokens=job.shards.max_enqueued_tokens or lim.max_enqueued_tokens,
    )


_SENTINEL = "\x00afbatch-system\x00"
_SENTINEL_JSON = json.dumps(_SENTINEL)[1:-1]


def render_lines(
    provider: Provider, requests: Iterable[Request], tally: TokenTally | None = None
) -> Iterator[tuple[str, bytes]]:
    """(request id, JSONL line) pairs; each distinct system prompt is JSON-escaped once. With a
    `tally`, each request's estimated input tokens are noted as it passes (for write_shards)."""
    escaped: dict[int, str] = {}
    for req in requests:
        if tally is not None:
            tally.note(req)
        system = req.system
        if system and len(system) > 256:
            key = id(system)
            if key not in escaped:
                escaped[key] = json.dumps(system, ensure_ascii=False)[1:-1]
            line = json.dumps(
                provider.render(_with_system(req, _SENTINEL)),
                ensure_ascii=False,
                separators=(",", ":"),
            )
            line = line.replace(_SENTINEL_JSON, escaped[key])
        else:
            line = json.dumps(provider.render(req), ensure_ascii=False, separators=(",", ":"))
        yield req.id, line.encode()


def _with_system(req: Request, system: str) -> Request:
    return replace(req, system=system)


def write_shards(
    lines: Iterable[tuple[str, bytes]],
    limits: Limits,
    out_dir: str | os.PathLike[str],
    stem: str,
    on_line: Callable[[str], None] | None = None,
    cap: CostCap | None = None,
    tally: TokenTally | None = None,
) -> list[Shard]:
    """Stream lines into shards within count, byte and enqueued-token limits (and `cap`);
    rebalance so no shard falls below the minimum. A capped shard still takes twice the minimum,
    so that moving lines into a short last one stays legal. Under a token limit a line's tokens
    are the `tally` render_lines kept, else its bytes (no tokenizer makes more tokens than UTF-8
    bytes: a true bound)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shards: list[Shard] = []
    seen: set[str] = set()
    data_f = ids_f = None
    digest = hashlib.sha256()
    current: Shard | None = None
    least = least_requests(limits)

    def close() -> None:
        nonlocal data_f, ids_f
        if current is not None and data_f is not None:
            data_f.close()
            ids_f.close()
            current.sha256 = digest.hexdigest()
            data_f = ids_f = None

    try:
        for rid, line in lines:
            if rid in seen:
                raise LimitError(
                    f"duplicate request id {rid}: two grid cells have identical content — "
                    "make them differ"
                )
            seen.add(rid)
            size = len(line) + 1
            if size > limits.max_bytes:
                raise LimitError(
                    f"request {rid} is {size} bytes, over the {limits.max_bytes}-byte shard limit"
                )
            max_tokens = limits.max_enqueued_tokens
            tokens = (tally.take(rid) if tally else size) if max_tokens else 0
            if max_tokens and tokens > max_tokens:
                raise LimitError(
                    f"request {rid} has ~{tokens} input tokens, over the {max_tokens}-token "
                    "enqueued limit of one batch — raise [shards] max_enqueued_tokens if your "
                    "account's tier allows"
                )
            if (
                current is None
                or current.n_requests >= limits.max_requests
                or current.n_bytes + size > limits.max_bytes
                or (max_tokens and current.n_tokens + tokens > max_tokens)
                or (
                    cap is not None
                    and current.n_requests >= least
                    and not cap.fits(current.n_bytes + size, current.n_requests + 1)
                )
            ):
                close()
                n = len(shards)
                current = Shard(
                    path=str(out / f"{stem}-{n:03d}.jsonl"),
                    ids_path=str(out / f"{stem}-{n:03d}.ids"),
                )
                shards.append(current)
                # open across lines, shut by close() (in `finally` too)
                data_f = open(current.path, "wb")  # noqa: SIM115
                ids_f = open(current.ids_path, "w", encoding="utf-8")  # noqa: SIM115
                digest = hashlib.sha256()
            current.offsets.append(current.n_bytes)
            data_f.write(line)  # type: ignore[union-attr]
            data_f.write(b"\n")  # type: ignore[union-attr]
            digest.update(line)
            digest.update(b"\n")
            ids_f.write(rid + "\n")  # type: ignore[union-attr]
            current.n_requests += 1
            current.n_bytes += size
            current.n_tokens += tokens
            if on_line:
                on_line(rid)
    finally:
        close()
    if limits.min_requests > 1 and shards:
        _rebalance_tail(shards, limits)
    for s in shards:
        s.below_minimum = s.n_requests < limits.min_requests
        s.offsets = []
    return shards


def _rebalance_tail(shards: list[Shard], limits: Limits) -> None:
    """Move lines from the second-to-last shard into a last shard below the minimum (Bedrock:
    100)."""
    if len(shards) < 2 or shards[-1].n_requests >= limits.min_requests:
        return
    prev, last = shards[-2], shards[-1]
    move = limits.min_requests - last.n_requests
    if prev.n_requests - move < limits.min_requests:
        raise LimitError(
            f"cannot split {prev.n_requests + last.n_requests} requests into shards of at least "
            f"{limits.min_requests}"
        )
    cut = prev.offsets[prev.n_requests - move]
    with open(prev.path, "rb") as f:
        f.seek(cut)
        moved = f.read()
    with open(last.path, "rb") as f:
        rest = f.read()
    if len(moved) + len(rest) > limits.max_bytes:
        raise LimitError(
            f"{last.path}: cannot reach {limits.min_requests} requests within "
            f"{limits.max_bytes} bytes"
        )
    with open(prev.ids_path, encoding="utf-8") as f:
        prev_ids = f.read().splitlines()
    with open(last.ids_path, encoding="utf-8") as f:
        last_ids = f.read().splitlines()
    _write(last.path, moved + rest)
    _write(prev.path, None, truncate=cut)
    _write(last.ids_path, ("\n".join(prev_ids[-move:] + last_ids) + "\n").encode())
    _write(prev.ids_path, ("\n".join(prev_ids[:-move]) + "\n").encode())
    for s, n, b in (
        (prev, prev.n_requests - move, cut),
        (last, last.n_requests + move, len(moved) + len(rest)),
    ):
        s.n_requests, s.n_bytes, s.sha256 = n, b, _file_sha256(s.path)


def _write(path: str, data: bytes | None, truncate: int | None = None) -> None:
    if truncate is not None:
        with open(path, "r+b") as f:
            f.truncate(truncate)
        return
    with open(path, "wb") as f:
        f.write(data or b"")


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
