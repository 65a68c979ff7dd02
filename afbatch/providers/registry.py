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

Family = Literal[
    "openai", "anthropic", "bedrock", "gemini", "vertex", "mistral", "xai", "fireworks"
]
Caching = Literal["none", "automatic", "explicit"]


@dataclass(frozen=True)
class Limits:
    max_requests: int
    max_bytes: int
    min_requests: int = 1
    # Estimated input tokens one batch may hold (Gemini's per-model enqueued-token limit); None: no
    # such limit. Shards are cut so that none exceeds it (compile.write_shards).
    max_enqueued_tokens: int | None = None


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
    # The answer starts with the prefill it continued (Mistral's `"prefix": true`), instead of
    # holding only the continuation; the conversation then takes the answer as the whole turn.
    prefill_echoed: bool = False


_OPENAI = "afbatch.providers.openai:OpenAIProvider"


def _host(name: str, title: str, base_url: str, max_bytes: int) -> ProviderInfo:
    """An OpenAI-compatible host: OpenAI's batch format at its own base URL, with its own key."""
    env = name.upper().replace("-", "_")
    return ProviderInfo(
        name=name,
        title=title,
        provider_class=_OPENAI,
        family="openai",
        supports_prefill=True,
        prefill_by_default=True,
        supports_n=False,
        caching="automatic",
        cache_by_default=False,
        cache_votes=False,
        limits=Limits(50_000, max_bytes),
        key_env=f"{env}_API_KEY",
        base_url_env=f"{env}_BASE_URL",
        default_base_url=base_url,
    )


