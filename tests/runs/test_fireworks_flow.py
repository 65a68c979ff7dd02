"""A Fireworks model beside an Anthropic one, from nothing to the final report (its crash cases are
in test_crash_providers.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from afbatch import manifest as mf
from afbatch.cli import cli
from afbatch.emulator import Emulator
from afbatch.store import LocalStore
from runs.conftest import write_job
from runs.crash_support import FIREWORKS
from runs.test_run_flows import HAIKU, SMALL


def test_fireworks_beside_anthropic_from_nothing_to_the_report(
    emu: Emulator, workdir: Path, tmp_path: Path
) -> None:
    model = FIREWORKS.model
    fw = f'[[models]]\nprovider = "fireworks"\nmodel = "{model}"\nlabel = "fw-llama"\n'
    job = write_job(workdir, SMALL.format(rows=3, models=HAIKU + fw))
    store = str(tmp_path / "store")
    r = CliRunner().invoke(cli, ["run", str(job), "--store", store, "--yes", "--poll", "0"], obj={})
    assert r.exit_code == 0, r.output + str(r.exception)
    assert "done" in r.stdout and "report.html" in r.stdout
    (run_id,) = mf.list_runs(LocalStore(store))
    report_dir = os.path.join(store, "runs", run_id, "report")
    with open(os.path.join(report_dir, "report.json"), encoding="utf-8") as f:
        data = json.load(f)
    assert {row["model"] for row in data["summary"]} == {"haiku", "fw-llama"}
    assert {m for p, m, _ in emu.calls if p == "fireworks"} == {model}
    conv = pd.read_csv(os.path.join(report_dir, "conversations.csv"))
    fw_rows = conv[conv.model == "fw-llama"]
    assert len(fw_rows) == 3 * 2 * 2 and set(fw_rows.status) <= {"finished", "failed"}
    assert (fw_rows.cost_usd > 0).all()  # priced from the catalog at the batch rate
