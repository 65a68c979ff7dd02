"""The CLI runs Arrow on the system allocator (mimalloc's pool adds ~10 MB to a small run)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import sys
from afbatch.cli import main
sys.argv = ["afbatch", "--help"]
try:
    main()
except SystemExit:
    pass
import pyarrow
print(pyarrow.default_memory_pool().backend_name, file=sys.stderr)
"""


@pytest.mark.parametrize("user_choice,expected", [(None, "system"), ("mimalloc", "mimalloc")])
def test_the_cli_uses_the_system_allocator_unless_the_user_chose(user_choice, expected):
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if user_choice:
        env["ARROW_DEFAULT_MEMORY_POOL"] = user_choice
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    assert out.stderr.strip().splitlines()[-1] == expected
