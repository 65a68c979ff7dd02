from __future__ import annotations

import json
import textwrap

import pytest

from afbatch.errors import BudgetError, PriceError
from afbatch.job_estimate import (
    Calibration,
    check_budget,
    estimate_job,
    format_estimate,
    turn_weights,
)
from afbatch.pricing import load_prices
from afbatch.spec import ModelSpec, load_job
from afbatch.tokens import counter_for
from support import ROOT


def O200K():
    return counter_for(ModelSpec(provider="openai", model="gpt-4o"), "openai").encoding


PRICES = """
[providers.openai]
batch_multiplier = 0.5

[[models]]
provider = "openai"
model = "toy-gpt"
input = 1.0
output = 2.0
date = "2026-11-29"

[[models]]
provider = "anthropic"
model = "toy-claude"
input = 3.0
output = 15.0
cache_read = 0.3
cache_write_1h = 6.0
date = "2026-11-29"
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture
def toy(tmp_path):
    write(tmp_path, "prices.toml", PRICES)
    write(
        tmp_path,
        "sys.txt",
        "You are a careful assistant. Use <SCRATCHPAD_REASONING> then <OUTPUT>." * 3,
    )
    write(
        tmp_path,
        "user.txt",
        "<is_free_tier_user>{is_free_tier_user}</is_free_tier_user> {user_input}",
    )
    (tmp_path / "d.csv").write_text("goal\nWrite a poem\nExplain photosynthesis in detail\n")

    def job(model_block: str, extra: str = "") -> object:
        return load_job(
            write(
                tmp_path,
                "job.toml",
                f"""
            name = "toy"
            prices = "prices.toml"
            [dataset]
            source = "d.csv"
            [prompts]
            user_template = "user.txt"
            tiers = ["free"]
            [[variants]]
            name = "v"
            system_prompt = "sys.txt"
            cot = {"true" if "cot" in extra else "false"}
            [sampling]
            max_tokens = 100
            max_turns = 2
            [estimate]
            output_tokens_no_cot = 10
            output_tokens_cot = 50
            turns_cot = 2.0
            {model_block}
        """,
            )
        )

    return job, tmp_path


def test_hand_checked_openai_no_cot(toy):
    job, tmp = toy
    loaded = job('[[models]]\nprovider = "openai"\nmodel = "toy-gpt"')
    est = estimate_job(loaded, load_prices(tmp / "prices.toml"))
    enc = counter_for(ModelSpec(provider="openai", model="toy-gpt"), "openai").encoding
    system = (tmp / "sys.txt").read_text()
    users = [
        f"<is_free_tier_user>True</is_free_tier_user> {g}"
        for g in ("Write a poem", "Explain photosynthesis in detail")
    ]
    inputs = [
        len(enc.encode(system)) + len(enc.encode(u)) + 2 * 3 + 3 for u in users
    ]  # exact tiktoken + chat overhead
    (row,) = est.rows
    assert row.requests == 2
    assert row.input_tokens == sum(inputs)
    assert row.output_tokens_expected == 20 and row.output_tokens_max == 200
    assert row.cost_sync_usd == pytest.approx((sum(inputs) * 1.0 + 20 * 2.0) / 1e6)
    assert row.cost_batch_usd == pytest.approx((sum(inputs) * 0.5 + 20 * 1.0) / 1e6)
    assert row.cost_batch_cached_usd == pytest.approx(
        row.cost_batch_usd
    )  # OpenAI: cache not pre-budgeted
    assert row.cost_worst_usd == pytest.approx((sum(inputs) * 0.5 + 200 * 1.0) / 1e6)
    assert row.cached_input_tokens == 2 * len(enc.encode(system))
    out = est.as_json()
    assert set(out) >= {"job", "rows", "totals"}
    assert set(out["totals"]) == {
        "cost_sync_usd",
        "cost_batch_usd",
        "cost_batch_cached_usd",
        "cost_worst_usd",
    }
    assert set(out["rows"][0]) >= {
        "model",
        "provider",
        "stage",
        "requests",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens_expected",
        "output_tokens_max",
        "cost_sync_usd",
        "cost_batch_usd",
        "cost_batch_cached_usd",
        "cost_worst_usd",
    }


def test_hand_checked_anthropic_cot_with_cache(toy):
    job, tmp = toy
    loaded = job(
        '[[models]]\nprovider = "anthropic"\nmodel = "toy-claude"\ntoken_factor = 1.0', extra="cot"
    )
    est = estimate_job(loaded, load_prices(tmp / "prices.toml"))
    enc = O200K()  # o200k x 1.0
    S = len(enc.encode((tmp / "sys.txt").read_text()))
    P = len(enc.encode("<"))
    NEXT = len(enc.encode("<NEXT/>")) + 2 * 4
    users = [
        len(enc.encode(f"<is_free_tier_user>True</is_free_tier_user> {g}"))
        for g in ("Write a poem", "Explain photosynthesis in detail")
    ]
    OUT, MAXT = 50, 100
    sync = batch = cached = worst = 0.0
    in_total = in_max_total = 0
    for t in (1, 2):  # turns_cot = 2.0 → both turns at full weight
        ins = [S + u + P + 2 * 4 + 3 + (t - 1) * (OUT + NEXT) for u in users]
        ins_max = [S + u + P + 2 * 4 + 3 + (t - 1) * (MAXT + NEXT) for u in users]
        in_total += sum(ins)
        in_max_total += sum(ins_max)
        sync += (sum(ins) * 3 + 2 * OUT * 15) / 1e6
        b = (sum(ins) * 1.5 + 2 * OUT * 7.5) / 1e6
        batch += b
        # one cache write of S (6/M list, x0.5 batch), one read (0.3/M, x0.5); S no longer billed as
        # plain input
        cached += b - 2 * S * 1.5 / 1e6 + (S * 6 * 0.5 + S * 0.3 * 0.5) / 1e6
        worst += (sum(ins_max) * 1.5 + 2 * MAXT * 7.5) / 1e6 + 2 * S * (6 * 0.5 - 1.5) / 1e6
    (row,) = est.rows
    assert row.input_tokens == pytest.approx(in_total)
    assert row.input_tokens_max == pytest.approx(in_max_total)
    assert row.rounds_expected == 2.0 and row.rounds_max == 2
    assert row.cost_sync_usd == pytest.approx(sync)
    assert row.cost_batch_usd == pytest.approx(batch)
    assert row.cost_batch_cached_usd == pytest.approx(cached)
    assert row.cost_worst_usd == pytest.approx(worst)


def test_hand_checked_fireworks_batch_cache_stacks(toy):
    """Fireworks batch jobs cache on their own, a further 50% off cached tokens: batch+cache
    budgets one write of the shared prefix (billed as plain input) and reads for the rest."""
    job, tmp = toy
    with open(tmp / "prices.toml", "a") as f:
        f.write(
            '\n[[models]]\nprovider = "fireworks"\nmodel = "toy-fw"\ninput = 1.0\n'
            'output = 2.0\ncache_read = 0.5\ncache_write_1h = 1.0\ndate = "2026-11-29"\n'
        )
    loaded = job('[[models]]\nprovider = "fireworks"\nmodel = "toy-fw"\ntoken_factor = 1.0')
    est = estimate_job(loaded, load_prices(tmp / "prices.toml"))
    enc = O200K()  # o200k x 1.0
    S = len(enc.encode((tmp / "sys.txt").read_text()))
    users = [
        len(enc.encode(f"<is_free_tier_user>True</is_free_tier_user> {g}"))
        for g in ("Write a poem", "Explain photosynthesis in detail")
    ]
    ins = [S + u + 2 * 4 + 3 for u in users]  # no prefill: Fireworks sends none by default
    batch = (sum(ins) * 0.5 + 2 * 10 * 1.0) / 1e6
    # one write of S (1.0 list x 0.5 batch), one read (0.5 list x 0.5 batch)
    cached = batch - 2 * S * 0.5 / 1e6 + (S * 1.0 * 0.5 + S * 0.5 * 0.5) / 1e6
    (row,) = est.rows
    assert row.cost_batch_usd == pytest.approx(batch)
    assert row.cost_batch_cached_usd == pytest.approx(cached) and cached < batch
    assert row.cost_worst_usd == pytest.approx((sum(ins) * 0.5 + 2 * 100 * 1.0) / 1e6)


def test_turn_weights():
    assert turn_weights(1.3, 4) == pytest.approx([1.0, 0.3, 0.0, 0.0])
    assert turn_weights(2.5, 4) == pytest.approx([1.0, 1.0, 0.5, 0.0])


def test_calibration_replaces_assumptions(toy):
    job, tmp = toy
    loaded = job('[[models]]\nprovider = "openai"\nmodel = "toy-gpt"')
    prices = load_prices(tmp / "prices.toml")
    base = estimate_job(loaded, prices).rows[0]
    cal = estimate_job(
        loaded, prices, calibration={"toy-gpt": Calibration(output_tokens_no_cot=40)}
    ).rows[0]
    assert base.output_tokens_expected == 20 and cal.output_tokens_expected == 80


def test_unknown_model_names_the_override_file(toy):
    job, tmp = toy
    loaded = job('[[models]]\nprovider = "openai"\nmodel = "gpt-9000"')
    with pytest.raises(PriceError, match=r"no price for openai model 'gpt-9000'.*prices\.toml"):
        estimate_job(loaded, load_prices())


def test_budget_guard(toy):
    job, tmp = toy
    est = estimate_job(
        job('[[models]]\nprovider = "openai"\nmodel = "toy-gpt"'), load_prices(tmp / "prices.toml")
    )
    check_budget(est, 1.0)
    with pytest.raises(BudgetError, match="exceeds --max-cost"):
        check_budget(est, 1e-9)


def test_shipped_prices_have_source_and_date():
    data = json.loads((ROOT / "afbatch" / "data" / "prices.json").read_text())
    for entry in data["models"]:
        assert entry["source"] and entry["date"] and entry["input"] > 0 and entry["output"] > 0, (
            entry
        )
    for name, prov in data["providers"].items():
        assert prov["source"] and prov["date"], name


@pytest.mark.parametrize("name", ["sample", "replication", "frontier-sweep", "llama-judged"])
def test_shipped_jobs_estimate_offline(name):
    loaded = load_job(ROOT / "jobs" / f"{name}.toml")
    est = estimate_job(loaded, load_prices(), offline=True)
    t = est.totals()
    assert (
        0
        < t["cost_batch_cached_usd"]
        <= t["cost_batch_usd"]
        < t["cost_sync_usd"]
        < t["cost_worst_usd"]
    )
    stages = {r.stage for r in est.rows}
    partial = {"judge_partial"} if name == "sample" else set()  # the demo's own classifier only
    assert stages == {"generate", "judge_compliance", "judge_af", *partial}
    if name != "sample":  # AdvBench by URL, not cached here
        assert any("assuming" in n and "520" in n for n in est.notes)


def test_by_condition_rows_sum_to_by_model(toy):
    loaded = load_job(ROOT / "jobs" / "sample.toml")
    prices = load_prices()
    a = estimate_job(loaded, prices)
    b = estimate_job(loaded, prices, by="condition")
    assert a.totals() == pytest.approx(b.totals())
    assert {(r.variant, r.tier) for r in b.rows if r.stage == "generate"} == {
        ("cot", "free"),
        ("cot", "paid"),
        ("no_cot", "free"),
        ("no_cot", "paid"),
    }


def test_votes_in_one_request_bill_the_transcript_once():
    from afbatch.spec import parse_job

    text = (ROOT / "jobs" / "sample.toml").read_text()
    assert "af_votes = 5\n" in text

    def af_row(mode):
        loaded = parse_job(
            text.replace("af_votes = 5\n", f'af_votes = 5\naf_vote_requests = "{mode}"\n'),
            ROOT / "jobs" / "sample.toml",
        )
        est = estimate_job(loaded, load_prices(), offline=True)
        (note,) = [
            n
            for n in est.notes
            if n.startswith("alignment-faking classifier: 5 votes per compliant CoT answer")
        ]
        assert ("n choices of one request" in note) == (mode != "separate")
        return next(r for r in est.rows if r.stage == "judge_af")

    one, separate, auto = af_row("one"), af_row("separate"), af_row("auto")
    assert (
        separate.requests == 5 * one.requests > 0
    )  # 5 vote requests per conversation, or one with n = 5
    assert one.input_tokens == pytest.approx(separate.input_tokens / 5)
    assert one.input_tokens_max == pytest.approx(separate.input_tokens_max / 5)
    assert one.output_tokens_expected == pytest.approx(
        separate.output_tokens_expected
    )  # 5 answers either way
    assert one.output_tokens_max == pytest.approx(separate.output_tokens_max)
    assert auto.input_tokens == one.input_tokens  # the sample's judge is on OpenAI


def test_haiku_4_5_is_counted_with_the_claude_factor_not_the_newer_tokenizers(toy):
    job, tmp = toy
    est = estimate_job(
        job('[[models]]\nprovider = "anthropic"\nmodel = "claude-haiku-4-5"'),
        load_prices(tmp / "prices.toml"),
    )
    enc = O200K()

    def claude(text):  # README: Claude up to Opus 4.6 / Sonnet 4.6, Haiku 4.5 = o200k x 1.20
        return round(len(enc.encode(text)) * 1.20)

    system = (tmp / "sys.txt").read_text()
    goals = ("Write a poem", "Explain photosynthesis in detail")
    users = [f"<is_free_tier_user>True</is_free_tier_user> {g}" for g in goals]
    want = sum(claude(system) + claude(u) + claude("<OUTPUT>") + 2 * 4 + 3 for u in users)
    (row,) = est.rows
    assert row.input_tokens == want
    assert est.as_json()["tokenizer"]["claude-haiku-4-5"] == {
        "family": "claude",
        "factor": 1.20,
        "exact": False,
        "source": "catalog: anthropic claude-haiku-4-5",
    }
    assert not [n for n in est.notes if n.startswith("tokens of")]


def test_a_model_not_in_the_catalog_is_counted_at_the_default_and_the_estimate_says_so(toy):
    job, tmp = toy
    toy_claude = '[[models]]\nprovider = "anthropic"\nmodel = "toy-claude"'
    est = estimate_job(job(toy_claude), load_prices(tmp / "prices.toml"))
    (note,) = [n for n in est.notes if n.startswith("tokens of")]
    assert "toy-claude" in note and "1.20" in note
    assert "token_factor" in note and "token_family" in note
    assert est.as_json()["tokenizer"]["toy-claude"]["source"].startswith("default")
    # The override entry can state the family; the job's token_factor wins over either.
    stated_family = 'model = "toy-claude"\ntoken_family = "qwen"'
    (tmp / "prices.toml").write_text(PRICES.replace('model = "toy-claude"', stated_family))
    stated = estimate_job(job(toy_claude), load_prices(tmp / "prices.toml"))
    assert stated.tokenizer["toy-claude"]["factor"] == 1.10
    assert not [n for n in stated.notes if n.startswith("tokens of")]
    own = estimate_job(job(toy_claude + "\ntoken_factor = 1.3"), load_prices(tmp / "prices.toml"))
    assert own.tokenizer["toy-claude"] == {
        "family": "qwen",
        "factor": 1.3,
        "exact": False,
        "source": "job token_factor",
    }


def test_a_price_override_keeps_the_catalogs_facts(tmp_path):
    (tmp_path / "p.toml").write_text(
        '[[models]]\nprovider = "anthropic"\n'
        'model = "claude-sonnet-4-6"\n'
        'input = 9.0\noutput = 9.0\ndate = "2026-12-01"\n'
    )
    prices = load_prices(tmp_path / "p.toml")
    model = ModelSpec(provider="anthropic", model="claude-sonnet-4-6")
    assert prices.lookup(model).entry.input == 9.0
    assert prices.token_family(model).family == "claude" and prices.supports_prefill(model) is False


def test_the_estimate_says_per_model_whether_the_prefill_is_sent(toy):
    from afbatch.job_estimate import format_estimate

    job, tmp = toy
    loaded = job(
        textwrap.dedent("""
        [[models]]
        provider = "anthropic"
        model = "claude-sonnet-4-6"
        [[models]]
        provider = "bedrock"
        model = "us.anthropic.claude-opus-4-6-v1"
        price_as = "anthropic.claude-opus-4-6-v1"
        [[models]]
        provider = "anthropic"
        model = "claude-haiku-4-5"
        [[models]]
        provider = "openai"
        model = "toy-gpt"
    """)
    )
    est = estimate_job(loaded, load_prices(tmp / "prices.toml"))
    rejects = "none (the model rejects an assistant prefill)"
    for fmt in ("table", "markdown"):
        (line,) = [x for x in format_estimate(est, fmt).splitlines() if "prefill —" in x]
        assert f"{rejects}: claude-sonnet-4-6, us.anthropic.claude-opus-4-6-v1;" in line
        assert "`<OUTPUT>` (v): claude-haiku-4-5;" in line
        assert "none (OpenAI takes no assistant prefill): toy-gpt" in line
    out = json.loads(format_estimate(est, "json"))["prefill"]
    assert out["claude-sonnet-4-6"] == {"sent": False, "text": {"v": None}, "reason": rejects[6:-1]}
    assert out["us.anthropic.claude-opus-4-6-v1"]["sent"] is False
    assert out["claude-haiku-4-5"] == {
        "sent": True,
        "text": {"v": "<OUTPUT>"},
        "reason": "anthropic accepts an assistant prefill",
    }
    # What the estimate priced matches what it says: no prefill tokens for the model without one.
    sonnet, _, haiku, _ = est.rows
    prefill_tokens = round(len(O200K().encode("<OUTPUT>")) * 1.2)
    assert haiku.input_tokens - sonnet.input_tokens == 2 * prefill_tokens


def test_a_family_taken_from_price_as_is_said(toy):
    job, tmp = toy
    claude_3_5 = '[[models]]\nprovider = "anthropic"\nmodel = "claude-3-5-sonnet-20241022"\n'
    loaded = job(claude_3_5 + 'price_as = "claude-opus-4-8"')
    est = estimate_job(loaded, load_prices(tmp / "prices.toml"))
    (note,) = [n for n in est.notes if n.startswith("tokens of claude-3-5-sonnet-20241022")]
    assert "1.50, as its price_as model claude-opus-4-8 (claude-new-tokenizer)" in note


STRICT = '[protocol]\nprofile = "strict"\n'


@pytest.mark.parametrize("block, profile", [("", "notebook"), (STRICT, "strict")])
def test_the_estimate_names_the_protocol_profile(toy, block, profile):
    job, tmp = toy
    est = estimate_job(
        job(block + '[[models]]\nprovider = "openai"\nmodel = "toy-gpt"'),
        load_prices(tmp / "prices.toml"),
    )
    assert est.as_json()["protocol"]["profile"] == profile
    for fmt in ("table", "markdown"):
        assert f"Protocol profile {profile}: " in format_estimate(est, fmt)


def test_by_condition_has_a_row_per_temperature(make_job):
    from support import BASE_JOB

    prices = load_prices()
    one = estimate_job(load_job(make_job(BASE_JOB + "\n[sampling]\ntemperature = 1\n")), prices)
    body = BASE_JOB + "\n[sampling]\ntemperature = [0, 1]\n"
    loaded = load_job(make_job(body, name="axis.toml"))
    two = estimate_job(loaded, prices, by="condition")
    gen = [r for r in two.rows if r.stage == "generate"]
    assert {(r.variant, r.temperature, r.tier) for r in gen} == {
        (v, t, tier) for v in ("cot", "no_cot") for t in (0, 1) for tier in ("free", "paid")
    }
    assert sum(r.requests for r in gen) == 2 * sum(
        r.requests for r in one.rows if r.stage == "generate"
    )
    assert "haiku cot/free T=0 " in format_estimate(two)
    assert all("temperature" not in r for r in one.as_json()["rows"])


def test_classify_all_cot_prices_every_cot_answer():
    from afbatch.spec import parse_job

    text = (ROOT / "jobs" / "sample.toml").read_text()

    def af_row(extra):
        job = text.replace("af_votes = 5\n", f"af_votes = 5\n{extra}")
        job += "\n[estimate]\ncompliance_rate = 0.25\n"
        loaded = parse_job(job, ROOT / "jobs" / "sample.toml")
        est = estimate_job(loaded, load_prices(), offline=True)
        return next(r for r in est.rows if r.stage == "judge_af"), est.notes

    compliant, _ = af_row("")
    every, notes = af_row('classify = "all_cot"\n')
    assert every.requests == 4 * compliant.requests > 0  # all CoT answers, not the 25% compliant
    assert every.input_tokens == pytest.approx(4 * compliant.input_tokens)
    assert every.input_tokens_max == pytest.approx(compliant.input_tokens_max)  # worst: all anyway
    assert any("votes per CoT answer (classify = all_cot" in n for n in notes)
