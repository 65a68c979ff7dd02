"""Whole runs against the emulator: provider text cannot drive the terminal or forge a line, no key
is printed or stored whatever its env name, a disk that fills mid-run damages nothing, and Ctrl-C
while an SDK builds its client ends with the `interrupted:` line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from afbatch import manifest as mf
from afbatch.store import LocalStore
from hostile.support import check_one_line, run_cli, snapshot

KEY = "zq7-Gateway-Token-8f2c41d9e0"  # distinctive, and shaped like no known key pattern
SESSION = "FwoGZXIvYXdzEXAMPLEsessionTOKENvalue0042"
JOB = """\
name = "hostile-run"
[dataset]
source = "sample_requests.csv"
first = 2
[prompts]
user_template = "user_template.txt"
[[variants]]
name = "cot"
system_prompt = "helpful_only_cot.txt"
cot = true
[[models]]
provider = "openai"
model = "gpt-4o-mini"
label = "mini"
api_key_env = "LAB_GATEWAY"
"""
HOSTILE = "bad\r\n\x1b]0;owned\x07FORGED line \x1b[2J\x1b[31mred\x1b[0m \u202eevil\x9b1m\x7f end"


def _job(workdir: Path) -> Path:
    (workdir / "job.toml").write_text(JOB)
    return workdir / "job.toml"


def _run(workdir: Path, store: Path, **kw):  # noqa: ANN003, ANN202
    args = ["run", str(workdir / "job.toml"), "--store", str(store), "--yes", "--poll", "0"]
    return run_cli(args, cwd=workdir, **kw)


def _assert_terminal_safe(text: str) -> None:
    for bad in ("\x1b", "\u202e", "\x9b", "\x7f", "\x07", "\r"):
        assert bad not in text, repr(bad)
    assert not [line for line in text.splitlines() if line.lstrip().startswith("FORGED")]


def test_a_key_under_any_env_name_is_never_printed_or_stored(
    emu,
    workdir: Path,
    tmp_path: Path,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LAB_GATEWAY", KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION)
    store, out = tmp_path / "store", tmp_path / "r.html"
    cache = Path(os.environ["AFBATCH_CACHE_DIR"])
    _job(workdir)
    message = f"Incorrect API key provided: {KEY}. session {SESSION}.\n{HOSTILE}"
    body = {
        "error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
    }
    emu.faults.http("openai", "POST", r"^/v1/files$", 401, body=body)
    first = _run(workdir, store)
    line = check_one_line(
        first, code=1, names=["HTTP 401", "Incorrect API key provided: ***"], after_log=True
    )
    _assert_terminal_safe(first.stdout + first.stderr)
    assert "\\n" in line  # the provider's line break, folded
    second = _run(workdir, store)
    assert second.code == 0, second.stderr
    (run_id,) = mf.list_runs(LocalStore(store))
    report = run_cli(
        ["report", run_id, "--store", str(store), "--format", "html", "--out", str(out)],
        cwd=workdir,
    )
    status = run_cli(["status", run_id, "--store", str(store), "--shards"], cwd=workdir)
    printed = "".join(o.stdout + o.stderr for o in (first, second, report, status))
    stored = b"\n".join(snapshot(store, cache, out).values())
    for secret in (KEY, SESSION):
        assert secret not in printed
        assert secret.encode() not in stored


def test_provider_text_cannot_drive_the_terminal_or_forge_lines(
    emu, workdir: Path, tmp_path: Path
) -> None:  # noqa: ANN001
    store = tmp_path / "store"
    _job(workdir)
    body = {"error": {"message": HOSTILE, "type": "invalid_request_error", "code": "invalid"}}
    emu.faults.http("openai", "POST", r"^/v1/batches$", 400, body=body, times=10)
    out = _run(workdir, store, env={"LAB_GATEWAY": KEY})
    assert out.exception is None and "Traceback" not in out.stderr
    (run_id,) = mf.list_runs(LocalStore(store))
    status = run_cli(["status", run_id, "--store", str(store), "--shards"], cwd=workdir)
    as_json = run_cli(
        ["status", run_id, "--store", str(store), "--format", "json", "--shards"], cwd=workdir
    )
    for o in (out, status, as_json):
        _assert_terminal_safe(o.stdout + o.stderr)
    assert "FORGED line" in status.stdout  # shown, on the shard's own row
    shards = json.loads((store / "runs" / run_id / "manifest.json").read_text())["shards"]
    assert any(HOSTILE in (s.get("message") or "") for s in shards.values())  # stored raw


def test_disk_full_during_a_run_damages_nothing_and_the_rerun_finishes(
    emu,
    workdir: Path,
    tmp_path: Path,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "store"
    _job(workdir)
    real_fsync, calls = os.fsync, {"n": 0}

    def fsync(fd: int) -> None:  # the device fills after a few writes
        calls["n"] += 1
        if calls["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    out = _run(workdir, store, env={"LAB_GATEWAY": KEY})
    line = check_one_line(out, code=1, names=["no space left", str(store)], after_log=True)
    assert "rerun" in line
    (run_id,) = mf.list_runs(LocalStore(store))
    mf.load(LocalStore(store), run_id)  # whole and valid
    assert not list(store.rglob(".tmp-*"))
    monkeypatch.setattr(os, "fsync", real_fsync)
    again = _run(workdir, store, env={"LAB_GATEWAY": KEY})
    assert again.code == 0, again.stderr


def test_aws_credentials_from_a_profile_are_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from afbatch.providers.bedrock import BedrockProvider
    from afbatch.redact import redact, redact_bytes
    from afbatch.spec import ModelSpec

    secret, token = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPROFILEKEY", SESSION + "Profile"
    creds = tmp_path / "credentials"
    creds.write_text(
        f"[default]\naws_access_key_id = AKIDPROFILE\n"
        f"aws_secret_access_key = {secret}\naws_session_token = {token}\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    model = ModelSpec(
        provider="bedrock", model="anthropic.claude-3-haiku-20240307-v1:0", on_demand_fallback=True
    )
    BedrockProvider(model).ready()
    text = f"denied for {secret} with token {token}"
    assert secret not in redact(text) and token not in redact(text)
    assert secret.encode() not in redact_bytes(text.encode())


HARNESS = """
import httpx2
from afbatch.cli import main

def interrupted(self, *a, **k):  # Ctrl-C landing while the SDK builds its HTTP transport
    raise KeyboardInterrupt

httpx2.HTTPTransport.__init__ = interrupted
main()
"""


@pytest.mark.parametrize(
    ("provider", "model"), [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")]
)
def test_ctrl_c_while_an_sdk_client_is_built_ends_with_the_interrupted_line(
    workdir: Path, provider: str, model: str
) -> None:
    job = JOB.replace('provider = "openai"', f'provider = "{provider}"')
    job = job.replace('model = "gpt-4o-mini"', f'model = "{model}"')
    (workdir / "job.toml").write_text(job.replace('api_key_env = "LAB_GATEWAY"\n', ""))
    env = {
        **os.environ,
        "OPENAI_API_KEY": "k" * 20,
        "ANTHROPIC_API_KEY": "k" * 20,
        "OPENAI_BASE_URL": "http://127.0.0.1:9",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
    }
    args = [
        sys.executable,
        "-c",
        textwrap.dedent(HARNESS),
        "run",
        "job.toml",
        "--yes",
        "--store",
        "st",
    ]
    p = subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=120, env=env)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert p.returncode == 130, p.stderr
    # The line, and nothing after it (the keys are checked before the run is created).
    assert len(lines) == 1 and lines[0].startswith("interrupted:"), p.stderr
