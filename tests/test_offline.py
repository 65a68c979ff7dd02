"""The offline path cannot fall through to a real provider: `run --emulator`, `emulate`."""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from afbatch.cli import cli
from support import ROOT

EMULATOR_MARK = "emulator-store.txt"  # marks a store of emulator runs
OPENAI_KEY = "sk-proj-" + "R3alL00k1ng" * 4
ANTHROPIC_KEY = "sk-ant-api03-" + "R3alL00k1ng" * 4
TOGETHER = """
[[models]]
provider = "together"
model = "meta-llama/Meta-Llama-3.1-70B-Instruct-Turbo"
label = "llama-70b"
base_url = "{trap}/v1"
api_key_env = "MY_TOGETHER_KEY"
"""


class _Trap(socketserver.ThreadingTCPServer):
    """Stands where the 'real' endpoints are: counts every connection it gets, answers nothing."""

    allow_reuse_address = True
    daemon_threads = True

    def __init__(self) -> None:
        self.hits = 0
        super().__init__(("127.0.0.1", 0), _Hang)


class _Hang(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.hits += 1  # type: ignore[attr-defined]


@pytest.fixture
def trap():
    server = _Trap()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def afbatch(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "afbatch", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_run_with_emulator_reaches_only_the_emulator(tmp_path, trap):
    url = f"http://127.0.0.1:{trap.server_address[1]}"
    job = (ROOT / "jobs" / "sample.toml").read_text().replace("../prompts/", f"{ROOT / 'prompts'}/")
    (tmp_path / "job.toml").write_text(job + TOGETHER.format(trap=url))
    env = {
        "OPENAI_BASE_URL": url + "/v1",
        "ANTHROPIC_BASE_URL": url,
        "AWS_ENDPOINT_URL_BEDROCK": url,
        "TOGETHER_BASE_URL": url + "/v1",
        "OPENAI_API_KEY": OPENAI_KEY,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "MY_TOGETHER_KEY": OPENAI_KEY,
    }
    r = afbatch("run", "job.toml", "--emulator", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert trap.hits == 0  # nothing went where the shell's variables and the job's base_url point
    endpoints = [line for line in r.stderr.splitlines() if line.startswith("endpoint: ")]
    assert len(endpoints) == 4  # haiku, gpt, the together model, the judge
    emulator = r.stderr.split("emulator on ", 1)[1].split()[0]
    assert all(f"→ {emulator}" in line for line in endpoints), endpoints
    assert OPENAI_KEY not in r.stdout + r.stderr and ANTHROPIC_KEY not in r.stdout + r.stderr
    assert "done" in r.stdout and "report.html" in r.stdout
    store = tmp_path / "manifests-emulator"
    assert (store / EMULATOR_MARK).exists() and not (tmp_path / "manifests").exists()
    # The run's report is read from the emulator's store, which real runs refuse.
    r = afbatch("submit", "job.toml", "--store", str(store), "--yes", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "holds emulator runs" in one_error_line(r.stderr)
    assert trap.hits == 0


def test_emulator_runs_never_share_a_store_with_real_runs(tmp_path):
    real = tmp_path / "real"
    (real / "runs" / "job-0123456789").mkdir(parents=True)
    (real / "runs" / "job-0123456789" / "manifest.json").write_text("{}")
    r = CliRunner().invoke(
        cli, ["run", str(ROOT / "jobs" / "sample.toml"), "--emulator", "--store", str(real)], obj={}
    )
    assert r.exit_code == 2 and "holds real runs" in r.stderr
    assert not (real / EMULATOR_MARK).exists()


def _taken_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize("background", [False, True])
def test_emulate_on_a_taken_port_is_one_line_and_leaves_no_env_file(tmp_path, background):
    sock, port = _taken_port()
    with sock:
        extra = ["--background", "--env-file", "emulator.env"] if background else []
        r = afbatch("emulate", "--port", str(port), *extra, cwd=tmp_path, timeout=120)
    assert r.returncode == 2
    assert f"127.0.0.1:{port}" in one_error_line(r.stderr) and "--port" in r.stderr
    assert r.stdout == "" and not (tmp_path / "emulator.env").exists()


def test_emulator_needing_moto_without_it_is_one_line(tmp_path):
    fake = tmp_path / "fake"
    (fake / "moto").mkdir(parents=True)
    (fake / "moto" / "__init__.py").write_text("raise ImportError('No module named moto')\n")
    env = {"PYTHONPATH": str(fake)}
    r = afbatch("emulate", "--with-s3", "--port", "0", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "moto" in one_error_line(r.stderr) and "pip install" in r.stderr
    assert r.stdout == ""
    r = afbatch(
        "emulate",
        "--with-s3",
        "--port",
        "0",
        "--background",
        "--env-file",
        "emulator.env",
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 2 and "moto" in one_error_line(r.stderr)
    assert r.stdout == "" and not (tmp_path / "emulator.env").exists()
    r = afbatch(
        "run", str(ROOT / "jobs" / "frontier-sweep.toml"), "--emulator", cwd=tmp_path, env=env
    )
    assert r.returncode == 2 and "moto" in one_error_line(r.stderr) and "pip install" in r.stderr


def test_emulate_in_the_background_prints_its_exports_once_it_answers(tmp_path):
    r = afbatch(
        "emulate",
        "--background",
        "--port",
        "0",
        "--env-file",
        "emulator.env",
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    pid = int(r.stdout.split("kill ", 1)[1].split()[0])
    try:
        exports = dict(
            line.removeprefix("export ").split("=", 1)
            for line in r.stdout.splitlines()
            if line.startswith("export ")
        )
        assert (tmp_path / "emulator.env").read_text().count("export ") == len(exports)
        assert exports["AFBATCH_EMULATOR"] and exports["OPENAI_API_KEY"] == "emulator-key"
        try:  # already serving when the command returned
            urllib.request.urlopen(exports["OPENAI_BASE_URL"] + "/models", timeout=5)
        except urllib.error.HTTPError as e:
            assert e.code in (401, 404)
    finally:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (tmp_path / "emulator.env").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not (tmp_path / "emulator.env").exists()  # stopping it removes its exports


BEDROCK = """
[[models]]
provider = "bedrock"
model = "meta.llama3-1-405b-instruct-v1:0"
label = "llama-405b"
max_tokens = 2048
region = "us-west-2"
s3_uri = "s3://their-bucket/afbatch"
role_arn = "arn:aws:iam::123456789012:role/afbatch-bedrock-batch"
on_demand_fallback = true
"""


def test_run_with_emulator_serves_bedrock_from_its_own_s3(tmp_path, trap):
    url = f"http://127.0.0.1:{trap.server_address[1]}"
    job = (ROOT / "jobs" / "sample.toml").read_text().replace("../prompts/", f"{ROOT / 'prompts'}/")
    head, rest = job.split("[[models]]", 1)
    head = head.replace("samples = 1", "samples = 3")  # 144 requests in round 1: a batch job
    (tmp_path / "job.toml").write_text(head + BEDROCK + "\n[judge]" + rest.split("[judge]", 1)[1])
    env = {
        "AWS_ENDPOINT_URL_BEDROCK": url,
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": url,
        "AWS_ENDPOINT_URL_S3": url,
        "AWS_ACCESS_KEY_ID": "AKIA" + "R3ALL00K1NG12345",
        "AWS_SECRET_ACCESS_KEY": "R3alL00k1ng" * 4,
        "AWS_PROFILE": "someone-real",
        "OPENAI_BASE_URL": url + "/v1",
        "OPENAI_API_KEY": OPENAI_KEY,
    }
    r = afbatch("run", "job.toml", "--emulator", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert trap.hits == 0
    (bedrock,) = [line for line in r.stderr.splitlines() if line.startswith("endpoint: llama-405b")]
    assert url not in bedrock and "S3 http://127.0.0.1:" in bedrock
    assert "done" in r.stdout


def test_emulator_module_on_a_taken_port_is_one_line(tmp_path):
    sock, port = _taken_port()
    with sock:
        r = subprocess.run(
            [sys.executable, "-m", "afbatch.emulator", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 2 and f"127.0.0.1:{port}" in one_error_line(r.stderr)
