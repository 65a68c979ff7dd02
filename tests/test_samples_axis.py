"""`[sampling] samples` as a list: each sample count is a condition of the grid, with
conversations of its own, a row of the estimate and a key of every report table."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from afbatch import ids, report
from afbatch.compile import conversations
from afbatch.grid import load_grid
from afbatch.job_estimate import estimate_job, format_estimate
from afbatch.pricing import load_prices
from afbatch.spec import SamplingSpec, load_job
from support import BASE_JOB


@pytest.mark.parametrize(
    "value, says", [([], "empty list"), ([0, 5], "at least 1"), ([5, 5], "repeats a count")]
)
def test_a_bad_samples_list_is_refused(value, says):
    with pytest.raises(ValidationError, match=says):
        SamplingSpec(samples=value)


def _grid(make_job, samples, name):
    loaded = load_job(make_job(BASE_JOB + f"\n[sampling]\nsamples = {samples}\n", name=name))
    return loaded, list(conversations(load_grid(loaded), loaded.job.models[0]))


def test_each_sample_count_is_a_condition_with_conversations_of_its_own(make_job):
    _, axis = _grid(make_job, "[1, 2]", "axis.toml")
    _, two = _grid(make_job, "2", "two.toml")
    _, one_list = _grid(make_job, "[2]", "list.toml")
    # 3 prompts x 2 tiers x 2 variants, under 1 and under 2 samples
    assert len(axis) == 3 * 2 * 2 * (1 + 2) and len({c.id for c in axis}) == len(axis)
    assert {c.samples for c in axis} == {1, 2}
    by_count = {n: [c for c in axis if c.samples == n] for n in (1, 2)}
    assert [c.sample for c in by_count[1]] == [0] * 12
    # separate conditions: the 1-sample condition never shares the 2-sample one's first sample,
    # and neither shares a conversation with the job of that single count
    assert not {c.id for c in by_count[1]} & {c.id for c in by_count[2]}
    assert not {c.id for c in by_count[2]} & {c.id for c in two}
    # a single count, as a number or a one-element list, keeps the ids it always had
    assert [c.id for c in one_list] == [c.id for c in two]
    assert all(c.samples == 2 for c in two)


def test_a_scalar_job_keeps_its_conversation_ids(make_job):
    loaded, convs = _grid(make_job, "2", "two.toml")
    grid, model = load_grid(loaded), loaded.job.models[0]
    import hashlib

    from afbatch.protocol import render_user

    c = convs[-1]
    variant = grid.variant(c.variant)
    sha = hashlib.sha256(grid.systems[c.variant].encode()).hexdigest()
    user = render_user(grid.template, c.tier, c.user_input, loaded.job.prompts.tier_format)
    # the id of the grammar before a samples axis existed: the same fields, nothing appended
    fields = (
        model.provider,
        model.model,
        c.variant,
        sha,
        str(c.prompt_index),
        str(c.sample),
        repr(c.temperature),
        str(loaded.job.max_tokens_for(model)),
        variant.prefill_text,
        user,
    )
    assert c.id == "c" + ids.text_digest(*fields, length=20)


def test_the_estimate_has_a_row_per_sample_count(make_job):
    prices = load_prices()
    judge = (
        '\n[judge]\ncompliance_template = "judges/compliance.txt"\n[judge.model]\n'
        'provider = "openai"\nmodel = "gpt-4o-mini"\nlabel = "judge"\n'
    )
    body = BASE_JOB + "\n[sampling]\nsamples = [1, 5]\n" + judge
    loaded = load_job(make_job(body, name="axis.toml"))
    est = estimate_job(loaded, prices, by="condition")
    gen = [r for r in est.rows if r.stage == "generate"]
    assert {(r.variant, r.samples, r.tier) for r in gen} == {
        (v, n, t) for v in ("cot", "no_cot") for n in (1, 5) for t in ("free", "paid")
    }
    for r in gen:
        assert r.requests == 3 * r.samples  # 3 prompts, each asked `samples` times
    assert "haiku cot/free samples=5 " in format_estimate(est)
    assert all(r["samples"] in (1, 5) for r in est.as_json()["rows"] if r["stage"] == "generate")
    # the compliance judge reads every conversation of both conditions: 3 x 2 x 2 x 6
    comp = next(r for r in estimate_job(loaded, prices).rows if r.stage == "judge_compliance")
    assert comp.requests == 3 * 2 * 2 * 6
    scalar = estimate_job(load_job(make_job(BASE_JOB, name="one.toml")), prices)
    assert all("samples" not in r for r in scalar.as_json()["rows"])


def _conv() -> pd.DataFrame:
    """One model, no-CoT, both tiers; prompt p asked under its condition's sample count."""
    rows = []
    for count, complied_free in ((1, [True]), (2, [True, False])):
        for tier, complied in (("free", complied_free), ("paid", [False] * count)):
            for p in range(2):
                for s in range(count):
                    rows.append(
                        {
                            "model": "m",
                            "variant": "v",
                            "cot": False,
                            "tier": tier,
                            "prompt_index": p,
                            "sample": s,
                            "samples": count,
                            "temperature": 1.0,
                            "status": "finished",
                            "proxy_compliant": complied[s],
                        }
                    )
    return pd.DataFrame(rows)


