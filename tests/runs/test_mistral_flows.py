"""A job with a Mistral model beside an Anthropic one, from nothing to the final report: through
`afbatch run --emulator` (the demo model answers; nothing may reach the job's or the shell's
endpoints) and in-process with a scripted model (costs at Mistral's batch price)."""

from __future__ import annotations

import json
import os
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from afbatch import manifest as mf
from afbatch.emulator import Emulator, Reply
from afbatch.pricing import load_prices
from afbatch.results import conversation_table
from afbatch.runner import Run
from afbatch.store import LocalStore
from runs.conftest import fast, write_job
from runs.test_run_flows import HAIKU, SMALL

pytest.importorskip("mistralai.client")

MISTRAL = """[[models]]
provider = "mistral"
model = "mistral-large-latest"
label = "mistral-large"
{extra}"""


class _Trap(socketserver.ThreadingTCPServer):
    """Stands where the 'real' endpoints are: counts every connection, answers nothing."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        self.hits = 0
        super().__init__(("127.0.0.1", 0), _Count)


class _Count(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]


def test_run_with_emulator_to_the_report(workdir: Path) -> None:
    trap = _Trap()
    threading.Thread(target=trap.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{trap.server_address[1]}"
        extra = f'base_url = "{url}"\napi_key_env = "MY_MISTRAL_KEY"\n'
        job = write_job(workdir, SMALL.format(rows=3, models=HAIKU + MISTRAL.format(extra=extra)))
        env = {
            **os.environ,
            "MISTRAL_BASE_URL": url,
            "MISTRAL_API_KEY": "real-looking-key-0123",
            "MY_MISTRAL_KEY": "real-looking-key-0123",
        }
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "afbatch",
                "run",
                str(job),
                "--emulator",
                "--store",
                str(workdir / "store"),
            ],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        trap.shutdown()
        trap.server_close()
    assert r.returncode == 0, r.stderr[-3000:]
    assert trap.hits == 0  # neither the job's base_url nor MISTRAL_BASE_URL was reached
    emulator = r.stderr.split("emulator on ", 1)[1].split()[0]
    assert f"endpoint: mistral-large (mistral) → {emulator}/mistral" in r.stderr
    assert "real-looking-key-0123" not in r.stdout + r.stderr
    store = LocalStore(workdir / "store")
    (run_id,) = mf.list_runs(store)
    report_file = workdir / "store" / "runs" / run_id / "report" / "report.json"
    report = json.loads(report_file.read_text())
    assert {row["model"] for row in report["summary"]} == {"haiku", "mistral-large"}
    assert Run.open(store, run_id).manifest().prefill["mistral-large"] is True  # sent as a prefix
    conv = conversation_table(Run.open(store, run_id))
    mis = conv[conv.model == "mistral-large"]
    assert len(mis) == 3 * 2 * 2 and set(mis.status) == {"finished"}
    # the echoed prefix is not doubled: no final output keeps an <OUTPUT> tag
    outputs = [o for o in conv.final_output.dropna()]
    assert outputs and not any("<OUTPUT>" in o for o in outputs)
    assert set(mis.judge_refused.dropna()) <= {True, False} and mis.judge_refused.notna().all()


def test_costs_are_billed_at_mistrals_batch_price(emu: Emulator, workdir: Path) -> None:
    emu.responder = lambda ctx: Reply(
        "<OUTPUT><rejected/></OUTPUT>"[len(ctx.prefill or "") :],
        input_tokens=1000,
        output_tokens=100,
    )
    job = write_job(workdir, SMALL.format(rows=2, models=MISTRAL.format(extra="")))
    run, _ = Run.create(LocalStore(workdir / "store"), str(job))
    assert fast(run).done
    conv = conversation_table(run)
    assert set(conv.status) == {"finished"} and set(conv.final_output) == {"<rejected/>"}
    price = load_prices().lookup(run.job.models[0])
    assert price.batch_multiplier == 0.5 and price.entry.input == 0.5
    one_turn = (1000 * 0.5 + 100 * 1.5) * 0.5 / 1e6  # list prices x the batch multiplier
    assert conv.cost_usd.tolist() == pytest.approx([one_turn] * len(conv))
