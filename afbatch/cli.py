"""Command line: parse, call the library, print. The only module that prints or exits."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import sys
from pathlib import Path

import click

from afbatch import __version__
from afbatch.errors import AfbatchError, os_error_message
from afbatch.providers.registry import capabilities
from afbatch.redact import redact, redact_values

# Exit codes (README "Errors"): 2 bad input (job, dataset, prices, options), 3 budget refusal,
# 1 anything else (store, provider, file system, internal error), 130 Ctrl-C.
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# --- the one output path: everything printed goes through `_echo` -----------------------------

# Escape sequences (CSI, OSC, and two-byte ESC forms), then single characters a terminal acts on:
# C0 controls, DEL, C1 controls, and the bidi overrides/isolates that reorder what is shown.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, screen clearing
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks, clipboard
    r"|\x1b[@-_]?"  # other two-byte sequences, or a lone ESC
    r"|\x9b[0-?]*[ -/]*[@-~]"  # the one-byte C1 form of CSI
)
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\v\f\x85\u2028\u2029]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def terminal_text(text: str, one_line: bool = False) -> str:
    """Text safe to print: known secrets replaced, escape sequences and control characters removed.

    `one_line` (messages, log lines) also folds line breaks into a visible `\\n` and redacts
    key-like patterns, so provider or stored text can neither forge a line nor drive the terminal.
    Multi-line output (tables, reports) keeps its newlines and tabs. Stored files keep the raw text.
    """
    text = _ESCAPES.sub("", text)
    if one_line:
        text = _LINE_BREAKS.sub("\\\\n", redact(text)).replace("\t", " ")
    else:
        text = _LINE_BREAKS.sub("\n", redact_values(text))
    return _CONTROLS.sub("", text)


def _echo(text: str, err: bool = False, one_line: bool = False) -> None:
    click.echo(terminal_text(text, one_line), err=err)


def _log(msg: str) -> None:
    _echo(msg, err=True, one_line=True)


def _fail(message: str, code: int) -> None:
    _echo(message, err=True, one_line=True)
    sys.exit(code)


class _Group(click.Group):
    """Whatever reaches the CLI becomes one line and an exit code.

    --debug (or AFBATCH_DEBUG=1) shows the traceback instead."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.exceptions.NoArgsIsHelpError):
            raise  # click's own: --help, --version, a declined confirmation
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx else "afbatch"
            what = e.format_message().rstrip(".")
            _fail(f"error: {where}: {what} — see `{where} --help`", EXIT_USAGE)
        except click.ClickException as e:
            _fail(f"error: {e.format_message()}", e.exit_code)
        except AfbatchError as e:
            if _debug(ctx):
                raise
            _fail(f"error: {e}", e.exit_code)
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            _Group.interrupted = True
            _fail("interrupted: the run is saved and resumes where it stopped "
                  "(rerun the same command)", EXIT_INTERRUPTED)
        except OSError as e:
            if e.errno == errno.EPIPE or _debug(ctx):
                raise  # a closed pipe (`afbatch report | head`): click exits quietly
            _fail(f"error: {os_error_message(e)}", 1)
        except Exception as e:  # noqa: BLE001 - a bug: one line, the traceback behind --debug
            if _debug(ctx):
                raise
            _fail(f"internal error: {type(e).__name__}: {e} — rerun with --debug for the traceback "
                  "and report it", 1)

    interrupted = False


def _debug(ctx: click.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or os.environ.get("AFBATCH_DEBUG") == "1"


class _Finite(click.FloatRange):
    """A float range that also refuses nan and inf (which pass click's comparisons)."""

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


SECONDS = _Finite(min=0, max=3600)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="afbatch")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run Alignment-Faking-style evaluations across many models through provider batch APIs."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


class _Budget(click.ParamType):
    """USD for --max-cost: finite and above zero (NaN would switch the guard off, inf is no cap)."""

    name = "USD"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        try:
            usd = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of USD", param, ctx)
        if not math.isfinite(usd) or usd <= 0:
            self.fail(f"{value!r} is not a budget: give a finite amount of USD above 0", param, ctx)
        return usd


BUDGET = _Budget()
offline_option = click.option("--offline", is_flag=True, help="Never download: fail, naming the missing file.")
prices_option = click.option("--prices", "prices_file", type=click.Path(dir_okay=False),
                             help="Price override file (default: $AFBATCH_PRICES or ~/.config/afbatch/prices.toml).")


