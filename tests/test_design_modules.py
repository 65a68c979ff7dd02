"""DESIGN.md's module list matches the afbatch/ folder: every module is named, every name exists;
and no module is over the project's line limit."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "afbatch"


def _modules_block() -> str:
    text = (ROOT / "DESIGN.md").read_text()
    section = text.split("## Modules", 1)[1]
    return section.split("```", 2)[1]


def test_every_module_is_in_designs_list_and_every_listed_one_exists():
    block = _modules_block()
    # modules anywhere in an entry; packages as entries of their own ("  providers/  ...")
    named = set(re.findall(r"\b(\w+\.py)\b", block)) | set(re.findall(r"^  (\w+)/", block, re.M))
    here = {p.name for p in PACKAGE.glob("*.py") if not p.name.startswith("__")}
    here |= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert sorted(here - named) == []  # modules DESIGN does not describe
    everywhere = {p.name for p in PACKAGE.rglob("*") if p.is_dir() or p.suffix == ".py"}
    assert sorted(named - everywhere) == []  # named, but not there


MAX_MODULE_LINES = 400  # the project's rule, counted on the module as ruff formats it


def test_no_module_is_over_the_line_limit(tmp_path):
    # A copy is formatted, not the worktree: the count is the formatted one even before
    # `ruff format` has run on a changed file.
    for path in PACKAGE.rglob("*.py"):
        copy = tmp_path / path.relative_to(ROOT)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(path.read_bytes())
    config = str(ROOT / "pyproject.toml")
    ruff = [sys.executable, "-m", "ruff", "format", "--quiet", "--config", config]
    subprocess.run([*ruff, str(tmp_path / "afbatch")], check=True)
    lines = {
        str(p.relative_to(tmp_path)): len(p.read_text().splitlines())
        for p in (tmp_path / "afbatch").rglob("*.py")
    }
    assert len(lines) == len(list(PACKAGE.rglob("*.py")))
    over = {name: n for name, n in sorted(lines.items()) if n > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines (split them by concern): {over}"
