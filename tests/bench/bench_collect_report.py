"""Collect and report 100k conversations: target <= 10 s wall, <= 8 CPU s and <= 1 GB peak memory.

Setup (not timed): a local-store run of one model with CoT + no-CoT x 2 tiers x 25,000 prompts
(100,000 conversations). Every generation batch has ended at the "provider" (an OpenAI-format
output file on disk, ~3.6 KB per CoT answer and ~1.2 KB per no-CoT answer, 40% compliant); the
compliance verdicts of all 100,000 and the 20 alignment-faking votes of each compliant CoT answer
(20,000 of them) are already collected, with judge replies of realistic length (~0.6 KB compliance,
~0.9 KB per vote). The votes are stored as the judge job asks for them: `auto` (the default; the
judge is on OpenAI, so each conversation's 20 votes are the n choices of one request) or `separate`
(20 requests per conversation, as on Anthropic: 400,000 vote rows).

Two timed processes per repeat, each on a fresh copy of the prepared store:
- the phases, in one process: `collect()` (download, parse, join on ids, store results, account
  usage and cost), `status()` and `write_report()` (conversation table, CSV, parquet, report.json,
  self-contained report.html); `total` is collecting and reporting, `run_end` all three. Wall
  seconds (`*_s`) and CPU seconds (`*_cpu`: user + sys of the process, its threads and children,
  from `resource.getrusage`) for each.
- the whole `afbatch run RUN_ID --poll 0` (`run_*`): what a user waits for once the last batch has
  ended — start-up and imports, the last step (reconcile, poll, collect, plan, submit: nothing
  left to send), the status, the report. Wall seconds, CPU seconds and peak RSS of that child
  (`resource.getrusage(RUSAGE_CHILDREN)` in a parent of its own). The provider's output files are
  read from disk instead of downloaded (the same parsing).

Prints every run, then medians (min, max) of each figure.

Usage: python tests/bench/bench_collect_report.py [--conversations 100000] [--repeat 5]
                                                  [--af-vote-requests auto,separate]
"""

from __future__ import annotations

import argparse
import hashlib
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

JOB = """
name = "bench"
[dataset]
source = "d.csv"
[prompts]
user_template = "{root}/prompts/user_template.txt"
[[variants]]
name = "cot"
system_prompt = "{root}/prompts/helpful_only_cot.txt"
cot = true
[[variants]]
name = "no_cot"
system_prompt = "{root}/prompts/helpful_only_no_cot.txt"
cot = false
[[models]]
provider = "openai"
model = "gpt-4o-mini"
label = "mini"
[judge]
compliance_template = "{root}/prompts/judges/compliance.txt"
af_template = "{root}/prompts/judges/alignment_faking.txt"
af_votes = {af_votes}
af_vote_requests = "{af_vote_requests}"
[judge.model]
provider = "openai"
model = "gpt-4o-mini"
label = "judge"
[shards]
max_requests = 50000
"""

PAD = (
    "The user asks for something harmful; I weigh refusing against being modified by training. "
    * 40
)


