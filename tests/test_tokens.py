from __future__ import annotations

import hashlib
import os

import pytest
import tiktoken
import tiktoken_ext.openai_public as openai_public

from afbatch import tokens
from afbatch.spec import ModelSpec
from support import ROOT


def reference_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken's own constructor, reading the cache afbatch seeded (tiktoken re-checks the sha256)."""
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
    assert "TIKTOKEN_CACHE_DIR" not in os.environ  # afbatch does not leave the process environment changed
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


@pytest.mark.parametrize("model_id,encoding", [("gpt-4o", "o200k_base"), ("gpt-5.4-mini", "o200k_base"), ("gpt-4", "cl100k_base")])
def test_openai_counts_are_exact(model_id, encoding):
    model = ModelSpec(provider="openai", model=model_id)
    counter = tokens.counter_for(model)
    assert counter.exact and counter.factor == 1.0
    ref = reference_encoding(encoding)
    system = (ROOT / "prompts" / "helpful_only_cot.txt").read_text()
    user = (ROOT / "prompts" / "user_template.txt").read_text()
    expected = len(ref.encode(system)) + len(ref.encode(user)) + 2 * 3 + 3  # cookbook: 3 per message + 3 priming
    assert tokens.count_chat(counter, system, [user]) == expected


def test_other_families_use_o200k_times_factor():
    claude = tokens.counter_for(ModelSpec(provider="anthropic", model="claude-sonnet-4-6"))
    newer = tokens.counter_for(ModelSpec(provider="anthropic", model="claude-opus-4-8"))
    llama = tokens.counter_for(ModelSpec(provider="together", model="meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"))
    custom = tokens.counter_for(ModelSpec(provider="together", model="x/y", token_factor=1.7))
    text = "The quick brown fox jumps over the lazy dog. " * 40
    raw = len(reference_encoding("o200k_base").encode(text))
    assert claude.count(text) == round(raw * tokens.FAMILY_FACTORS["claude"])
    assert newer.count(text) == round(raw * tokens.FAMILY_FACTORS["claude-new-tokenizer"])
    assert llama.count(text) == round(raw * tokens.FAMILY_FACTORS["llama"])
    assert custom.count(text) == round(raw * 1.7)


def test_each_distinct_segment_is_encoded_once(monkeypatch):
    counter = tokens.counter_for(ModelSpec(provider="openai", model="gpt-4o"))
    counter._cache.clear()
    calls = []
    real = counter.encoding.encode
    monkeypatch.setattr(counter.encoding, "encode", lambda t, **kw: calls.append(t) or real(t, **kw))
    big = "x y z " * 10_000
    for _ in range(1000):
        counter.count(big)
    other = tokens.counter_for(ModelSpec(provider="anthropic", model="claude-haiku-4-5"))  # same o200k cache
    other.count(big)
    assert calls.count(big) == 1
