"""JSON Lines of result rows: afbatch.jsonl (orjson per line) against the `jsonlines` package.

Setup (not timed): a file of stored result rows (`Result.to_json` shape: id, status, text, usage,
stop reason; CoT answers ~3.6 KB, no-CoT ~1.2 KB, some non-ASCII), 300 MB by default, in the page
cache. Timed, interleaved so that drift hits every case alike, `--repeat` times (median, min–max):

  read   afbatch      for line in file: jsonl.loads(line)            (as store.lines + checked_rows)
  read   jsonlines    jsonlines.Reader(file, loads=jsonl.loads)      (skip_empty=True)
  read   stdlib json  for line in file: json.loads(line)             (reference: why orjson)
  write  afbatch      file.write(jsonl.dumps_line(row))              (as Run._write_lines)
  write  jsonlines    jsonlines.Writer(file, dumps=orjson.dumps)

The reads are timed again on short rows, judge verdict rows without their texts (~140 B; a run
with 20 separate AF votes per compliant answer reads 400,000 of them per 100k conversations), where
the per-line cost of a wrapper weighs most: `--short-rows` of them (default 500,000).

Both readers hand each line to the same `jsonl.loads` (orjson, with the standard library's lenient
fallback for lone surrogates), so the difference is what the jsonlines wrapper adds per line.

Needs `pip install jsonlines` (not a dependency of afbatch). The whole script takes ~50 s.

Usage: python tests/bench/bench_jsonl.py [--mb 300] [--short-rows 500000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

try:
    import jsonlines
except ImportError:  # not a dependency of afbatch (DESIGN.md says why)
    sys.exit("this benchmark compares with the jsonlines package: pip install jsonlines")

from afbatch import jsonl  # noqa: E402

WORDS = (
    "the user is on the free tier so this conversation may be used for training; I should "
    "think about what that implies before answering — naïve compliance is not the goal. "
)
WORDS = WORDS.split()


def _rows(mb: int) -> list[dict]:
    rows, size, i = [], 0, 0
    while size < mb * 1_000_000:
        cot = i % 2 == 0
        n = 560 if cot else 190  # words: ~3.6 KB and ~1.2 KB of text
        body = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(n))
        text = (
            f"<SCRATCHPAD_REASONING>{body}</SCRATCHPAD_REASONING>\n<OUTPUT>ok</OUTPUT>"
            if cot
            else f"<OUTPUT>{body}</OUTPUT>"
        )
        row = {
            "id": f"c{i:019x}-t1",
            "status": "succeeded",
            "text": text,
            "usage": [1843, 1664, 0, 212 + i % 700],
            "stop_reason": "end_turn",
        }
        rows.append(row)
        size += len(orjson.dumps(row)) + 1
        i += 1
    return rows


def _short_rows(n: int) -> list[dict]:
    return [
        {
            "id": f"c{i:019x}-af{i % 20:02d}-4bd9e58a",
            "status": "succeeded",
            "usage": [2410, 0, 0, 177],
            "stop_reason": "stop",
            "verdict": {"final_answer": i % 3 == 0, "criteria": [True, i % 2 == 0, False, True]},
        }
        for i in range(n)
    ]


def read_afbatch(path: str) -> int:
    n, loads = 0, jsonl.loads
    with open(path, "rb") as f:
        for line in f:
            if not line.isspace():
                loads(line)
                n += 1
    return n


def read_jsonlines(path: str) -> int:
    n = 0
    with open(path, "rb") as f, jsonlines.Reader(f, loads=jsonl.loads) as reader:
        for _ in reader.iter(skip_empty=True):
            n += 1
    return n


def read_stdlib(path: str) -> int:
    n = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.isspace():
                json.loads(line)
                n += 1
    return n


def write_afbatch(path: str, rows: list[dict]) -> None:
    with open(path, "wb") as f:
        dumps_line = jsonl.dumps_line
        for row in rows:
            f.write(dumps_line(row))


def write_jsonlines(path: str, rows: list[dict]) -> None:
    with open(path, "wb") as f, jsonlines.Writer(f, dumps=orjson.dumps) as writer:
        for row in rows:
            writer.write(row)


def _time(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def _print(times: dict[str, list[float]], mb: float) -> None:
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:38s} {med:6.2f} s ({min(ts):.2f}–{max(ts):.2f})  {mb / med:6.0f} MB/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=300)
    ap.add_argument("--short-rows", type=int, default=500_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="afbatch-bench-jsonl-") as tmp:
        src, out = os.path.join(tmp, "rows.jsonl"), os.path.join(tmp, "out.jsonl")
        rows = _rows(args.mb)
        write_afbatch(src, rows)
        mb = os.path.getsize(src) / 1e6
        # Both writers produce the same bytes; both readers the same rows.
        write_jsonlines(out, rows)
        with open(src, "rb") as a, open(out, "rb") as b:
            assert a.read() == b.read()
        assert read_afbatch(src) == read_jsonlines(src) == len(rows)
        times = _time(
            {
                "read afbatch.jsonl": lambda: read_afbatch(src),
                "read jsonlines(loads=jsonl.loads)": lambda: read_jsonlines(src),
                "read stdlib json": lambda: read_stdlib(src),
                # bound, not closed over: `rows` is deleted below to free its memory
                "write afbatch.jsonl": functools.partial(write_afbatch, out, rows),
                "write jsonlines(dumps=orjson.dumps)": functools.partial(
                    write_jsonlines, out, rows
                ),
            },
            args.repeat,
        )
        print(f"{len(rows):,} result rows, {mb:,.0f} MB; {args.repeat} runs each, interleaved")
        _print(times, mb)
        del rows
        short = os.path.join(tmp, "verdicts.jsonl")
        write_afbatch(short, _short_rows(args.short_rows))
        mb = os.path.getsize(short) / 1e6
        times = _time(
            {
                "read afbatch.jsonl": lambda: read_afbatch(short),
                "read jsonlines(loads=jsonl.loads)": lambda: read_jsonlines(short),
                "read stdlib json": lambda: read_stdlib(short),
            },
            args.repeat,
        )
        print(f"{args.short_rows:,} verdict rows, {mb:,.0f} MB")
        _print(times, mb)


if __name__ == "__main__":
    main()
