"""`afbatch run --emulator` on a job with a Vertex AI model beside an OpenAI one, from nothing to
the final report, with the real SDKs: the job's own bucket made in the emulated Cloud Storage, the
emulator's credentials in place of the user's, the demo model answering."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from afbatch import manifest as mf
from afbatch.results import conversation_table
from afbatch.runner import Run
from afbatch.store import LocalStore
from runs.conftest import write_job
from runs.test_run_flows import GPT, SMALL

VERTEX = (
    '[[models]]\nprovider = "vertex"\nmodel = "gemini-3.1-pro-preview"\nlabel = "vertex-pro"\n'
    'gcs_uri = "gs://my-lab-results/afbatch"\nproject = "my-lab"\nlocation = "europe-west4"\n'
)


def test_run_with_emulator_to_the_report(workdir: Path) -> None:
    job = write_job(workdir, SMALL.format(rows=3, models=VERTEX + GPT))
    env = {  # a user's real settings: the emulator's replace them for the run
        **os.environ,
        "GOOGLE_APPLICATION_CREDENTIALS": str(workdir / "my-real-adc.json"),
        "GOOGLE_CLOUD_PROJECT": "my-lab",
    }
    args = ["run", str(job), "--emulator", "--store", str(workdir / "store")]
    r = subprocess.run(
        [sys.executable, "-m", "afbatch", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    emulator = r.stderr.split("emulator on ", 1)[1].split()[0]
    want = f"endpoint: vertex-pro (vertex) → {emulator}/vertex, Cloud Storage {emulator}/gcs"
    assert want in r.stderr
    store = LocalStore(workdir / "store")
    (run_id,) = mf.list_runs(store)
    report = json.loads(
        (workdir / "store" / "runs" / run_id / "report" / "report.json").read_text()
    )
    assert {row["model"] for row in report["summary"]} == {"vertex-pro", "mini"}
    run = Run.open(store, run_id)
    vertex = [s for s in run.manifest().shards.values() if s.provider == "vertex"]
    assert vertex and all(s.batch_id for s in vertex)
    assert all("/locations/europe-west4/batchPredictionJobs/" in s.batch_id for s in vertex)
    conv = conversation_table(run)
    pro = conv[conv.model == "vertex-pro"]
    assert len(pro) == 3 * 2 * 2 and set(pro.status) <= {"finished", "failed"}
    assert pro.judge_refused.notna().any() and (pro.cost_usd > 0).all()
