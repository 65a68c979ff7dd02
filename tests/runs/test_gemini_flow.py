"""A job with a Gemini model beside an OpenAI one, from nothing to the final report, against the
emulator with the real SDKs; its Gemini batches cut at the job's enqueued-token limit."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from click.testing import CliRunner

from afbatch import manifest as mf
from afbatch import tokens
from afbatch.cli import cli
from afbatch.emulator import Emulator
from afbatch.runner import Run
from afbatch.spec import ModelSpec
from afbatch.store import LocalStore
from runs.test_run_flows import GPT, SMALL

GEMINI = '[[models]]\nprovider = "gemini"\nmodel = "gemini-2.5-flash"\nlabel = "flash"\n'
LIMIT = 12_000  # a few requests of the CoT prompt per batch


def _estimated_tokens(line: dict) -> int:
    """A Gemini request line's input tokens as the sharding estimates them (o200k x 1.10, plus the
    chat format's 4 tokens per message and 3 to prime the reply)."""
    counter = tokens.counter_for(ModelSpec(provider="gemini", model="gemini-2.5-flash"), "gemini")
    req = line["request"]
    texts = [p["text"] for c in req["contents"] for p in c["parts"]]
    texts += [p["text"] for p in req.get("system_instruction", {}).get("parts", [])]
    raw = sum(len(counter.encoding.encode(t, disallowed_special=())) for t in texts)
    return math.ceil(raw * 1.10) + 4 * len(texts) + 3


def test_gemini_beside_openai_to_the_report(emu: Emulator, workdir: Path, tmp_path: Path) -> None:
    body = SMALL.format(rows=3, models=GEMINI + GPT) + f"[shards]\nmax_enqueued_tokens = {LIMIT}\n"
    job = workdir / "job.toml"
    job.write_text(body)
    store = str(tmp_path / "store")
    r = CliRunner().invoke(cli, ["run", str(job), "--store", store, "--yes", "--poll", "0"], obj={})
    assert r.exit_code == 0, r.output + str(r.exception)
    assert "done" in r.stdout and "report.html" in r.stdout
    (run_id,) = mf.list_runs(LocalStore(store))
    report_dir = os.path.join(store, "runs", run_id, "report")
    data = json.loads(Path(report_dir, "report.json").read_text())
    assert {row["model"] for row in data["summary"]} == {"flash", "mini"}
    run = Run.open(LocalStore(store), run_id)
    shards = [s for s in run.manifest().shards.values() if s.provider == "gemini"]
    assert shards and all(s.state == mf.ShardState.COLLECTED for s in shards)
    first_round = [s for s in shards if s.round == 1]
    assert len(first_round) > 2  # 12 first turns, cut at the token limit
    for s in shards:
        lines = [json.loads(x) for x in run.store.read(s.key).decode().splitlines() if x.strip()]
        assert sum(_estimated_tokens(x) for x in lines) <= LIMIT, s.id
    gemini_calls = [c for c in emu.calls if c[0] == "gemini"]
    assert len(gemini_calls) >= 12
    assert len([c for c in emu.created if c[0] == "gemini"]) == len(shards)
