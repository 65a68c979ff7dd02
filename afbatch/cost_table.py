"""The estimate as a table: a cost Row per model and stage (or per condition), and the Estimate
that holds them with its totals, savings against synchronous, notes and JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

M = 1_000_000
COST_KEYS = ("cost_sync_usd", "cost_batch_usd", "cost_batch_cached_usd", "cost_worst_usd")


@dataclass
class Row:
    model: str
    provider: str
    stage: str
    requests: int = 0
    input_tokens: float = 0.0
    cached_input_tokens: float = 0.0
    output_tokens_expected: float = 0.0
    output_tokens_max: float = 0.0
    cost_sync_usd: float = 0.0
    cost_batch_usd: float = 0.0
    cost_batch_cached_usd: float = 0.0
    cost_worst_usd: float = 0.0
    input_tokens_max: float = 0.0
    rounds_expected: float = 1.0
    rounds_max: int = 1
    on_demand_requests: float = 0.0
    variant: str | None = None
    tier: str | None = None
    temperature: float | None = None  # per-condition rows of a job with a temperature axis
    samples: int | None = None  # per-condition rows of a job with a samples axis

    def add(self, other: Row) -> None:
        for k in (
            "requests",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens_expected",
            "output_tokens_max",
            "input_tokens_max",
            "on_demand_requests",
            *COST_KEYS,
        ):
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        for k in (
            "input_tokens",
            "cached_input_tokens",
            "output_tokens_expected",
            "output_tokens_max",
            "input_tokens_max",
            "on_demand_requests",
        ):
            d[k] = int(round(d[k]))
        for k in COST_KEYS:
            d[k] = round(d[k], 4)
        d["rounds_expected"] = round(d["rounds_expected"], 3)
        if d["variant"] is None:
            del d["variant"], d["tier"]
        if d["temperature"] is None:
            del d["temperature"]
        if d["samples"] is None:
            del d["samples"]
        return d


@dataclass
class Estimate:
    job: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    assumptions: dict[str, Any] = field(default_factory=dict)
    prices_as_of: str | None = None
    # per model label: protocol.prefill_record; the tokenizer's family, factor and source
    prefill: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokenizer: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)  # protocol.protocol_record of the job

    def totals(self) -> dict[str, float]:
        return {k: round(sum(getattr(r, k) for r in self.rows), 4) for k in COST_KEYS}

    def saving_pct(self, key: str = "cost_batch_cached_usd") -> float:
        t = self.totals()
        return 100.0 * (1 - t[key] / t["cost_sync_usd"]) if t["cost_sync_usd"] else 0.0

    def frame(self) -> Any:
        """The rows as a pandas DataFrame: the `rows` of `as_json()` (and of `--format json`)."""
        import pandas as pd

        return pd.DataFrame([r.as_json() for r in self.rows])

    def as_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "rows": [r.as_json() for r in self.rows],
            "totals": self.totals(),
            "saving_vs_sync_pct": {
                "batch": round(self.saving_pct("cost_batch_usd"), 2),
                "batch_cached": round(self.saving_pct(), 2),
            },
            "notes": self.notes,
            "assumptions": self.assumptions,
            "prices_as_of": self.prices_as_of,
            "prefill": self.prefill,
            "tokenizer": self.tokenizer,
            "protocol": self.protocol,
        }