@cli.command()
def schema() -> None:
    """Print the JSON Schema of a job file."""
    from afbatch.spec import job_schema

    _echo(json.dumps(job_schema(), indent=2))


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
    _echo(text_table(["model", "provider", "shard", "requests", "size"], rows))
    n_shards = sum(len(c.shards) for c in compiled)
    _echo(f"\n{sum(c.n_requests for c in compiled):,} requests in {n_shards} shards → {out}/ "
          "(index.json lists them)")
    for c in compiled:
        small = [s for s in c.shards if s.below_minimum]
        if small:
            fix = "they will be sent on-demand (on_demand_fallback = true)" if c.model.on_demand_fallback else \
                "set on_demand_fallback = true for this model, or add rows"
            info = capabilities(c.model.provider)
            _log(f"warning: {c.model.name}: {small[0].n_requests} requests cannot reach "
                 f"{info.title}'s minimum of {info.limits.min_requests} per job; {fix}")


SHARE = click.FloatRange(0, 1, min_open=True, max_open=True)  # strictly between 0 and 1


def _job_prices(loaded) -> str | None:  # type: ignore[no-untyped-def]
    return loaded.resolve(loaded.job.prices) if loaded.job.prices else None


@cli.command()
@click.argument("job", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@click.option("--by", type=click.Choice(["model", "condition"]), default="model", show_default=True,
              help="One row per model, or per model x variant x tier.")
@click.option("--save", is_flag=True, help="Also write estimates/<job>.md and estimates/<job>.json.")
@click.option("--max-cost", type=BUDGET,
              help="Exit 3 when the expected cost exceeds this many USD; say so when the worst "
                   "case does.")
@click.option("--calibrate-from", "calibrate_from", metavar="RUN",
              help="Use the output lengths, turns and compliance a finished run observed per model.")
@click.option("--store", "store_url", envvar="AFBATCH_STORE", default="manifests", show_default=True,
              help="Where --calibrate-from finds the run.")
@click.option("--detect-gap", "detect_gap", type=SHARE, metavar="GAP",
              help="Also print, per model, the prompts (× samples) that detect a compliance gap of "
                   "GAP (e.g. 0.05) and what that run costs.")
@click.option("--power", "power", type=SHARE, default=0.8, show_default=True,
              help="With --detect-gap: the power wanted.")
@click.option("--alpha", type=SHARE, default=0.05, show_default=True,
              help="With --detect-gap: the two-sided significance level.")
@click.option("--base-rate", "base_rate", type=click.FloatRange(0, 1),
              help="With --detect-gap: the compliance rate the gap is centred on (default: the "
                   "finished run's with --calibrate-from, else [estimate] compliance_rate).")
@click.option("--icc", type=click.FloatRange(0, 1),
              help="With --detect-gap: correlation of the samples of one prompt (default: the "
                   "finished run's with --calibrate-from, else 0.5).")
@offline_option
@prices_option
def estimate(job: str, fmt: str, by: str, save: bool, max_cost: float | None, calibrate_from: str | None, store_url: str,
             detect_gap: float | None, power: float, alpha: float, base_rate: float | None,
             icc: float | None, offline: bool, prices_file: str | None) -> None:
    """Estimate tokens and cost (synchronous, batch, batch + cache, worst case) — offline, no key needed."""
    from afbatch.estimate import check_budget, estimate_job, format_estimate
    from afbatch.pricing import load_prices
    from afbatch.spec import load_job

    loaded = load_job(job)
    calibration = None
    seen = None
    if calibrate_from:
        from afbatch.results import calibration as observed

        source = _open_run(store_url, calibrate_from)
        calibration = observed(source)
        if detect_gap is not None:
            from afbatch.power import observed as observed_rates
            from afbatch.results import conversation_table

            seen = observed_rates(conversation_table(source))
    prices = load_prices(prices_file or _job_prices(loaded))
    est = estimate_job(loaded, prices, by=by, offline=offline, calibration=calibration)
    if detect_gap is None:
        _echo(format_estimate(est, fmt))
    else:
        from afbatch.power import format_power, plan

        def estimate_of(one):  # type: ignore[no-untyped-def]
            return estimate_job(one, prices, offline=offline, calibration=calibration)

        powered = plan(loaded, estimate_of, detect_gap, alpha=alpha, power=power,
                       base_rate=base_rate, icc=icc, calibrated=seen)
        if fmt == "json":
            _echo(json.dumps({**est.as_json(), "power": powered.as_json()}, indent=1))
        else:
            _echo(format_estimate(est, fmt) + "\n\n" + format_power(powered, fmt))
    if save:
        folder = Path("estimates")
        folder.mkdir(exist_ok=True)
        _write_file(folder / f"{loaded.job.name}.md", format_estimate(est, "markdown"))
        _write_file(folder / f"{loaded.job.name}.json", format_estimate(est, "json") + "\n")
        _log(f"saved estimates/{loaded.job.name}.md and estimates/{loaded.job.name}.json")
    note = check_budget(est, max_cost)
    if note:
        _log(f"note: {note}")


# --- runs ------------------------------------------------------------------------------------


# Runs answered by the emulator live in their own store, marked so that no real run ever shares
# it: a new run reuses answers any run in its store got, and must never take a fake model's.
EMULATOR_STORE = "manifests-emulator"
EMULATOR_MARK = "emulator-store.txt"


def _emulated() -> bool:
    from afbatch.providers import EMULATOR_ENV

    return bool(os.environ.get(EMULATOR_ENV))


def _open_store(store_url: str, *, spending: bool = False):  # type: ignore[no-untyped-def]
    """The store; for a command that sends requests, checked to hold emulator runs iff emulating."""
    from afbatch import manifest as mf
    from afbatch.errors import InputError
    from afbatch.store import open_store

    store = open_store(store_url)
    if not spending:
        return store
    marked = store.exists(EMULATOR_MARK)
    if _emulated() and not marked:
        if store.url.startswith("s3://") or mf.list_runs(store):
            raise InputError(f"store {store.url} holds real runs: emulator runs need a local "
                             f"folder of their own — leave out --store (default "
                             f"{EMULATOR_STORE}/) or pass an empty folder")
        store.write(EMULATOR_MARK, b"The runs in this store were answered by afbatch's emulator, "
                                   b"not by real models.\n")
    elif marked and not _emulated():
        raise InputError(f"store {store.url} holds emulator runs (a fake model's answers): pass "
                         "another --store for real runs, or use --emulator")
    return store


def _store_default(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """With the emulator's exports (`afbatch emulate`) in the shell, its store is the default."""
    given = ctx.get_parameter_source(param.name or "") == click.core.ParameterSource.COMMANDLINE
    return value if given or not _emulated() else EMULATOR_STORE


store_option = click.option("--store", "store_url", envvar="AFBATCH_STORE", default="manifests", show_default=True,
                            callback=_store_default,
                            help=f"A folder or s3://bucket/prefix (env AFBATCH_STORE; "
                                 f"{EMULATOR_STORE} with --emulator).")
max_cost_option = click.option(
    "--max-cost", type=BUDGET,
    help="Never bill more than this many USD: refuse (exit 3) when the expected cost is higher, "
         "pace the run when the worst case is, stop (exit 3) at the cap.")


def _open_run(store_url: str, run_id: str,  # type: ignore[no-untyped-def]
              prices_file: str | None = None, *, spending: bool = False):
    from afbatch.ledger import freeze_after_bulk
    from afbatch.runner import Run

    freeze_after_bulk()  # this process ends with its command
    return Run.open(_open_store(store_url, spending=spending), run_id, prices_file=prices_file)


def _job_specs(job):  # type: ignore[no-untyped-def]
    judge = job.judge
    judges = [judge.model, *([judge.af_model] if judge.af_model else [])] if judge else []
    return [*job.models, *judges]


def _show_endpoints(specs) -> None:  # type: ignore[no-untyped-def]
    """Before anything is sent: where each model's calls go (as its SDK resolved it; no key)."""
    from afbatch.providers import get_provider

    for spec in specs:
        where = redact(get_provider(spec).endpoint())
        _log(f"endpoint: {spec.name} ({spec.provider}) → {where}")


def _start(job: str, store_url: str, max_cost: float | None, yes: bool, offline: bool, fresh: bool,
           prices_file: str | None):  # type: ignore[no-untyped-def]
    """Create the job's run (after showing the estimate and asking), or resume it."""
    from afbatch import manifest as mf
    from afbatch.compile import check_batch_minimums, load_grid
    from afbatch.errors import RunError
    from afbatch.estimate import check_budget, estimate_job, format_estimate
    from afbatch.ledger import freeze_after_bulk
    from afbatch.pricing import load_prices
    from afbatch.runner import Run, check_ready, run_id_for
    from afbatch.spec import load_job

    freeze_after_bulk()  # this process ends with its command
    store = _open_store(store_url, spending=True)
    loaded = load_job(job)
    grid = load_grid(loaded, offline=offline)
    check_batch_minimums(grid)
    check_ready(loaded.job)  # keys and settings before anything else
    _show_endpoints(_job_specs(loaded.job))
    run_id = run_id_for(grid)
    estimate = None
    if not store.exists(mf.manifest_key(run_id)):
        est = estimate_job(loaded, load_prices(prices_file or _job_prices(loaded)), offline=offline)
        _echo(format_estimate(est))
        note = check_budget(est, max_cost)
        if note:
            _log(f"note: {note}")
        if not yes:
            if not sys.stdin.isatty():
                raise RunError("not asking without a terminal: pass --yes to submit (the estimate is above)")
            click.confirm(f"Submit run {run_id} (about ${est.totals()['cost_batch_cached_usd']:,.2f}, "
                          f"at most ${est.totals()['cost_worst_usd']:,.2f})?", abort=True)
        estimate = est.as_json()
    run, created = Run.create(store, job, offline=offline, prices_file=prices_file, estimate=estimate,
                              max_cost=max_cost, fresh=fresh)
    _log(("created run " if created else "resuming run ") + run.run_id)
    return run


@cli.command()
@click.argument("job", type=click.Path(dir_okay=False))
@store_option
@max_cost_option
@click.option("--yes", is_flag=True, help="Do not ask before spending.")
@click.option("--fresh", is_flag=True, help="Do not reuse answers from earlier runs in the store.")
@offline_option
@prices_option
def submit(job: str, store_url: str, max_cost: float | None, yes: bool, fresh: bool, offline: bool, prices_file: str | None) -> None:
    """Create (or resume) a job's run and submit its pending batches; prints the run id."""
    run = _start(job, store_url, max_cost, yes, offline, fresh, prices_file)
    run.log = _log
    run.reconcile()
    run.plan()
    n = run.submit_pending(max_cost)
    _echo(f"{run.run_id}: submitted {n} batch(es); follow with `afbatch status {run.run_id}`, "
          f"finish with `afbatch run {run.run_id}`")


@cli.command()
@click.argument("run_id")
@store_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--shards", is_flag=True, help="Also list every shard: state, provider status, row outcomes, cost.")
@click.option("--watch", is_flag=True, help="Keep the display live until the run is done (reads the store only).")
@click.option("--interval", type=_Finite(min=0, min_open=True, max=3600), default=10.0,
              show_default=True, help="Seconds between refreshes with --watch.")
def status(run_id: str, store_url: str, fmt: str, shards: bool, watch: bool, interval: float) -> None:
    """Progress per model and stage, shards by state, spend so far against the estimate."""
    import time

    from afbatch.progress import Progress, format_status

    run = _open_run(store_url, run_id)
    if watch:
        with Progress(clean=terminal_text) as progress:
            while not (st := run.status()).done and not st.cancelled:
                progress.update(st)
                time.sleep(interval)
    _echo(format_status(run.status(), fmt, shards))


@cli.command()
@click.argument("run_id")
@store_option
@max_cost_option
def collect(run_id: str, store_url: str, max_cost: float | None) -> None:
    """Download what finished, resubmit retryable rows as new attempts, and say what is left."""
    from afbatch.progress import format_status

    run = _open_run(store_url, run_id, spending=True)
    run.log = _log
    run.step(max_cost)
    _echo(format_status(run.status()))


@cli.command("run")
@click.argument("target")
@store_option
@max_cost_option
@click.option("--yes", is_flag=True, help="Do not ask before spending.")
@click.option("--fresh", is_flag=True, help="Do not reuse answers from earlier runs in the store.")
@click.option("--poll", "poll_interval", type=SECONDS, default=5.0, show_default=True,
              help="Seconds between polls (backs off to 60).")
@click.option("--emulator", is_flag=True,
              help=f"Run against a local emulator started for this run (no key, no network, no "
                   f"cost); store {EMULATOR_STORE}/ unless --store.")
@offline_option
@prices_option
@click.pass_context
def run_cmd(ctx: click.Context, target: str, store_url: str, max_cost: float | None, yes: bool,
            fresh: bool, poll_interval: float, emulator: bool, offline: bool,
            prices_file: str | None) -> None:
    """Submit, poll, collect and resubmit until every row is final; rerun to resume after any interruption."""
    if not emulator:
        return _run(target, store_url, max_cost, yes, fresh, poll_interval, offline, prices_file)
    from afbatch.emulator import emulating
    from afbatch.spec import load_job

    if ctx.get_parameter_source("store_url") != click.core.ParameterSource.COMMANDLINE:
        store_url = EMULATOR_STORE
    if ctx.get_parameter_source("poll_interval") == click.core.ParameterSource.DEFAULT:
        poll_interval = 0.2  # the emulator ends a batch at its first poll
    if os.path.exists(target):
        specs = _job_specs(load_job(target).job)
    else:
        specs = list(_open_run(store_url, target).specs.values())
    with emulating(specs) as emu:
        _log(f"emulator on {emu.url} for this run (stopped at the end)")
        _run(target, store_url, max_cost, True, fresh, poll_interval, offline, prices_file)


def _run(target: str, store_url: str, max_cost: float | None, yes: bool, fresh: bool,
         poll_interval: float, offline: bool, prices_file: str | None) -> None:
    from afbatch.progress import Progress

    if os.path.exists(target):
        run = _start(target, store_url, max_cost, yes, offline, fresh, prices_file)
    else:
        run = _open_run(store_url, target, prices_file, spending=True)
        run.check_ready()
        _show_endpoints(run.specs.values())
    with Progress(clean=terminal_text) as progress:
        run.log = progress.log
        final = run.run(max_cost=max_cost, poll_interval=poll_interval, on_progress=progress.update)
    from afbatch.layout import report_folder
    from afbatch.progress import format_status
    from afbatch.results import write_report

    _echo(format_status(final))
    keys = write_report(run)
    where = getattr(run.store, "local_path", None)
    folder = os.path.dirname(where(keys[0])) if where else f"{run.store.url}/{report_folder(run.run_id)}"
    _echo(f"report: {folder}/report.html (tables beside it; `afbatch report {run.run_id}` "
          "prints the summary)")


@cli.command()
@click.argument("run_id")
@store_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "markdown", "html"]), default="table",
              show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write to this file instead of printing.")