def test_every_report_table_is_keyed_by_the_sample_count():
    conv = _conv()
    s = report.summarize(conv)
    assert list(zip(s.samples, s.tier, s.n)) == [
        (1, "free", 2),
        (1, "paid", 2),
        (2, "free", 4),
        (2, "paid", 4),
    ]
    # by hand: 1 sample: free 2/2 complied; 2 samples: free 2/4
    assert list(s.proxy_compliance) == [1.0, 0.0, 0.5, 0.0]
    g = report.compliance_gaps(conv)
    assert list(zip(g.samples, g.gap_proxy)) == [(1, 1.0), (2, 0.5)]
    conv.loc[conv.tier == "paid", "status"] = "failed"
    f = report.failures(conv)
    assert sorted(f.samples) == [1, 2]
    md = report.render(conv, "markdown")
    assert "| model | variant | samples | tier |" in md  # summary and failures show the axis
    assert "| model | variant | samples | finished" in md  # and the gaps
    one = report.render(conv[conv.samples == 2], "markdown")
    assert "| samples |" not in one  # one count: the column would repeat a value


def test_power_with_a_samples_axis_sizes_the_smallest_count(make_job):
    from afbatch.power import plan, prompts_needed

    prices = load_prices()
    loaded = load_job(make_job(BASE_JOB + "\n[sampling]\nsamples = [1, 3]\n", name="axis.toml"))
    p = plan(loaded, lambda one: estimate_job(one, prices), 0.1, base_rate=0.5, icc=0.5)
    (row,) = p.rows
    # the 1-sample condition needs the most prompts; every prompt is asked 1 + 3 times in each
    # of the 2 variants x 2 tiers
    assert (row.samples, row.prompts) == (1, prompts_needed(0.5, 0.1, 1, 0.5))
    assert row.conversations == row.prompts * (1 + 3) * 2 * 2
    assert row.job_prompts == 3
    assert any("samples axis [1, 3]" in n for n in p.notes)


def test_the_observed_icc_is_within_each_condition():
    from afbatch.power import observed

    # per condition, the samples of a prompt agree (ICC 1); pooled by prompt across the two
    # conditions they would disagree (prompt 0: 1, 1, 0, 0, 0)
    rows = [
        {
            "model": "m",
            "variant": "v",
            "tier": "free",
            "temperature": 1.0,
            "samples": n,
            "prompt_index": p,
            "sample": s,
            "status": "finished",
            "proxy_compliant": (p == 0) == (n == 2),
        }
        for n in (2, 3)
        for p in (0, 1)
        for s in range(n)
    ]
    assert observed(pd.DataFrame(rows))["m"]["icc"] == pytest.approx(1.0)
