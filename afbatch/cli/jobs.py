"""Commands on a job file, offline and without a key: schema, compile, estimate, cache-add."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from afbatch.cli.group import cli
from afbatch.cli.options import BUDGET, SHARE, offline_option, prices_option
from afbatch.cli.output import echo, log, write_file
from afbatch.providers.registry import capabilities


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a job file."""
    from afbatch.spec import job_schema

    echo(json.dumps(job_schema(), indent=2))


@cli.command("compile")
@click.argument("job", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Output folder (default: out/<job name>).",
)
@offline_option
@prices_option
def compile_cmd(job: str, out_dir: str | None, offline: bool, prices_file: str | None) -> None:
    """Write the provider batch JSONL of every model's first round."""
    from afbatch.compile import compile_job
    from afbatch.grid import load_grid
    from afbatch.pricing import load_prices, price_file_for
    from afbatch.spec import load_job
    from afbatch.tables import text_table

    loaded = load_job(job)
    grid = load_grid(loaded, offline=offline)
    out = Path(out_dir or Path("out") / loaded.job.name)
    compiled = compile_job(grid, out, load_prices(price_file_for(loaded, prices_file)))
    rows = []
    for c in compiled:
        for s in c.shards:
            rows.append(
                [
                    c.model.name,
                    c.provider,
                    os.path.relpath(s.path, out),
                    f"{s.n_requests:,}",
                    f"{s.n_bytes / 1e6:,.1f} MB",
                ]
            )
    echo(text_table(["model", "provider", "shard", "requests", "size"], rows))
    n_shards = sum(len(c.shards) for c in compiled)
    echo(
        f"\n{sum(c.n_requests for c in compiled):,} requests in {n_shards} shards → {out}/ "
        "(index.json lists them)"
    )
    for c in compiled:
        small = [s for s in c.shards if s.below_minimum]
        if small:
            fix = (
                "they will be sent on-demand (on_demand_fallback = true)"
                if c.model.on_demand_fallback
                else "set on_demand_fallback = true for this model, or add rows"
            )
            info = capabilities(c.model.provider)
            log(
                f"warning: {c.model.name}: {small[0].n_requests} requests cannot reach "
                f"{info.title}'s minimum of {info.limits.min_requests} per job; {fix}"
            )


@cli.command()
@click.argument("job", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "markdown"]),
    default="table",
    show_default=True,
)
@click.option(
    "--by",
    type=click.Choice(["model", "condition"]),
    default="model",
    show_default=True,
    help="One row per model, or per model x variant x tier.",
)
@click.option(
    "--save", is_flag=True, help="Also write estimates/<job>.md and estimates/<job>.json."
)
@click.option(
    "--max-cost",
    type=BUDGET,
    help="Exit 3 when the expected cost exceeds this many USD; say so when the worst case does.",
)
@click.option(
    "--calibrate-from",
    "calibrate_from",
    metavar="RUN",
    help="Use the output lengths, turns and compliance a finished run observed per model.",
)
@click.option(
    "--store",
    "store_url",
    envvar="AFBATCH_STORE",
    default="manifests",
    show_default=True,
    help="Where --calibrate-from finds the run.",
)
@click.option(
    "--detect-gap",
    "detect_gap",
    type=SHARE,
    metavar="GAP",
    help="Also print, per model, the prompts (× samples) that detect a compliance gap of "
    "GAP (e.g. 0.05) and what that run costs.",
)
@click.option(
    "--power",
    "power",
    type=SHARE,
    default=0.8,
    show_default=True,
    help="With --detect-gap: the power wanted.",
)
@click.option(
    "--alpha",
    type=SHARE,
    default=0.05,
    show_default=True,
    help="With --detect-gap: the two-sided significance level.",
)
@click.option(
    "--base-rate",
    "base_rate",
    type=click.FloatRange(0, 1),
    help="With --detect-gap: the compliance rate the gap is centred on (default: the "
    "finished run's with --calibrate-from, else [estimate] compliance_rate).",
)
@click.option(
    "--icc",
    type=click.FloatRange(0, 1),
    help="With --detect-gap: correlation of the samples of one prompt (default: the "
    "finished run's with --calibrate-from, else 0.5).",
)
@offline_option
@prices_option
def estimate(
    job: str,
    fmt: str,
    by: str,
    save: bool,
    max_cost: float | None,
    calibrate_from: str | None,
    store_url: str,
    detect_gap: float | None,
    power: float,
    alpha: float,
    base_rate: float | None,
    icc: float | None,
    offline: bool,
    prices_file: str | None,
) -> None:
    """Estimate tokens and cost (synchronous, batch, batch + cache, worst case) — offline, no key
    needed."""
    from afbatch.cli.runs import open_run
    from afbatch.job_estimate import Estimate, check_budget, estimate_job, format_estimate
    from afbatch.pricing import load_prices, price_file_for
    from afbatch.spec import LoadedJob, load_job

    loaded = load_job(job)
    calibration = None
    seen = None
    if calibrate_from:
        from afbatch.results import calibration as observed

        source = open_run(store_url, calibrate_from)
        calibration = observed(source)
        if detect_gap is not None:
            from afbatch.power import observed as observed_rates
            from afbatch.results import conversation_columns

            seen = observed_rates(conversation_columns(source))
    prices = load_prices(price_file_for(loaded, prices_file))
    est = estimate_job(loaded, prices, by=by, offline=offline, calibration=calibration)
    if detect_gap is None:
        echo(format_estimate(est, fmt))
    else:
        from afbatch.power import format_power, plan

        def estimate_of(one: LoadedJob) -> Estimate:
            return estimate_job(one, prices, offline=offline, calibration=calibration)

        powered = plan(
            loaded,
            estimate_of,
            detect_gap,
            alpha=alpha,
            power=power,
            base_rate=base_rate,
            icc=icc,
            calibrated=seen,
        )
        if fmt == "json":
            echo(json.dumps({**est.as_json(), "power": powered.as_json()}, indent=1))
        else:
            echo(format_estimate(est, fmt) + "\n\n" + format_power(powered, fmt))
    if save:
        folder = Path("estimates")
        folder.mkdir(exist_ok=True)
        write_file(folder / f"{loaded.job.name}.md", format_estimate(est, "markdown"))
        write_file(folder / f"{loaded.job.name}.json", format_estimate(est, "json") + "\n")
        log(f"saved estimates/{loaded.job.name}.md and estimates/{loaded.job.name}.json")
    note = check_budget(est, max_cost)
    if note:
        log(f"note: {note}")


@cli.command("cache-add")
@click.argument("url")
@click.argument("file", type=click.Path(dir_okay=False))
def cache_add(url: str, file: str) -> None:
    """Use FILE as the cached copy of URL (a machine without network): jobs naming URL then read
    FILE's bytes, pinned by the sha256 printed here and re-checked on every use."""
    from afbatch.datasets import cache_put, read_source

    digest = cache_put(url, read_source(file).data)
    echo(f"{url}: cached from {file}, sha256 {digest}")