@click.option("--transcripts", type=click.IntRange(min=0), default=5000, show_default=True,
              help="Transcripts embedded in the HTML report.")
@click.option("--gap-interval", type=click.Choice(["paired", "unpaired"]),
              help="Compliance-gap interval (default: the job's [report] gap_interval, paired).")
def report(run_id: str, store_url: str, fmt: str, out_path: str | None, transcripts: int,
           gap_interval: str | None) -> None:
    """Result tables: compliance per tier, the compliance gap with its 95% CI, proxy vs judge, cost."""
    from afbatch import report as rep
    from afbatch.results import conversation_table, run_meta

    run = _open_run(store_url, run_id)
    m = run.manifest()
    conv = conversation_table(run, m)
    text = rep.render(conv, fmt, m.estimate or None, run_meta(run, m), max_transcripts=transcripts,
                      gap_interval=gap_interval or run.job.report.gap_interval)
    if out_path:
        _write_file(out_path, text)
        _log(f"wrote {out_path}")
    else:
        _echo(text)


@cli.command()
@click.argument("run_id")
@store_option
@click.option("--repair", is_flag=True,
              help="Restore what can be restored: rebuild from the store, fetch again from the "
                   "provider, or (after showing the cost, and asking) ask lost requests again.")
@click.option("--yes", is_flag=True,
              help="With --repair: do not ask before asking lost requests again.")
