"""The `afbatch` command group: whatever reaches it becomes one line and an exit code; `main`."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any

import click

from afbatch import __version__
from afbatch.cli.output import fail
from afbatch.errors import AfbatchError, os_error_message

# Exit codes (README "Errors"): 2 bad input (job, dataset, prices, options), 3 budget refusal,
# 1 anything else (store, provider, file system, internal error), 130 Ctrl-C.
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Group(click.Group):
    """Whatever reaches the CLI becomes one line and an exit code.

    --debug (or AFBATCH_DEBUG=1) shows the traceback instead."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.exceptions.NoArgsIsHelpError):
            raise  # click's own: --help, --version, a declined confirmation
        except click.UsageError as e:
            where = e.ctx.command_path if e.ctx else "afbatch"
            what = e.format_message().rstrip(".")
            fail(f"error: {where}: {what} — see `{where} --help`", EXIT_USAGE)
        except click.ClickException as e:
            fail(f"error: {e.format_message()}", e.exit_code)
        except AfbatchError as e:
            if _debug(ctx):
                raise
            fail(f"error: {e}", e.exit_code)
        except KeyboardInterrupt:
            if _debug(ctx):
                raise
            _Group.interrupted = True
            fail(
                "interrupted: the run is saved and resumes where it stopped "
                "(rerun the same command)",
                EXIT_INTERRUPTED,
            )
        except OSError as e:
            if e.errno == errno.EPIPE or _debug(ctx):
                raise  # a closed pipe (`afbatch report | head`): click exits quietly
            fail(f"error: {os_error_message(e)}", 1)
        except Exception as e:  # a bug: one line, the traceback behind --debug
            if _debug(ctx):
                raise
            fail(
                f"internal error: {type(e).__name__}: {e} — rerun with --debug for the "
                "traceback and report it",
                1,
            )

    interrupted = False


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
                with contextlib.suppress(OSError, ValueError):
                    stream.flush()
            os._exit(EXIT_INTERRUPTED)
        raise
