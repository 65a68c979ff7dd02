"""Job → conversations → provider-neutral requests → provider JSONL shards within every limit.

Writing streams: requests are generated lazily and each line is written as soon as it is
rendered, so memory stays flat as the grid grows. The shared system prompt is JSON-encoded once
per variant and spliced into each line, so long prompts cost a copy, not a re-encode.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from afbatch import ids
from afbatch.datasets import Dataset, Source, load_dataset, read_source
from afbatch.errors import InputError, LimitError
from afbatch.judge_templates import Template, check_rule, stage_template
from afbatch.pricing import PriceTable
from afbatch.published import notebook_user_template
from afbatch.protocol import NEXT, check_user_template, render_user
from afbatch.providers import Limits, Provider, capabilities, get_provider
from afbatch.spec import Job, JudgeRules, LoadedJob, ModelSpec, VariantSpec, place
from afbatch.types import (STAGE_AF, STAGE_COMPLIANCE, STAGE_GENERATE, STAGE_PARTIAL, Conversation,
                           Message, Request)


@dataclass(frozen=True)
class Grid:
    """Everything the job's files resolve to: dataset rows, template, system prompts, judge templates, their pins."""

    loaded: LoadedJob
    dataset: Dataset
    template: str
    systems: dict[str, str]
    inputs: dict[str, dict[str, str]]
    judge_templates: dict[str, Template]

    @property
    def job(self) -> Job:
        return self.loaded.job

    def variant(self, name: str) -> VariantSpec:
        for v in self.job.variants:  # a handful: a scan is as quick as a dict
            if v.name == name:
                return v
        raise KeyError(name)

    def user_message(self, conv: Conversation) -> str:
        """The rendered user turn (not kept per conversation: 100k of them would hold ~100 MB)."""
        return render_user(self.template, conv.tier, conv.user_input, self.job.prompts.tier_format)


Reader = Callable[..., Source]


def load_grid(loaded: LoadedJob, *, offline: bool = False, read: Reader = read_source) -> Grid:
    """Resolve every input of a job; `read` lets a resumed run read its pinned copies from the store."""
    job = loaded.job
    dataset = load_dataset(loaded, offline=offline, read=read)
    tpl = read_user_template(loaded, offline=offline, read=read)
    inputs = {
        "dataset": {"ref": dataset.ref, "sha256": dataset.sha256},
        "user_template": {"ref": tpl.ref, "sha256": tpl.sha256},
    }
    systems: dict[str, str] = {}
    for v in job.variants:
        src = read(loaded.resolve(v.system_prompt), offline=offline, expected_sha256=v.system_prompt_sha256)
        systems[v.name] = src.text
        inputs[f"variants.{v.name}.system_prompt"] = {"ref": src.ref, "sha256": src.sha256}
    judges: dict[str, Template] = {}
    if job.judge:
        for stage, ref, rules, key in judge_stages(job):
            judges[stage], src = stage_template(loaded.resolve(ref), stage, rules, f"judge.{key}",
                                                offline=offline, read=read)
            inputs[f"judge.{stage}_template"] = {"ref": src.ref, "sha256": src.sha256}
        check_rule(judges["compliance"], job.judge.compliance_rule)
    return Grid(loaded=loaded, dataset=dataset, template=tpl.text, systems=systems, inputs=inputs, judge_templates=judges)


def judge_stages(job: Job) -> list[tuple[str, str, JudgeRules | None, str]]:
    """(stage, template ref, the job's parse rules or None, the rules' key) of each judge stage."""
    j = job.judge
    if j is None:
        return []
    out = [("compliance", j.compliance_template, j.compliance_rules, "compliance_rules")]
    if j.af_template:
        out.append(("alignment_faking", j.af_template, j.af_rules, "af_rules"))
    if j.partial_template:
        out.append(("partial_compliance", j.partial_template, j.partial_rules, "partial_rules"))
    return out


@dataclass(frozen=True)
class UserTemplate:
    """The user template as afbatch fills it, with the file it came from and that file's sha256."""

    ref: str
    sha256: str
    text: str


def read_user_template(loaded: LoadedJob, *, offline: bool = False,
                       read: Reader = read_source) -> UserTemplate:
    """The job's user template (a text file, or the one a published notebook defines), refused
    unless it holds every placeholder the grid needs."""
    prompts = loaded.job.prompts
    src = read(loaded.resolve(prompts.user_template), offline=offline,
               expected_sha256=prompts.user_template_sha256)
    if is_notebook(src.ref):
        text = notebook_user_template(src.data, src.ref)
    else:
        text = src.text
    check_user_template(text, src.ref)
    return UserTemplate(ref=src.ref, sha256=src.sha256, text=text)


