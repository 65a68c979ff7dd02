"""Dated prices (USD per 1M tokens) and batch/cache rules, from `data/prices.json` plus a user
override file.

Every shipped entry names its source and date. An unknown model is an error naming the
override file to add it to — never a silent $0.

The same entries are the model catalog: each also states the model's tokenizer family and
whether it rejects an assistant prefill. Those facts are looked up by exact id, then by the
id's base form (`base_model_id`), never guessed from a fragment of the name.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from afbatch.errors import PriceError
from afbatch.providers.registry import capabilities
from afbatch.spec import LoadedJob, ModelSpec, load_toml
from afbatch.types import Usage

DEFAULT_OVERRIDE = Path("~/.config/afbatch/prices.toml")

# Tokenizer families of the catalog; tokens.FAMILY_FACTORS holds each one's factor.
TokenFamily = Literal[
    "openai",
    "gpt-oss",
    "claude",
    "claude-new-tokenizer",
    "llama",
    "qwen",
    "deepseek",
    "mistral",
    "gemini",
    "grok",
    "kimi",
    "other",
]
DEFAULT_FAMILY: TokenFamily = "other"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LongContext(_Strict):
    above_tokens: int = Field(
        gt=0, description="Prompt tokens above which the whole request is billed at these rates."
    )
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    # Gemini bills cache reads of a long prompt at a higher rate too; None: the model's cache_read.
    cache_read: float | None = Field(None, ge=0)


class ModelPrice(_Strict):
    provider: str
    model: str
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(None, ge=0)
    cache_write_5m: float | None = Field(None, ge=0)
    cache_write_1h: float | None = Field(None, ge=0)
    batch_input: float | None = Field(
        None, ge=0, description="Explicit batch price; else list x provider multiplier."
    )
    batch_output: float | None = Field(None, ge=0)
    batch_multiplier: float | None = Field(None, gt=0, le=1)
    long_context: LongContext | None = None
    supports_prefill: bool | None = Field(None, description="False: the model rejects a prefill.")
    token_family: TokenFamily | None = Field(None, description="Tokenizer family (README Tokens).")
    source: str = "user price override file"
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")


class ProviderPrice(_Strict):
    batch_multiplier: float = Field(gt=0, le=1)
    cache_stacks_with_batch: bool = False
    cache_takes_precedence: bool = Field(
        False,
        description=(
            "Cached input tokens are billed at the list cache-read rate, without the batch "
            "discount (Vertex AI: the implicit-cache discount takes precedence over it)."
        ),
    )
    source: str = "user price override file"
    date: str = Field("unknown", pattern=r"^(\d{4}-\d{2}-\d{2}|unknown)$")


class PriceFile(_Strict):
    as_of: str | None = None
    unit: str | None = None
    providers: dict[str, ProviderPrice] = {}
    models: list[ModelPrice] = []


@dataclass(frozen=True)
class Price:
    """Resolved price of one model: list rates, batch rates, cache rates, and the rules that
    apply."""

    entry: ModelPrice
    batch_multiplier: float
    cache_stacks_with_batch: bool
    cache_takes_precedence: bool = False

    def list_rates(self, prompt_tokens: float) -> tuple[float, float]:
        lc = self.entry.long_context
        if lc and prompt_tokens > lc.above_tokens:
            return lc.input, lc.output
        return self.entry.input, self.entry.output

    def batch_rates(self, prompt_tokens: float) -> tuple[float, float]:
        lc = self.entry.long_context
        if lc and prompt_tokens > lc.above_tokens:
            return lc.input * self.batch_multiplier, lc.output * self.batch_multiplier
        bi = (
            self.entry.batch_input
            if self.entry.batch_input is not None
            else self.entry.input * self.batch_multiplier
        )
        bo = (
            self.entry.batch_output
            if self.entry.batch_output is not None
            else self.entry.output * self.batch_multiplier
        )
        return bi, bo

    def cache_write_rate(self, ttl: str) -> float:
        """List price of writing one cached token (Anthropic: 1.25x for 5m, 2x for 1h)."""
        e = self.entry
        rate = e.cache_write_1h if ttl == "1h" else e.cache_write_5m
        if rate is None:
            rate = e.input * (2.0 if ttl == "1h" else 1.25)
        return rate

    def cache_read_rate(self) -> float:
        return (
            self.entry.cache_read if self.entry.cache_read is not None else self.entry.input * 0.1
        )

    def row_cost(self, on_demand: bool, ttl: str) -> RowCost:
        return RowCost(self, on_demand, ttl)


class RowCost:
    """Billed cost of rows from their usage, for one model and one way of sending (batch or
    on-demand): cache reads and writes at their rates, the batch discount unless on-demand. The
    rates are looked up once, because a report prices every row of every conversation."""

    def __init__(self, price: Price, on_demand: bool, ttl: str) -> None:
        lc = price.entry.long_context
        self.above = lc.above_tokens if lc else None
        mult = 1.0 if on_demand else price.batch_multiplier
        # Where the cache discount takes precedence, a cache read is not batch-discounted again.
        read_mult = 1.0 if price.cache_takes_precedence else mult
        cached, writes = price.cache_read_rate() * read_mult, price.cache_write_rate(ttl) * mult
        long_cached = lc.cache_read * read_mult if lc and lc.cache_read is not None else cached

        def rates(prompt_tokens: float, cached: float) -> tuple[float, float, float, float]:
            rin, rout = (
                price.list_rates(prompt_tokens) if on_demand else price.batch_rates(prompt_tokens)
            )
            return rin, cached, writes, rout

        self.normal = rates(0, cached)
        self.long = rates(self.above + 1, long_cached) if self.above is not None else self.normal

    def rate_bounds(self) -> tuple[float, float]:
        """The most one input and one output token can cost (USD per 1M): any tier, cache write."""
        tiers = (self.normal, self.long)
        return max(max(t[0], t[2]) for t in tiers), max(t[3] for t in tiers)

    def __call__(self, usage: Usage) -> float:
        rin, cached, writes, rout = (
            self.long if self.above is not None and usage.input_tokens > self.above else self.normal
        )
        plain = usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens
        return (
            plain * rin
            + usage.cached_tokens * cached
            + usage.cache_write_tokens * writes
            + usage.output_tokens * rout
        ) / 1e6


# Bedrock cross-region inference profiles put a geography before the id (us.anthropic.claude-…).
_GEO_PREFIX = re.compile(r"^(us|eu|apac|global|us-gov|jp|au|ca)\.(?=[a-z0-9-]+\.)")
_BEDROCK_VERSION = re.compile(r"-v\d+(:\d+)?$")  # anthropic.claude-haiku-4-5-20251001-v1:0
_DATE = re.compile(r"-\d{8}$")  # claude-haiku-4-5-20251001


def base_model_id(model_id: str) -> str:
    """The form a catalog fact is known by when the id is not listed as written: lower case,
    without a Bedrock geography prefix (`us.`), Bedrock version suffix (`-v1:0`), Anthropic date
    suffix (`-20251001`) or Bedrock vendor prefix (`anthropic.`, `meta.`)."""
    mid = _GEO_PREFIX.sub("", model_id.lower())
    mid = _DATE.sub("", _BEDROCK_VERSION.sub("", mid))
    return mid.split(".", 1)[1] if re.match(r"^(anthropic|meta)\.", mid) else mid


@dataclass(frozen=True)
class TokenFamilyFact:
    """A model's tokenizer family and where it was found (`via` is None for the default);
    `by_price_as`: taken from the model's `price_as` model, not its own id (an assumption)."""

    family: TokenFamily
    via: str | None
    by_price_as: bool = False


