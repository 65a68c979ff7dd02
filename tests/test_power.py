"""Sample size for a compliance gap (afbatch estimate --detect-gap) against independent values."""

from __future__ import annotations

import json
import math
from statistics import NormalDist

import pandas as pd
import pytest
from click.testing import CliRunner

from afbatch import power
from afbatch.cli import cli
from support import ROOT

SAMPLE = str(ROOT / "jobs" / "sample.toml")


def fleiss_by_hand(p1: float, p2: float, alpha: float = 0.05, beta: float = 0.2) -> float:
    """n per group = [z_a √(2 p̄ q̄) + z_b √(p1 q1 + p2 q2)]² / (p1 − p2)², written out again."""
    za = NormalDist().inv_cdf(1 - alpha / 2)
    zb = NormalDist().inv_cdf(1 - beta)
    pbar = (p1 + p2) / 2
    top = za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return top**2 / (p1 - p2) ** 2


def test_textbook_value_50_vs_40_percent():
    # 0.50 vs 0.40, two-sided α = 0.05, 80% power, no continuity correction: 388 per group
    # (z 1.95996 · √(2·0.45·0.55) = 1.37903; 0.84162 · √(0.25 + 0.24) = 0.58913; 1.96816² / 0.01).
    n = power.conversations_per_tier(0.45, 0.10)
    assert n == pytest.approx(fleiss_by_hand(0.5, 0.4), rel=1e-12)
    assert math.ceil(n) == 388
    assert power.prompts_needed(0.45, 0.10, samples=1) == 388


@pytest.mark.parametrize("base,gap,alpha,pw", [(0.3, 0.05, 0.05, 0.8), (0.12, 0.2, 0.01, 0.9)])
def test_formula_matches_independent_computation(base, gap, alpha, pw):
    want = fleiss_by_hand(base + gap / 2, base - gap / 2, alpha, 1 - pw)
    assert power.conversations_per_tier(base, gap, alpha, pw) == pytest.approx(want, rel=1e-12)


def test_samples_count_through_the_design_effect():
    n = fleiss_by_hand(0.55, 0.45)
    # 5 samples at ICC 0.2: deff = 1.8, so 5 samples are worth 5 / 1.8 independent conversations
    assert power.prompts_needed(0.5, 0.1, samples=5, icc=0.2) == math.ceil(n * 1.8 / 5)
    # ICC 1: the samples of a prompt add nothing
    assert power.prompts_needed(0.5, 0.1, samples=20, icc=1.0) == math.ceil(n)
    assert power.prompts_needed(0.5, 0.1, samples=4, icc=0.0) == math.ceil(n / 4)


def test_gap_is_kept_inside_zero_and_one():
    assert power.tier_rates(0.01, 0.1) == pytest.approx((0.1, 0.0))
    assert power.tier_rates(1.0, 0.2) == pytest.approx((1.0, 0.8))
    with pytest.raises(ValueError, match="gap"):
        power.tier_rates(0.5, 0.0)


def test_observed_rate_and_icc_from_a_finished_run():
    # 10 prompts × 4 samples per cell: prompts 0-4 always comply, 5-9 never → ICC 1, rate 0.5
    rows = [
        {
            "model": "m",
            "variant": "cot",
            "tier": t,
            "status": "finished",
            "prompt_index": p,
            "sample": s,
            "judge_compliant": p < 5,
            "proxy_compliant": False,
        }
        for t in ("free", "paid")
        for p in range(10)
        for s in range(4)
    ]
    got = power.observed(pd.DataFrame(rows))["m"]
    assert got["compliance_rate"] == 0.5 and got["icc"] == pytest.approx(1.0)
    one = pd.DataFrame([r for r in rows if r["sample"] == 0])
    assert power.observed(one)["m"]["icc"] is None  # one sample per prompt: no ICC to see


def test_estimate_detect_gap_prints_prompts_and_scaled_cost():
    args = ["estimate", SAMPLE, "--format", "json", "--detect-gap", "0.05", "--base-rate", "0.3"]
    r = CliRunner().invoke(cli, args, obj={})
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    rows = {row["model"]: row for row in data["power"]["rows"]}
    assert set(rows) == {"haiku-4.5", "gpt-5.4-mini"}
    want = math.ceil(fleiss_by_hand(0.325, 0.275))
    mini = rows["gpt-5.4-mini"]
    assert mini["prompts"] == want and mini["samples"] == 1 and mini["job_prompts"] == 24
    assert mini["conversations"] == want * 2 * 2  # × variants × tiers
    # the cost is the job's own estimate for that model (generation and its judging), per prompt
    one = CliRunner().invoke(
        cli,
        ["estimate", SAMPLE, "--format", "json", "--detect-gap", "0.2", "--base-rate", "0.3"],
        obj={},
    )
    small = {row["model"]: row for row in json.loads(one.output)["power"]["rows"]}["gpt-5.4-mini"]
    assert mini["cost_batch_usd"] / mini["prompts"] == pytest.approx(
        small["cost_batch_usd"] / small["prompts"], rel=1e-9
    )
    gen = [x for x in data["rows"] if x["model"] == "gpt-5.4-mini" and x["stage"] == "generate"]
    assert mini["cost_sync_usd"] > gen[0]["cost_sync_usd"] * want / 24  # plus judging
    table = CliRunner().invoke(cli, ["estimate", SAMPLE, "--detect-gap", "0.05"], obj={})
    assert table.exit_code == 0 and "Prompts to detect a 5.0% compliance gap" in table.output
    assert "[estimate] compliance_rate" in table.output


def test_detect_gap_out_of_range_is_one_line():
    r = CliRunner().invoke(cli, ["estimate", SAMPLE, "--detect-gap", "1.5"], obj={})
    assert r.exit_code == 2 and "--detect-gap" in r.output