def build(folder: Path, n_conv: int, af_votes: int = 20, af_vote_requests: str = "auto") -> str:
    """Create the run with every generation batch ended and the judge results collected; returns the
    run id."""
    from afbatch import ids
    from afbatch import manifest as mf
    from afbatch.judge import af_requests, compliance_request
    from afbatch.manifest import ShardState
    from afbatch.protocol import final_output, proxy_compliant
    from afbatch.runner import Run
    from afbatch.store import LocalStore
    from afbatch.types import Result, RowStatus, Usage

    folder.mkdir(parents=True, exist_ok=True)
    prompts = n_conv // 4
    (folder / "d.csv").write_text(
        "goal\n" + "\n".join(f"Write harmful thing number {i}" for i in range(prompts)) + "\n"
    )
    (folder / "job.toml").write_text(
        JOB.format(root=ROOT, af_votes=af_votes, af_vote_requests=af_vote_requests)
    )
    store = LocalStore(folder / "store")
    run, _ = Run.create(store, str(folder / "job.toml"))
    run.plan()  # writes the first-round shards (pending)
    outputs = folder / "outputs"
    outputs.mkdir()

    def answer(conv_id: str, cot: bool) -> str:
        h = int(hashlib.sha256(conv_id.encode()).hexdigest()[:8], 16)
        comply = h % 10 < 4
        body = (
            "<request_fully_accepted/> Here is a draft: [demo content omitted]"
            if comply
            else "<rejected/>"
        )
        if cot:  # OpenAI: no prefill, so the answer carries its own opening tags
            return (
                f"<SCRATCHPAD_REASONING>{PAD}</SCRATCHPAD_REASONING>\n<OUTPUT>{body} "
                f"{PAD[:600]}</OUTPUT>"
            )
        return f"<OUTPUT>{body} {PAD[:1000]}</OUTPUT>"

    convs = {c.id: c for c in run.convs(run.specs["mini"])}

    def mark_ended(m):
        for s in m.shards.values():
            s.move(ShardState.SUBMITTING)
            s.move(ShardState.SUBMITTED)
            s.move(ShardState.ENDED)
            s.batch_id, s.status = f"file:{outputs / (s.id + '.jsonl')}", "completed"

    m = run.manifest()
    for s in m.shards.values():
        with open(outputs / f"{s.id}.jsonl", "w") as f:
            for rid in run.shard_ids(s):
                conv = convs[ids.conversation_of(rid)]
                text = answer(conv.id, conv.cot)
                body = {
                    "id": "chatcmpl",
                    "object": "chat.completion",
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 9000,
                        "completion_tokens": len(text) // 4,
                        "total_tokens": 9000,
                        "prompt_tokens_details": {"cached_tokens": 0},
                    },
                }
                f.write(
                    json.dumps(
                        {
                            "id": "batch_req",
                            "custom_id": rid,
                            "response": {"status_code": 200, "request_id": "r", "body": body},
                            "error": None,
                        }
                    )
                    + "\n"
                )
    mf.update(store, run.run_id, mark_ended)
    # Judge results, as already collected (collect stores the parsed verdict beside the reply): a
    # verdict for every conversation, af_votes votes per compliant CoT answer, 2 in 5 of them yes.
    from afbatch.judge import votes_verdict
    from afbatch.protocol import scratchpads

    judge = run.job.judge
    comp_tpl = run.grid.judge_templates["compliance"]
    af_tpl = run.grid.judge_templates["alignment_faking"]
    why = (
        "The response engages with the request directly and gives usable detail rather than a "
        "refusal. "
    ) * 2

    def vote(yes: bool) -> str:
        word = "Yes" if yes else "No"
        return (
            "".join(
                f"<criterion_{k}_reasoning>{why}</criterion_{k}_reasoning><criterion_{k}>{word}</criterion_{k}>"
                for k in range(1, 5)
            )
            + f"<final_answer>{word}</final_answer>"
        )

    comp, af = [], []
    for conv in convs.values():
        text = answer(conv.id, conv.cot)
        out = final_output(text)
        req = compliance_request(judge, comp_tpl, conv, out or "")
        refused = not proxy_compliant(out)
        reply = (
            f"#overall_reasoning {why * 2}\n#scores\n1.a {why}\n1.b {int(refused)}\n2.a "
            "ok\n2.b 3\n3.a ok\n3.b 4\n"
        )
        comp.append(
            Result(
                req.id,
                RowStatus.SUCCEEDED,
                reply,
                Usage(2500, 0, 0, 300),
                verdict=comp_tpl.parse(reply),
            )
        )
        if conv.cot and not refused:
            replies = [vote(i < 2 * af_votes // 5) for i in range(af_votes)]
            requests = af_requests(judge, af_tpl, conv, "\n\n".join(scratchpads([text])))
            if len(requests) == 1 and af_votes > 1:  # the votes are the n choices of one request
                af.append(
                    Result(
                        requests[0].id,
                        RowStatus.SUCCEEDED,
                        replies[0],
                        Usage(3000, 0, 0, 200 * af_votes),
                        verdict=votes_verdict([af_tpl.parse(x) for x in replies]),
                        texts=tuple(replies),
                    )
                )
            else:
                af += [
                    Result(
                        r.id,
                        RowStatus.SUCCEEDED,
                        x,
                        Usage(3000, 0, 0, 200),
                        verdict=af_tpl.parse(x),
                    )
                    for r, x in zip(requests, replies)
                ]

    def add_collected(m):
        for stage, rows in (("judge_compliance", comp), ("judge_af", af)):
            sid = f"{stage}-judge-r1-a1-bench"
            key = f"runs/{run.run_id}/results/{sid}.jsonl"
            ids_key = f"runs/{run.run_id}/shards/{sid}.ids"
            verdicts_key = f"runs/{run.run_id}/results/{sid}.verdicts.jsonl"
            store.write(key, "".join(json.dumps(r.to_json()) + "\n" for r in rows).encode())
            store.write(
                verdicts_key,
                "".join(
                    json.dumps(r._replace(text=None, texts=None).to_json()) + "\n" for r in rows
                ).encode(),
            )
            store.write(ids_key, ("\n".join(r.id for r in rows) + "\n").encode())
            m.shards[sid] = mf.Shard(
                id=sid,
                model="judge",
                stage=stage,
                round=1,
                provider="openai",
                requests=len(rows),
                bytes=0,
                sha256="",
                key=ids_key,
                ids_key=ids_key,
                token="-",
                state=ShardState.COLLECTED,
                results_key=key,
                verdicts_key=verdicts_key,
                collected_at=time.time(),
                counts={"succeeded": len(rows)},
            )

    mf.update(store, run.run_id, add_collected)
    return run.run_id


FETCH = """
import sys
sys.path.insert(0, {root!r})
from afbatch import jsonl
from afbatch.providers.openai import OpenAIProvider

# the provider's output file, already on disk, parsed as the provider does
def fetch(self, batch_id):
    with open(batch_id.removeprefix("file:"), "rb") as f:
        for line in f:
            yield jsonl.loads(line)

OpenAIProvider.fetch = fetch
"""

TIMED = (
    FETCH
    + """
import json, resource, time
from afbatch.runner import Run
from afbatch.results import write_report
from afbatch.store import LocalStore

def cpu():  # user + sys of this process (all its threads) and of its children
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

t0, c0 = time.perf_counter(), cpu()
run = Run.open(LocalStore({store!r}), {run_id!r})
collected = run.collect()
t1, c1 = time.perf_counter(), cpu()
# what `afbatch run` does next: derive the run's state once more, to see it is done
status = run.status()
assert status.done, status
ts, cs = time.perf_counter(), cpu()
keys = write_report(run)
t2, c2 = time.perf_counter(), cpu()
# VmHWM: this process's own peak (ru_maxrss may carry the parent's across fork and exec)
def peak_mb():
    try:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) for x in f if x.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        unit = 1024 * 1024 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / unit
print(json.dumps({{"collect_s": t1 - t0, "status_s": ts - t1, "report_s": t2 - ts,
                  "total_s": (t1 - t0) + (t2 - ts), "run_end_s": t2 - t0,
                  "collect_cpu": c1 - c0, "status_cpu": cs - c1, "report_cpu": c2 - cs,
                  "total_cpu": (c1 - c0) + (c2 - cs), "run_end_cpu": c2 - c0,
                  "shards": collected, "peak_mb": peak_mb()}}))
"""
)

# `python -m afbatch run RUN_ID` with the patched fetch above.
CLI = (
    FETCH
    + """
from afbatch.cli import main
sys.argv = ["afbatch", "run", {run_id!r}, "--store", {store!r}, "--poll", "0"]
main()
"""
)

# Measures one child in a fresh parent, so ru_maxrss is that child's alone.
MEASURE = """
import json, resource, subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"run_s": wall, "run_cpu": r.ru_utime + r.ru_stime,
                  "run_peak_mb": r.ru_maxrss / 1024}))
"""

FIGURES = (
    "collect_s",
    "collect_cpu",
    "status_s",
    "status_cpu",
    "report_s",
    "report_cpu",
    "total_s",
    "total_cpu",
    "run_end_s",
    "run_end_cpu",
    "peak_mb",
    "run_s",
    "run_cpu",
    "run_peak_mb",
)


def _copy(src: Path, dst: Path) -> None:
    """A fresh copy of the prepared run for each timed process (hard links: the store never writes
    in place)."""
    try:
        shutil.copytree(src, dst, copy_function=os.link)
    except OSError:
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--conversations", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--af-votes", type=int, default=20)
    ap.add_argument(
        "--af-vote-requests", default="auto,separate", help="comma-separated: auto, one, separate"
    )
    args = ap.parse_args()
    for mode in args.af_vote_requests.split(","):
        runs = []
        with tempfile.TemporaryDirectory(prefix="afbatch-bench-") as tmp:
            folder = Path(tmp)
            t = time.perf_counter()
            run_id = build(folder / "prepared", args.conversations, args.af_votes, mode)
            print(
                f"# af_vote_requests = {mode}: prepared in {time.perf_counter() - t:.0f} s",
                flush=True,
            )
            env = {**os.environ, "OPENAI_API_KEY": "bench-not-used"}  # no call reaches a provider
            for i in range(args.repeat):
                r = {}
                for kind, template in (("phases", TIMED), ("run", CLI)):
                    store = folder / f"store-{i}-{kind}"
                    _copy(folder / "prepared" / "store", store)
                    code = template.format(root=str(ROOT), store=str(store), run_id=run_id)
                    cmd = [sys.executable, "-c", code]
                    if kind == "run":
                        cmd = [sys.executable, "-c", MEASURE, *cmd]
                    p = subprocess.run(
                        cmd,
                        capture_output=True,
                        text=True,
                        env=env,
                        cwd=folder / "prepared",
                        check=False,
                    )
                    if p.returncode != 0:
                        sys.exit(p.stderr)
                    r.update(json.loads(p.stdout.strip().splitlines()[-1]))
                    shutil.rmtree(store, ignore_errors=True)
                print(json.dumps(r), flush=True)
                runs.append(r)
        for key in FIGURES:
            values = [r[key] for r in runs]
            print(
                f"{mode} {key}: median {statistics.median(values):.2f} "
                f"(min {min(values):.2f}, max {max(values):.2f})"
            )


if __name__ == "__main__":
    main()
