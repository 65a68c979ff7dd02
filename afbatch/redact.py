"""Keep secrets out of everything afbatch writes or prints.

Redaction is by value: every credential this process uses is replaced wherever it appears —
the keys providers read (they `register` them), the values of the env variables a job names
in `api_key_env` (`register_env`), AWS's secret key and session token, and any env variable
whose name marks it as a secret. Patterns that look like keys are replaced in messages too.
The store applies `redact_bytes` to everything it writes; the CLI redacts everything it prints.
"""

from __future__ import annotations

import os
import re
import threading

_PATTERNS = [
    re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}"),
    re.compile(r"sk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(
        r"(?i)(authorization|x-api-key|api[_-]?key|aws_secret_access_key|secret)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"
    ),
]
_SECRET_ENV = re.compile(r"(API_KEY|SECRET|SECRET_ACCESS_KEY|TOKEN|PASSWORD)$")
# Shorter values are not replaced: a placeholder like "testing" would mangle ordinary text.
MIN_SECRET_LENGTH = 8

_lock = threading.Lock()
_values: set[str] = set()
_env_names: set[str] = {"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"}


def register(value: str | None) -> None:
    """A credential this process read (an API key, an AWS secret key or session token)."""
    if value and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _values.add(value)


def register_env(name: str) -> None:
    """An env variable that holds a credential whatever its name (a model's `api_key_env`)."""
    with _lock:
        _env_names.add(name)


def register_aws(credentials: object) -> None:
    """The secret parts of botocore credentials, wherever the chain found them."""
    if credentials is None:
        return
    frozen = getattr(credentials, "get_frozen_credentials", None)
    creds = frozen() if frozen else credentials
    register(getattr(creds, "secret_key", None))
    register(getattr(creds, "token", None))


def secret_values() -> list[str]:
    """Every known secret value, longest first (so a key containing another is replaced whole)."""
    with _lock:
        found = set(_values)
        names = set(_env_names)
    for name, value in os.environ.items():
        if (name in names or _SECRET_ENV.search(name)) and len(value) >= MIN_SECRET_LENGTH:
            found.add(value)
    return sorted(found, key=len, reverse=True)


def redact_values(text: str) -> str:
    """Replace every known secret value with ***."""
    for value in secret_values():
        text = text.replace(value, "***")
    return text


def redact(text: str) -> str:
    """Replace every known secret value, and anything that looks like a key, with ***."""
    text = redact_values(text)
    text = _PATTERNS[0].sub("***", text)
    text = _PATTERNS[1].sub("***", text)
    text = _PATTERNS[2].sub("***", text)
    return _PATTERNS[3].sub(lambda m: m.group(1) + m.group(2) + "***", text)


def redact_bytes(data: bytes) -> bytes:
    """`redact_values` for stored bytes (UTF-8 JSON, JSONL, text)."""
    for value in secret_values():
        raw = value.encode()
        if raw in data:
            data = data.replace(raw, b"***")
    return data


def redact_file(path: str) -> None:
    """Rewrite a file in place if it holds a secret value (scanned in chunks, else untouched)."""
    values = [v.encode() for v in secret_values()]
    if not values or not _file_holds(path, values):
        return
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(redact_bytes(data))


def _file_holds(path: str, values: list[bytes]) -> bool:
    overlap = max(len(v) for v in values) - 1
    tail = b""
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            window = tail + chunk
            if any(v in window for v in values):
                return True
            tail = window[-overlap:] if overlap else b""
    return False
