"""Paths, env variables, damaged manifests, a full disk, bugs: one line, nothing stored changes."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from hostile.support import check_one_line, expect_one_line, run_cli, snapshot

# --- damaged manifests -----------------------------------------------------------------------


def _edit(change):  # noqa: ANN001, ANN202 - a change to the manifest's JSON object
    return lambda b: json.dumps(change(json.loads(b))).encode()


DAMAGED = ["manifest.json", "damaged"]
DAMAGE = [
    ("truncated", lambda b: b[: len(b) // 2], DAMAGED),
    ("empty", lambda b: b"", DAMAGED),
    ("not-json", lambda b: b"\x00\xffgarbage", DAMAGED),
    ("json-array", lambda b: b"[1, 2]", DAMAGED),
    ("json-string", lambda b: b'"manifest"', DAMAGED),
    ("deep-json", lambda b: b"[" * 100000 + b"]" * 100000, DAMAGED),
    ("version-99", _edit(lambda m: {**m, "version": 99}), ["version 99"]),
    (
        "no-version",
        _edit(lambda m: {k: v for k, v in m.items() if k != "version"}),
        ["manifest version"],
    ),
    (
        "missing-field",
        _edit(lambda m: {k: v for k, v in m.items() if k != "run_id"}),
        ["manifest.json", "run_id"],
    ),
    ("wrong-type", _edit(lambda m: {**m, "shards": "none"}), ["manifest.json", "shards"]),
    ("unknown-field", _edit(lambda m: {**m, "surprise": 1}), ["manifest.json", "surprise"]),
]
COMMANDS = [
    ["status"],
    ["status", "--shards", "--format", "json"],
    ["report"],
    ["collect"],
    ["cancel"],
    ["run"],
]


@pytest.mark.parametrize(("damage", "names"), [pytest.param(*c[1:], id=c[0]) for c in DAMAGE])
@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_damaged_manifest(
    run_store,
    tmp_path: Path,
    damage,
    names: list[str],  # noqa: ANN001
    command: list[str],
) -> None:
    store, run_id = run_store
    path = store / "runs" / run_id / "manifest.json"
    path.write_bytes(damage(path.read_bytes()))
    args = [command[0], run_id, "--store", str(store), *command[1:]]
    expect_one_line(args, code=1, names=names, cwd=tmp_path, stored=store)


def test_manifest_is_a_folder(run_store, tmp_path: Path) -> None:  # noqa: ANN001
    store, run_id = run_store
    path = store / "runs" / run_id / "manifest.json"
    path.unlink()
    path.mkdir()
    expect_one_line(
        ["status", run_id, "--store", str(store)],
        code=1,
        names=["manifest.json"],
        cwd=tmp_path,
        stored=store,
    )


def test_unknown_run(run_store, tmp_path: Path) -> None:  # noqa: ANN001
    store, _ = run_store
    expect_one_line(
        ["report", "no-such-run", "--store", str(store)],
        code=1,
        names=["no-such-run", str(store)],
        cwd=tmp_path,
        stored=store,
    )


# --- paths -----------------------------------------------------------------------------------


def test_report_out_into_a_missing_folder(run_store, tmp_path: Path) -> None:  # noqa: ANN001
    store, run_id = run_store
    out = tmp_path / "missing" / "report.md"
    args = ["report", run_id, "--store", str(store), "--format", "markdown", "--out", str(out)]
    line = expect_one_line(
        args, code=1, names=[str(out), "does not exist"], cwd=tmp_path, stored=store
    )
    assert "create it" in line and not out.parent.exists()


def test_report_out_onto_a_folder(run_store, tmp_path: Path) -> None:  # noqa: ANN001
    store, run_id = run_store
    (tmp_path / "taken").mkdir()
    expect_one_line(
        ["report", run_id, "--store", str(store), "--out", str(tmp_path / "taken")],
        code=2,
        names=["--out", "taken", "is a directory"],
        cwd=tmp_path,
        stored=[store, tmp_path / "taken"],
    )


def test_report_out_under_a_file(run_store, tmp_path: Path) -> None:  # noqa: ANN001
    store, run_id = run_store
    (tmp_path / "plain").write_text("x")
    out = str(tmp_path / "plain" / "r.md")
    expect_one_line(
        ["report", run_id, "--store", str(store), "--out", out],
        code=1,
        names=[str(tmp_path / "plain"), "is a file where a folder is needed"],
        cwd=tmp_path,
        stored=[store, tmp_path / "plain"],
    )


def test_estimate_save_where_estimates_is_a_file(job_dir: Path) -> None:
    (job_dir / "estimates").write_text("not a folder")
    expect_one_line(
        ["estimate", "job.toml", "--save"],
        code=1,
        names=[str(job_dir / "estimates"), "is a file where a folder is needed"],
        cwd=job_dir,
        stored=job_dir,
    )


def test_estimate_save_where_the_file_is_a_folder(job_dir: Path) -> None:
    (job_dir / "estimates" / "hostile.md").mkdir(parents=True)
    expect_one_line(
        ["estimate", "job.toml", "--save"],
        code=1,
        names=["hostile.md", "folder"],
        cwd=job_dir,
        stored=job_dir,
    )


def test_estimate_save_without_permission(job_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    def refuse(*a, **k):  # noqa: ANN002, ANN003, ANN202 - the OS refusing (tests may run as root)
        raise PermissionError(errno.EACCES, "Permission denied", str(job_dir / "estimates"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    expect_one_line(
        ["estimate", "job.toml", "--save"],
        code=1,
        names=["hostile.md", "permission denied"],
        cwd=job_dir,
        stored=job_dir,
    )


def test_compile_out_is_a_file(job_dir: Path) -> None:
    (job_dir / "out").write_text("a file")
    expect_one_line(
        ["compile", "job.toml", "--out", "out"],
        code=2,
        names=["--out", "'out' is a file"],
        cwd=job_dir,
        stored=job_dir,
    )


def test_store_is_a_file(job_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "store-file").write_text("x")
    expect_one_line(
        ["status", "r1", "--store", str(tmp_path / "store-file")],
        code=1,
        names=["r1", "store-file"],
        cwd=job_dir,
        stored=[job_dir, tmp_path / "store-file"],
    )


def test_store_not_writable(
    run_store,
    tmp_path: Path,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import afbatch.store

    store, run_id = run_store

    def refuse(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(afbatch.store, "atomic_write", refuse)
    line = expect_one_line(
        ["cancel", run_id, "--store", str(store)],
        code=1,
        names=["manifest.json", "permission denied"],
        cwd=tmp_path,
        stored=store,
    )
    assert str(store) in line


# --- env variables ---------------------------------------------------------------------------


def test_cache_dir_is_a_file(job_dir: Path) -> None:
    # A real process: in this one, the tokenizer may already be loaded and never touch the cache.
    expect_one_line(
        ["estimate", "job.toml"],
        code=1,
        names=[str(job_dir / "job.toml"), "folder", "$AFBATCH_CACHE_DIR"],
        cwd=job_dir,
        stored=job_dir,
        env={"AFBATCH_CACHE_DIR": str(job_dir / "job.toml")},
        subprocess_=True,
    )


def test_cache_dir_under_a_file(job_dir: Path) -> None:
    expect_one_line(
        ["estimate", "job.toml"],
        code=1,
        names=[str(job_dir / "data.csv"), "$AFBATCH_CACHE_DIR"],
        cwd=job_dir,
        stored=job_dir,
        env={"AFBATCH_CACHE_DIR": str(job_dir / "data.csv" / "cache")},
        subprocess_=True,
    )


@pytest.mark.parametrize("url", ["s3://", "s3:///prefix"])
def test_store_env_is_a_bad_s3_url(job_dir: Path, url: str) -> None:
    expect_one_line(
        ["status", "r1"],
        code=1,
        names=[url, "s3://bucket/prefix"],
        cwd=job_dir,
        stored=job_dir,
        env={"AFBATCH_STORE": url},
    )


def test_store_env_is_a_file(job_dir: Path) -> None:
    expect_one_line(
        ["report", "r1"],
        code=1,
        names=["r1", str(job_dir / "data.csv")],
        cwd=job_dir,
        stored=job_dir,
        env={"AFBATCH_STORE": str(job_dir / "data.csv")},
    )


# --- a full disk -----------------------------------------------------------------------------


def test_disk_full_names_the_store_file(
    run_store,
    tmp_path: Path,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, run_id = run_store

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    before = snapshot(store)
    out = run_cli(["cancel", run_id, "--store", str(store)], cwd=tmp_path)
    manifest = store / "runs" / run_id / "manifest.json"
    check_one_line(out, code=1, names=[str(manifest), "no space left"])
    assert snapshot(store) == before


# --- a bug -----------------------------------------------------------------------------------


def test_unexpected_exception_is_one_line_and_debug_shows_it(
    job_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    estimate_module = importlib.import_module("afbatch.job_estimate")

    def broken(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise ZeroDivisionError("division by zero\nin a second line")

    monkeypatch.setattr(estimate_module, "estimate_job", broken)
    line = expect_one_line(
        ["estimate", "job.toml"],
        code=1,
        names=["internal error: ZeroDivisionError: division by zero", "--debug"],
        cwd=job_dir,
        stored=job_dir,
    )
    assert "\\n" in line  # the message's line break, folded
    out = run_cli(["--debug", "estimate", "job.toml"], cwd=job_dir)
    assert isinstance(out.exception, ZeroDivisionError)


def test_debug_shows_the_traceback_of_an_os_error(job_dir: Path) -> None:
    (job_dir / "estimates").write_text("x")
    out = run_cli(["--debug", "estimate", "job.toml", "--save"], cwd=job_dir, subprocess_=True)
    assert out.code == 1 and "Traceback" in out.stderr and "FileExistsError" in out.stderr


def test_real_process_prints_one_line(job_dir: Path) -> None:
    out = run_cli(["run", "job.toml", "--poll", "-1"], cwd=job_dir, subprocess_=True)
    check_one_line(out, code=2, names=["afbatch run", "--poll", "-1"])
