"""Batch minimums (Bedrock: 100 records per job): the stages that can never form a batch job,
known before a run starts, and the refusal of those that may not go on-demand."""

from __future__ import annotations

from dataclasses import dataclass

from afbatch.errors import LimitError
from afbatch.grid import Grid
from afbatch.providers import get_provider
from afbatch.spec import Job, ModelSpec, place
from afbatch.types import STAGE_AF, STAGE_COMPLIANCE, STAGE_GENERATE, STAGE_PARTIAL


@dataclass(frozen=True)
class Shortfall:
    """A stage whose batches cannot reach the provider's minimum: the first round exactly, a judge
    stage at most."""

    loc: tuple[str | int, ...]  # the model's place in the job
    model: ModelSpec
    stage: str
    requests: int
    minimum: int

    def describe(self) -> str:
        if self.stage == STAGE_GENERATE:
            return f"its first round has {self.requests} requests"
        kind = {STAGE_COMPLIANCE: "compliance judge", STAGE_AF: "AF classifier"}.get(
            self.stage, "partial-compliance classifier"
        )
        return f"the {kind} can send at most {self.requests} requests"


def batch_shortfalls(job: Job, n_rows: int) -> list[Shortfall]:
    """What is known before a run starts. Later rounds (continuations, retries) are smaller and
    cannot be known: without on_demand_fallback, the run stops at the first one below it."""
    per_variant = n_rows * len(job.prompts.tiers)
    per_model = {
        m.name: per_variant * job.conversations_per_cell(m) * len(job.variants) for m in job.models
    }
    stages: list[tuple[tuple[str | int, ...], ModelSpec, str, int]] = [
        (("models", i), m, STAGE_GENERATE, per_model[m.name]) for i, m in enumerate(job.models)
    ]
    if job.judge:
        j = job.judge
        stages.append((("judge", "model"), j.model, STAGE_COMPLIANCE, sum(per_model.values())))
        if j.af_template:  # every CoT conversation judged compliant, each with its votes
            n_cot = sum(v.cot for v in job.variants)
            cot = sum(per_variant * job.conversations_per_cell(m) * n_cot for m in job.models)
            votes = 1 if j.af_votes_in_one_request else j.af_votes
            loc: tuple[str | int, ...] = ("judge", "af_model") if j.af_model else ("judge", "model")
            stages.append((loc, j.af_model or j.model, STAGE_AF, cot * votes))
        if j.partial_template:  # at most every answer
            stages.append((("judge", "model"), j.model, STAGE_PARTIAL, sum(per_model.values())))
    out = []
    for loc, model, stage, n in stages:
        minimum = get_provider(model).limits.min_requests
        if 0 < n < minimum:  # nothing to send is no shortfall
            out.append(Shortfall(loc, model, stage, n, minimum))
    return out


def check_batch_minimums(grid: Grid) -> None:
    """Refuse, before a run is created, a stage that can never form a batch job and may not go
    on-demand."""
    for s in batch_shortfalls(grid.job, len(grid.dataset.rows)):
        if not s.model.on_demand_fallback:
            where = place(grid.loaded.path, grid.loaded.text, s.loc)
            raise LimitError(
                f"{where} ({s.model.name}): {s.describe()}, below {s.model.provider}'s minimum "
                f"of {s.minimum} per batch job — set on_demand_fallback = true on this model to "
                "send them as on-demand calls (list price), or add rows"
            )