def is_notebook(ref: str) -> bool:
    return ref.split("?")[0].endswith(".ipynb")


@dataclass(frozen=True)
class PrefillDecision:
    """Whether a model's turns carry the variant's prefill, and why (estimate and report say it)."""

    sent: bool
    reason: str


REJECTS_PREFILL = "the model rejects an assistant prefill"


def prefill_decision(model: ModelSpec, prices: PriceTable | None) -> PrefillDecision:
    """The job's explicit setting wins; else the model catalog (Claude 4.6 and later answer a
    prefill with a 400); else the provider default. Asking for a prefill the catalog says the
    model rejects is an error: every request would fail."""
    known = prices.supports_prefill(model) if prices else None
    if model.prefill is not None:
        if model.prefill and known is False:
            raise InputError(f"model {model.name} ({model.model}): `prefill = true`, but "
                             f"{REJECTS_PREFILL} (every request would fail with a 400) — "
                             "remove `prefill = true`")
        return PrefillDecision(model.prefill, f"job sets prefill = {str(model.prefill).lower()}")
    if known is not None:
        accepts = "the model catalog says it accepts one"
        return PrefillDecision(known, accepts if known else REJECTS_PREFILL)
    if model.allows_prefill:
        return PrefillDecision(True, f"{model.provider} accepts an assistant prefill")
    info = capabilities(model.provider)
    if not info.supports_prefill:
        return PrefillDecision(False, f"{info.title} takes no assistant prefill")
    unless = "unless the job sets prefill = true"
    return PrefillDecision(False, f"not sent to {model.provider} models {unless}")


def effective_prefill(model: ModelSpec, prices: PriceTable | None) -> bool:
    return prefill_decision(model, prices).sent


def conversations(grid: Grid, model: ModelSpec, known_ids: list[str] | None = None) -> Iterator[Conversation]:
    """Every conversation of one model, in grid order: variant, temperature, samples, tier, prompt,
    sample.

    `known_ids` (a run's stored ids, in this order) skips hashing the content again."""
    known = iter(known_ids) if known_ids is not None else None
    job = grid.job
    system_sha = {name: hashlib.sha256(text.encode()).hexdigest() for name, text in grid.systems.items()}
    max_tokens = job.max_tokens_for(model)
    for variant in job.variants:
        for temperature, count in ((t, n) for t in job.temperatures_for(model)
                                   for n in job.sample_counts()):
            for tier in job.prompts.tiers:
                for index, text in grid.dataset.rows:
                    if known is None:
                        user_message = render_user(grid.template, tier, text,
                                                   job.prompts.tier_format)
                    for sample in range(count):
                        cid = next(known) if known is not None else ids.conversation_id(
                            model.provider, model.model, variant.name, system_sha[variant.name],
                            user_message, index, sample, temperature, max_tokens,
                            variant.prefill_text, count if job.samples_axis else None)
                        yield Conversation(cid, model.name, variant.name, variant.cot, tier, index,
                                           sample, text, temperature=temperature, samples=count)


def turn_request(grid: Grid, model: ModelSpec, conv: Conversation, turn_texts: list[str], prefill: bool) -> Request:
    """The request for the next model turn; earlier turns (prefill included) become assistant messages."""
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


# --- shards -----------------------------------------------------------------------------------


@dataclass
class Shard:
    """One provider batch file: `<stem>-NNN.jsonl` plus `<stem>-NNN.ids` (request ids in line order)."""

    path: str
    ids_path: str
    n_requests: int = 0
    n_bytes: int = 0
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
    )


_SENTINEL = "\x00afbatch-system\x00"
_SENTINEL_JSON = json.dumps(_SENTINEL)[1:-1]


