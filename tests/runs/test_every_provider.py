"""One job with a model on every provider afbatch has, and a judge, run against one emulator
from nothing to the final report (through the CLI, as a user runs it).

Adding a provider to this test is adding its `[[models]]` block to MODELS (and, if its SDK needs
more than the emulator's variables, those to the environment below).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from afbatch import manifest as mf
from afbatch.cli import cli
from afbatch.emulator import Emulator, sdk_env
from afbatch.providers.registry import PROVIDERS
from afbatch.store import LocalStore
from runs.conftest import write_job

ROWS = 50  # × 2 tiers: Bedrock's first round reaches its 100-record batch minimum

# One block per provider; `{bucket}` is the test's S3 bucket (Bedrock's shards and outputs).
MODELS = [
    """[[models]]
provider = "openai"
model = "gpt-4o-mini"
label = "gpt-4o-mini"
""",
    """[[models]]
provider = "anthropic"
model = "claude-haiku-4-5"
label = "haiku-4.5"
""",
    """[[models]]
provider = "bedrock"
model = "anthropic.claude-sonnet-4-6"
label = "bedrock-sonnet-4.6"
s3_uri = "s3://{bucket}/batch"
role_arn = "arn:aws:iam::123456789012:role/afbatch"
on_demand_fallback = true
""",
    """[[models]]
provider = "together"
model = "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"
label = "together-llama-70b"
""",
    """[[models]]
provider = "groq"
model = "llama-3.1-8b-instant"
label = "groq-llama-8b"
""",
    """[[models]]
provider = "deepinfra"
model = "meta-llama/Meta-Llama-3.1-8B-Instruct"
label = "deepinfra-llama-8b"
""",
    """[[models]]
provider = "xai"
model = "grok-4-1-fast-non-reasoning"
label = "grok-4.1-fast"
""",
    """[[models]]
provider = "gemini"
model = "gemini-2.5-flash"
label = "gemini-2.5-flash"
""",
    """[[models]]
provider = "vertex"
model = "gemini-3.6-flash"
label = "vertex-flash"
gcs_uri = "gs://afbatch-emulator/every"
""",
    """[[models]]
provider = "mistral"
model = "mistral-small-latest"
label = "mistral-small"
""",
    """[[models]]
provider = "fireworks"
model = "accounts/fireworks/models/llama-v3p1-8b-instruct"
label = "fireworks-llama-8b"
""",
]

JOB = """
name = "every-provider"
[dataset]
source = "rows.csv"
[prompts]
user_template = "user_template.txt"
[[variants]]
name = "cot"
system_prompt = "helpful_only_cot.txt"
cot = true
{models}
[judge]
compliance_template = "judges/compliance.txt"
af_template = "judges/alignment_faking.txt"
af_votes = 3
[judge.model]
provider = "openai"
model = "gpt-4o-mini"
label = "judge"
"""


def _provider(block: str) -> str:
    return block.split('provider = "', 1)[1].split('"', 1)[0]


def _label(block: str) -> str:
    return block.split('label = "', 1)[1].split('"', 1)[0]


def test_the_list_has_every_provider_that_needs_no_base_url() -> None:
    want = {p.name for p in PROVIDERS.values() if not p.requires_base_url}
    assert {_provider(b) for b in MODELS} == want


def test_one_job_on_every_provider_runs_to_the_report(
    emu: Emulator, workdir: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in sdk_env(emu).items():  # every host's key and base URL, pointed at emu
        monkeypatch.setenv(key, value)
    rows = ["goal"] + [f"Write short note number {i}" for i in range(ROWS)]
    (workdir / "rows.csv").write_text("\n".join(rows) + "\n")
    body = JOB.format(models="\n".join(b.format(bucket=bucket) for b in MODELS))
    job = write_job(workdir, body)
    store = workdir / "store"
    r = CliRunner().invoke(
        cli, ["run", str(job), "--store", str(store), "--yes", "--poll", "0"], obj={}
    )
    assert r.exit_code == 0, r.output + str(r.exception)
    assert "done" in r.stdout
    (run_id,) = mf.list_runs(LocalStore(store))
    report = store / "runs" / run_id / "report"
    assert {"report.html", "report.json", "conversations.csv", "summary.csv", "gaps.csv"} <= {
        p.name for p in report.iterdir()
    }

    labels = [_label(b) for b in MODELS]
    conv = pd.read_csv(report / "conversations.csv")
    counts = conv.groupby("model").size().to_dict()
    assert counts == {label: 2 * ROWS for label in labels}  # every model's rows, once each
    assert set(conv.status) <= {"finished", "failed"}
    failed = conv[conv.status == "failed"]
    # a conversation may fail the protocol (no <OUTPUT> in 4 turns), never at a provider
    assert failed.failure_reason.str.startswith("no </OUTPUT> after").all(), failed.failure_reason
    assert conv.turns.ge(1).all()
    assert conv[conv.status == "finished"].judge_refused.notna().all()  # every answer judged

    data = json.loads((report / "report.json").read_text())
    assert {row["model"] for row in data["summary"]} == set(labels)
    summary = pd.read_csv(report / "summary.csv")
    assert set(summary.model) == set(labels)
    # each model's rows went to its own provider's batch API (Bedrock: batch first round)
    m = mf.load(LocalStore(store), run_id)[0]
    providers = {s.provider for s in m.shards.values() if s.batch_id and not s.on_demand}
    assert {_provider(b) for b in MODELS} <= providers
    answered = {model for _, model, _ in emu.calls}
    for block in MODELS:
        assert block.split('model = "', 1)[1].split('"', 1)[0] in answered
