"""One file per provider behind one Provider protocol (see base.py); registry.py lists them and
their capabilities, and `get_provider` builds the one a model names.

The protocol's types are loaded on first use: spec.py reads the registry while it loads, before
base.py (which needs spec) can be imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from afbatch.providers.registry import ProviderInfo, capabilities
from afbatch.providers.registry import make_provider as get_provider

if TYPE_CHECKING:
    from afbatch.providers.base import BatchInfo, BatchStatus, Found, Limits, Provider

__all__ = ["BatchInfo", "BatchStatus", "Found", "Limits", "Provider", "ProviderInfo",
           "capabilities", "get_provider"]

_FROM_BASE = frozenset({"BatchInfo", "BatchStatus", "Found", "Limits", "Provider"})


def __getattr__(name: str) -> Any:
    if name in _FROM_BASE:
        from afbatch.providers import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
