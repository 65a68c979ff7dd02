"""Keep secrets out of everything afbatch writes or prints."""

from __future__ import annotations

import os
import re

_PATTERNS = [
    re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}"),
    re.compile(r"sk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"(?i)(authorization|x-api-key|api[_-]?key|aws_secret_access_key|secret)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
]
_SECRET_ENV = re.compile(r"(API_KEY|SECRET|TOKEN|PASSWORD)$")


def redact(text: str) -> str:
    """Replace anything that looks like a key, and the value of any secret-named env var, with ***."""
    for value in _secret_values():
        text = text.replace(value, "***")
    text = _PATTERNS[0].sub("***", text)
    text = _PATTERNS[1].sub("***", text)
    text = _PATTERNS[2].sub("***", text)
    return _PATTERNS[3].sub(lambda m: m.group(1) + m.group(2) + "***", text)


def _secret_values() -> list[str]:
    # Values of at least 8 characters, so that short placeholder values don't mangle text.
    return [v for k, v in os.environ.items() if _SECRET_ENV.search(k) and len(v) >= 8]
