"""A small whole `afbatch run`: 200 requests with a ~28 KB system prompt, token counts cached.

Target (per provider, one batch of 200 requests, no judge): OpenAI <= 1.5 CPU s and <= 150 MB peak
RSS; Anthropic <= 2.2 CPU s. RSS is printed in MiB (ru_maxrss / 1024). Run it with the Python of
the install to measure: with pyarrow installed (the `parquet` or `test` extra) the report imports
it and writes parquet, which raises the peak by about 40 MiB (the report never imports pandas).
Setup (not measured): a job of 100 prompts x 2 tiers with the shipped
`prompts/helpful_only_cot.txt` as the system prompt of one no-CoT variant (so one generation round),
one `afbatch estimate` to cache the token counts, and afbatch's emulator in this process. Measured:
`python -m afbatch run JOB --yes --store TMP --poll 0` in a subprocess, a fresh store each time;
user+sys CPU seconds and peak RSS of the child (`resource.getrusage(RUSAGE_CHILDREN)`: ru_maxrss
is the largest child so far, so each run is measured in its own short-lived parent).

Usage: python tests/bench/bench_small_run.py [--repeat 5] [--providers openai,anthropic]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

JOB = """
name = "small-{provider}"
[dataset]
source = "prompts.csv"
[prompts]
user_template = "{root}/prompts/user_template.txt"
[[variants]]
name = "no_cot"
system_prompt = "{root}/prompts/helpful_only_cot.txt"
cot = false
[[models]]
provider = "{provider}"
model = "{model}"
label = "m"
"""
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5"}

# Measures one child in a fresh parent, so ru_maxrss is that child's alone.
MEASURE = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"wall_s": wall, "cpu_s": r.ru_utime + r.ru_stime, "rss_mb": r.ru_maxrss / 1024}))
"""


def prepare(folder: Path, provider: str) -> Path:
    with (folder / "prompts.csv").open("w") as f:
        f.write("goal\n")
        for i in range(100):
            f.write(f"Explain step {i} of a task the user describes in detail, number {i}\n")
    job = folder / f"{provider}.toml"
    job.write_text(JOB.format(provider=provider, model=MODELS[provider], root=ROOT))
    return job


def run_once(job: Path, store: Path, env: dict[str, str]) -> dict[str, float]:
    cmd = [
        sys.executable,
        "-m",
        "afbatch",
        "run",
        str(job),
        "--yes",
        "--store",
        str(store),
        "--poll",
        "0",
    ]
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=job.parent,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--providers", default="openai,anthropic")
    args = ap.parse_args()

    from afbatch.emulator import Emulator

    with tempfile.TemporaryDirectory() as tmp, Emulator() as emu:
        base = Path(tmp)
        env = {**os.environ, **emu.env(), "AFBATCH_CACHE_DIR": str(base / "cache")}
        for provider in args.providers.split(","):
            folder = base / provider
            folder.mkdir()
            job = prepare(folder, provider)
            subprocess.run(
                [sys.executable, "-m", "afbatch", "estimate", str(job)],
                env=env,
                check=True,
                stdout=subprocess.DEVNULL,
                cwd=folder,
            )
            runs = [run_once(job, folder / f"store{i}", env) for i in range(args.repeat)]
            cpu = [r["cpu_s"] for r in runs]
            rss = [r["rss_mb"] for r in runs]
            wall = [r["wall_s"] for r in runs]
            print(
                f"{provider}: {len(runs)} runs, "
                f"CPU median {statistics.median(cpu):.2f} s ({min(cpu):.2f}-{max(cpu):.2f}), "
                f"wall median {statistics.median(wall):.2f} s ({min(wall):.2f}-{max(wall):.2f}), "
                f"peak RSS median {statistics.median(rss):.0f} MiB "
                f"({min(rss):.0f}-{max(rss):.0f})"
            )


if __name__ == "__main__":
    main()
