"""Every provider afbatch can submit to, and the fixed facts of its API that afbatch reads.

One entry per provider name a job may use (`[[models]] provider = ...`). Spec, compile, estimate,
judge, tokens, pricing and the CLI ask `capabilities(name)` instead of comparing provider names.
Prices (batch multiplier, whether cache discounts stack with it) are not here: they are dated,
sourced data in `data/prices.json`, which a user's price file can override.

This module imports nothing from afbatch (spec.py reads it while it loads), and names provider
classes by import path, so the SDKs are imported only when a provider is used.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from afbatch.providers.base import Provider
    from afbatch.spec import ModelSpec

MB = 10**6

Family = Literal["openai", "anthropic", "bedrock", "fireworks"]
Caching = Literal["none", "automatic", "explicit"]


@dataclass(frozen=True)
class Limits:
    max_requests: int
    max_bytes: int
    min_requests: int = 1


@dataclass(frozen=True)
class ProviderInfo:
    """What a provider is and what its batch API accepts (tests/test_registry.py checks it)."""

    name: str  # as written in a job
    title: str  # as written in messages ("OpenAI takes no assistant prefill")
    provider_class: str  # "module:Class", imported on first use
    family: Family  # the batch API and line format it speaks
    # An assistant prefill: accepted at all (False: a job's `prefill = true` is refused), and sent
    # unless the job or the model catalog says otherwise.
    supports_prefill: bool
    prefill_by_default: bool
    supports_n: bool  # one request may ask for n choices, billed for one prompt (AF votes)
    # "explicit": requests mark cache breakpoints, so a job's `cache` applies; "automatic": the
    # provider caches on its own; "none": no prompt cache.
    caching: Caching
    cache_by_default: bool  # explicit caching on unless the job sets `cache = false`
    # The AF votes' shared prompt is marked for caching (cache hits inside a batch documented).
    cache_votes: bool
    limits: Limits  # per batch: requests, bytes, and the record minimum (Bedrock's 100)
    key_env: str | None  # API-key variable (None: the AWS credential chain)
    # The variable that points it at another endpoint: read by the SDK itself when
    # default_base_url is None, else by afbatch (below a job's base_url).
    base_url_env: str | None
    default_base_url: str | None  # None: the SDK's default
    requires_base_url: bool = False  # a job must give `base_url`
    # Further endpoint variables its SDK honours (or afbatch reads: Fireworks' account id).
    other_env: tuple[str, ...] = ()
    # The tokenizer family of every model it serves (OpenAI serves only its own models);
    # None: per model, from the model catalog (pricing.PriceTable.token_family).
    token_family: str | None = None


_OPENAI = "afbatch.providers.openai:OpenAIProvider"


def _host(name: str, title: str, base_url: str, max_bytes: int,
          prefill: bool = True) -> ProviderInfo:
    """An OpenAI-compatible host: OpenAI's batch format at its own base URL, with its own key."""
    env = name.upper().replace("-", "_")
    return ProviderInfo(
        name=name, title=title, provider_class=_OPENAI, family="openai",
        supports_prefill=True, prefill_by_default=prefill, supports_n=False,
        caching="automatic", cache_by_default=False, cache_votes=False,
        limits=Limits(50_000, max_bytes), key_env=f"{env}_API_KEY", base_url_env=f"{env}_BASE_URL",
        default_base_url=base_url)


