"""The one output path: whatever text it is given, what reaches the terminal is safe."""

from __future__ import annotations

import pytest

from afbatch.cli import terminal_text
from afbatch.redact import redact, redact_bytes, register, register_env

HOSTILE = [
    ("newline", "a\nforged: line"),
    ("crlf", "a\r\nforged"),
    ("carriage-return", "visible\rhidden"),
    ("csi-colour", "\x1b[31mred\x1b[0m"),
    ("csi-clear-screen", "\x1b[2J\x1b[H"),
    ("osc-title", "\x1b]0;owned\x07text"),
    ("osc-hyperlink", "\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"),
    ("lone-esc", "a\x1bb"),
    ("c1-csi", "\x9b31mred"),
    ("c1-nel", "a\x85b"),
    ("bell-backspace", "a\x07\x08b"),
    ("del", "a\x7fb"),
    ("nul", "a\x00b"),
    ("vertical-tab-form-feed", "a\x0b\x0cb"),
    ("line-separators", "a\u2028b\u2029c"),
    ("bidi-override", "\u202eevil\u202c"),
    ("bidi-isolate", "\u2066x\u2069"),
]


@pytest.mark.parametrize("text", [pytest.param(t, id=i) for i, t in HOSTILE])
def test_messages_are_one_safe_line(text: str) -> None:
    out = terminal_text(f"error: {text} end", one_line=True)
    assert len(out.splitlines()) == 1
    assert not [c for c in out if ord(c) < 32 or 0x7F <= ord(c) <= 0x9F]
    assert not set(out) & {"\u202e", "\u202c", "\u2066", "\u2069", "\u2028", "\u2029"}
    assert out.startswith("error: ") and out.endswith(" end")


@pytest.mark.parametrize("text", [pytest.param(t, id=i) for i, t in HOSTILE])
def test_multi_line_output_keeps_only_newlines_and_tabs(text: str) -> None:
    out = terminal_text(f"row\t1\n{text}\nrow 3")
    assert not [c for c in out if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]
    assert out.startswith("row\t1\n") and out.endswith("\nrow 3")


def test_secret_values_are_redacted_whatever_their_name(monkeypatch: pytest.MonkeyPatch) -> None:
    register("read-by-a-provider-0001")
    monkeypatch.setenv("GATEWAY_CREDENTIAL", "declared-in-a-job-0002")
    register_env("GATEWAY_CREDENTIAL")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value-0003")
    text = "a read-by-a-provider-0001 b declared-in-a-job-0002 c aws-secret-value-0003"
    assert redact(text) == "a *** b *** c ***"
    assert terminal_text(text) == "a *** b *** c ***"
    assert redact_bytes(text.encode()) == b"a *** b *** c ***"


def test_short_values_are_not_treated_as_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")  # shorter than any real key
    assert redact("testing the model") == "testing the model"