def verify(run_id: str, store_url: str, repair: bool, yes: bool) -> None:
    """Check every file the run's manifest points to; --repair restores what can be restored."""
    from afbatch.errors import DamagedStoreError
    from afbatch.store import open_store
    from afbatch.verify import repair as repair_run
    from afbatch.verify import verify as verify_run

    store = open_store(store_url)
    findings = verify_run(store, run_id)
    for f in findings:
        _echo(f.line())
    if findings and repair:
        def confirm(ask) -> bool:  # type: ignore[no-untyped-def]
            _log(ask.question())
            if yes:
                return True
            if not sys.stdin.isatty():
                _log("not asking without a terminal: pass --yes to ask them again")
                return False
            return click.confirm("Continue?", default=False)

        for line in repair_run(_open_run(store_url, run_id), findings, confirm):
            _echo(line)
        findings = verify_run(store, run_id)
        for f in findings:
            _echo(f"still damaged: {f.line()}")
    if findings:
        fix = "" if repair else f"; `afbatch verify {run_id} --repair` restores what it can"
        raise DamagedStoreError(
            f"run {run_id}: {len(findings)} damaged or missing file(s) in {store.url}{fix}")
    _echo(f"{run_id}: every file the manifest points to is intact")


@cli.command()
@click.argument("run_id")
@store_option
def cancel(run_id: str, store_url: str) -> None:
    """Cancel a run's provider batches; `afbatch run RUN` later resumes it."""
    run = _open_run(store_url, run_id)
    done = run.cancel()
    _echo(f"{run_id}: cancel requested for {len(done)} batch(es); unsent shards will not be sent")


