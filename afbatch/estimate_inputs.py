"""What the estimate reads and counts: the dataset rows (or their declared fallback), texts or
their declared sizes, the judge prompts, each model's token counter, and a finished run's
observed behaviour (Calibration)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from afbatch.cost_table import Estimate
from afbatch.datasets import Dataset, load_dataset
from afbatch.errors import OfflineError
from afbatch.grid import judge_stages
from afbatch.judge_templates import stage_template
from afbatch.pricing import PriceTable
from afbatch.spec import JudgeRules, LoadedJob, ModelSpec, is_url
from afbatch.tokens import FAMILY_FACTORS, Counter, counter_for


@dataclass(frozen=True)
class Calibration:
    """Observed behaviour of one model (from a finished run), replacing the job's assumptions."""

    output_tokens_cot: float | None = None
    output_tokens_no_cot: float | None = None
    turn_weights_cot: tuple[float, ...] | None = None
    compliance_rate: float | None = None


@dataclass(frozen=True)
class Rows:
    """The dataset as the estimate needs it: exact texts, or the job's declared fallback."""

    texts: list[str] | None
    count: int
    mean_tokens: float


def dataset_rows(loaded: LoadedJob, offline: bool, notes: list[str]) -> Rows:
    spec = loaded.job.dataset
    try:
        ds: Dataset = load_dataset(loaded, offline=offline)
        return Rows([t for _, t in ds.rows], len(ds.rows), 0.0)
    except OfflineError:
        if not (is_url(spec.source) and spec.expected_rows and spec.mean_tokens_per_row):
            raise
    total = spec.expected_rows or 0
    count = min(spec.first or spec.sample or total, total)
    notes.append(
        f"dataset {spec.source} is not cached and cannot be downloaded: assuming {count} of "
        f"{total} rows at {spec.mean_tokens_per_row:g} tokens each (dataset.expected_rows, "
        "mean_tokens_per_row); everything else is exact"
    )
    return Rows(None, count, float(spec.mean_tokens_per_row or 0))


# A text the estimate could not read, by its declared size: o200k tokens.
Sized = str | float


def declared_or(
    read: Callable[[], str], ref: str, declared: int | None, key: str, notes: list[str]
) -> Sized:
    """The text `read()` gives, or, when a URL is not cached and cannot be downloaded, its declared
    o200k token count (a note says so): as `expected_rows` stands in for a dataset."""
    try:
        return read()
    except OfflineError:
        if not (is_url(ref) and declared):
            raise
    notes.append(
        f"{ref} is not cached and cannot be downloaded: assuming {declared} o200k tokens ({key})"
    )
    return float(declared)


def tokens_of(counter: Counter, text: Sized) -> float:
    return counter.count(text) if isinstance(text, str) else counter.scaled(text)


def turn_weights(turns: float, max_turns: int) -> list[float]:
    return [1.0] + [min(1.0, max(0.0, turns - (t - 1))) for t in range(2, max_turns + 1)]


def mean_request_tokens(counter: Counter, rows_in: Rows) -> float:
    if rows_in.texts is not None:
        return sum(counter.count(t) for t in rows_in.texts) / max(len(rows_in.texts), 1)
    return counter.scaled(rows_in.mean_tokens)


def judge_text(loaded: LoadedJob, stage: str, offline: bool, notes: list[str]) -> Sized:
    """A judge stage's prompt with its placeholders empty, or its declared size."""
    for st, ref, rules, key in judge_stages(loaded.job):
        if st == stage:
            read = functools.partial(_judge_template_text, loaded, ref, stage, rules, key, offline)
            return declared_or(
                read,
                ref,
                rules.expected_tokens if rules else None,
                f"judge.{key}.expected_tokens",
                notes,
            )
    raise KeyError(stage)


def _judge_template_text(
    loaded: LoadedJob, ref: str, stage: str, rules: JudgeRules | None, key: str, offline: bool
) -> str:
    tpl, _ = stage_template(loaded.resolve(ref), stage, rules, f"judge.{key}", offline=offline)
    return tpl.render(request="", response="", reasoning="")


def model_counter(model: ModelSpec, prices: PriceTable, est: Estimate) -> Counter:
    """The model's token counter. The estimate records its family, factor and source, and says so
    in a note when the catalog does not know the model: the default factor is an assumption."""
    fact = prices.token_family(model)
    counter = counter_for(model, fact.family)
    own = model.token_factor is not None
    est.tokenizer.setdefault(
        model.name,
        {
            "family": fact.family,
            "factor": counter.factor,
            "exact": counter.exact,
            "source": "job token_factor" if own else (fact.via or "default: not in the catalog"),
        },
    )
    if (fact.via is None or fact.by_price_as) and not own:
        how = (
            f"as its price_as model {model.price_as} ({fact.family})"
            if fact.by_price_as
            else "the default for any other model"
        )
        note = (
            f"tokens of {model.name} ({model.provider} {model.model}): not in the model "
            f"catalog, so counted as o200k × {FAMILY_FACTORS[fact.family]:.2f}, {how} — set "
            "token_factor on the model, or token_family in a price override entry"
        )
        if note not in est.notes:
            est.notes.append(note)
    return counter
