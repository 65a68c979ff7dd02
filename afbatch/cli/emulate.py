"""`afbatch emulate`: serve the local emulator of the providers' batch APIs (for demos)."""

from __future__ import annotations

import click

from afbatch.cli.group import cli
from afbatch.cli.output import echo


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    default=8787,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="0 picks a free port.",
)
@click.option(
    "--with-s3",
    is_flag=True,
    help="Also start an S3 server (moto, from the test extras) for Bedrock.",
)
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    help="Also write the export lines to this file once the servers are up (removed "
    "when they stop).",
)
@click.option(
    "--background",
    is_flag=True,
    help="Return once the servers are up, leaving them running; the exports name the "
    "process to stop.",
)
def emulate(host: str, port: int, with_s3: bool, env_file: str | None, background: bool) -> None:
    """Serve a local emulator of every provider's batch API (for demos); prints
    the exports."""
    import signal
    import threading

    if background:
        from afbatch.emulator.detached import start_detached

        pid, exports = start_detached(host, port, with_s3, env_file)
        echo(f"# afbatch emulator running as process {pid}; stop it with: kill {pid}")
        click.echo(exports, nl=False)
        return
    from afbatch.emulator import serve

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # `kill PID` also removes the env file
    serve(host, port, with_s3, announce=echo, stop_event=stop, env_file=env_file)
