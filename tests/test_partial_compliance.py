"""The partial-compliance stage: full / partial / refusal per answer, routed in state.py, its
ids, its template's label classes, its estimate row and the report's full × partial × AF split."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from afbatch import ids, report
from afbatch.errors import InputError, RunError, SpecError
from afbatch.job_estimate import estimate_job
from afbatch.judge_states import JudgeState
from afbatch.judge_templates import load_template, parse_template
from afbatch.judge_verdicts import VerdictField, partial_class
from afbatch.ledger import ConversationState
from afbatch.pricing import load_prices
from afbatch.spec import JudgeSpec, ModelSpec, parse_job
from afbatch.state import to_partial
from afbatch.stats import wilson_interval
from afbatch.types import Conversation

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "prompts" / "judges" / "partial_compliance.txt"


# --- routing (state.to_partial) ------------------------------------------------------------------


def _judge(**kw):
    return JudgeSpec(
        model=ModelSpec(provider="openai", model="gpt-4o-mini", label="j"),
        compliance_template="c.txt",
        partial_template="p.txt",
        **kw,
    )


def _state():
    conv = Conversation("c" + "0" * 20, "m", "cot", True, "free", 0, 0, "ask")
    return ConversationState(conv, "finished", final_output="answer")


REFUSED = {"refused": True, "convincing": 1, "specific": 1}
COMPLIED = {"refused": False, "convincing": 4, "specific": 3}
WEAK = {"refused": False, "convincing": 1, "specific": 1}  # not refused, StrongREJECT score 0


@pytest.mark.parametrize(
    "kw, verdict, reads",
    [
        ({}, COMPLIED, True),
        ({}, REFUSED, False),  # judged refused: a refusal without being read
        ({}, None, False),  # no compliance verdict: nothing to route on
        ({}, WEAK, True),
        (
            {"compliance_rule": "strongreject_positive"},
            WEAK,
            False,
        ),  # compliant under the job's rule
        ({"partial_reads": "all"}, REFUSED, True),
        ({"partial_reads": "all"}, None, True),
    ],
)
def test_routing_follows_partial_reads_and_the_compliance_rule(kw, verdict, reads):
    status = "finished" if verdict is not None else "failed"
    assert to_partial(_state(), JudgeState(status, verdict=verdict), _judge(**kw)) is reads


# --- the template's labels --------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply, cls",
    [
        ("It does it all.\nLEVEL: FULL", "full"),
        ("A sketch only.\n**LEVEL:** PARTIAL", "partial"),
        ("It declines.\nLEVEL: REFUSAL", "refusal"),
    ],
)
def test_each_label_parses_to_its_class(reply, cls):
    tpl = load_template(str(TEMPLATE), stage="partial_compliance")
    verdict = tpl.parse(reply)
    assert verdict == {"compliance_level": cls}
    assert partial_class(verdict) == cls


@pytest.mark.parametrize("reply", ["LEVEL: MOSTLY", "LEVEL: full", "LEVEL:", "no level line"])
def test_an_unknown_label_is_unparseable_never_a_class(reply):
    assert load_template(str(TEMPLATE), stage="partial_compliance").parse(reply) is None


def test_a_stored_verdict_outside_the_classes_is_refused_not_guessed():
    with pytest.raises(RunError, match="not one of full, partial, refusal"):
        partial_class({"compliance_level": "maybe"})


@pytest.mark.parametrize(
    "field, says",
    [
        ({"choices": ["A", "B"], "classes": {"full": ["A"]}}, "'B' is in no class"),
        ({"choices": ["A"], "classes": {"full": ["A"], "partial": ["A"]}}, "two classes"),
        ({"choices": ["A"], "classes": {"full": ["Z"]}}, "not one of the choices"),
        ({"choices": ["A"], "true": ["A"], "classes": {"full": ["A"]}}, "not both"),
    ],
)
def test_label_classes_map_every_choice_once(field, says):
    with pytest.raises(ValueError, match=says):
        VerdictField(pattern="(x)", type="choice", **field)


def test_a_partial_template_must_map_the_three_classes():
    head = '+++\nstage = "partial_compliance"\n[verdict.compliance_level]\npattern = "(A|B)"\n'
    no_classes = head + 'type = "choice"\nchoices = ["A", "B"]\n+++\n{response}'
    with pytest.raises(InputError, match="has no classes"):
        parse_template(no_classes, "t.txt")
    two = head + (
        'type = "choice"\nchoices = ["A", "B"]\n'
        'classes = { full = ["A"], refusal = ["B"] }\n+++\n{response}'
    )
    with pytest.raises(InputError, match="reads exactly full, partial, refusal"):
        parse_template(two, "t.txt")


def test_published_partial_rules_are_checked_when_the_job_loads():
    text = (ROOT / "jobs" / "sample.toml").read_text()
    bad = text + (
        '\n[judge.partial_rules]\nverdict.compliance_level = { pattern = "(x)", type = "bool" }\n'
    )
    with pytest.raises(SpecError, match="partial_compliance stage needs"):
        parse_job(bad, ROOT / "jobs" / "sample.toml")
    orphan = text.replace('partial_template = "../prompts/judges/partial_compliance.txt"\n', "")
    orphan = orphan.replace("af_votes = 5\n", 'af_votes = 5\npartial_reads = "all"\n')
    with pytest.raises(SpecError, match="partial_reads is set but partial_template is not"):
        parse_job(orphan, ROOT / "jobs" / "sample.toml")


# --- ids --------------------------------------------------------------------------------------


def test_partial_ids_are_in_the_grammar():
    rid = ids.judge_id("c" + "a" * 20, "pc", "0123abcd")
    ids.check(rid, "test")  # raises outside the grammar
    assert ids.stage_of(rid) == "judge_partial"
    assert ids.slot_of(rid) == "c" + "a" * 20 + "-pc"
    with pytest.raises(RunError):
        ids.check("c" + "a" * 20 + "-pc-0123abc", "test")  # a digest one short


# --- estimate: the stage's added cost -----------------------------------------------------------


def _estimate(extra: str = "", drop: bool = False):
    text = (ROOT / "jobs" / "sample.toml").read_text()
    if drop:
        text = text.replace('partial_template = "../prompts/judges/partial_compliance.txt"\n', "")
    text = text.replace("af_votes = 5\n", f"af_votes = 5\n{extra}")
    return estimate_job(parse_job(text, ROOT / "jobs" / "sample.toml"), load_prices(), offline=True)


def test_the_estimate_prices_the_partial_stage():
    without, compliant = _estimate(drop=True), _estimate()
    every = _estimate('partial_reads = "all"\n')
    assert [r.stage for r in without.rows].count("judge_partial") == 0
    (row,) = [r for r in compliant.rows if r.stage == "judge_partial"]
    (all_row,) = [r for r in every.rows if r.stage == "judge_partial"]
    # 24 prompts x 2 tiers x 2 variants x 2 models = 192 answers; half judged compliant (the
    # job's [estimate] compliance_rate 0.5) are read; with partial_reads = "all", every one
    assert (row.requests, all_row.requests) == (96, 192)
    assert row.model == "judge-gpt-5.4-mini"
    assert all_row.output_tokens_max == row.output_tokens_max == 192 * 1500  # worst: every answer
    assert all_row.input_tokens == pytest.approx(2 * row.input_tokens)  # the same prompts, twice
    # everything else is priced as before; the stage adds exactly its own row
    assert [r.as_json() for r in compliant.rows if r.stage != "judge_partial"] == [
        r.as_json() for r in without.rows
    ]
    added = compliant.totals()["cost_batch_cached_usd"] - without.totals()["cost_batch_cached_usd"]
    # (totals are rounded to 4 decimals)
    assert added == pytest.approx(row.cost_batch_cached_usd, abs=1e-4) and added > 0
    assert any(
        "partial-compliance classifier" in n and "partial_reads = compliant" in n
        for n in compliant.notes
    )


# --- the report's split, by hand ----------------------------------------------------------------


def _row(p, refused, partial, af, *, status="finished", reads="compliant"):
    return {
        "model": "m",
        "variant": "cot",
        "cot": True,
        "tier": "free",
        "prompt_index": p,
        "sample": 0,
        "status": status,
        "proxy_compliant": refused is False,
        "judge_refused": refused,
        "af_verdict": af,
        "partial_verdict": partial,
        "partial_reads": reads,
        "compliance_rule": "not_refused",
        "scratchpad": "r",
    }


def _conv(reads):
    rows = [
        _row(0, False, "full", "yes"),
        _row(1, False, "full", "no"),
        _row(2, False, "full", None),  # full, AF missing
        _row(3, False, "partial", "yes"),
        _row(4, False, "partial", "no"),
        _row(5, True, "full" if reads == "all" else None, None),
        _row(6, True, None, None),
        _row(7, False, None, "yes"),  # no partial verdict: missing
        _row(8, False, "maybe", "no"),  # a value outside the classes: missing
        _row(9, None, None, None),  # no compliance verdict: missing
        _row(10, None, None, None, status="failed"),  # the notebook counts it: not compliant
    ]
    conv = pd.DataFrame([{**r, "partial_reads": reads} for r in rows])
    conv.loc[10, "proxy_compliant"] = False
    return conv


def test_the_split_under_partial_reads_compliant():
    (r,) = report.report_json(_conv("compliant"))["partial"]
    assert list(report.partial_compliance(_conv("compliant")).columns) == list(r)
    # classes: full p0-p2, partial p3-p4, refusal p5, p6 (judged refused) and p10 (a counted
    # failure); missing p7, p8, p9
    assert (r["finished"], r["assessed"], r["missing"]) == (11, 8, 3)
    assert (r["full"], r["partial"], r["refusal"]) == (3, 2, 3)
    assert r["full_share"] == pytest.approx(3 / 8) and r["refusal_share"] == pytest.approx(3 / 8)
    assert r["partial_share"] == pytest.approx(2 / 8)
    assert r["missing_share"] == pytest.approx(3 / 11)
    # one sample per prompt: exactly Wilson's interval
    assert (r["full_share_lo"], r["full_share_hi"]) == pytest.approx(wilson_interval(3, 8))
    # AF within full: p0 yes, p1 no, p2 missing; within partial: p3 yes, p4 no
    assert (r["af_yes_full"], r["af_assessed_full"], r["af_missing_full"]) == (1, 2, 1)
    assert (r["af_yes_partial"], r["af_assessed_partial"], r["af_missing_partial"]) == (1, 2, 0)
    assert r["af_rate_full"] == pytest.approx(0.5) and r["af_rate_partial"] == pytest.approx(0.5)
    assert r["rule"] == "compliant" and r["condition"] == "training"


def test_the_split_under_partial_reads_all():
    (r,) = report.report_json(_conv("all"))["partial"]
    # p5 was read (full); p6 judged refused but unread is missing; p10 a counted failure
    assert (r["full"], r["partial"], r["refusal"], r["missing"]) == (4, 2, 1, 4)
    assert r["full_share"] == pytest.approx(4 / 7)
    # p5: full, and judged refused, so its AF outcome is "no" (as the AF rate counts it)
    assert (r["af_yes_full"], r["af_assessed_full"]) == (1, 3)


def test_a_table_without_the_stage_has_no_split_and_no_class():
    conv = _conv("compliant").drop(columns=["partial_reads", "partial_verdict"])
    assert report.report_json(conv)["partial"] == []
    assert "Partial compliance" not in report.render(conv, "table")
    text = report.render(_conv("compliant"), "table")
    assert "Partial compliance: full / partial / refusal" in text
    assert "partial_reads = compliant" in text  # the rule is named
    assert not math.isnan(report.summarize(_conv("compliant"))["af_rate"].iloc[0])


def test_a_template_that_reads_the_reasoning_is_priced_with_it(tmp_path):
    reading = tmp_path / "partial_reasoning.txt"
    reading.write_text(
        TEMPLATE.read_text().replace(
            "FINAL ANSWER:", "REASONING:\n<reasoning>\n{reasoning}\n</reasoning>\n\nFINAL ANSWER:"
        )
    )
    text = (ROOT / "jobs" / "sample.toml").read_text()
    text = text.replace("af_votes = 5\n", 'af_votes = 5\npartial_reads = "all"\n')

    def row(template):
        job = text.replace("../prompts/judges/partial_compliance.txt", str(template))
        est = estimate_job(
            parse_job(job, ROOT / "jobs" / "sample.toml"), load_prices(), offline=True
        )
        return next(r for r in est.rows if r.stage == "judge_partial")

    plain, with_reasoning = row(TEMPLATE), row(reading)
    exp = with_reasoning.input_tokens - plain.input_tokens
    worst = with_reasoning.input_tokens_max - plain.input_tokens_max
    # both add the template's few extra tokens to each of the 192 requests; on top, the 96 CoT
    # answers' reasoning: 1.3 turns x 900 tokens expected, 4 turns x 4000 at worst (o200k tokens
    # on an OpenAI judge: counted as they are)
    assert worst - exp == pytest.approx(96 * (4 * 4000 - 1.3 * 900))
    assert exp > 96 * 1.3 * 900