class PriceTable:
    def __init__(self, shipped: PriceFile, override: PriceFile | None, override_path: Path):
        self.override_path = override_path
        self.as_of = shipped.as_of
        self.providers = {**shipped.providers, **(override.providers if override else {})}
        self.models: dict[tuple[str, str], ModelPrice] = {
            (m.provider, m.model): m for m in shipped.models
        }
        facts = ("supports_prefill", "token_family")
        if override:
            for m in override.models:  # a new price keeps the catalog facts it does not restate
                old = self.models.get((m.provider, m.model))
                if old:
                    kept = {f: getattr(old, f) for f in facts if getattr(m, f) is None}
                    m = m.model_copy(update=kept)
                self.models[(m.provider, m.model)] = m
        self._by_base: dict[str, list[ModelPrice]] = {}
        for m in self.models.values():
            self._by_base.setdefault(base_model_id(m.model), []).append(m)

    def lookup(self, model: ModelSpec) -> Price:
        key = (model.provider, model.price_as or model.model)
        entry = self.models.get(key)
        if entry is None:
            raise PriceError(
                f"no price for {model.provider} model {key[1]!r} (models[].model, label "
                f"{model.name!r}) — add a [[models]] entry with provider, model, input, output "
                f"and date to {self.override_path} (or set price_as to a priced model)"
            )
        prov = self.providers.get(model.provider)
        mult = entry.batch_multiplier or (prov.batch_multiplier if prov else 1.0)
        return Price(
            entry=entry,
            batch_multiplier=mult,
            cache_stacks_with_batch=bool(prov and prov.cache_stacks_with_batch),
            cache_takes_precedence=bool(prov and prov.cache_takes_precedence),
        )

    def _fact(self, model: ModelSpec, name: str) -> tuple[object, str, bool] | None:
        """A catalog fact of the model, the entry it came from, and whether through `price_as`: the
        model's own id as written, then its base form (same provider first), then the same for its
        `price_as` model."""
        for mid in filter(None, (model.model, model.price_as)):
            by_price_as = mid != model.model
            entry = self.models.get((model.provider, mid))
            candidates = [entry] if entry is not None else []
            same_base = self._by_base.get(base_model_id(mid), [])
            candidates += sorted(same_base, key=lambda e: e.provider != model.provider)
            for e in candidates:
                if getattr(e, name) is not None:
                    return getattr(e, name), f"catalog: {e.provider} {e.model}", by_price_as
        return None

    def supports_prefill(self, model: ModelSpec) -> bool | None:
        """False when the catalog says the model rejects a prefill; None when it does not know."""
        got = self._fact(model, "supports_prefill")
        return bool(got[0]) if got else None

    def token_family(self, model: ModelSpec) -> TokenFamilyFact:
        """The model's tokenizer family. A provider serving only its own models fixes it (the OpenAI
        API: tiktoken counts them); a model the catalog does not know gets the default (`via` None),
        never a guess."""
        fixed = capabilities(model.provider).token_family
        if fixed is not None:
            how = "tiktoken" if fixed == "openai" else f"{fixed} tokenizer"
            via = f"provider {model.provider}: {how}"
            return TokenFamilyFact(fixed, via)  # type: ignore[arg-type]
        got = self._fact(model, "token_family")
        if got is None:
            return TokenFamilyFact(DEFAULT_FAMILY, None)
        return TokenFamilyFact(got[0], got[1], got[2])  # type: ignore[arg-type]