# In the order a job's error message lists them.
PROVIDERS: dict[str, ProviderInfo] = {
    p.name: p
    for p in (
        ProviderInfo(
            name="openai",
            title="OpenAI",
            provider_class=_OPENAI,
            family="openai",
            supports_prefill=False,
            prefill_by_default=False,
            supports_n=True,
            caching="automatic",
            cache_by_default=False,
            cache_votes=False,
            limits=Limits(50_000, 200 * MB),
            key_env="OPENAI_API_KEY",
            base_url_env="OPENAI_BASE_URL",
            default_base_url=None,
            token_family="openai",
        ),
        ProviderInfo(
            name="anthropic",
            title="Anthropic",
            provider_class="afbatch.providers.anthropic:AnthropicProvider",
            family="anthropic",
            supports_prefill=True,
            prefill_by_default=True,
            supports_n=False,
            caching="explicit",
            cache_by_default=True,
            cache_votes=True,
            # 256 MB per create call; the JSON envelope adds a few bytes per request: a margin.
            limits=Limits(100_000, 250 * MB),
            key_env="ANTHROPIC_API_KEY",
            base_url_env="ANTHROPIC_BASE_URL",
            default_base_url=None,
        ),
        ProviderInfo(
            name="bedrock",
            title="Bedrock",
            provider_class="afbatch.providers.bedrock:BedrockProvider",
            family="bedrock",
            supports_prefill=True,
            prefill_by_default=True,
            supports_n=False,
            # Bedrock's batch cache reads are undocumented: only a job's explicit `cache` is sent.
            caching="explicit",
            cache_by_default=False,
            cache_votes=False,
            limits=Limits(50_000, 1000 * MB, min_requests=100),
            key_env=None,
            base_url_env="AWS_ENDPOINT_URL_BEDROCK",
            default_base_url=None,
            other_env=("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_ENDPOINT_URL_S3"),
        ),
        # Gemini API batch mode (google-genai): a JSONL of `{key, request}` lines uploaded through
        # the Files API. No prefill: Google documents no continuation of a trailing `model` turn,
        # and it is model-dependent in practice (some models continue it, newer ones answer HTTP 400
        # "Requests ending with a model turn are not supported"), so it is refused as for OpenAI.
        # Implicit caching only. Limits: input file 2 GB (a margin kept); no documented request
        # count (100k keeps one batch's output a manageable download); enqueued tokens per model:
        # 3M, Tier 1's smallest published figure (gemini-2.5-flash;
        # ai.google.dev/gemini-api/docs/rate-limits, "Batch API rate limits", 2025; higher tiers
        # allow more: a job raises it in [shards]).
        ProviderInfo(
            name="gemini",
            title="Gemini API",
            provider_class="afbatch.providers.gemini:GeminiProvider",
            family="gemini",
            supports_prefill=False,
            prefill_by_default=False,
            supports_n=False,
            caching="automatic",
            cache_by_default=False,
            cache_votes=False,
            limits=Limits(100_000, 2000 * MB, max_enqueued_tokens=3_000_000),
            key_env="GEMINI_API_KEY",
            base_url_env="GOOGLE_GEMINI_BASE_URL",
            default_base_url=None,
            token_family="gemini",
        ),
        # Vertex AI batch prediction (google-genai with vertexai=True): `{key, request}` lines in a
        # Cloud Storage object, results as predictions.jsonl files under a gs:// prefix. Requests
        # as the Gemini API's, so no prefill either. Implicit caching only; its discount takes
        # precedence over the batch discount (prices.json). Limits: 200,000 requests and a 1 GB
        # input file per job (cloud.google.com/vertex-ai/generative-ai/docs/multimodal/
        # batch-prediction-gemini); no enqueued-token quota (a shared pool). Credentials: ADC.
        ProviderInfo(
            name="vertex",
            title="Vertex AI",
            provider_class="afbatch.providers.vertex:VertexProvider",
            family="vertex",
            supports_prefill=False,
            prefill_by_default=False,
            supports_n=False,
            caching="automatic",
            cache_by_default=False,
            cache_votes=False,
            limits=Limits(200_000, 1000 * MB),
            key_env=None,
            base_url_env="GOOGLE_VERTEX_BASE_URL",
            default_base_url=None,
            other_env=(
                "STORAGE_EMULATOR_HOST",
                "GOOGLE_APPLICATION_CREDENTIALS",
                "GOOGLE_CLOUD_PROJECT",
                "GOOGLE_CLOUD_LOCATION",
            ),
            token_family="gemini",
        ),
        _host("together", "Together", "https://api.together.xyz/v1", 100 * MB),
        _host("groq", "Groq", "https://api.groq.com/openai/v1", 200 * MB),
        # DeepInfra: OpenAI's batch format since 2026-06-19 (deepinfra.com/blog/batch-api), 20% off;
        # no per-batch limits published: OpenAI's. Whether it continues a trailing assistant turn is
        # not documented; the prefill is sent, as before its batch API (a job may set prefill =
        # false).
        _host("deepinfra", "DeepInfra", "https://api.deepinfra.com/v1/openai", 200 * MB),
        # xAI: its native named-batch API (providers/xai.py says why not the OpenAI-compatible
        # route: docs.x.ai batch-api; xai-sdk 1.21.0). No request or byte cap per batch is published
        # (25 MB per add call, which submit chunks to; "throttled" over 100k requests). Prefill: not
        # documented, so not sent unless the job asks.
        ProviderInfo(
            name="xai",
            title="xAI",
            provider_class="afbatch.providers.xai:XAIProvider",
            family="xai",
            supports_prefill=True,
            prefill_by_default=False,
            supports_n=False,
            caching="automatic",
            cache_by_default=False,
            cache_votes=False,
            limits=Limits(100_000, 200 * MB),
            key_env="XAI_API_KEY",
            base_url_env="XAI_BASE_URL",
            default_base_url="https://api.x.ai/v1",
        ),
        ProviderInfo(
            name="mistral",
            title="Mistral",
            provider_class="afbatch.providers.mistral:MistralProvider",
            family="mistral",
            supports_prefill=True,
            prefill_by_default=True,
            prefill_echoed=True,
            # `n` exists in the chat API, but its batch billing is undocumented: votes go
            # separately.
            supports_n=False,
            # `prompt_cache_key` is a hint; batch cache reads are undocumented: only a job's
            # `cache`.
            caching="explicit",
            cache_by_default=False,
            cache_votes=False,
            # 1M requests per job; files up to 512 MB (SDK docstring of files.upload): a margin.
            limits=Limits(1_000_000, 500 * MB),
            key_env="MISTRAL_API_KEY",
            base_url_env="MISTRAL_BASE_URL",
            default_base_url="https://api.mistral.ai",
            token_family="mistral",
        ),
        # Datasets + batch inference jobs over REST. Whether a trailing assistant turn is continued
        # is undocumented: none is sent unless the job asks. 150 MB: the one-request dataset
        # upload's cap (the datasets themselves may reach 500 MB); Fireworks documents no
        # request-count cap.
        ProviderInfo(
            name="fireworks",
            title="Fireworks",
            provider_class="afbatch.providers.fireworks:FireworksProvider",
            family="fireworks",
            supports_prefill=True,
            prefill_by_default=False,
            supports_n=False,
            caching="automatic",
            cache_by_default=False,
            cache_votes=False,
            limits=Limits(50_000, 150 * MB),
            key_env="FIREWORKS_API_KEY",
            base_url_env="FIREWORKS_BASE_URL",
            default_base_url="https://api.fireworks.ai",
            other_env=("FIREWORKS_ACCOUNT_ID",),
        ),
        # Any other host speaking OpenAI's batch format; the job gives base_url (usually
        # api_key_env).
        ProviderInfo(
            name="openai-compatible",
            title="OpenAI-compatible host",
            provider_class=_OPENAI,
            family="openai",
            supports_prefill=True,
            prefill_by_default=False,
            supports_n=False,
            caching="automatic",
            cache_by_default=False,
            cache_votes=False,
            limits=Limits(50_000, 100 * MB),
            key_env="OPENAI_API_KEY",
            base_url_env=None,
            default_base_url=None,
            requires_base_url=True,
        ),
    )
}

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
    return {
        p.name: tuple(v for v in (p.key_env, p.base_url_env, *p.other_env) if v)
        for p in PROVIDERS.values()
    }


def provider_class(name: str) -> type[Provider]:
    """The class serving a provider, imported now (it may import its SDK)."""
    module, _, cls = capabilities(name).provider_class.partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def make_provider(model: ModelSpec) -> Provider:
    """The provider for a model; each model gets its own instance (hosts differ in URL and key)."""
    return provider_class(model.provider)(model)  # type: ignore[call-arg]
