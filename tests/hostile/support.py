"""The hostile-input contract, reusable by any test: run the CLI, then check that it answered with
the expected exit code and exactly one stderr line naming what is wrong and where, printed no
traceback, and changed nothing that was stored.

    from hostile.support import expect_one_line
    line = expect_one_line(["status", run_id, "--store", str(store)], code=1,
                           names=["manifest.json", "damaged"], cwd=tmp_path, stored=store)
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from afbatch.cli import cli


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    exception: BaseException | None = None  # in-process only: what escaped the CLI, if anything

    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def snapshot(*folders: Path | None) -> dict[str, bytes]:
    """Every file under the folders (hidden ones too) with its bytes: compare before and after."""
    out: dict[str, bytes] = {}
    for folder in folders:
        if folder is None or not folder.exists():
            continue
        if folder.is_file():
            out[str(folder)] = folder.read_bytes()
            continue
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.name.endswith(".lock"):  # lock files are empty, never written
                out[str(p)] = p.read_bytes()
    return out


def run_cli(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str | None] | None = None,
    subprocess_: bool = False,
    input: str | None = None,
) -> Outcome:
    """Run `afbatch ARGS` in `cwd`: in-process (CliRunner; monkeypatches apply) or as a process."""
    if subprocess_:
        full = dict(os.environ)
        for k, v in (env or {}).items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = v
        p = subprocess.run(
            [sys.executable, "-m", "afbatch", *args],
            cwd=cwd,
            env=full,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return Outcome(p.returncode, p.stdout, p.stderr)
    with contextlib.chdir(cwd):
        r = CliRunner().invoke(cli, list(args), obj={}, env=dict(env or {}), input=input)
    escaped = None if r.exception is None or isinstance(r.exception, SystemExit) else r.exception
    return Outcome(r.exit_code, r.stdout, r.stderr, escaped)


def check_one_line(
    out: Outcome, *, code: int, names: str | Iterable[str], after_log: bool = False
) -> str:
    """Exit `code`, one non-empty stderr line holding every one of `names`, no traceback.

    `after_log`: the command may log progress lines first (a run); the error is then the last line.
    """
    assert out.exception is None, f"escaped the CLI: {out.exception!r}"
    assert "Traceback" not in out.stderr + out.stdout, out.stderr
    lines = out.lines()
    if after_log:
        lines = lines[-1:]
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{out.stderr}"
    assert out.code == code, f"exit {out.code}, expected {code}: {lines[0]}"
    for name in [names] if isinstance(names, str) else names:
        assert name in lines[0], f"{name!r} not in: {lines[0]}"
    assert "\x1b" not in out.stderr + out.stdout
    return lines[0]


def expect_one_line(
    args: Sequence[str],
    *,
    code: int,
    names: str | Iterable[str],
    cwd: Path,
    stored: Path | Iterable[Path] | None = None,
    env: Mapping[str, str | None] | None = None,
    subprocess_: bool = False,
) -> str:
    """Run the CLI and check the contract; `stored` folders (or files) must not change.

    Returns the line."""
    folders = [stored] if isinstance(stored, Path) else list(stored or [])
    before = snapshot(*folders)
    out = run_cli(args, cwd=cwd, env=env, subprocess_=subprocess_)
    line = check_one_line(out, code=code, names=names)
    after = snapshot(*folders)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert not changed, f"stored files changed: {changed}"
    return line
