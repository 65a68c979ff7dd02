"""The Python API (`afbatch.open_run`, `afbatch.estimate`): the same tables as the CLI, typed
errors, and an `import afbatch` that loads no heavy module."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from click.testing import CliRunner

import afbatch
from afbatch.cli import cli
from afbatch.errors import RunError, SpecError
from afbatch.runner import Run
from afbatch.store import LocalStore, S3Store
from runs.conftest import ROOT, fast
from runs.test_run_flows import GPT, HAIKU, small_job

HEAVY = ("pandas", "numpy", "pyarrow", "openai", "anthropic", "boto3", "botocore", "tiktoken")


def test_import_afbatch_loads_no_heavy_module():
    code = (
        "import sys, afbatch; afbatch.open_run; afbatch.estimate; from afbatch import *; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]", out.stdout
    assert set(afbatch.__all__) >= {"open_run", "estimate", "RunTables"}


def _cli_json(args: list[str]) -> dict:
    r = CliRunner().invoke(cli, args, obj={})
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _same(got: pd.DataFrame, records: list[dict]) -> None:
    """A DataFrame equals the JSON records the CLI printed for it (null for NaN)."""
    assert len(records) > 0
    expected = pd.DataFrame.from_records(records, columns=list(got.columns))
    for c in got.columns[got.dtypes == "float64"]:  # a column null in every record: NaN, not None
        expected[c] = pd.to_numeric(expected[c])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_dtype=False)


def test_open_run_gives_the_reports_tables(emu, workdir, capsys):
    folder = workdir / "store"
    run, _ = Run.create(LocalStore(folder), small_job(workdir, models=HAIKU + GPT))
    assert fast(run).done
    report = _cli_json(["report", run.run_id, "--store", str(folder), "--format", "json"])
    capsys.readouterr()

    for store in (str(folder), folder, LocalStore(folder)):
        opened = afbatch.open_run(run.run_id, store=store)
        assert opened.run_id == run.run_id
        assert opened.protocol == report["run"]["protocol"]  # the profile the numbers follow
        assert opened.protocol["profile"] == "notebook"  # the job names none: the default
        _same(opened.summary(), report["summary"])
        _same(opened.gaps(), report["gaps"])
        status = opened.status()
        assert status.done and status.run_id == run.run_id

    # conversations(): the table the report writes (conversations.parquet)
    from afbatch.results import write_report

    write_report(run)
    written = pd.read_parquet(folder / "runs" / run.run_id / "report" / "conversations.parquet")
    conv = opened.conversations()
    assert len(conv) == 2 * 2 * 2 * 3  # models × variants × tiers × rows
    pd.testing.assert_frame_equal(conv, written, check_dtype=False)
    conv["model"] = "changed"  # a copy: the run's tables are unchanged
    _same(opened.summary(), report["summary"])
    assert capsys.readouterr() == ("", "")  # the library prints nothing


def test_open_run_reads_an_s3_store_by_url(emu, workdir, bucket):
    url = f"s3://{bucket}/afbatch"
    run, _ = Run.create(S3Store(url), small_job(workdir))
    assert fast(run).done
    report = _cli_json(["report", run.run_id, "--store", url, "--format", "json"])
    opened = afbatch.open_run(run.run_id, store=url)
    _same(opened.summary(), report["summary"])
    _same(opened.gaps(), report["gaps"])


def test_open_run_errors_are_typed_and_silent(tmp_path, capsys):
    with pytest.raises(RunError, match="no run 'nope'"):
        afbatch.open_run("nope", store=tmp_path)
    with pytest.raises(TypeError, match="store must be"):
        afbatch.open_run("nope", store=42)  # type: ignore[arg-type]
    assert capsys.readouterr() == ("", "")


def test_estimate_is_the_clis_estimate_and_stays_callable(workdir, capsys):
    job = small_job(workdir, models=HAIKU + GPT)
    for by in ("model", "condition"):
        cli_rows = _cli_json(["estimate", job, "--format", "json", "--by", by, "--offline"])["rows"]
        capsys.readouterr()
        # Called twice: the function stays the function once its module has been imported.
        for _ in range(2):
            est = afbatch.estimate(job, by=by, offline=True)
            _same(est.frame(), cli_rows)
    assert est.totals()["cost_worst_usd"] > 0
    assert callable(afbatch.estimate)
    with pytest.raises(SpecError):
        afbatch.estimate(workdir / "missing.toml")
    assert capsys.readouterr() == ("", "")


def test_estimate_calibrated_from_a_run(emu, workdir):
    folder = workdir / "store"
    job = small_job(workdir)
    run, _ = Run.create(LocalStore(folder), job)
    assert fast(run).done
    cli_json = _cli_json(
        [
            "estimate",
            job,
            "--format",
            "json",
            "--calibrate-from",
            run.run_id,
            "--store",
            str(folder),
        ]
    )
    est = afbatch.estimate(job, calibrate_from=run.run_id, store=folder)
    assert "calibrated" in est.assumptions
    _same(est.frame(), cli_json["rows"])
