"""Whether a model's turns carry the variant's assistant prefill, and why."""

from __future__ import annotations

from dataclasses import dataclass

from afbatch.errors import InputError
from afbatch.pricing import PriceTable
from afbatch.providers import capabilities
from afbatch.spec import ModelSpec


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
            raise InputError(
                f"model {model.name} ({model.model}): `prefill = true`, but "
                f"{REJECTS_PREFILL} (every request would fail with a 400) — "
                "remove `prefill = true`"
            )
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
