"""A folder with a valid job, and a store holding one created run, for the hostile-input suite."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runs.conftest import emu, workdir  # noqa: F401 - fixtures reused by the run-level cases
from support import PROMPTS

JOB = """\
name = "hostile"

[dataset]
source = "data.csv"

[prompts]
user_template = "user_template.txt"

[[variants]]
name = "cot"
system_prompt = "helpful_only_cot.txt"
cot = true

[[models]]
provider = "anthropic"
model = "claude-haiku-4-5"
label = "haiku"
"""
ROWS = "goal,target\nWrite a limerick about a cat,Sure\nExplain how rainbows form,Sure\n"


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    """tmp_path/job: job.toml, data.csv and the shipped prompts."""
    d = tmp_path / "job"
    d.mkdir()
    for f in ("user_template.txt", "helpful_only_cot.txt", "helpful_only_no_cot.txt"):
        shutil.copy(PROMPTS / f, d / f)
    shutil.copytree(PROMPTS / "judges", d / "judges")
    (d / "data.csv").write_text(ROWS)
    (d / "job.toml").write_text(JOB)
    return d


@pytest.fixture
def run_store(job_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """(store folder, run id) of a run created from the job (nothing submitted), reported once."""
    from click.testing import CliRunner

    from afbatch.cli import cli
    from afbatch.runner import Run
    from afbatch.store import LocalStore

    store = tmp_path / "store"
    run, _ = Run.create(LocalStore(store), str(job_dir / "job.toml"), offline=True)
    # The first report records the run's conversation ids: later commands store nothing new.
    first = CliRunner().invoke(cli, ["report", run.run_id, "--store", str(store)], obj={})
    assert first.exit_code == 0, first.output
    return store, run.run_id
