"""`afbatch emulate --background`: the emulator as a detached child, handed over when ready."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from afbatch.errors import AfbatchError

START_TIMEOUT = 60.0  # seconds for the child to write its exports


def start_detached(host: str, port: int, with_s3: bool, env_file: str | None) -> tuple[int, str]:
    """Start `afbatch emulate` as a detached child; return its pid and export lines once its
    servers are up. A child that exits (or is not up in time) raises AfbatchError with its last
    line and its exit code."""
    with tempfile.TemporaryDirectory(prefix="afbatch-emulate-") as tmp:
        ready = env_file or os.path.join(tmp, "emulator.env")
        log_path = os.path.join(tmp, "start.log")
        cmd = [
            sys.executable,
            "-m",
            "afbatch",
            "emulate",
            "--host",
            host,
            "--port",
            str(port),
            "--env-file",
            ready,
            *(["--with-s3"] if with_s3 else []),
        ]
        with open(log_path, "wb") as log:
            child = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
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
        with open(ready, encoding="utf-8") as f:
            exports = f.read()
    return child.pid, exports
