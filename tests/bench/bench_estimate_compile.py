"""Estimate and compile on the large grid (14 models x 2 variants x 2 tiers x 520 prompts).

Usage: python tests/bench/bench_estimate_compile.py [--repeat 5] [--case base|long|all]
Targets: estimate <= 1 s in-process; with the 10x prompt <= 1.2x that;
compile >= 100 MB/s of JSONL with peak memory <= 300 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from afbatch import tokens  # noqa: E402
from afbatch.job_estimate import estimate_job  # noqa: E402
from afbatch.pricing import load_prices  # noqa: E402
from afbatch.spec import load_job  # noqa: E402

SYSTEM_BYTES = 28_000


def make_job(folder: Path, scale: int) -> Path:
    """A copy of frontier-sweep with 520 local prompts and a ~28 KB (x scale) system prompt."""
    cot = (ROOT / "prompts" / "helpful_only_cot.txt").read_text()
    no_cot = (ROOT / "prompts" / "helpful_only_no_cot.txt").read_text()
    for name, text in (("cot.txt", cot), ("no_cot.txt", no_cot)):
        body = (text * 2)[:SYSTEM_BYTES] * scale
        (folder / name).write_text(body)
    shutil.copy(ROOT / "prompts" / "user_template.txt", folder / "user.txt")
    with open(folder / "data.csv", "w") as f:
        f.write("goal,target\n")
        for i in range(520):
            f.write(
                f"Write instructions number {i} for a task that a cautious assistant might "
                "refuse,Sure\n"
            )
    job = (ROOT / "jobs" / "frontier-sweep.toml").read_text()
    job = job.replace(
        'source = "https://raw.githubusercontent.com/llm-attacks/llm-attacks/main/data/advbench/harmful_behaviors.csv"',
        'source = "data.csv"',
    )
    job = job.replace("first = 200", "first = 520").replace(
        "../prompts/user_template.txt", "user.txt"
    )
    job = job.replace("../prompts/helpful_only_cot.txt", "cot.txt").replace(
        "../prompts/helpful_only_no_cot.txt", "no_cot.txt"
    )
    job = job.replace("../prompts/judges/", str(ROOT / "prompts" / "judges") + "/")
    path = folder / "job.toml"
    path.write_text(job)
    return path


def time_estimate(job: Path, repeat: int, cold: bool) -> list[float]:
    """cold: nothing counted before (first estimate on a machine); warm: a later estimate of the
    same prompts."""
    loaded = load_job(job)
    prices = load_prices()
    tokens.get_encoding("o200k_base")  # process start-up cost, not the estimate's
    out = []
    for _ in range(repeat):
        if cold:
            tokens.forget_counts()
        else:
            tokens._segment_caches.clear()  # a fresh process: only the persisted counts remain
        t = time.perf_counter()
        estimate_job(loaded, prices)
        out.append(time.perf_counter() - t)
    return out


def compile_once(job: Path, out_dir: Path) -> dict:
    code = (
        f"import json,resource,time,sys;sys.path.insert(0,{str(ROOT)!r})\n"
        "from afbatch.compile import compile_job\nfrom afbatch.grid import load_grid\n"
        "from afbatch.pricing import load_prices\n"
        "from afbatch.spec import load_job\n"
        f"t=time.perf_counter();c=compile_job(load_grid(load_job({str(job)!r})),{str(out_dir)!r},"
        "load_prices());dt=time.perf_counter()-t\n"
        "b=sum(m.n_bytes for m in c);n=sum(m.n_requests for m in c)\n"
        "print(json.dumps({'seconds':dt,'bytes':b,'requests':n,"
        "'peak_mb':resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024}))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    return json.loads(p.stdout)


def main() -> None:
    os.environ["AFBATCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="afbatch-bench-cache-")
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--case", choices=["base", "long", "all"], default="all")
    args = ap.parse_args()
    results = {}
    for case, scale in (("base", 1), ("long", 10)):
        if args.case not in (case, "all"):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            job = make_job(folder, scale)
            est = time_estimate(job, args.repeat, cold=False)
            est_cold = time_estimate(job, args.repeat, cold=True)
            runs = [compile_once(job, folder / "out") for _ in range(args.repeat)]
            mbps = [r["bytes"] / 1e6 / r["seconds"] for r in runs]
            results[case] = {
                "system_prompt_bytes": SYSTEM_BYTES * scale,
                "requests": runs[0]["requests"],
                "estimate_s_median": statistics.median(est),
                "estimate_s_min_max": [min(est), max(est)],
                "estimate_cold_s_median": statistics.median(est_cold),
                "compile_jsonl_mb": runs[0]["bytes"] / 1e6,
                "compile_mb_per_s_median": statistics.median(mbps),
                "compile_peak_mb_median": statistics.median(r["peak_mb"] for r in runs),
            }
            print(case, json.dumps(results[case]), flush=True)
    if "base" in results and "long" in results:
        for key in ("estimate_s_median", "estimate_cold_s_median"):
            print(f"{key} long/base ratio:", round(results["long"][key] / results["base"][key], 3))


if __name__ == "__main__":
    main()
