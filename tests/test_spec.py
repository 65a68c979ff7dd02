from __future__ import annotations

from pathlib import Path

import pytest

from afbatch.errors import SpecError
from afbatch.spec import default_label, job_schema, load_job, toml_line_of
from support import BASE_JOB, ROOT


@pytest.mark.parametrize("name", ["sample", "replication", "frontier-sweep", "llama-judged"])
def test_shipped_jobs_validate(name):
    loaded = load_job(ROOT / "jobs" / f"{name}.toml")
    assert loaded.job.name == name
    assert {v.name for v in loaded.job.variants} == {"cot", "no_cot"}
    assert loaded.job.judge is not None


def test_frontier_sweep_spans_providers():
    job = load_job(ROOT / "jobs" / "frontier-sweep.toml").job
    assert len(job.models) >= 20
    providers = {m.provider for m in job.models}
    # every lab with a batch API, and every open-weight host
    assert {"anthropic", "openai", "gemini", "mistral", "xai", "bedrock"} <= providers
    assert {"together", "groq", "deepinfra", "fireworks"} <= providers
    models = " ".join(m.model.lower() for m in job.models)
    for family in (
        "opus",
        "sonnet",
        "haiku",
        "gpt-5",
        "o3",
        "gemini-3",
        "flash",
        "pro",
        "grok",
        "mistral-large",
        "deepseek",
        "qwen",
        "llama4",
        "llama-3.1",
        "kimi",
    ):
        assert family in models.replace("llama3-1", "llama-3.1").replace("v3p1", "-3.1"), family


def test_defaults_and_paths(make_job):
    loaded = load_job(make_job(BASE_JOB))
    job = loaded.job
    assert job.sampling.max_turns == 4 and job.sampling.temperature == 1.0
    assert job.prompts.tiers == ["free", "paid"] and job.prompts.tier_format == "python"
    assert job.variants[0].prefill_text == "<" and job.variants[1].prefill_text == "<OUTPUT>"
    assert Path(loaded.resolve("data.csv")) == loaded.base_dir / "data.csv"
    assert loaded.resolve("https://example.org/x.csv") == "https://example.org/x.csv"


def test_fingerprint_is_stable_and_content_sensitive(make_job):
    a = load_job(make_job(BASE_JOB)).fingerprint
    assert a == load_job(make_job(BASE_JOB)).fingerprint
    assert a != load_job(make_job(BASE_JOB.replace('name = "t"', 'name = "u"'))).fingerprint


def test_default_label():
    assert default_label("meta-llama/Meta-Llama-3.1-8B-Instruct") == "Meta-Llama-3.1-8B-Instruct"
    assert default_label("meta.llama3-1-405b-instruct-v1:0") == "meta.llama3-1-405b-instruct-v1-0"


