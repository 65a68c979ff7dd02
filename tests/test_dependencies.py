"""Every package pyproject.toml declares is used by afbatch: no dependency installed for nothing."""

from __future__ import annotations

import re
import tomllib

from support import ROOT


def _used(name: str, sources: str) -> bool:
    module = re.escape(name.replace("-", "_"))
    imported = re.search(rf"^\s*(?:import|from)\s+{module}\b", sources, re.M)
    as_data = re.search(rf"files\(\s*[\"']{module}[\"']\s*\)", sources)  # importlib.resources
    return bool(imported or as_data)


def test_every_declared_dependency_is_used():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = [re.match(r"[A-Za-z0-9_.-]+", d).group(0).lower() for d in project["dependencies"]]
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "afbatch").rglob("*.py"))
    unused = [n for n in names if not _used(n, sources)]
    assert unused == [], f"declared in pyproject.toml but never imported by afbatch: {unused}"
