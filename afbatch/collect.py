"""Collect: an ended shard's rows, fetched from the provider, written to the store, accounted.

A row without an output line gets the status its batch's end implies (`_missing_result`); judge
replies get their verdict parsed once, here, and judge shards also get a verdicts file (the rows
without texts), which is what states read. The transition ended → collected records the files'
sha256 and line counts (what verify checks), the usage and the cost.
"""

from __future__ import annotations

import collections
import hashlib
import os
import tempfile
import time
from typing import TYPE_CHECKING, Any

from afbatch import jsonl, layout
from afbatch import manifest as mf
from afbatch.checked_reads import damaged
from afbatch.errors import ProviderError
from afbatch.judge import votes_verdict
from afbatch.ledger import bulk, is_judged
from afbatch.lifecycle import crashpoint
from afbatch.manifest import Manifest, Shard, ShardState
from afbatch.providers import BatchStatus
from afbatch.types import STAGE_AF, STAGE_COMPLIANCE, STAGE_PARTIAL, Result, RowStatus, Usage

if TYPE_CHECKING:
    from afbatch.runner import Run


def collect(run: Run) -> int:
    collected = 0
    for s in [s for s in run.manifest().shards.values() if s.state == ShardState.ENDED]:
        try:
            with bulk():
                results = fetch(run, s)
        except ProviderError as e:
            run.log(f"collect of {s.id} postponed: {e}")
            continue
        key = layout.results_key(run.run_id, s.id)
        written = write_lines(run, key, (r.to_json() for r in results))
        verdicts_key: str | None = None
        verdicts_written: tuple[str | None, int | None] = (None, None)
        # the verdicts alone: a report reads 20 votes per conversation, not their texts
        if is_judged(s.stage):
            verdicts_key = layout.verdicts_key(run.run_id, s.id)
            verdicts_written = write_lines(
                run, verdicts_key, (r._replace(text=None, texts=None).to_json() for r in results)
            )
        run.remember_results(s, results)
        crashpoint("after-results-written")
        usage, cost, counts = _account(run, s, results)

        def done(
            m: Manifest,
            sid: str = s.id,
            usage: Usage = usage,
            cost: float = cost,
            counts: dict[str, int] = counts,
            key: str = key,
            verdicts_key: str | None = verdicts_key,
            written: Any = written,
            verdicts_written: Any = verdicts_written,
        ) -> None:
            x = m.shards[sid]
            if x.state == ShardState.ENDED:
                x.move(ShardState.COLLECTED)
                x.results_key, x.verdicts_key, x.collected_at, x.counts, x.cost_usd = (
                    key,
                    verdicts_key,
                    time.time(),
                    counts,
                    cost,
                )
                x.results_sha256, x.results_lines = written  # what verify checks against
                x.verdicts_sha256, x.verdicts_lines = verdicts_written
                x.usage = mf.Usage(
                    input_tokens=usage.input_tokens,
                    cached_tokens=usage.cached_tokens,
                    cache_write_tokens=usage.cache_write_tokens,
                    output_tokens=usage.output_tokens,
                )

        run.update(done)
        collected += 1
        crashpoint("after-collected")
    return collected


def write_lines(run: Run, key: str, objs: Any) -> tuple[str, int]:
    """Stream JSON lines to a temp file, then store it (no second copy of a big result file in
    memory). Returns the file's sha256 and line count, recorded in the manifest for verify."""
    fd, tmp = tempfile.mkstemp(prefix="afbatch-", suffix=".jsonl")
    h, n = hashlib.sha256(), 0
    with os.fdopen(fd, "wb") as f:
        dumps_line = jsonl.dumps_line
        for obj in objs:
            line = dumps_line(obj)
            h.update(line)
            f.write(line)
            n += 1
    run.store.put_file(key, tmp)
    return h.hexdigest(), n


def fetch(run: Run, s: Shard) -> list[Result]:
    provider = run.provider(s.model)
    ids = run.shard_ids(s)
    by_line = {provider.line_id(rid): rid for rid in ids}
    if s.on_demand:
        parts = sorted(run.store.list(layout.part_prefix(run.run_id, s.id)))
        raw: Any = (
            _part_line(run, key, line)
            for key in parts
            for line in run.store.lines(key)
            if line.strip()
        )
    else:  # a batch the provider refused at creation has no batch id and no lines
        raw = provider.fetch(s.batch_id) if s.batch_id else iter(())
    stage = {
        STAGE_COMPLIANCE: "compliance",
        STAGE_AF: "alignment_faking",
        STAGE_PARTIAL: "partial_compliance",
    }.get(s.stage, "")
    tpl = run.grid.judge_templates.get(stage)
    parse = tpl.parse if tpl else None  # judge replies get their verdict now, once
    votes_as_choices = (
        s.stage == STAGE_AF and run.job.judge is not None and run.job.judge.af_votes_in_one_request
    )
    got: dict[str, Result] = {}
    for line in raw:
        r = provider.parse(line)
        rid = by_line.get(r.id)
        if rid is None or rid in got:
            continue  # not ours, or a duplicate line
        verdict = None
        if parse and r.status == RowStatus.SUCCEEDED:
            if votes_as_choices:  # every choice is a vote (a host that ignored n returned one)
                verdict = votes_verdict([parse(t) for t in (r.texts or (r.text or "",))])
            else:
                verdict = parse(r.text or "")
        if verdict is not None or rid != r.id:
            r = r._replace(id=rid, verdict=verdict)  # by name: every choice's text is kept
        got[rid] = r
    missing = _missing_result(s)
    return [got.get(rid) or missing._replace(id=rid) for rid in ids]


def _part_line(run: Run, key: str, line: bytes) -> Any:
    """A stored on-demand answer: a line that is not JSON is damage to the store, named as such."""
    try:
        return jsonl.loads(line)
    except ValueError:
        raise damaged(run.store, key, "a line is not JSON (cut off, or edited)") from None


def _account(run: Run, s: Shard, results: list[Result]) -> tuple[Usage, float, dict[str, int]]:
    cost_of = run.prices.lookup(run.specs[s.model]).row_cost(
        s.on_demand, run.specs[s.model].cache_ttl
    )
    usages = [r.usage for r in results]
    usage = Usage(*(sum(column) for column in zip(*usages))) if usages else Usage()
    counts = dict(collections.Counter(r.status.value for r in results))
    return usage, sum(map(cost_of, usages)), counts


def _missing_result(s: Shard) -> Result:
    """What a row without an output line means, given how its batch ended (its id left to fill)."""
    status = s.status or ""
    message = s.message or f"batch ended {status} without a line for this request"
    if status == BatchStatus.FAILED.value:
        low = message.lower()
        limited = "token_limit" in low or "rate" in low or "quota" in low
        kind = "rate_limit" if limited else "invalid_request"
        return Result("", RowStatus.ERRORED, error_kind=kind, error_message=message)
    if status == BatchStatus.EXPIRED.value:
        return Result(
            "",
            RowStatus.EXPIRED,
            error_kind="expired",
            error_message="the batch expired before this request ran",
        )
    if status == BatchStatus.CANCELLED.value:
        return Result(
            "",
            RowStatus.CANCELED,
            error_kind="canceled",
            error_message="the batch was cancelled before this request ran",
        )
    return Result("", RowStatus.MISSING, error_kind="missing", error_message=message)
