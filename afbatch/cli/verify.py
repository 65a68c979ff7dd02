"""`afbatch verify`: check a run's store; --repair restores what can be restored."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from afbatch.cli.group import cli
from afbatch.cli.options import store_option
from afbatch.cli.output import echo, log
from afbatch.cli.runs import open_run

if TYPE_CHECKING:
    from afbatch.repair import Reask


@cli.command()
@click.argument("run_id")
@store_option
@click.option(
    "--repair",
    is_flag=True,
    help="Restore what can be restored: rebuild from the store, fetch again from the "
    "provider, or (after showing the cost, and asking) ask lost requests again.",
)
@click.option(
    "--yes", is_flag=True, help="With --repair: do not ask before asking lost requests again."
)
def verify(run_id: str, store_url: str, repair: bool, yes: bool) -> None:
    """Check every file the run's manifest points to; --repair restores what can be restored."""
    from afbatch.errors import DamagedStoreError
    from afbatch.repair import repair as repair_run
    from afbatch.store import open_store
    from afbatch.verify import verify as verify_run

    store = open_store(store_url)
    findings = verify_run(store, run_id)
    for f in findings:
        echo(f.line())
    if findings and repair:

        def confirm(ask: Reask) -> bool:
            log(ask.question())
            if yes:
                return True
            if not sys.stdin.isatty():
                log("not asking without a terminal: pass --yes to ask them again")
                return False
            return click.confirm("Continue?", default=False)

        for line in repair_run(open_run(store_url, run_id), findings, confirm):
            echo(line)
        findings = verify_run(store, run_id)
        for f in findings:
            echo(f"still damaged: {f.line()}")
    if findings:
        fix = "" if repair else f"; `afbatch verify {run_id} --repair` restores what it can"
        raise DamagedStoreError(
            f"run {run_id}: {len(findings)} damaged or missing file(s) in {store.url}{fix}"
        )
    echo(f"{run_id}: every file the manifest points to is intact")
