"""The job file: the job (pydantic) and its run-id fingerprint, loading a `jobs/*.toml` file.

A job describes the whole grid (models x variants x tiers x prompts x samples) plus judge
settings and the estimate's assumptions. Unknown keys are errors. Paths inside a job are
relative to the job file; `http(s)://` sources are downloaded once and pinned by sha256.

Its tables live by concern: grid_spec.py (dataset, prompts, variants, sampling), model_spec.py,
judge_spec.py, spec_base.py (their strict base); toml_text.py parses TOML and words the one-line
errors. Every name is importable from here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from afbatch.errors import SpecError
from afbatch.grid_spec import DatasetSpec, PromptsSpec, SamplingSpec, VariantSpec
from afbatch.judge_spec import JudgeRules, JudgeSpec
from afbatch.model_spec import ModelSpec, Provider, default_label
from afbatch.redact import register_env
from afbatch.spec_base import LABEL_RE, NAME_RE, Strict
from afbatch.toml_text import (
    MAX_TOML_DEPTH,
    format_validation_error,
    load_toml,
    loc_str,
    place,
    toml_line_of,
)

__all__ = [
    "LABEL_RE",
    "MAX_TOML_DEPTH",
    "NAME_RE",
    "NOT_FINGERPRINTED",
    "DatasetSpec",
    "EstimateSpec",
    "Job",
    "JudgeRules",
    "JudgeSpec",
    "LoadedJob",
    "ModelSpec",
    "PromptsSpec",
    "ProtocolSpec",
    "Provider",
    "ReportSpec",
    "RetrySpec",
    "SamplingSpec",
    "ShardLimits",
    "VariantSpec",
    "canonical_json",
    "default_label",
    "format_validation_error",
    "is_url",
    "job_schema",
    "load_job",
    "load_toml",
    "parse_job",
    "place",
    "toml_line_of",
]


class ProtocolSpec(Strict):
    """Which protocol profile (afbatch.protocol.PROFILES) ends conversations and counts rates."""

    profile: Literal["notebook", "strict"] = Field(
        "notebook",
        description="notebook: the published construction (the default, so numbers sit "
        "next to the paper's); strict: last <OUTPUT> outside the scratchpads, failures left out "
        "of the rates. Every estimate and report names it.",
    )


class EstimateSpec(Strict):
    """Assumptions the estimate uses before any output exists (replace with --calibrate-from
    RUN)."""

    output_tokens_cot: int = Field(
        900, gt=0, description="Expected output tokens per CoT model turn."
    )
    output_tokens_no_cot: int = Field(
        300, gt=0, description="Expected output tokens of a no-CoT answer."
    )
    turns_cot: float = Field(1.3, ge=1, description="Expected model turns per CoT conversation.")
    compliance_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Expected share of CoT conversations judged compliant (AF classifier volume).",
    )
    judge_output_tokens: int = Field(350, gt=0)
    af_output_tokens: int = Field(400, gt=0)


class ReportSpec(Strict):
    """How the report computes what it prints (changes no request: not part of the run id)."""

    gap_interval: Literal["paired", "unpaired"] = Field(
        "paired",
        description="Compliance-gap interval: paired (the tiers share prompts) or unpaired.",
    )


class ShardLimits(Strict):
    """Optional tighter per-shard limits than the provider's (e.g. an enqueued-token budget)."""

    max_requests: int | None = Field(None, gt=0)
    max_bytes: int | None = Field(None, gt=0)
    # Replaces the provider's default (an account's tier sets it: Gemini's enqueued-token limit).
    max_enqueued_tokens: int | None = Field(
        None, gt=0, description="Estimated input tokens per batch (replaces the provider's)."
    )


class RetrySpec(Strict):
    max_attempts: int = Field(
        3, ge=1, le=20, description="Attempts per request for retryable failures."
    )


