"""DESIGN.md's module list matches the afbatch/ folder: every module is named, every name exists."""

import re
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
