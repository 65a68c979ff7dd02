"""The gates CI passes before the tests (.ci/gates): which, in what order, with pinned tools, and
mypy's trust limited to packages that really ship no types."""

from __future__ import annotations

import importlib.util
import os
import re
import tomllib
from pathlib import Path

from support import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _commands(path: Path) -> list[str]:
    skip = ("#", "echo ", "set ", "cd ", "export ")
    return [
        s
        for s in (line.strip() for line in path.read_text().splitlines())
        if s and not s.startswith(skip)
    ]


def test_ci_runs_the_three_gates_before_the_tests():
    run = _commands(ROOT / ".ci" / "run")
    assert run.index("bash .ci/gates") < run.index("python -m pytest -q")
    assert run.index("pip install -e '.[test]'") < run.index("bash .ci/gates")
    gates = ROOT / ".ci" / "gates"
    assert os.access(gates, os.X_OK)
    assert _commands(gates) == ["ruff check .", "ruff format --check .", "mypy afbatch"]


def test_the_gate_tools_are_pinned_in_the_test_extra():
    extra = PYPROJECT["project"]["optional-dependencies"]["test"]
    pinned = {d.split("==")[0] for d in extra if re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", d)}
    assert {"ruff", "mypy", "pandas-stubs"} <= pinned


TEST_EXTRA = PYPROJECT["project"]["optional-dependencies"]["test"]


def test_mypy_is_strict_and_trusts_only_packages_without_types():
    mypy = PYPROJECT["tool"]["mypy"]
    assert mypy["strict"] is True
    for override in mypy.get("overrides", []):
        assert set(override) == {"module", "ignore_missing_imports"}, override  # nothing loosened
        for module in override["module"]:
            top = module.removesuffix(".*")
            spec = importlib.util.find_spec(top)
            assert spec is not None and spec.origin is not None, f"{top} is not installed"
            package = Path(spec.origin).parent
            assert not (package / "py.typed").exists(), f"{top} ships types: drop its override"
            # what the test extra installs decides, not what this machine happens to have
            extra = {d.split("=")[0].split(">")[0].strip().lower() for d in TEST_EXTRA}
            stubs = {f"{top}-stubs", f"types-{top}"} & extra
            assert not stubs, f"{top} gets stubs from the test extra ({stubs}): use them"