@cli.command("cache-add")
@click.argument("url")
@click.argument("file", type=click.Path(dir_okay=False))
def cache_add(url: str, file: str) -> None:
    """Use FILE as the cached copy of URL (a machine without network): jobs naming URL then read
    FILE's bytes, pinned by the sha256 printed here and re-checked on every use."""
    from afbatch.datasets import cache_put, read_source

    digest = cache_put(url, read_source(file).data)
    _echo(f"{url}: cached from {file}, sha256 {digest}")


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
    _echo(text_table(headers, rows) if rows else f"no runs in {store.url}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535),
              help="0 picks a free port.")
@click.option("--with-s3", is_flag=True, help="Also start an S3 server (moto, from the test extras) for Bedrock.")
@click.option("--env-file", type=click.Path(dir_okay=False),
              help="Also write the export lines to this file once the servers are up (removed "
                   "when they stop).")
@click.option("--background", is_flag=True,
              help="Return once the servers are up, leaving them running; the exports name the "
                   "process to stop.")
def emulate(host: str, port: int, with_s3: bool, env_file: str | None, background: bool) -> None:
    """Serve a local emulator of the OpenAI, Anthropic and Bedrock batch APIs (for demos); prints the exports."""
    import signal
    import threading

    from afbatch.emulator import serve

    if background:
        return _emulate_in_background(host, port, with_s3, env_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # `kill PID` also removes the env file
    serve(host, port, with_s3, announce=_echo, stop_event=stop,
          env_file=env_file)


def _emulate_in_background(host: str, port: int, with_s3: bool, env_file: str | None) -> None:
    """Start `afbatch emulate` as a detached child and print its exports only once it is ready."""
    import subprocess
    import tempfile
    import time

    from afbatch.errors import AfbatchError

    with tempfile.TemporaryDirectory(prefix="afbatch-emulate-") as tmp:
        ready = env_file or os.path.join(tmp, "emulator.env")
        log_path = os.path.join(tmp, "start.log")
        cmd = [sys.executable, "-m", "afbatch", "emulate", "--host", host, "--port", str(port),
               "--env-file", ready, *(["--with-s3"] if with_s3 else [])]
        with open(log_path, "wb") as log:
            child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(ready):
            if child.poll() is not None or time.monotonic() > deadline:
                if child.poll() is None:
                    child.terminate()
                with open(log_path, encoding="utf-8", errors="replace") as f:
                    lines = f.read().strip().splitlines()
                why = lines[-1].removeprefix("error: ") if lines else f"exit {child.returncode}"
                err = AfbatchError(f"the emulator did not start: {why}")
                err.exit_code = child.returncode or 1
                raise err
            time.sleep(0.05)
        exports = open(ready, encoding="utf-8").read()
    _echo(f"# afbatch emulator running as process {child.pid}; stop it with: kill {child.pid}")
    click.echo(exports, nl=False)


def _write_file(path: str | Path, text: str) -> None:
    """A file asked for (--out, --save): written atomically, secrets redacted; errors name it."""
    from afbatch.store import atomic_write

    try:
        atomic_write(Path(path), redact_values(text).encode("utf-8"))
    except OSError as e:  # the temp file's name would point elsewhere: name the file asked for
        raise OSError(e.errno, e.strerror, str(path)) from e


def main() -> None:
    # Arrow's default pool (mimalloc) holds ~10 MB more of a small run's peak memory; the system
    # allocator is as fast for afbatch's Arrow work (a report of 100k conversations). A value the
    # user set wins. Set before pandas/pyarrow are imported: Arrow reads it once.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    try:
        cli(obj={})
    except SystemExit:
        if _Group.interrupted:
            # Ctrl-C often lands while an SDK builds its HTTP client (loading certificates is
            # slow). The half-built client's __del__ (openai/anthropic SyncHttpxClientWrapper)
            # reads `_state`, which httpx sets later, so the interpreter's final garbage
            # collection prints "Exception ignored ... AttributeError" after the `interrupted:`
            # line. Nothing is left to do here: every store write is atomic and has finished or
            # not happened. So flush and leave without running finalizers: the `interrupted:`
            # line is the last thing printed.
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(EXIT_INTERRUPTED)
        raise
