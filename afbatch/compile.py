"""Job → conversations → provider-neutral requests; `afbatch compile` (round-1 shard files).

Requests are generated lazily, so memory stays flat as the grid grows. The inputs are resolved in
`grid.py`, the prefill decided in `prefill.py`, shard files written by `shard_files.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from afbatch import ids
from afbatch.grid import Grid
from afbatch.prefill import effective_prefill
from afbatch.pricing import PriceTable
from afbatch.protocol import NEXT, render_user
from afbatch.providers import get_provider
from afbatch.shard_files import Shard, render_lines, shard_limits, write_shards
from afbatch.spec import ModelSpec
from afbatch.tokens import token_tally
from afbatch.types import STAGE_GENERATE, Conversation, Message, Request

__all__ = [
    "CompiledModel",
    "compile_job",
    "conversations",
    "first_requests",
    "turn_request",
]


def conversations(
    grid: Grid, model: ModelSpec, known_ids: list[str] | None = None
) -> Iterator[Conversation]:
    """Every conversation of one model, in grid order: variant, temperature, tier, prompt, sample.

    `known_ids` (a run's stored ids, in this order) skips hashing the content again."""
    known = iter(known_ids) if known_ids is not None else None
    job = grid.job
    system_sha = {
        name: hashlib.sha256(text.encode()).hexdigest() for name, text in grid.systems.items()
    }
    max_tokens = job.max_tokens_for(model)
    for variant in job.variants:
        for temperature, count in (
            (t, n) for t in job.temperatures_for(model) for n in job.sample_counts()
        ):
            for tier in job.prompts.tiers:
                for index, text in grid.dataset.rows:
                    if known is None:
                        user_message = render_user(
                            grid.template, tier, text, job.prompts.tier_format
                        )
                    for sample in range(count):
                        cid = (
                            next(known)
                            if known is not None
                            else ids.conversation_id(
                                model.provider,
                                model.model,
                                variant.name,
                                system_sha[variant.name],
                                user_message,
                                index,
                                sample,
                                temperature,
                                max_tokens,
                                variant.prefill_text,
                                count if job.samples_axis else None,
                            )
                        )
                        yield Conversation(
                            cid,
                            model.name,
                            variant.name,
                            variant.cot,
                            tier,
                            index,
                            sample,
                            text,
                            temperature=temperature,
                            samples=count,
                        )


def turn_request(
    grid: Grid, model: ModelSpec, conv: Conversation, turn_texts: list[str], prefill: bool
) -> Request:
    """The request for the next model turn; earlier turns (prefill included) become assistant
    messages."""
    variant = grid.variant(conv.variant)
    messages = [Message("user", grid.user_message(conv))]
    for text in turn_texts:
        messages += [Message("assistant", text), Message("user", NEXT)]
    job = grid.job
    return Request(
        id=ids.turn_id(conv.id, len(turn_texts) + 1),
        model=model,
        system=grid.systems[conv.variant],
        messages=tuple(messages),
        max_tokens=job.max_tokens_for(model),
        temperature=conv.temperature,
        prefill=variant.prefill_text if prefill else None,
        cache=model.uses_cache,
        stage=STAGE_GENERATE,
    )


def first_requests(grid: Grid, model: ModelSpec, prices: PriceTable | None) -> Iterator[Request]:
    prefill = effective_prefill(model, prices)
    for conv in conversations(grid, model):
        yield turn_request(grid, model, conv, [], prefill)


@dataclass(frozen=True)
class CompiledModel:
    model: ModelSpec
    provider: str
    shards: list[Shard]

    @property
    def n_requests(self) -> int:
        return sum(s.n_requests for s in self.shards)

    @property
    def n_bytes(self) -> int:
        return sum(s.n_bytes for s in self.shards)


def compile_job(
    grid: Grid, out_dir: str | os.PathLike[str], prices: PriceTable | None
) -> list[CompiledModel]:
    """Write round-1 generation shards for every model under out_dir/<label>/, plus index.json."""
    out = Path(out_dir)
    compiled = []
    for model in grid.job.models:
        provider = get_provider(model)
        limits = shard_limits(provider, grid.job)
        tally = token_tally(model, prices) if limits.max_enqueued_tokens else None
        lines = render_lines(provider, first_requests(grid, model, prices), tally)
        shards = write_shards(lines, limits, out / model.name, f"{STAGE_GENERATE}-t1", tally=tally)
        compiled.append(CompiledModel(model, model.provider, shards))
    index = {
        "job": grid.job.name,
        "fingerprint": grid.loaded.fingerprint,
        "inputs": grid.inputs,
        "shards": [
            {
                "model": c.model.name,
                "provider": c.provider,
                "stage": STAGE_GENERATE,
                "path": os.path.relpath(s.path, out),
                "ids": os.path.relpath(s.ids_path, out),
                "requests": s.n_requests,
                "bytes": s.n_bytes,
                "sha256": s.sha256,
                "below_minimum": s.below_minimum,
            }
            for c in compiled
            for s in c.shards
        ],
    }
    (out / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return compiled
