from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from afbatch.cli import cli
from support import BASE_JOB, ROOT

SAMPLE = str(ROOT / "jobs" / "sample.toml")


def run(*args, **kw):
    return CliRunner().invoke(cli, list(args), obj={}, **kw)


def test_estimate_table_and_exit_zero():
    r = run("estimate", SAMPLE)
    assert r.exit_code == 0, r.output
    assert (
        "TOTAL" in r.output
        and "judge_compliance" in r.output
        and "Saving against synchronous" in r.output
    )


def test_estimate_json_keys_are_stable():
    r = run("estimate", SAMPLE, "--format", "json")
    data = json.loads(r.output)
    assert data["job"] == "sample"
    assert set(data["totals"]) == {
        "cost_sync_usd",
        "cost_batch_usd",
        "cost_batch_cached_usd",
        "cost_worst_usd",
    }
    for row in data["rows"]:
        assert {
            "model",
            "provider",
            "stage",
            "requests",
            "input_tokens",
            "cached_input_tokens",
            "output_tokens_expected",
            "output_tokens_max",
            "cost_sync_usd",
            "cost_batch_usd",
            "cost_batch_cached_usd",
            "cost_worst_usd",
        } <= set(row)
        assert row["stage"] in {"generate", "judge_compliance", "judge_af", "judge_partial"}


def test_estimate_save_writes_md_and_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run("estimate", SAMPLE, "--save", "--by", "condition")
    assert r.exit_code == 0
    assert (tmp_path / "estimates" / "sample.md").read_text().startswith("# Estimate: sample")
    assert json.loads((tmp_path / "estimates" / "sample.json").read_text())["rows"]


def test_max_cost_exits_nonzero_with_one_line():
    r = run("estimate", SAMPLE, "--max-cost", "0.01")
    assert r.exit_code == 3
    assert r.stderr.strip().count("\n") == 0 and "exceeds --max-cost $0.01" in r.stderr


def test_bad_job_is_one_line_exit_2(make_job):
    path = make_job(BASE_JOB.replace('label = "haiku"', 'label = "haiku"\nmax_tokenz = 5'))
    r = run("estimate", str(path))
    assert r.exit_code == 2
    assert r.stderr.startswith("error: ") and r.stderr.strip().count("\n") == 0
    assert "models[0].max_tokenz" in r.stderr and "Traceback" not in r.stderr


def test_debug_shows_the_traceback(make_job):
    path = make_job(BASE_JOB.replace('label = "haiku"', 'label = "haiku"\nmax_tokenz = 5'))
    r = run("--debug", "estimate", str(path))
    assert r.exit_code != 0 and r.exception is not None


def test_compile_writes_shards(tmp_path):
    out = tmp_path / "out"
    r = run("compile", SAMPLE, "--out", str(out))
    assert r.exit_code == 0, r.output
    index = json.loads((out / "index.json").read_text())
    assert {s["model"] for s in index["shards"]} == {"haiku-4.5", "gpt-5.4-mini"}
    assert sum(s["requests"] for s in index["shards"]) == 2 * 96
    for s in index["shards"]:
        lines = (out / s["path"]).read_text().splitlines()
        assert len(lines) == s["requests"]


def test_schema_prints_json():
    r = run("schema")
    assert json.loads(r.output)["title"] == "Job"


def test_entry_point_runs_offline_estimate():
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "afbatch",
            "estimate",
            str(ROOT / "jobs" / "frontier-sweep.toml"),
            "--offline",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "judge_af" in p.stdout and "not cached" in p.stdout
