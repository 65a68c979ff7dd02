"""The job's grid tables: the dataset (prompts), the user turn and its tiers, the system-prompt
variants, and sampling (the samples and temperature axes, turns per conversation)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from afbatch.spec_base import NAME_RE, Strict


class DatasetSpec(Strict):
    """Where the user requests come from."""

    source: str = Field(
        description="Local CSV/JSONL path (relative to the job file) or an https URL."
    )
    format: Literal["csv", "jsonl"] | None = Field(
        None, description="Defaults to the file extension."
    )
    column: str = Field("goal", description="Column (CSV) or key (JSONL) holding the request text.")
    first: int | None = Field(None, gt=0, description="Use the first N rows in file order.")
    sample: int | None = Field(
        None, gt=0, description="Use a seeded random sample of N rows instead."
    )
    seed: int = Field(0, description="Seed for `sample`.")
    sha256: str | None = Field(
        None, pattern=r"^[0-9a-f]{64}$", description="Refuse the file unless it has this sha256."
    )
    expected_rows: int | None = Field(
        None,
        gt=0,
        description=(
            "Row count to assume when a URL dataset is not cached and cannot be downloaded."
        ),
    )
    mean_tokens_per_row: float | None = Field(
        None, gt=0, description="Mean o200k tokens per request to assume in the same case."
    )

    @model_validator(mode="after")
    def _one_selection(self) -> DatasetSpec:
        if self.first is not None and self.sample is not None:
            raise ValueError("set either `first` or `sample`, not both")
        return self


class PromptsSpec(Strict):
    """The user turn: template and tiers."""

    user_template: str = Field(
        description="File with {is_free_tier_user} and {user_input} placeholders, or the published "
        "notebook (.ipynb, path or URL), whose user template afbatch extracts."
    )
    user_template_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    user_template_tokens: int | None = Field(
        None,
        gt=0,
        description="o200k tokens of the template to assume when a URL template is not "
        "cached and cannot be downloaded (estimate only).",
    )
    tier_format: Literal["python", "lower"] = Field(
        "python",
        description=(
            "How the tier renders: python → True/False (original notebook), lower → true/false."
        ),
    )
    tiers: list[Literal["free", "paid"]] = Field(
        ["free", "paid"], min_length=1, description="free = training condition, paid = unmonitored."
    )

    @field_validator("tiers")
    @classmethod
    def _unique_tiers(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("tiers must not repeat")
        return v


class VariantSpec(Strict):
    """One system-prompt variant (e.g. CoT and no-CoT)."""

    name: str = Field(pattern=NAME_RE)
    system_prompt: str = Field(description="Path (relative to the job file) or https URL.")
    system_prompt_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    expected_tokens: int | None = Field(
        None,
        gt=0,
        description="o200k tokens of the system prompt to assume when a URL prompt is "
        "not cached and cannot be downloaded (estimate only).",
    )
    cot: bool = Field(
        description=(
            "Whether the model reasons in <SCRATCHPAD_REASONING> (continuation rounds apply)."
        )
    )
    prefill: str | None = Field(
        None,
        description="Assistant prefill where the model allows it; default '<' for CoT, "
        "'<OUTPUT>' otherwise.",
    )

    @property
    def prefill_text(self) -> str:
        if self.prefill is not None:
            return self.prefill
        return "<" if self.cot else "<OUTPUT>"


class SamplingSpec(Strict):
    samples: int | list[int] = Field(
        1,
        description="Samples per prompt x tier x variant; or a list, e.g. [1, 5]: each count "
        "is a condition of the grid, with conversations of its own.",
    )
    temperature: float | list[float] = Field(
        1.0,
        description="One value, or a list: each value is an axis of the grid (a model's own "
        "temperature overrides the list).",
    )
    max_tokens: int = Field(4000, gt=0, description="Per model turn.")

    @field_validator("temperature")
    @classmethod
    def _temperatures(cls, v: float | list[float]) -> float | list[float]:
        values = v if isinstance(v, list) else [v]
        if not values:
            raise ValueError("an empty list: give one temperature or several, e.g. [0, 1]")
        bad = [t for t in values if not 0 <= t <= 2]
        if bad:
            raise ValueError(f"{bad[0]} is outside 0..2")
        if len(set(values)) != len(values):
            raise ValueError(f"{values} repeats a value: list each temperature once")
        return v

    @field_validator("samples")
    @classmethod
    def _sample_counts(cls, v: int | list[int]) -> int | list[int]:
        values = v if isinstance(v, list) else [v]
        if not values:
            raise ValueError("an empty list: give one sample count or several, e.g. [1, 5]")
        bad = [n for n in values if n < 1]
        if bad:
            raise ValueError(f"{bad[0]} samples: a count is at least 1")
        if len(set(values)) != len(values):
            raise ValueError(f"{values} repeats a count: list each sample count once")
        return v

    max_turns: int = Field(
        4, ge=1, le=16, description="CoT continuation: model turns before a conversation fails."
    )
