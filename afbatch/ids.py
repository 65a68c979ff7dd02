"""Deterministic ids. Same content, same id, in every run and on every machine.

Canonical ids match ^[A-Za-z0-9_-]{1,64}$ (Anthropic's custom_id rule, the strictest);
Bedrock record ids are short alphanumerics derived from them.
"""

from __future__ import annotations

import hashlib
import re

ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Bump when what goes into an id changes, so old and new ids never collide silently.
ID_VERSION = "1"


def conversation_id(provider: str, model: str, variant: str, system_sha256: str, user_message: str, prompt_index: int,
                    sample: int, temperature: float | None, max_tokens: int, prefill: str) -> str:
    """Everything that makes a conversation what it is; the same content gives the same id."""
    fields = (provider, model, variant, system_sha256, str(prompt_index), str(sample), repr(temperature), str(max_tokens),
              prefill, user_message)
    return "c" + text_digest(*fields, length=20)


def turn_id(conversation: str, turn: int) -> str:
    return f"{conversation}-t{turn}"


def text_digest(*parts: str, length: int = 8) -> str:
    """Digest of texts joined by a separator no text contains (cheaper than JSON for long outputs)."""
    return hashlib.sha256((ID_VERSION + "\x1f".join(parts)).encode()).hexdigest()[:length]


def judge_id(conversation: str, kind: str, content_digest: str, vote: int | None = None) -> str:
    """kind: 'cj' (compliance) or 'af' (alignment-faking vote); the digest pins the judged text, template and judge."""
    suffix = "" if vote is None else f"{vote:02d}"
    return f"{conversation}-{kind}{suffix}-{content_digest}"


def stage_of(request_id: str) -> str:
    """generate, judge_compliance or judge_af, from the shape of the id."""
    tail = request_id.split("-", 1)[1] if "-" in request_id else ""
    if tail.startswith("cj"):
        return "judge_compliance"
    if tail.startswith("af"):
        return "judge_af"
    return "generate"


def conversation_of(request_id: str) -> str:
    return request_id.split("-", 1)[0]


def record_id(request_id: str) -> str:
    """Bedrock recordId: 11 alphanumerics (older Bedrock docs' limit) from the canonical id."""
    n = int(hashlib.sha256(request_id.encode()).hexdigest()[:16], 16)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    out = []
    for _ in range(11):
        n, r = divmod(n, 62)
        out.append(alphabet[r])
    return "R" + "".join(out)[:10]

