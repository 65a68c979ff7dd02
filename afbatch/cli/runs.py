"""Commands on a run: submit, status, collect, run, report, cancel, runs."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

import click

from afbatch.cli.group import cli
from afbatch.cli.options import (
    SECONDS,
    Finite,
    max_cost_option,
    offline_option,
    prices_option,
    store_option,
)
from afbatch.cli.output import echo, log, terminal_text, write_file
from afbatch.emulator_store import EMULATOR_STORE, open_checked
from afbatch.redact import redact

if TYPE_CHECKING:
    from afbatch.runner import Run
    from afbatch.spec import ModelSpec


def open_run(
    store_url: str, run_id: str, prices_file: str | None = None, *, spending: bool = False
) -> Run:
    from afbatch.ledger import freeze_after_bulk
    from afbatch.runner import Run

    freeze_after_bulk()  # this process ends with its command
    return Run.open(open_checked(store_url, spending=spending), run_id, prices_file=prices_file)


def show_endpoints(specs: Iterable[ModelSpec]) -> None:
    """Before anything is sent: where each model's calls go (as its SDK resolved it; no key)."""
    from afbatch.providers import get_provider

    for spec in specs:
        where = redact(get_provider(spec).endpoint())
        log(f"endpoint: {spec.name} ({spec.provider}) → {where}")


def start(
    job: str,
    store_url: str,
    max_cost: float | None,
    yes: bool,
    offline: bool,
    fresh: bool,
    prices_file: str | None,
) -> Run:
    """Create the job's run (after showing the estimate and asking), or resume it."""
    from afbatch import manifest as mf
    from afbatch.errors import RunError
    from afbatch.job_estimate import check_budget, estimate_job, format_estimate
    from afbatch.ledger import freeze_after_bulk
    from afbatch.opening import prepare
    from afbatch.pricing import load_prices, price_file_for
    from afbatch.runner import Run

    freeze_after_bulk()  # this process ends with its command
    store = open_checked(store_url, spending=True)
    loaded, run_id = prepare(job, offline=offline)
    show_endpoints(m for _, m in loaded.job.labelled_models())
    estimate = None
    if not store.exists(mf.manifest_key(run_id)):
        est = estimate_job(
            loaded, load_prices(price_file_for(loaded, prices_file)), offline=offline
        )
        echo(format_estimate(est))
        note = check_budget(est, max_cost)
        if note:
            log(f"note: {note}")
        if not yes:
            if not sys.stdin.isatty():
                raise RunError(
                    "not asking without a terminal: pass --yes to submit (the estimate is above)"
                )
            totals = est.totals()
            click.confirm(
                f"Submit run {run_id} (about ${totals['cost_batch_cached_usd']:,.2f}, "
                f"at most ${totals['cost_worst_usd']:,.2f})?",
                abort=True,
            )
        estimate = est.as_json()
    run, created = Run.create(
        store,
        job,
        offline=offline,
        prices_file=prices_file,
        estimate=estimate,
        max_cost=max_cost,
        fresh=fresh,
    )
    log(("created run " if created else "resuming run ") + run.run_id)
    return run


@cli.command()
@click.argument("job", type=click.Path(dir_okay=False))
@store_option
@max_cost_option
@click.option("--yes", is_flag=True, help="Do not ask before spending.")
@click.option("--fresh", is_flag=True, help="Do not reuse answers from earlier runs in the store.")
@offline_option
@prices_option
def submit(
    job: str,
    store_url: str,
    max_cost: float | None,
    yes: bool,
    fresh: bool,
    offline: bool,
    prices_file: str | None,
) -> None:
    """Create (or resume) a job's run and submit its pending batches; prints the run id."""
    run = start(job, store_url, max_cost, yes, offline, fresh, prices_file)
    run.log = log
    run.reconcile()
    run.plan()
    n = run.submit_pending(max_cost)
    echo(
        f"{run.run_id}: submitted {n} batch(es); follow with `afbatch status {run.run_id}`, "
        f"finish with `afbatch run {run.run_id}`"
    )


@cli.command()
@click.argument("run_id")
@store_option
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--shards",
    is_flag=True,
    help="Also list every shard: state, provider status, row outcomes, cost.",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Keep the display live until the run is done (reads the store only).",
)
@click.option(
    "--interval",
    type=Finite(min=0, min_open=True, max=3600),
    default=10.0,
    show_default=True,
    help="Seconds between refreshes with --watch.",
)
def status(
    run_id: str, store_url: str, fmt: str, shards: bool, watch: bool, interval: float
) -> None:
    """Progress per model and stage, shards by state, spend so far against the estimate."""
    import time

    from afbatch.progress import Progress, format_status

    run = open_run(store_url, run_id)
    if watch:
        with Progress(clean=terminal_text) as progress:
            while not (st := run.status()).done and not st.cancelled:
                progress.update(st)
                time.sleep(interval)
    echo(format_status(run.status(), fmt, shards))


@cli.command()
@click.argument("run_id")
@store_option
@max_cost_option
def collect(run_id: str, store_url: str, max_cost: float | None) -> None:
    """Download what finished, resubmit retryable rows as new attempts, and say what is left."""
    from afbatch.progress import format_status

    run = open_run(store_url, run_id, spending=True)
    run.log = log
    run.step(max_cost)
    echo(format_status(run.status()))


