"""One file per provider behind one Provider protocol (see base.py); `get_provider` picks it."""

from __future__ import annotations

import os

from afbatch.providers.base import BatchInfo, BatchStatus, Found, Limits, Provider
from afbatch.spec import ModelSpec

__all__ = ["EMULATOR_ENV", "BatchInfo", "BatchStatus", "Found", "Limits", "Provider", "get_provider"]


EMULATOR_ENV = "AFBATCH_EMULATOR"


def get_provider(model: ModelSpec) -> Provider:
    """The provider for a model; each model gets its own instance (hosts differ in URL and key).

    With $AFBATCH_EMULATOR set (`afbatch run --emulator`, `afbatch emulate`'s exports), a job's own
    base_url and api_key_env are ignored, so that the SDK variables pointing at the emulator apply
    to every model."""
    if os.environ.get(EMULATOR_ENV):
        model = model.model_copy(update={"base_url": None, "api_key_env": None})
    if model.provider == "anthropic":
        from afbatch.providers.anthropic import AnthropicProvider

        return AnthropicProvider(model)
    if model.provider == "bedrock":
        from afbatch.providers.bedrock import BedrockProvider

        return BedrockProvider(model)
    from afbatch.providers.openai import OpenAIProvider

    return OpenAIProvider(model)
