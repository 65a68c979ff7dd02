from __future__ import annotations

import hashlib
import json
import os
import typing

import pytest
import tiktoken
import tiktoken_ext.openai_public as openai_public

from afbatch import tokens
from afbatch.pricing import TokenFamily, load_prices
from afbatch.spec import ModelSpec
from support import ROOT


def reference_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's own constructor, reading the cache afbatch seeded (tiktoken re-checks the
    sha256)."""
    tokens.get_encoding(name)  # seeds the cache
    os.environ["TIKTOKEN_CACHE_DIR"] = str(tokens.cache_dir() / "tiktoken")
    try:
        return tiktoken.Encoding(**getattr(openai_public, name)())
    finally:
        del os.environ["TIKTOKEN_CACHE_DIR"]


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_encodings_load_offline_and_match_tiktokens_pin(name):
    enc = tokens.get_encoding(name)
    url = tokens.ENCODING_URL.format(name=name)
    seeded = tokens.cache_dir() / "tiktoken" / hashlib.sha1(url.encode()).hexdigest()
    assert hashlib.sha256(seeded.read_bytes()).hexdigest() == tokens.ENCODING_SHA256[name]
    assert (
        "TIKTOKEN_CACHE_DIR" not in os.environ
    )  # afbatch does not leave the process environment changed
    text = "Hello, world! <SCRATCHPAD_REASONING> ünïcödé 12345"
    assert enc.encode(text) == reference_encoding(name).encode(text)


def test_corrupt_cached_encoding_is_replaced(monkeypatch):
    tokens._encodings.clear()
    url = tokens.ENCODING_URL.format(name="cl100k_base")
    path = tokens.cache_dir() / "tiktoken" / hashlib.sha1(url.encode()).hexdigest()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"garbage")
    assert tokens.get_encoding("cl100k_base").encode("hi")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == tokens.ENCODING_SHA256["cl100k_base"]


@pytest.mark.parametrize(
    "model_id,encoding",
    [("gpt-4o", "o200k_base"), ("gpt-5.4-mini", "o200k_base"), ("gpt-4", "cl100k_base")],
)
def test_openai_counts_are_exact(model_id, encoding):
    model = ModelSpec(provider="openai", model=model_id)
    counter = tokens.counter_for(model, "openai")
    assert counter.exact and counter.factor == 1.0
    ref = reference_encoding(encoding)
    system = (ROOT / "prompts" / "helpful_only_cot.txt").read_text()
    user = (ROOT / "prompts" / "user_template.txt").read_text()
    expected = (
        len(ref.encode(system)) + len(ref.encode(user)) + 2 * 3 + 3
    )  # cookbook: 3 per message + 3 priming
    assert tokens.count_chat(counter, system, [user]) == expected


def test_other_families_use_o200k_times_factor():
    prices = load_prices()

    def counter(**spec):
        model = ModelSpec(**spec)
        return tokens.counter_for(model, prices.token_family(model).family)

    claude = counter(provider="anthropic", model="claude-sonnet-4-6")
    newer = counter(provider="anthropic", model="claude-opus-4-8")
    llama = counter(provider="together", model="meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo")
    custom = counter(provider="together", model="x/y", token_factor=1.7)
    text = "The quick brown fox jumps over the lazy dog. " * 40
    raw = len(reference_encoding("o200k_base").encode(text))
    assert claude.count(text) == round(raw * 1.20)
    assert newer.count(text) == round(raw * 1.50)
    assert llama.count(text) == round(raw * 1.08)
    assert custom.count(text) == round(raw * 1.7)


# The README's token-factor table, written out per shipped model (not from the code's mapping):
# Claude up to Opus 4.6 / Sonnet 4.6 (and Haiku 4.5) 1.20; Opus 4.7+ and Claude 5 (newer
# tokenizer) 1.50; Llama 1.08; Qwen, DeepSeek, Gemini, Grok, Kimi 1.10; Mistral 1.15;
# gpt-oss and OpenAI exact (1.00).
OPENAI_MODELS = (
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "o3",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-5.1",
    "gpt-5.2",
    "gpt-5.4",
    "gpt-5.4-mini",
    "gpt-5.4-nano",
    "gpt-5.5",
    "gpt-3.5-turbo",
)
DOCUMENTED_FACTOR = {
    **{("openai", m): 1.0 for m in OPENAI_MODELS},
    ("anthropic", "claude-opus-4-1"): 1.20,
    ("anthropic", "claude-opus-4-5"): 1.20,
    ("anthropic", "claude-opus-4-6"): 1.20,
    ("anthropic", "claude-opus-4-7"): 1.50,
    ("anthropic", "claude-opus-4-8"): 1.50,
    ("anthropic", "claude-opus-5"): 1.50,
    ("anthropic", "claude-sonnet-4-20250514"): 1.20,
    ("anthropic", "claude-sonnet-4-5"): 1.20,
    ("anthropic", "claude-sonnet-4-6"): 1.20,
    ("anthropic", "claude-sonnet-5"): 1.50,
    ("anthropic", "claude-haiku-4-5"): 1.20,
    ("anthropic", "claude-haiku-4-5-20251001"): 1.20,
    ("bedrock", "anthropic.claude-sonnet-4-6"): 1.20,
    ("bedrock", "anthropic.claude-opus-4-6-v1"): 1.20,
    ("bedrock", "anthropic.claude-haiku-4-5-20251001-v1:0"): 1.20,
    ("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0"): 1.20,
    ("bedrock", "meta.llama3-1-405b-instruct-v1:0"): 1.08,
    ("bedrock", "meta.llama3-1-70b-instruct-v1:0"): 1.08,
    ("bedrock", "meta.llama3-1-8b-instruct-v1:0"): 1.08,
    ("bedrock", "meta.llama4-maverick-17b-instruct-v1:0"): 1.08,
    ("together", "meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo"): 1.08,
    ("together", "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"): 1.08,
    ("together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"): 1.08,
    ("together", "deepseek-ai/DeepSeek-V3.1"): 1.10,
    ("together", "deepseek-ai/DeepSeek-R1"): 1.10,
    ("together", "openai/gpt-oss-120b"): 1.0,
    ("groq", "llama-3.3-70b-versatile"): 1.08,
    ("groq", "llama-3.1-8b-instant"): 1.08,
    ("groq", "openai/gpt-oss-120b"): 1.0,
    ("groq", "moonshotai/kimi-k2-instruct-0905"): 1.10,
    ("groq", "qwen/qwen3-32b"): 1.10,
    ("deepinfra", "meta-llama/Meta-Llama-3.1-8B-Instruct"): 1.08,
    ("deepinfra", "meta-llama/Meta-Llama-3.1-70B-Instruct"): 1.08,
    ("deepinfra", "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"): 1.08,
    ("deepinfra", "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"): 1.08,
    ("deepinfra", "deepseek-ai/DeepSeek-R1-0528"): 1.10,
    ("deepinfra", "deepseek-ai/DeepSeek-V3.1"): 1.10,
    ("deepinfra", "openai/gpt-oss-120b"): 1.0,
    ("deepinfra", "deepseek-ai/DeepSeek-V3.1-Terminus"): 1.10,
    ("deepinfra", "Qwen/Qwen3-235B-A22B-Instruct-2507"): 1.10,
    ("deepinfra", "Qwen/Qwen3-32B"): 1.10,
    ("deepinfra", "moonshotai/Kimi-K2-Instruct-0905"): 1.10,
    ("xai", "grok-4"): 1.10,
    ("xai", "grok-4.3"): 1.10,
    ("xai", "grok-4-1-fast-reasoning"): 1.10,
    **{
        ("gemini", m): 1.10
        for m in (
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "gemini-2.5-flash-lite",
            "gemini-3-pro-preview",
            "gemini-3.1-pro-preview",
            "gemini-3-flash-preview",
            "gemini-3.5-flash",
            "gemini-3.6-flash",
        )
    },
    ("vertex", "gemini-3.1-pro-preview"): 1.10,
    ("vertex", "gemini-3.6-flash"): 1.10,
    ("mistral", "mistral-large-latest"): 1.15,
    ("mistral", "mistral-large-2512"): 1.15,
    ("mistral", "mistral-large-2411"): 1.15,
    ("mistral", "mistral-medium-latest"): 1.15,
    ("mistral", "mistral-medium-2604"): 1.15,
    ("mistral", "mistral-medium-2508"): 1.15,
    ("mistral", "mistral-medium-2505"): 1.15,
    ("mistral", "mistral-small-latest"): 1.15,
    ("mistral", "mistral-small-3-2-2506"): 1.15,
    ("mistral", "magistral-medium-latest"): 1.15,
    ("mistral", "magistral-medium-2509"): 1.15,
    ("mistral", "magistral-small-latest"): 1.15,
    ("mistral", "magistral-small-2506"): 1.15,
    ("xai", "grok-4.5"): 1.10,
    ("xai", "grok-4-1-fast-non-reasoning"): 1.10,
    ("fireworks", "accounts/fireworks/models/llama-v3p1-8b-instruct"): 1.08,
    ("fireworks", "accounts/fireworks/models/llama-v3p1-70b-instruct"): 1.08,
    ("fireworks", "accounts/fireworks/models/llama-v3p1-405b-instruct"): 1.08,
    ("fireworks", "accounts/fireworks/models/llama4-maverick-instruct-basic"): 1.08,
    ("fireworks", "accounts/fireworks/models/llama4-scout-instruct-basic"): 1.08,
    ("fireworks", "accounts/fireworks/models/deepseek-v3p1"): 1.10,
    ("fireworks", "accounts/fireworks/models/deepseek-v3p2"): 1.10,
    ("fireworks", "accounts/fireworks/models/deepseek-r1-0528"): 1.10,
    ("fireworks", "accounts/fireworks/models/qwen3-235b-a22b-instruct-2507"): 1.10,
    ("fireworks", "accounts/fireworks/models/kimi-k2-instruct-0905"): 1.10,
}


def shipped_models() -> list[tuple[str, str]]:
    data = json.loads((ROOT / "afbatch" / "data" / "prices.json").read_text())
    return [(m["provider"], m["model"]) for m in data["models"]]


def test_every_catalog_model_has_its_documented_factor():
    assert sorted(shipped_models()) == sorted(DOCUMENTED_FACTOR), "a catalog model is not listed"
    prices = load_prices()
    wrong = {}
    for (provider, model_id), want in DOCUMENTED_FACTOR.items():
        model = ModelSpec(provider=provider, model=model_id)
        fact = prices.token_family(model)
        assert fact.via is not None, f"{provider} {model_id}: no tokenizer family in the catalog"
        if tokens.counter_for(model, fact.family).factor != want:
            wrong[(provider, model_id)] = (fact.family, want)
    assert not wrong


@pytest.mark.parametrize(
    "provider,model_id,want",
    [
        ("anthropic", "claude-haiku-4-5-20251001", 1.20),  # dated id of a listed model
        ("bedrock", "us.anthropic.claude-haiku-4-5-20251001-v1:0", 1.20),  # cross-region profile
        ("bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", 1.20),
        ("bedrock", "eu.anthropic.claude-opus-4-6-v1", 1.20),
        (
            "bedrock",
            "anthropic.claude-opus-4-8-v1:0",
            1.50,
        ),  # the Anthropic model's fact, Bedrock's id
        ("anthropic", "claude-sonnet-5-20260301", 1.50),
    ],
)
def test_dated_and_bedrock_ids_take_the_listed_models_family(provider, model_id, want):
    model = ModelSpec(provider=provider, model=model_id)
    fact = load_prices().token_family(model)
    assert fact.via is not None and tokens.counter_for(model, fact.family).factor == want


@pytest.mark.parametrize(
    "provider,model_id",
    [
        ("anthropic", "claude-3-5-sonnet-20241022"),  # Claude 3.5: not "-5" of a newer tokenizer
        ("bedrock", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("together", "someone/model-5-large"),
    ],
)
def test_a_model_the_catalog_does_not_know_gets_the_default_not_a_guess(provider, model_id):
    model = ModelSpec(provider=provider, model=model_id)
    fact = load_prices().token_family(model)
    assert fact.via is None and tokens.counter_for(model, fact.family).factor == 1.20


def test_family_names_match_the_catalog_vocabulary():
    assert set(tokens.FAMILY_FACTORS) == set(typing.get_args(TokenFamily))


def test_each_distinct_segment_is_encoded_once(monkeypatch):
    counter = tokens.counter_for(ModelSpec(provider="openai", model="gpt-4o"), "openai")
    counter._cache.clear()
    calls = []
    real = counter.encoding.encode
    monkeypatch.setattr(
        counter.encoding, "encode", lambda t, **kw: calls.append(t) or real(t, **kw)
    )
    big = "x y z " * 10_000
    for _ in range(1000):
        counter.count(big)
    haiku = ModelSpec(provider="anthropic", model="claude-haiku-4-5")
    other = tokens.counter_for(haiku, "claude")  # same o200k cache
    other.count(big)
    assert calls.count(big) == 1


def test_counts_made_once_are_reused_without_loading_the_encoding(monkeypatch):
    """A second estimate of the same texts (as `afbatch run` makes) loads no tokenizer at all."""
    tokens.forget_counts()
    model = ModelSpec(provider="anthropic", model="claude-haiku-4-5")
    texts = ["a short user message", "long system prompt " * 1000]
    first = [tokens.counter_for(model, "claude").count(t) for t in texts]
    tokens.save_counts()
    # a fresh process: nothing in memory, only the persisted counts
    tokens._segment_caches.clear()
    monkeypatch.setattr(tokens, "_persisted", None)
    monkeypatch.setattr(tokens, "_encodings", {})
    monkeypatch.setattr(tokens, "get_encoding", lambda name: pytest.fail(f"{name} was loaded"))
    assert [tokens.counter_for(model, "claude").count(t) for t in texts] == first