def override_path(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("AFBATCH_PRICES")
    return Path(env).expanduser() if env else DEFAULT_OVERRIDE.expanduser()


def price_file_for(loaded: LoadedJob, given: str | None) -> str | None:
    """The override file a command loads: the one given (--prices), else the job's `prices`."""
    return given or (loaded.resolve(loaded.job.prices) if loaded.job.prices else None)


def load_prices(override: str | Path | None = None) -> PriceTable:
    """The shipped table plus the override file (explicit path, $AFBATCH_PRICES, or
    ~/.config/afbatch/prices.toml)."""
    shipped = PriceFile.model_validate(
        json.loads(resources.files("afbatch").joinpath("data/prices.json").read_text())
    )
    path = override_path(override)
    user: PriceFile | None = None
    if path.exists():
        try:
            data = load_toml(path.read_text(encoding="utf-8"), path, PriceError)
            user = PriceFile.model_validate(data)
        except UnicodeDecodeError as e:
            raise PriceError(
                f"{path}: not UTF-8 text ({e.reason} at byte {e.start}) — re-save it as UTF-8"
            ) from None
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise PriceError(
                f"{path}: {loc}: {first['msg']} — see README 'Prices' for the format"
            ) from None
    elif override is not None:
        raise PriceError(f"{path}: price override file not found — fix the path")
    return PriceTable(shipped, user, path)