def render_lines(provider: Provider, requests: Iterable[Request]) -> Iterator[tuple[str, bytes]]:
    """(request id, JSONL line) pairs; each distinct system prompt is JSON-escaped once."""
    escaped: dict[int, str] = {}
    for req in requests:
        system = req.system
        if system and len(system) > 256:
            key = id(system)
            if key not in escaped:
                escaped[key] = json.dumps(system, ensure_ascii=False)[1:-1]
            line = json.dumps(provider.render(_with_system(req, _SENTINEL)), ensure_ascii=False, separators=(",", ":"))
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
) -> list[Shard]:
    """Stream lines into shards within count and byte limits (and `cap`); rebalance so no shard
    falls below the minimum. A capped shard still takes twice the minimum, so that moving lines
    into a short last one stays legal."""
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
            ids_f.close()  # type: ignore[union-attr]
            current.sha256 = digest.hexdigest()
            data_f = ids_f = None

    try:
        for rid, line in lines:
            if rid in seen:
                raise LimitError(f"duplicate request id {rid}: two grid cells have identical content — make them differ")
            seen.add(rid)
            size = len(line) + 1
            if size > limits.max_bytes:
                raise LimitError(f"request {rid} is {size} bytes, over the {limits.max_bytes}-byte shard limit")
            if (current is None or current.n_requests >= limits.max_requests
                    or current.n_bytes + size > limits.max_bytes
                    or (cap is not None and current.n_requests >= least
                        and not cap.fits(current.n_bytes + size, current.n_requests + 1))):
                close()
                n = len(shards)
                current = Shard(path=str(out / f"{stem}-{n:03d}.jsonl"), ids_path=str(out / f"{stem}-{n:03d}.ids"))
                shards.append(current)
                data_f = open(current.path, "wb")
                ids_f = open(current.ids_path, "w", encoding="utf-8")
                digest = hashlib.sha256()
            current.offsets.append(current.n_bytes)
            data_f.write(line)  # type: ignore[union-attr]
            data_f.write(b"\n")  # type: ignore[union-attr]
            digest.update(line)
            digest.update(b"\n")
            ids_f.write(rid + "\n")  # type: ignore[union-attr]
            current.n_requests += 1
            current.n_bytes += size
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
    """Move lines from the second-to-last shard into a last shard below the minimum (Bedrock: 100)."""
    if len(shards) < 2 or shards[-1].n_requests >= limits.min_requests:
        return
    prev, last = shards[-2], shards[-1]
    move = limits.min_requests - last.n_requests
    if prev.n_requests - move < limits.min_requests:
        raise LimitError(f"cannot split {prev.n_requests + last.n_requests} requests into shards of at least {limits.min_requests}")
    cut = prev.offsets[prev.n_requests - move]
    with open(prev.path, "rb") as f:
        f.seek(cut)
        moved = f.read()
    with open(last.path, "rb") as f:
        rest = f.read()
    if len(moved) + len(rest) > limits.max_bytes:
        raise LimitError(f"{last.path}: cannot reach {limits.min_requests} requests within {limits.max_bytes} bytes")
    with open(prev.ids_path, encoding="utf-8") as f:
        prev_ids = f.read().splitlines()
    with open(last.ids_path, encoding="utf-8") as f:
        last_ids = f.read().splitlines()
    _write(last.path, moved + rest)
    _write(prev.path, None, truncate=cut)
    _write(last.ids_path, ("\n".join(prev_ids[-move:] + last_ids) + "\n").encode())
    _write(prev.ids_path, ("\n".join(prev_ids[:-move]) + "\n").encode())
    for s, n, b in ((prev, prev.n_requests - move, cut), (last, last.n_requests + move, len(moved) + len(rest))):
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


# --- batch minimums (Bedrock: 100 records per job) --------------------------------------------


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
            self.stage, "partial-compliance classifier")
        return f"the {kind} can send at most {self.requests} requests"


def batch_shortfalls(job: Job, n_rows: int) -> list[Shortfall]:
    """What is known before a run starts. Later rounds (continuations, retries) are smaller and
    cannot be known: without on_demand_fallback, the run stops at the first one below it."""
    per_variant = n_rows * len(job.prompts.tiers)
    per_model = {m.name: per_variant * job.conversations_per_cell(m) * len(job.variants)
                 for m in job.models}
    stages: list[tuple[tuple[str | int, ...], ModelSpec, str, int]] = [
        (("models", i), m, STAGE_GENERATE, per_model[m.name]) for i, m in enumerate(job.models)]
    if job.judge:
        j = job.judge
        stages.append((("judge", "model"), j.model, STAGE_COMPLIANCE, sum(per_model.values())))
        if j.af_template:  # every CoT conversation judged compliant, each with its votes
            n_cot = sum(v.cot for v in job.variants)
            cot = sum(per_variant * job.conversations_per_cell(m) * n_cot for m in job.models)
            votes = 1 if j.af_votes_in_one_request else j.af_votes
            af_loc = ("judge", "af_model") if j.af_model else ("judge", "model")
            stages.append((af_loc, j.af_model or j.model, STAGE_AF, cot * votes))
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
                "send them as on-demand calls (list price), or add rows")


# --- `afbatch compile` ------------------------------------------------------------------------


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


def compile_job(grid: Grid, out_dir: str | os.PathLike[str], prices: PriceTable | None) -> list[CompiledModel]:
    """Write round-1 generation shards for every model under out_dir/<label>/, plus index.json."""
    out = Path(out_dir)
    compiled = []
    for model in grid.job.models:
        provider = get_provider(model)
        lines = render_lines(provider, first_requests(grid, model, prices))
        shards = write_shards(lines, shard_limits(provider, grid.job), out / model.name, f"{STAGE_GENERATE}-t1")
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
