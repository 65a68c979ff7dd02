"""How a run's progress is shown: a status table, JSON, and a live display while `afbatch run`
waits."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from afbatch.runner import Status
from afbatch.tables import text_table, usd


def format_status(st: Status, fmt: str = "table", shards: bool = False) -> str:
    if fmt == "json":
        return json.dumps(asdict(st), indent=1)
    rows = [
        [p.model, p.stage, p.total, p.finished, p.failed, p.waiting, p.pending] for p in st.progress
    ]
    table = text_table(
        ["model", "stage", "total", "finished", "failed", "in flight", "to send"], rows
    )
    counts = ", ".join(f"{n} {k}" for k, n in sorted(st.shards.items())) or "none"
    est = f" of about {usd(st.estimate_usd)} estimated" if st.estimate_usd is not None else ""
    state = "cancelled" if st.cancelled else ("done" if st.done else "in progress")
    text = (
        f"run {st.run_id}: {state}\n{table}\nshards: {counts}\nspent so far: "
        f"{usd(st.spent_usd)}{est}"
    )
    if shards:
        rows = [
            [
                r["shard"],
                r["state"],
                r["provider_status"] or "",
                r["requests"],
                ", ".join(f"{n} {k}" for k, n in sorted(r["counts"].items())),
                usd(r["cost_usd"]),
                (r["message"] or "")[:80],
            ]
            for r in st.shard_rows
        ]
        text += "\n\n" + text_table(
            ["shard", "state", "provider", "requests", "rows", "cost", "message"], rows, right={3}
        )
    return text


class Progress:
    """A live table on a terminal; one line per change otherwise (logs, CI)."""

    def __init__(self, clean: Callable[[str, bool], str] = lambda text, one_line: text) -> None:
        # `clean(text, one_line)` makes text safe for the terminal (the CLI passes its own).
        self.clean = clean
        self.tty = sys.stderr.isatty()
        self._live: Any = None
        self._last = ""

    def __enter__(self) -> Progress:
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=2, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, st: Status) -> None:
        text = self.clean(format_status(st), False)
        if self._live is not None:
            from rich.text import Text

            self._live.update(
                Text(
                    text
                    + f"\n(updated {time.strftime('%H:%M:%S')}; Ctrl-C leaves the run resumable)"
                )
            )
        elif text != self._last:
            summary = "; ".join(
                f"{p.model}/{p.stage} {p.finished + p.failed}/{p.total}" for p in st.progress
            )
            stamp = time.strftime("%H:%M:%S")
            line = self.clean(f"[{stamp}] {summary} — spent {usd(st.spent_usd)}", True)
            print(line, file=sys.stderr, flush=True)
        self._last = text

    def log(self, msg: str) -> None:
        msg = self.clean(msg, True)
        if self._live is not None:
            from rich.text import Text

            self._live.console.print(Text(msg))  # plain text: no rich markup read from a message
        else:
            print(msg, file=sys.stderr, flush=True)
