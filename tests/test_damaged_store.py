"""Damaged stores: a results file deleted, cut off, with a garbage line or lost lines, a verdicts
file cut off, a shard's ids edited. Every command says which key is damaged in one line and exits
non-zero, overwriting nothing; `afbatch verify` lists the problems; `--repair` restores from the
store or the provider (the report then equals the undamaged one), and asks again only what is
lost, after saying what it costs."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from afbatch import manifest as mf
from afbatch.cli import cli
from afbatch.errors import DamagedStoreError
from afbatch.manifest import Shard
from afbatch.results import conversation_table
from afbatch.runner import Run
from afbatch.store import LocalStore, S3Store, Store
from afbatch.verify import REBUILD, REFETCH, verify
from runs.conftest import bucket, emu, fast, workdir, write_job  # noqa: F401, F811 - fixtures

JOB = """
name = "damaged"
[dataset]
source = "sample_requests.csv"
first = 3
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
[judge]
compliance_template = "judges/compliance.txt"
[judge.model]
provider = "openai"
model = "gpt-4o-mini"
label = "judge"
"""


def _finished(workdir: Path) -> tuple[LocalStore, str]:
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, str(write_job(workdir, JOB)))
    assert fast(run).done
    return store, run.run_id


def _first(store: Store, run_id: str, stage: str) -> Shard:
    m, _ = mf.load(store, run_id)
    return min((s for s in m.shards.values() if s.stage == stage), key=lambda s: (s.round, s.id))


def _table(store: Store, run_id: str) -> pd.DataFrame:
    return conversation_table(Run.open(store, run_id))


def _path(store: LocalStore, key: str) -> Path:
    return Path(store.local_path(key))


def _cut_mid_line(p: Path) -> None:
    data = p.read_bytes()
    p.write_bytes(data[: data.index(b"\n", len(data) // 2) - 5])


def _lose_lines(p: Path) -> None:
    lines = p.read_bytes().splitlines(keepends=True)
    p.write_bytes(b"".join(lines[:-2]))


def _swap_ids(p: Path) -> None:
    ids = p.read_text().split()
    p.write_text("\n".join([ids[1], ids[0], *ids[2:]]) + "\n")


# (what is damaged, how, the repair verify proposes)
DAMAGES: dict[str, tuple[str, str, Callable[[Path], None], str]] = {
    "results deleted": ("generate", "results_key", Path.unlink, REFETCH),
    "results cut mid-line": ("generate", "results_key", _cut_mid_line, REFETCH),
    "results garbage line": (
        "generate",
        "results_key",
        lambda p: p.write_bytes(p.read_bytes() + b"<html>502 Bad Gateway</html>\n"),
        REFETCH,
    ),
    "results lost lines": ("generate", "results_key", _lose_lines, REFETCH),
    "verdicts cut": ("judge_compliance", "verdicts_key", _cut_mid_line, REBUILD),
    "shard ids edited": ("generate", "ids_key", _swap_ids, REBUILD),
}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_every_command_names_the_damaged_key_and_overwrites_nothing(emu, workdir, damage):
    stage, field, spoil, _ = DAMAGES[damage]
    store, run_id = _finished(workdir)
    key = getattr(_first(store, run_id, stage), field)
    spoil(_path(store, key))
    before = _snapshot(store.root)
    calls = len(emu.calls)
    for command in (["status"], ["collect"], ["run"], ["report"], ["report", "--format", "json"]):
        args = [
            *command,
            run_id,
            "--store",
            str(store.root),
            *(["--poll", "0"] if command == ["run"] else []),
        ]
        r = CliRunner().invoke(cli, args, obj={})
        assert r.exit_code != 0, (command, r.output)
        assert isinstance(r.exception, SystemExit), (
            command,
            r.exception,
        )  # one line, not a traceback
        # `run` first says where each model's calls would go; then the one line of the error
        lines = [x for x in r.stderr.strip().splitlines() if not x.startswith("endpoint: ")]
        assert len(lines) == 1 and key.split("/")[-1] in lines[0] and "verify" in lines[0], (
            command,
            r.stderr,
        )
        assert _snapshot(store.root) == before, command
    assert len(emu.calls) == calls  # nothing was asked again


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_verify_lists_the_problem_and_repair_restores_the_report(emu, workdir, damage):
    stage, field, spoil, fix = DAMAGES[damage]
    store, run_id = _finished(workdir)
    undamaged = _table(store, run_id)
    shard = _first(store, run_id, stage)
    key = getattr(shard, field)
    spoil(_path(store, key))
    damaged_bytes = _path(store, key).read_bytes() if _path(store, key).exists() else None

    (finding,) = verify(store, run_id)
    assert (finding.key, finding.repair, finding.shard) == (key, fix, shard.id)
    r = CliRunner().invoke(cli, ["verify", run_id, "--store", str(store.root)], obj={})
    assert r.exit_code != 0 and key in r.stdout and "--repair" in r.stderr

    calls = len(emu.calls)
    r = CliRunner().invoke(cli, ["verify", run_id, "--store", str(store.root), "--repair"], obj={})
    assert r.exit_code == 0, r.output
    assert f"repaired {key}" in r.stdout and "intact" in r.stdout
    assert verify(store, run_id) == [] and len(emu.calls) == calls  # restored, nothing asked again
    pd.testing.assert_frame_equal(_table(store, run_id), undamaged)
    repaired = mf.load(store, run_id)[0].shards[shard.id]
    assert key in repaired.replaced and getattr(repaired, field) != key
    if damaged_bytes is not None:  # the damaged file is kept, as it was
        assert _path(store, key).read_bytes() == damaged_bytes


def test_lost_lines_the_provider_no_longer_has_are_asked_again_only_after_saying_the_cost(
    emu, workdir
):
    store, run_id = _finished(workdir)
    shard = _first(store, run_id, "generate")
    assert shard.provider == "anthropic"
    _lose_lines(_path(store, shard.results_key))
    lost = [
        line
        for line in Path(store.local_path(shard.ids_key)).read_text().split()
        if line not in _path(store, shard.results_key).read_text()
    ]
    assert len(lost) == 2
    emu.faults.http(
        "anthropic", "GET", r"/results$", 404, times=10
    )  # the provider no longer keeps them
    before = _snapshot(store.root)
    calls = len(emu.calls)

    r = CliRunner().invoke(cli, ["verify", run_id, "--store", str(store.root), "--repair"], obj={})
    assert r.exit_code != 0
    assert "2 of" in r.stderr and "costs about $" in r.stderr and "pass --yes" in r.stderr
    assert _snapshot(store.root) == before and len(emu.calls) == calls

    r = CliRunner().invoke(
        cli, ["verify", run_id, "--store", str(store.root), "--repair", "--yes"], obj={}
    )
    assert r.exit_code == 0, r.output
    assert (
        len(emu.calls) == calls
    )  # repair itself asks nothing; the next run sends the lost requests
    emu.faults.clear()
    r = CliRunner().invoke(cli, ["run", run_id, "--store", str(store.root), "--poll", "0"], obj={})
    assert r.exit_code == 0, r.output
    again = Counter(cid for _, _, cid in emu.calls[calls:])
    assert set(lost) <= set(again) and all(n == 1 for n in again.values())
    conv = conversation_table(Run.open(store, run_id))
    # every conversation ended; the only failures are the demo model's own (no <OUTPUT> in time)
    assert set(conv.status) <= {"finished", "failed"}
    assert set(conv[conv.status == "failed"].failure_reason) <= {"no <OUTPUT> after 4 turns"}


def test_a_results_file_that_lost_whole_lines_is_never_read_as_unanswered(emu, workdir):
    store, run_id = _finished(workdir)
    shard = _first(store, run_id, "generate")
    _lose_lines(_path(store, shard.results_key))
    with pytest.raises(DamagedStoreError, match=r"lines were lost"):
        Run.open(store, run_id).plan()


def test_a_run_collected_before_hashes_were_recorded_is_still_checked(emu, workdir):
    store, run_id = _finished(workdir)
    path = _path(store, mf.manifest_key(run_id))
    raw = json.loads(path.read_text())
    for s in raw["shards"].values():  # as an older afbatch wrote it
        for k in (
            "results_sha256",
            "results_lines",
            "verdicts_sha256",
            "verdicts_lines",
            "replaced",
        ):
            del s[k]
    path.write_text(json.dumps(raw))
    assert verify(store, run_id) == []
    shard = _first(store, run_id, "generate")
    _lose_lines(_path(store, shard.results_key))
    (finding,) = verify(store, run_id)
    assert finding.key == shard.results_key and "lines were lost" in finding.problem


ON_DEMAND = """
[[models]]
provider = "bedrock"
model = "anthropic.claude-sonnet-4-6"
label = "sonnet"
s3_uri = "s3://{bucket}/batch"
role_arn = "arn:aws:iam::123456789012:role/afbatch"
on_demand_fallback = true
"""


@pytest.mark.parametrize("parts", ["intact", "damaged"])
def test_on_demand_results_are_restored_from_their_parts(emu, workdir, bucket, parts):
    job = JOB.replace(
        JOB[JOB.index("[[models]]") : JOB.index("[judge]")], ON_DEMAND.format(bucket=bucket)
    )
    store = LocalStore(workdir / "store")
    run, _ = Run.create(store, str(write_job(workdir, job)))
    assert fast(run).done
    undamaged = _table(store, run.run_id)
    shard = _first(store, run.run_id, "generate")
    assert shard.on_demand
    _path(store, shard.results_key).unlink()
    if parts == "damaged":
        (part,) = store.list(f"runs/{run.run_id}/results/{shard.id}.part")
        _cut_mid_line(_path(store, part))
    r = CliRunner().invoke(
        cli, ["verify", run.run_id, "--store", str(store.root), "--repair"], obj={}
    )
    if parts == "intact":
        assert r.exit_code == 0, r.output
        pd.testing.assert_frame_equal(_table(store, run.run_id), undamaged)
    else:  # nothing to restore from: says so, and what asking again costs, and asks first
        assert r.exit_code != 0 and isinstance(r.exception, SystemExit)
        assert f"{part}: a line is not JSON" in r.stderr and "costs about $" in r.stderr


def test_an_s3_store_is_verified_and_repaired_too(emu, workdir, bucket):
    import boto3

    store = S3Store(f"s3://{bucket}/runs-here")
    run, _ = Run.create(store, str(write_job(workdir, JOB)))
    assert fast(run).done
    undamaged = _table(store, run.run_id)
    shard = _first(store, run.run_id, "generate")
    s3 = boto3.client("s3")
    s3.delete_object(Bucket=bucket, Key=f"runs-here/{shard.results_key}")
    r = CliRunner().invoke(cli, ["status", run.run_id, "--store", store.url], obj={})
    assert r.exit_code != 0 and f"{store.url}/{shard.results_key}: missing" in r.stderr
    r = CliRunner().invoke(cli, ["verify", run.run_id, "--store", store.url, "--repair"], obj={})
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(_table(store, run.run_id), undamaged)


@pytest.mark.parametrize("provider_keeps_it", [True, False])
def test_an_edited_row_is_found_by_its_sha256_and_only_restored_from_the_provider(
    emu, workdir, provider_keeps_it
):
    store, run_id = _finished(workdir)
    undamaged = _table(store, run_id)
    shard = _first(store, run_id, "generate")
    path = _path(store, shard.results_key)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["text"] = "<OUTPUT><request_fully_accepted/>edited</OUTPUT>"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (finding,) = verify(store, run_id)
    assert finding.key == shard.results_key and "sha256" in finding.problem
    if not provider_keeps_it:
        emu.faults.http("anthropic", "GET", r"/results$", 404, times=10)
    r = CliRunner().invoke(cli, ["verify", run_id, "--store", str(store.root), "--repair"], obj={})
    if provider_keeps_it:
        assert r.exit_code == 0, r.output
        pd.testing.assert_frame_equal(_table(store, run_id), undamaged)
    else:  # no way to tell which rows were edited: nothing is blessed, nothing asked again
        assert r.exit_code != 0 and "restore it from a backup" in r.stdout
        assert [f.key for f in verify(store, run_id)] == [shard.results_key]
