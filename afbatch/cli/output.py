"""The one output path of the CLI: every line it prints, and every file it writes on request
(--out, --save), goes through here, cleaned for the terminal and with secrets redacted."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import NoReturn

import click

from afbatch.redact import redact, redact_values

# Escape sequences (CSI, OSC, and two-byte ESC forms), then single characters a terminal acts on:
# C0 controls, DEL, C1 controls, and the bidi overrides/isolates that reorder what is shown.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, screen clearing
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks, clipboard
    r"|\x1b[@-_]?"  # other two-byte sequences, or a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the one-byte C1 form of CSI
)
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x85\u2028\u2029]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: str, one_line: bool = False) -> str:
    """Text safe to print: known secrets replaced, escape sequences and control characters removed.

    `one_line` (messages, log lines) also folds line breaks into a visible `\\n` and redacts
    key-like patterns, so provider or stored text can neither forge a line nor drive the terminal.
    Multi-line output (tables, reports) keeps its newlines and tabs. Stored files keep the raw text.
    """
    text = _ESCAPES.sub("", text)
    if one_line:
        text = _LINE_BREAKS.sub("\\\\n", redact(text)).replace("\t", " ")
    else:
        text = _LINE_BREAKS.sub("\n", redact_values(text))
    return _CONTROLS.sub("", text)


def echo(text: str, err: bool = False, one_line: bool = False) -> None:
    click.echo(terminal_text(text, one_line), err=err)


def log(msg: str) -> None:
    echo(msg, err=True, one_line=True)


def fail(message: str, code: int) -> NoReturn:
    echo(message, err=True, one_line=True)
    sys.exit(code)


def write_file(path: str | Path, text: str) -> None:
    """A file asked for (--out, --save): written atomically, secrets redacted; errors name it."""
    from afbatch.store import atomic_write

    try:
        atomic_write(Path(path), redact_values(text).encode("utf-8"))
    except OSError as e:  # the temp file's name would point elsewhere: name the file asked for
        raise OSError(e.errno, e.strerror, str(path)) from e
