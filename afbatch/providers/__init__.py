"""One file per provider behind one Provider protocol (see base.py); `get_provider` picks it."""

from __future__ import annotations

from afbatch.providers.base import BatchInfo, BatchStatus, Found, Limits, Provider
from afbatch.spec import ModelSpec

__all__ = ["BatchInfo", "BatchStatus", "Found", "Limits", "Provider", "get_provider"]


def get_provider(model: ModelSpec) -> Provider:
    """The provider for a model; each model gets its own instance (hosts differ in base URL and key)."""
    if model.provider == "anthropic":
        from afbatch.providers.anthropic import AnthropicProvider

        return AnthropicProvider(model)
    if model.provider == "bedrock":
        from afbatch.providers.bedrock import BedrockProvider

        return BedrockProvider(model)
    from afbatch.providers.openai import OpenAIProvider

    return OpenAIProvider(model)
