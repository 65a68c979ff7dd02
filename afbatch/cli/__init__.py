"""Command line: parse, call the library, print. The only package that prints or exits.

`group.py` holds the `afbatch` group (one line and an exit code for whatever reaches it) and
`main`; `output.py` the one output path; `options.py` the shared options; one module per command
group: `jobs.py` (schema, compile, estimate, cache-add), `runs.py` (submit, status, collect, run,
report, cancel, runs), `verify.py`, `emulate.py`.
"""

from afbatch.cli import emulate, jobs, runs, verify  # noqa: F401 - they add their commands
from afbatch.cli.group import cli, main
from afbatch.cli.output import terminal_text

__all__ = ["cli", "main", "terminal_text"]
