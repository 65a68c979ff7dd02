"""Command line: parse, call the library, print. The only module that prints or exits."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from afbatch import __version__
from afbatch.errors import AfbatchError
from afbatch.redact import redact


class _Group(click.Group):
    """Turns library errors into one line and an exit code; --debug (or AFBATCH_DEBUG=1) shows the traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except AfbatchError as e:
            if _debug(ctx):
                raise
            click.echo(f"error: {redact(str(e))}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            click.echo("interrupted: the run is saved and resumes where it stopped (rerun the same command)", err=True)
            sys.exit(130)


def _debug(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or os.environ.get("AFBATCH_DEBUG") == "1"


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="afbatch")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run Alignment-Faking-style evaluations across many models through provider batch APIs."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


offline_option = click.option("--offline", is_flag=True, help="Never download: fail, naming the missing file.")
prices_option = click.option("--prices", "prices_file", type=click.Path(dir_okay=False),
                             help="Price override file (default: $AFBATCH_PRICES or ~/.config/afbatch/prices.toml).")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a job file."""
    from afbatch.spec import job_schema

    click.echo(json.dumps(job_schema(), indent=2))


@cli.command("compile")
@click.argument("job", type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Output folder (default: out/<job name>).")
@offline_option
@prices_option
def compile_cmd(job: str, out_dir: str | None, offline: bool, prices_file: str | None) -> None:
    """Write the provider batch JSONL of every model's first round."""
    from afbatch.compile import compile_job, load_grid
    from afbatch.pricing import load_prices
    from afbatch.spec import load_job
    from afbatch.tables import text_table

    loaded = load_job(job)
    grid = load_grid(loaded, offline=offline)
    out = Path(out_dir or Path("out") / loaded.job.name)
    compiled = compile_job(grid, out, load_prices(prices_file or _job_prices(loaded)))
    rows = []
    for c in compiled:
        for s in c.shards:
            rows.append([c.model.name, c.provider, os.path.relpath(s.path, out), f"{s.n_requests:,}", f"{s.n_bytes / 1e6:,.1f} MB"])
    click.echo(text_table(["model", "provider", "shard", "requests", "size"], rows))
    click.echo(f"\n{sum(c.n_requests for c in compiled):,} requests in {sum(len(c.shards) for c in compiled)} shards → {out}/ (index.json lists them)")
    for c in compiled:
        small = [s for s in c.shards if s.below_minimum]
        if small:
            fix = "they will be sent on-demand (on_demand_fallback = true)" if c.model.on_demand_fallback else \
                "set on_demand_fallback = true for this model, or add rows"
            click.echo(f"warning: {c.model.name}: {small[0].n_requests} requests cannot reach Bedrock's minimum of 100 per job; {fix}", err=True)


def _job_prices(loaded) -> str | None:  # type: ignore[no-untyped-def]
    return loaded.resolve(loaded.job.prices) if loaded.job.prices else None


@cli.command()
@click.argument("job", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("--by", type=click.Choice(["model", "condition"]), default="model", show_default=True,
              help="One row per model, or per model x variant x tier.")
@click.option("--save", is_flag=True, help="Also write estimates/<job>.md and estimates/<job>.json.")
@click.option("--max-cost", type=float, help="Exit non-zero when the worst case exceeds this many USD.")
@offline_option
@prices_option
def estimate(job: str, fmt: str, by: str, save: bool, max_cost: float | None, offline: bool, prices_file: str | None) -> None:
    """Estimate tokens and cost (synchronous, batch, batch + cache, worst case) — offline, no key needed."""
    from afbatch.estimate import check_budget, estimate_job, format_estimate
    from afbatch.pricing import load_prices
    from afbatch.spec import load_job

    loaded = load_job(job)
    est = estimate_job(loaded, load_prices(prices_file or _job_prices(loaded)), by=by, offline=offline)
    click.echo(format_estimate(est, fmt))
    if save:
        folder = Path("estimates")
        folder.mkdir(exist_ok=True)
        (folder / f"{loaded.job.name}.md").write_text(format_estimate(est, "markdown"))
        (folder / f"{loaded.job.name}.json").write_text(format_estimate(est, "json") + "\n")
        click.echo(f"saved estimates/{loaded.job.name}.md and estimates/{loaded.job.name}.json", err=True)
    check_budget(est, max_cost)


def main() -> None:
    cli(obj={})