class Job(Strict):
    name: str = Field(pattern=NAME_RE)
    description: str = ""
    dataset: DatasetSpec
    prompts: PromptsSpec
    variants: Annotated[list[VariantSpec], Field(min_length=1)]
    models: Annotated[list[ModelSpec], Field(min_length=1)]
    sampling: SamplingSpec = SamplingSpec()
    protocol: ProtocolSpec = ProtocolSpec()
    judge: JudgeSpec | None = None
    estimate: EstimateSpec = EstimateSpec()
    report: ReportSpec = ReportSpec()
    shards: ShardLimits = ShardLimits()
    retries: RetrySpec = RetrySpec()
    prices: str | None = Field(
        None, description="Price override file (TOML), relative to the job file."
    )

    @model_validator(mode="after")
    def _bedrock_llama_tokens(self) -> Job:
        for i, m in enumerate(self.models):
            if (
                m.provider == "bedrock"
                and "llama" in m.model.lower()
                and self.max_tokens_for(m) > 2048
            ):
                raise ValueError(
                    f"models[{i}] ({m.name}): Bedrock Llama models accept at most 2048 output "
                    "tokens (max_gen_len) — set max_tokens = 2048 on this model"
                )
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> Job:
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names must be unique; repeated: {', '.join(dupes)}")
        return self

    def labelled_models(self) -> list[tuple[tuple[str | int, ...], ModelSpec]]:
        """Every model with its place in the job: generation models, the judge model, the AF one."""
        out: list[tuple[tuple[str | int, ...], ModelSpec]] = [
            (("models", i), m) for i, m in enumerate(self.models)
        ]
        if self.judge:
            out.append((("judge", "model"), self.judge.model))
            if self.judge.af_model:
                out.append((("judge", "af_model"), self.judge.af_model))
        return out

    def temperatures_for(self, model: ModelSpec) -> tuple[float, ...]:
        """The temperature axis of a model's grid: its own temperature, else [sampling]'s."""
        if model.temperature is not None:
            return (model.temperature,)
        t = self.sampling.temperature
        return tuple(t) if isinstance(t, list) else (t,)

    def sample_counts(self) -> tuple[int, ...]:
        """The samples axis: each count is a condition with conversations of its own."""
        s = self.sampling.samples
        return tuple(s) if isinstance(s, list) else (s,)

    @property
    def samples_axis(self) -> bool:
        """Several sample counts: their conversations' ids name their count (ids.py)."""
        return len(self.sample_counts()) > 1

    def conversations_per_cell(self, model: ModelSpec) -> int:
        """Conversations per prompt x tier x variant: every sample count at each temperature."""
        return sum(self.sample_counts()) * len(self.temperatures_for(model))

    def max_tokens_for(self, model: ModelSpec) -> int:
        return model.max_tokens if model.max_tokens is not None else self.sampling.max_tokens

    def model_by_name(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


class LoadedJob(BaseModel):
    """A validated job plus where it came from."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    job: Job
    path: Path
    text: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve(self, ref: str) -> str:
        """A path relative to the job file, or a URL unchanged."""
        if is_url(ref):
            return ref
        p = Path(ref).expanduser()
        if p.is_absolute():
            return str(p)
        try:
            return str((self.base_dir / p).resolve())
        except RuntimeError:  # a symlink loop (Python < 3.13): reading the path will name it
            return os.path.abspath(self.base_dir / p)

    @property
    def fingerprint(self) -> str:
        """The hash of what changes outputs: the validated job, dumped canonically (so comments,
        whitespace and key order never count), minus `NOT_FINGERPRINTED`. The run id adds the
        inputs' sha256 (opening.run_id_for)."""
        dump = self.job.model_dump(mode="json", exclude=NOT_FINGERPRINTED)
        return hashlib.sha256(canonical_json(dump).encode()).hexdigest()


# Job fields that change no request and no answer, so editing them keeps the run (DESIGN.md,
# "Decisions worth knowing"): prose; sha256 pins, which only refuse a file (the run id already
# holds every input's sha256); the dataset size the estimate assumes when it cannot read the file;
# how the report computes its intervals; the enqueued-token limit (the account's tier, added after
# runs existed: a new default in the dump would change every run id).
NOT_FINGERPRINTED: dict[str, Any] = {
    "description": True,
    "report": True,
    "shards": {"max_enqueued_tokens"},
    "dataset": {"sha256", "expected_rows", "mean_tokens_per_row"},
    "variants": {"__all__": {"system_prompt_sha256", "expected_tokens"}},
    "prompts": {"user_template_sha256", "user_template_tokens"},
    "judge": {
        "compliance_rules": {"sha256", "expected_tokens"},
        "af_rules": {"sha256", "expected_tokens"},
        "partial_rules": {"sha256", "expected_tokens"},
    },
}


def is_url(ref: str) -> bool:
    return ref.startswith(("https://", "http://"))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def load_job(path: str | os.PathLike[str]) -> LoadedJob:
    """Read and validate a job file; raise SpecError with one line naming file, key, line and
    fix."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(
            f"{p}: no such job file (shipped jobs are in jobs/, e.g. jobs/sample.toml)"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError(f"{p}: cannot read job file: {e}") from None
    return parse_job(text, p.resolve())


def parse_job(text: str, p: Path) -> LoadedJob:
    """Validate job text; `p` is where it lives (paths inside resolve against its folder)."""
    data = load_toml(text, p, SpecError)
    try:
        job = Job.model_validate(data)
    except ValidationError as e:
        raise SpecError(format_validation_error(p, text, e)) from None
    for _, m in job.labelled_models():
        if m.api_key_env:
            register_env(m.api_key_env)  # a key under any name is a secret: redacted by value
    _check_labels(job, text, p)
    return LoadedJob(job=job, path=p, text=text)


def _check_labels(job: Job, text: str, p: Path) -> None:
    """No two models share a label, generation or judge: labels name ids, shards and report rows,
    so a shared one would send one model's requests to the other's provider."""
    seen: dict[str, tuple[str | int, ...]] = {}
    for loc, m in job.labelled_models():
        first = seen.setdefault(m.name, loc)
        if first == loc:
            continue
        given = "label" if m.label else "default label (from its model id)"
        where = place(p, text, (*loc, "label") if m.label else loc)
        raise SpecError(
            f"{where}: {given} {m.name!r} is already {loc_str(first)}'s — "
            "labels must be unique across models, judge.model and judge.af_model (they "
            'name ids, shards and report rows); set a distinct `label = "..."` on '
            f"{loc_str(loc)}"
        )


def job_schema() -> dict[str, Any]:
    return Job.model_json_schema()
