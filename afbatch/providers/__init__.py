"""One file per provider behind one Provider protocol (see base.py); registry.py lists them and
their capabilities, and `get_provider` builds the one a model names.

The protocol's types are loaded on first use: spec.py reads the registry while it loads, before
base.py (which needs spec) can be imported.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from afbatch.providers.registry import ProviderInfo, capabilities, make_provider

if TYPE_CHECKING:
    from afbatch.providers.base import BatchInfo, BatchStatus, Found, Provider
    from afbatch.providers.registry import Limits
    from afbatch.spec import ModelSpec

__all__ = [
    "EMULATOR_ENV",
    "BatchInfo",
    "BatchStatus",
    "Found",
    "Limits",
    "Provider",
    "ProviderInfo",
    "capabilities",
    "get_provider",
]

EMULATOR_ENV = "AFBATCH_EMULATOR"
_FROM_BASE = frozenset({"BatchInfo", "BatchStatus", "Found", "Limits", "Provider"})


def get_provider(model: ModelSpec) -> Provider:
    """The provider for a model; each model gets its own instance (hosts differ in URL and key).

    With $AFBATCH_EMULATOR set (`afbatch run --emulator`, `afbatch emulate`'s exports), a job's own
    base_url and api_key_env are ignored, so that the SDK variables pointing at the emulator apply
    to every model."""
    if os.environ.get(EMULATOR_ENV):
        model = model.model_copy(update={"base_url": None, "api_key_env": None})
    return make_provider(model)


def __getattr__(name: str) -> Any:
    if name in _FROM_BASE:
        from afbatch.providers import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