# In the order a job's error message lists them.
PROVIDERS: dict[str, ProviderInfo] = {p.name: p for p in (
    ProviderInfo(
        name="openai", title="OpenAI", provider_class=_OPENAI, family="openai",
        supports_prefill=False, prefill_by_default=False, supports_n=True,
        caching="automatic", cache_by_default=False, cache_votes=False,
        limits=Limits(50_000, 200 * MB), key_env="OPENAI_API_KEY", base_url_env="OPENAI_BASE_URL",
        default_base_url=None, token_family="openai"),
    ProviderInfo(
        name="anthropic", title="Anthropic",
        provider_class="afbatch.providers.anthropic:AnthropicProvider", family="anthropic",
        supports_prefill=True, prefill_by_default=True, supports_n=False,
        caching="explicit", cache_by_default=True, cache_votes=True,
        # 256 MB per create call; the JSON envelope adds a few bytes per request: a margin.
        limits=Limits(100_000, 250 * MB), key_env="ANTHROPIC_API_KEY",
        base_url_env="ANTHROPIC_BASE_URL", default_base_url=None),
    ProviderInfo(
        name="bedrock", title="Bedrock", provider_class="afbatch.providers.bedrock:BedrockProvider",
        family="bedrock", supports_prefill=True, prefill_by_default=True, supports_n=False,
        # Bedrock's batch cache reads are undocumented: only a job's explicit `cache` is sent.
        caching="explicit", cache_by_default=False, cache_votes=False,
        limits=Limits(50_000, 1000 * MB, min_requests=100), key_env=None,
        base_url_env="AWS_ENDPOINT_URL_BEDROCK", default_base_url=None,
        other_env=("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL_S3")),
    _host("together", "Together", "https://api.together.xyz/v1", 100 * MB),
    _host("groq", "Groq", "https://api.groq.com/openai/v1", 200 * MB),
    _host("deepinfra", "DeepInfra", "https://api.deepinfra.com/v1/openai", 200 * MB),
    _host("xai", "xAI", "https://api.x.ai/v1", 200 * MB, prefill=False),
    # Datasets + batch inference jobs over REST. Whether a trailing assistant turn is continued is
    # undocumented: none is sent unless the job asks. 150 MB: the one-request dataset upload's cap
    # (the datasets themselves may reach 500 MB); Fireworks documents no request-count cap.
    ProviderInfo(
        name="fireworks", title="Fireworks",
        provider_class="afbatch.providers.fireworks:FireworksProvider", family="fireworks",
        supports_prefill=True, prefill_by_default=False, supports_n=False,
        caching="automatic", cache_by_default=False, cache_votes=False,
        limits=Limits(50_000, 150 * MB), key_env="FIREWORKS_API_KEY",
        base_url_env="FIREWORKS_BASE_URL", default_base_url="https://api.fireworks.ai",
        other_env=("FIREWORKS_ACCOUNT_ID",)),
    # Any other host speaking OpenAI's batch format; the job gives base_url (usually api_key_env).
    ProviderInfo(
        name="openai-compatible", title="OpenAI-compatible host", provider_class=_OPENAI,
        family="openai", supports_prefill=True, prefill_by_default=False, supports_n=False,
        caching="automatic", cache_by_default=False, cache_votes=False,
        limits=Limits(50_000, 100 * MB), key_env="OPENAI_API_KEY", base_url_env=None,
        default_base_url=None, requires_base_url=True),
)}

NAMES: tuple[str, ...] = tuple(PROVIDERS)


def capabilities(name: str) -> ProviderInfo:
    """The registry entry of a provider name (a validated job only holds registered names)."""
    return PROVIDERS[name]


def names_where(**facts: object) -> list[str]:
    """Provider names whose entries have these values, e.g. names_where(supports_n=True)."""
    return [p.name for p in PROVIDERS.values() if all(getattr(p, k) == v for k, v in facts.items())]


def env_names() -> dict[str, tuple[str, ...]]:
    """Per provider, the variables that hold its API key or point it at another endpoint (what an
    emulator sets); key first. A job's own `api_key_env` is not included."""
    return {p.name: tuple(v for v in (p.key_env, p.base_url_env, *p.other_env) if v)
            for p in PROVIDERS.values()}


def provider_class(name: str) -> type[Provider]:
    """The class serving a provider, imported now (it may import its SDK)."""
    module, _, cls = capabilities(name).provider_class.partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def make_provider(model: ModelSpec) -> Provider:
    """The provider for a model; each model gets its own instance (hosts differ in URL and key)."""
    return provider_class(model.provider)(model)  # type: ignore[call-arg]