@cli.command("run")
@click.argument("target")
@store_option
@max_cost_option
@click.option("--yes", is_flag=True, help="Do not ask before spending.")
@click.option("--fresh", is_flag=True, help="Do not reuse answers from earlier runs in the store.")
@click.option(
    "--poll",
    "poll_interval",
    type=SECONDS,
    default=5.0,
    show_default=True,
    help="Seconds between polls (backs off to 60).",
)
@click.option(
    "--emulator",
    is_flag=True,
    help=f"Run against a local emulator started for this run (no key, no network, no "
    f"cost); store {EMULATOR_STORE}/ unless --store.",
)
@offline_option
@prices_option
@click.pass_context
def run_cmd(
    ctx: click.Context,
    target: str,
    store_url: str,
    max_cost: float | None,
    yes: bool,
    fresh: bool,
    poll_interval: float,
    emulator: bool,
    offline: bool,
    prices_file: str | None,
) -> None:
    """Submit, poll, collect and resubmit until every row is final; rerun to resume after any
    interruption."""
    if not emulator:
        return _run(target, store_url, max_cost, yes, fresh, poll_interval, offline, prices_file)
    from afbatch.emulator import emulating
    from afbatch.spec import load_job

    if ctx.get_parameter_source("store_url") != click.core.ParameterSource.COMMANDLINE:
        store_url = EMULATOR_STORE
    if ctx.get_parameter_source("poll_interval") == click.core.ParameterSource.DEFAULT:
        poll_interval = 0.2  # the emulator ends a batch at its first poll
    if os.path.exists(target):
        specs = [m for _, m in load_job(target).job.labelled_models()]
    else:
        specs = list(open_run(store_url, target).specs.values())
    with emulating(specs) as emu:
        log(f"emulator on {emu.url} for this run (stopped at the end)")
        _run(target, store_url, max_cost, True, fresh, poll_interval, offline, prices_file)


def _run(
    target: str,
    store_url: str,
    max_cost: float | None,
    yes: bool,
    fresh: bool,
    poll_interval: float,
    offline: bool,
    prices_file: str | None,
) -> None:
    from afbatch.progress import Progress

    if os.path.exists(target):
        run = start(target, store_url, max_cost, yes, offline, fresh, prices_file)
    else:
        run = open_run(store_url, target, prices_file, spending=True)
        run.check_ready()
        show_endpoints(run.specs.values())
    with Progress(clean=terminal_text) as progress:
        run.log = progress.log
        final = run.run(max_cost=max_cost, poll_interval=poll_interval, on_progress=progress.update)
    from afbatch.layout import report_folder
    from afbatch.progress import format_status
    from afbatch.results import write_report

    echo(format_status(final))
    keys = write_report(run)
    where = getattr(run.store, "local_path", None)
    folder = (
        os.path.dirname(where(keys[0])) if where else f"{run.store.url}/{report_folder(run.run_id)}"
    )
    echo(
        f"report: {folder}/report.html (tables beside it; `afbatch report {run.run_id}` "
        "prints the summary)"
    )


@cli.command()
@click.argument("run_id")
@store_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", "markdown", "html"]),
    default="table",
    show_default=True,
)
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False),
    help="Write to this file instead of printing.",
)
@click.option(
    "--transcripts",
    type=click.IntRange(min=0),
    default=5000,
    show_default=True,
    help="Transcripts embedded in the HTML report.",
)
@click.option(
    "--gap-interval",
    type=click.Choice(["paired", "unpaired"]),
    help="Compliance-gap interval (default: the job's [report] gap_interval, paired).",
)
def report(
    run_id: str,
    store_url: str,
    fmt: str,
    out_path: str | None,
    transcripts: int,
    gap_interval: str | None,
) -> None:
    """Result tables: compliance per tier, the compliance gap with its 95% CI, proxy vs judge,
    cost."""
    from afbatch import report as rep
    from afbatch.results import conversation_columns, run_meta

    run = open_run(store_url, run_id)
    m = run.manifest()
    conv = conversation_columns(run, m)
    text = rep.render(
        conv,
        fmt,
        m.estimate or None,
        run_meta(run, m),
        max_transcripts=transcripts,
        gap_interval=gap_interval or run.job.report.gap_interval,
    )
    if out_path:
        write_file(out_path, text)
        log(f"wrote {out_path}")
    else:
        echo(text)


@cli.command()
@click.argument("run_id")
@store_option
def cancel(run_id: str, store_url: str) -> None:
    """Cancel a run's provider batches; `afbatch run RUN` later resumes it."""
    run = open_run(store_url, run_id)
    done = run.cancel()
    echo(f"{run_id}: cancel requested for {len(done)} batch(es); unsent shards will not be sent")


@cli.command()
@store_option
def runs(store_url: str) -> None:
    """List the runs in a store."""
    from afbatch import manifest as mf
    from afbatch.store import open_store
    from afbatch.tables import text_table, usd

    store = open_store(store_url)
    rows = []
    for rid in mf.list_runs(store):
        m, _ = mf.load(store, rid)
        state = "cancelled" if m.cancelled else ("finished" if m.finished_at else "in progress")
        rows.append([rid, m.job_name, len(m.shards), usd(m.spent_usd()), state])
    headers = ["run", "job", "shards", "spent", "state"]
    echo(text_table(headers, rows) if rows else f"no runs in {store.url}")
