"""Dated prices (USD per 1M tokens) and batch/cache rules, from `data/prices.json` plus a user override file.

Every shipped entry names its source and date. An unknown model is an error naming the
override file to add it to — never a silent $0.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from afbatch.errors import PriceError
from afbatch.spec import ModelSpec
from afbatch.types import Usage

DEFAULT_OVERRIDE = Path("~/.config/afbatch/prices.toml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LongContext(_Strict):
    above_tokens: int = Field(gt=0, description="Prompt tokens above which the whole request is billed at these rates.")
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class ModelPrice(_Strict):
    provider: str
    model: str
    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(None, ge=0)
    cache_write_5m: float | None = Field(None, ge=0)
    cache_write_1h: float | None = Field(None, ge=0)
    batch_input: float | None = Field(None, ge=0, description="Explicit batch price; else list x provider multiplier.")
    batch_output: float | None = Field(None, ge=0)
    batch_multiplier: float | None = Field(None, gt=0, le=1)
    long_context: LongContext | None = None
    supports_prefill: bool | None = None
    source: str = "user price override file"
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")


class ProviderPrice(_Strict):
    batch_multiplier: float = Field(gt=0, le=1)
    cache_stacks_with_batch: bool = False
    source: str = "user price override file"
    date: str = Field("unknown", pattern=r"^(\d{4}-\d{2}-\d{2}|unknown)$")


class PriceFile(_Strict):
    as_of: str | None = None
    unit: str | None = None
    providers: dict[str, ProviderPrice] = {}
    models: list[ModelPrice] = []


@dataclass(frozen=True)
class Price:
    """Resolved price of one model: list rates, batch rates, cache rates, and the rules that apply."""

    entry: ModelPrice
    batch_multiplier: float
    cache_stacks_with_batch: bool

    def list_rates(self, prompt_tokens: float) -> tuple[float, float]:
        lc = self.entry.long_context
        if lc and prompt_tokens > lc.above_tokens:
            return lc.input, lc.output
        return self.entry.input, self.entry.output

    def batch_rates(self, prompt_tokens: float) -> tuple[float, float]:
        lc = self.entry.long_context
        if lc and prompt_tokens > lc.above_tokens:
            return lc.input * self.batch_multiplier, lc.output * self.batch_multiplier
        bi = self.entry.batch_input if self.entry.batch_input is not None else self.entry.input * self.batch_multiplier
        bo = self.entry.batch_output if self.entry.batch_output is not None else self.entry.output * self.batch_multiplier
        return bi, bo

    def cache_write_rate(self, ttl: str) -> float:
        """List price of writing one cached token (Anthropic: 1.25x for 5m, 2x for 1h)."""
        e = self.entry
        rate = e.cache_write_1h if ttl == "1h" else e.cache_write_5m
        if rate is None:
            rate = e.input * (2.0 if ttl == "1h" else 1.25)
        return rate

    def cache_read_rate(self) -> float:
        return self.entry.cache_read if self.entry.cache_read is not None else self.entry.input * 0.1

    def row_cost(self, on_demand: bool, ttl: str) -> RowCost:
        return RowCost(self, on_demand, ttl)


class RowCost:
    """Billed cost of rows from their usage, for one model and one way of sending (batch or on-demand):
    cache reads and writes at their rates, the batch discount unless on-demand. The rates are looked up
    once, because a report prices every row of every conversation."""

    def __init__(self, price: Price, on_demand: bool, ttl: str) -> None:
        lc = price.entry.long_context
        self.above = lc.above_tokens if lc else None
        mult = 1.0 if on_demand else price.batch_multiplier
        cached, writes = price.cache_read_rate() * mult, price.cache_write_rate(ttl) * mult

        def rates(prompt_tokens: float) -> tuple[float, float, float, float]:
            rin, rout = price.list_rates(prompt_tokens) if on_demand else price.batch_rates(prompt_tokens)
            return rin, cached, writes, rout

        self.normal = rates(0)
        self.long = rates(self.above + 1) if self.above is not None else self.normal

    def rate_bounds(self) -> tuple[float, float]:
        """The most one input and one output token can cost (USD per 1M): any tier, cache write."""
        tiers = (self.normal, self.long)
        return max(max(t[0], t[2]) for t in tiers), max(t[3] for t in tiers)

    def __call__(self, usage: Usage) -> float:
        rin, cached, writes, rout = self.long if self.above is not None and usage.input_tokens > self.above else self.normal
        plain = usage.input_tokens - usage.cached_tokens - usage.cache_write_tokens
        return (plain * rin + usage.cached_tokens * cached + usage.cache_write_tokens * writes + usage.output_tokens * rout) / 1e6


class PriceTable:
    def __init__(self, shipped: PriceFile, override: PriceFile | None, override_path: Path):
        self.override_path = override_path
        self.as_of = shipped.as_of
        self.providers = {**shipped.providers, **(override.providers if override else {})}
        self.models: dict[tuple[str, str], ModelPrice] = {(m.provider, m.model): m for m in shipped.models}
        if override:
            self.models.update({(m.provider, m.model): m for m in override.models})

    def lookup(self, model: ModelSpec) -> Price:
        key = (model.provider, model.price_as or model.model)
        entry = self.models.get(key)
        if entry is None:
            raise PriceError(
                f"no price for {model.provider} model {key[1]!r} (models[].model, label {model.name!r}) — add a "
                f"[[models]] entry with provider, model, input, output and date to {self.override_path} "
                f"(or set price_as to a priced model)"
            )
        prov = self.providers.get(model.provider)
        mult = entry.batch_multiplier or (prov.batch_multiplier if prov else 1.0)
        return Price(entry=entry, batch_multiplier=mult, cache_stacks_with_batch=bool(prov and prov.cache_stacks_with_batch))

    def supports_prefill(self, model: ModelSpec) -> bool | None:
        entry = self.models.get((model.provider, model.price_as or model.model))
        return entry.supports_prefill if entry else None


def override_path(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("AFBATCH_PRICES")
    return Path(env).expanduser() if env else DEFAULT_OVERRIDE.expanduser()


def load_prices(override: str | Path | None = None) -> PriceTable:
    """The shipped table plus the override file (explicit path, $AFBATCH_PRICES, or ~/.config/afbatch/prices.toml)."""
    shipped = PriceFile.model_validate(json.loads(resources.files("afbatch").joinpath("data/prices.json").read_text()))
    path = override_path(override)
    user: PriceFile | None = None
    if path.exists():
        try:
            user = PriceFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as e:
            raise PriceError(f"{path}: invalid TOML: {e}") from None
        except ValidationError as e:
            first = e.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise PriceError(f"{path}: {loc}: {first['msg']} — see README 'Prices' for the format") from None
    elif override is not None:
        raise PriceError(f"{path}: price override file not found — fix the path")
    return PriceTable(shipped, user, path)
