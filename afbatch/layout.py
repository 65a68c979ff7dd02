"""Where a run keeps its files in the store: every key of a run is spelled here, and only here.

runs/<run>/manifest.json                      the manifest (compare-and-swap)
runs/<run>/job.toml                           the job as it was when the run was created
runs/<run>/inputs/<sha256>                    pinned copies of the job's inputs
runs/<run>/conversations/<model>.ids          a model's conversation ids, fixed when first made
runs/<run>/shards/<shard>.jsonl | .ids        a shard's request file and its request ids
runs/<run>/results/<shard>.jsonl              a shard's collected rows
runs/<run>/results/<shard>.verdicts.jsonl     a judge shard's rows without their texts
runs/<run>/results/<shard>.part<NNNNN>.jsonl  on-demand answers, in chunks
runs/<run>/report/<file>                      tables and report files
"""

from __future__ import annotations

ROOT = "runs/"


def run_folder(run_id: str) -> str:
    return f"{ROOT}{run_id}"


def manifest_key(run_id: str) -> str:
    return f"{ROOT}{run_id}/manifest.json"


def run_of_manifest(key: str) -> str | None:
    """The run whose manifest `key` is, or None when `key` is not a manifest's key."""
    parts = key.split("/")
    if len(parts) == 3 and f"{parts[0]}/" == ROOT and parts[2] == "manifest.json":
        return parts[1]
    return None


def run_of(key: str) -> str | None:
    """The run a key belongs to, or None for a key outside any run's folder."""
    parts = key.split("/")
    return parts[1] if key.startswith(ROOT) and len(parts) >= 3 else None


def job_key(run_id: str) -> str:
    return f"{ROOT}{run_id}/job.toml"


def input_key(run_id: str, sha256: str) -> str:
    return f"{ROOT}{run_id}/inputs/{sha256}"


def conversation_ids_key(run_id: str, model: str) -> str:
    return f"{ROOT}{run_id}/conversations/{model}.ids"


def shard_key(run_id: str, shard: str) -> str:
    return f"{ROOT}{run_id}/shards/{shard}.jsonl"


def shard_ids_key(run_id: str, shard: str) -> str:
    return f"{ROOT}{run_id}/shards/{shard}.ids"


def results_key(run_id: str, shard: str) -> str:
    return f"{ROOT}{run_id}/results/{shard}.jsonl"


def verdicts_key(run_id: str, shard: str) -> str:
    return f"{ROOT}{run_id}/results/{shard}.verdicts.jsonl"


def part_prefix(run_id: str, shard: str) -> str:
    """The prefix of a shard's on-demand chunks (list it to find them all)."""
    return f"{ROOT}{run_id}/results/{shard}.part"


def part_key(run_id: str, shard: str, chunk: int) -> str:
    return f"{part_prefix(run_id, shard)}{chunk:05d}.jsonl"


def report_folder(run_id: str) -> str:
    return f"{ROOT}{run_id}/report"


def report_key(run_id: str, name: str) -> str:
    return f"{report_folder(run_id)}/{name}"
