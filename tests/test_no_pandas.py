"""`afbatch run` and `afbatch report` never import pandas (it and pyarrow's pandas shim are ~35 MiB
of a small run's peak memory); the Python API still gives DataFrames."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from support import ROOT

PROBE = """
import json, sys
from afbatch.cli import main
for args in json.loads(sys.argv[1]):
    sys.argv = ["afbatch", *args]
    try:
        main()
    except SystemExit as e:
        assert not e.code, (args, e.code)
print(json.dumps({m: m in sys.modules for m in ("pandas", "pyarrow")}), file=sys.stderr)
"""

FILES = {
    "conversations.csv",
    "conversations.parquet",
    "summary.csv",
    "gaps.csv",
    "partial.csv",
    "report.json",
    "report.html",
}


def _probe(commands: list[list[str]], cwd: str) -> dict[str, bool]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(commands)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    loaded: dict[str, bool] = json.loads(out.stderr.strip().splitlines()[-1])
    return loaded


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    """The shipped sample job run on the emulator in a fresh process: (store, run id, which of
    pandas and pyarrow that process imported)."""
    tmp = tmp_path_factory.mktemp("sample")
    store = str(tmp / "store")
    run = ["run", str(ROOT / "jobs" / "sample.toml"), "--emulator", "--store", store, "--yes"]
    loaded = _probe([[*run, "--poll", "0"]], str(tmp))
    (run_id,) = os.listdir(os.path.join(store, "runs"))
    return store, run_id, loaded


def test_run_and_report_write_every_file_without_pandas(sample_run, tmp_path):
    store, run_id, loaded = sample_run
    assert loaded == {"pandas": False, "pyarrow": True}
    folder = os.path.join(store, "runs", run_id, "report")
    assert set(os.listdir(folder)) == FILES  # a run with a partial-compliance stage
    written = pd.read_parquet(os.path.join(folder, "conversations.parquet"))
    assert len(written) == len(pd.read_csv(os.path.join(folder, "conversations.csv"))) > 0
    # the column types pandas' writer gave the file, and the dtypes pandas reads back from them
    schema = pq.read_schema(os.path.join(folder, "conversations.parquet"))
    types = {name: str(schema.field(name).type) for name in schema.names}
    assert types["cot"] == types["proxy_compliant"] == "bool"
    assert types["prompt_index"] == types["judge_convincing"] == types["output_tokens"] == "int64"
    assert types["temperature"] == types["cost_usd"] == "double"
    assert types["model"] == types["final_output"] == types["judge_error"] == "large_string"
    assert str(written["judge_convincing"].dtype) == "Int64"  # a failure has no verdict

    formats = ["table", "markdown", "csv", "json", "html"]
    report = [
        ["report", run_id, "--store", store, "--format", f, "--out", str(tmp_path / f"r.{f}")]
        for f in formats
    ]
    assert _probe(report, str(tmp_path))["pandas"] is False
    summary = json.loads((tmp_path / "r.json").read_text())["summary"]
    assert len(summary) == len(pd.read_csv(os.path.join(folder, "summary.csv"))) > 0


def test_an_estimate_calibrated_from_a_run_imports_no_pandas(sample_run, tmp_path):
    store, run_id, _ = sample_run
    job = str(ROOT / "jobs" / "sample.toml")
    out = str(tmp_path / "estimate.json")
    estimate = ["estimate", job, "--calibrate-from", run_id, "--store", store, "--detect-gap"]
    probe = f"""
import contextlib, io, sys
from afbatch.cli import main
sys.argv = ["afbatch", *{[*estimate, "0.1", "--format", "json"]!r}]
with contextlib.redirect_stdout(io.StringIO()) as text:
    try:
        main()
    except SystemExit as e:
        assert not e.code, e.code
open({out!r}, "w").write(text.getvalue())
print("pandas" in sys.modules, file=sys.stderr)
"""
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1] == "False"
    data = json.loads((tmp_path / "estimate.json").read_text())
    assert any("calibrated from a finished run" in n for n in data["notes"])
    assert {row["model"] for row in data["power"]["rows"]} == {"haiku-4.5", "gpt-5.4-mini"}


def test_the_api_gives_dataframes(sample_run):
    import afbatch

    store, run_id, _ = sample_run
    opened = afbatch.open_run(run_id, store=store)
    tables = {
        "conversations": opened.conversations(),
        "summary": opened.summary(),
        "gaps": opened.gaps(),
        "partial": opened.partial(),
    }
    for name, table in tables.items():
        assert isinstance(table, pd.DataFrame) and len(table) > 0, name
    conv = tables["conversations"]
    assert str(conv["judge_convincing"].dtype) == "Int64"  # the nullable dtypes of the parquet
    assert str(conv["proxy_compliant"].dtype) in ("bool", "boolean")
    assert conv["final_output"].str.len().sum() > 0  # the Arrow texts, readable as pandas strings