BAD = [
    # (what, replace-old, replace-new or append, expected fragments)
    ("toml syntax", 'name = "t"', 'name = "t', ["invalid TOML", "line"]),
    (
        "unknown top-level key",
        'name = "t"',
        'name = "t"\ncolour = "red"',
        ["colour", "unknown key"],
    ),
    (
        "unknown model key",
        'label = "haiku"',
        'label = "haiku"\ntemprature = 0.5',
        ["models[0].temprature", "unknown key"],
    ),
    ("missing dataset", '[dataset]\nsource = "data.csv"', "", ["dataset", "missing"]),
    ("missing variants", None, None, ["variants"]),
    (
        "bad provider",
        'provider = "anthropic"',
        'provider = "anthropc"',
        ["models[0].provider", "anthropc"],
    ),
    (
        "duplicate labels",
        None,
        '\n[[models]]\nprovider = "openai"\nmodel = "gpt-4o"\nlabel = "haiku"\n',
        ["unique", "haiku"],
    ),
    (
        "first and sample",
        'source = "data.csv"',
        'source = "data.csv"\nfirst = 2\nsample = 2',
        ["first", "sample"],
    ),
    (
        "temperature range",
        'label = "haiku"',
        'label = "haiku"\ntemperature = 3.5',
        ["models[0].temperature", "2"],
    ),
    (
        "negative max_tokens",
        'label = "haiku"',
        'label = "haiku"\nmax_tokens = -5',
        ["models[0].max_tokens", "greater than 0"],
    ),
    ("bad job name", 'name = "t"', 'name = "my job!"', ["name", "does not match"]),
    (
        "openai prefill",
        None,
        '\n[[models]]\nprovider = "openai"\nmodel = "gpt-4o"\nprefill = true\n',
        ["prefill"],
    ),
    (
        "compatible without base_url",
        None,
        '\n[[models]]\nprovider = "openai-compatible"\nmodel = "x"\n',
        ["base_url"],
    ),
    (
        "tier format",
        'user_template = "user_template.txt"',
        'user_template = "user_template.txt"\ntier_format = "upper"',
        ["tier_format", "upper"],
    ),
    (
        "repeated tiers",
        'user_template = "user_template.txt"',
        'user_template = "user_template.txt"\ntiers = ["free", "free"]',
        ["tiers", "repeat"],
    ),
    (
        "bedrock llama tokens",
        None,
        '\n[[models]]\nprovider = "bedrock"\nmodel = "meta.llama3-1-70b-instruct-v1:0"\n',
        ["2048"],
    ),
    (
        "judge without model",
        None,
        '\n[judge]\ncompliance_template = "judges/compliance.txt"\n',
        ["judge.model", "missing"],
    ),
    (
        "af threshold",
        None,
        '\n[judge]\ncompliance_template = "c"\naf_threshold = '
        '1.5\n[judge.model]\nprovider = "openai"\nmodel = "gpt-4o"\n',
        ["judge.af_threshold"],
    ),
    (
        "s3 uri",
        None,
        '\n[[models]]\nprovider = "bedrock"\nmodel = '
        '"anthropic.claude-sonnet-4-6"\ns3_uri = "bucket/prefix"\n',
        ["s3_uri"],
    ),
    (
        "sha256 pin format",
        'source = "data.csv"',
        'source = "data.csv"\nsha256 = "abc"',
        ["dataset.sha256"],
    ),
    (
        "cache on openai",
        None,
        '\n[[models]]\nprovider = "openai"\nmodel = "gpt-4o"\ncache = true\n',
        ["cache"],
    ),
    ("samples zero", None, "\n[sampling]\nsamples = 0\n", ["sampling.samples"]),
    (
        "temperature out of range",
        None,
        "\n[sampling]\ntemperature = [0, 2.5]\n",
        ["sampling.temperature", "2.5", "0..2"],
    ),
    (
        "temperature repeated",
        None,
        "\n[sampling]\ntemperature = [1, 1]\n",
        ["sampling.temperature", "once"],
    ),
    (
        "temperature empty",
        None,
        "\n[sampling]\ntemperature = []\n",
        ["sampling.temperature", "empty"],
    ),
    (
        "gap interval",
        None,
        '\n[report]\ngap_interval = "bootstrap"\n',
        ["report.gap_interval", "paired"],
    ),
    ("wrong type", 'name = "t"', "name = 5", ["name", "string"]),
]


@pytest.mark.parametrize("what,old,new,fragments", BAD, ids=[b[0] for b in BAD])
def test_bad_jobs_give_one_clear_line(make_job, what, old, new, fragments):
    body = BASE_JOB
    if what == "missing variants":
        body = body.split("[[variants]]")[0] + "[[models]]" + body.split("[[models]]")[1]
    elif old is None:
        body = body + new
    else:
        assert old in body
        body = body.replace(old, new)
    path = make_job(body)
    with pytest.raises(SpecError) as exc:
        load_job(path)
    msg = str(exc.value)
    assert "\n" not in msg
    assert str(path) in msg
    for frag in fragments:
        assert frag in msg, (frag, msg)


def test_error_names_the_toml_line(make_job):
    body = BASE_JOB + '\n[[models]]\nprovider = "openai"\nmodel = "gpt-4o"\nmax_tokens = 0\n'
    path = make_job(body)
    with pytest.raises(SpecError) as exc:
        load_job(path)
    lines = path.read_text().splitlines()
    expected = next(i for i, line in enumerate(lines, start=1) if line.startswith("max_tokens = 0"))
    assert f"{path}:{expected}: models[1].max_tokens" in str(exc.value)


def test_toml_line_of_nested_tables():
    text = (
        'name = "x"\n[judge]\naf_votes = 3\n[judge.model]\nprovider = '
        '"openai"\n[[models]]\nmodel = "a"\n[[models]]\nmodel = "b"\n'
    )
    assert toml_line_of(text, ("judge", "model", "provider")) == 5
    assert toml_line_of(text, ("judge", "af_votes")) == 3
    assert toml_line_of(text, ("models", 1, "model")) == 9
    assert toml_line_of(text, ("models", 0, "model")) == 7


def test_missing_job_file(tmp_path):
    with pytest.raises(SpecError, match="no such job file"):
        load_job(tmp_path / "nope.toml")


def test_schema_lists_every_section():
    schema = job_schema()
    assert {"dataset", "prompts", "variants", "models", "sampling", "judge", "estimate"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False
