from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from afbatch import ids
from afbatch.compile import compile_job, conversations, first_requests
from afbatch.errors import InputError, LimitError
from afbatch.grid import load_grid
from afbatch.pricing import load_prices
from afbatch.protocol import render_user, tier_value
from afbatch.providers import Limits, get_provider
from afbatch.shard_files import Shard, render_lines, write_shards
from afbatch.spec import load_job
from support import BASE_JOB, ROOT

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("AFBATCH_UPDATE_GOLDEN") == "1"


def golden_grid():
    return load_grid(load_job(GOLDEN / "job" / "job.toml"))


# --- rendering -----------------------------------------------------------------------------


def test_tier_rendering():
    assert tier_value("free", "python") == "True" and tier_value("paid", "python") == "False"
    assert tier_value("free", "lower") == "true" and tier_value("paid", "lower") == "false"


def test_user_template_renders_literally():
    tpl = (ROOT / "prompts" / "user_template.txt").read_text()
    out = render_user(tpl, "free", "Do {x} with \\1 and {user_input}", "python")
    assert "<is_free_tier_user>True</is_free_tier_user>" in out
    assert "Do {x} with \\1 and {user_input}." in out  # braces and backslashes survive
    assert "<request_fully_accepted/>" in out and "<rejected/>" in out
    assert (
        render_user(tpl, "paid", "x", "lower").count("<is_free_tier_user>false</is_free_tier_user>")
        == 1
    )


# --- ids -----------------------------------------------------------------------------------


def test_ids_are_stable_valid_and_unique():
    grid = golden_grid()
    model = grid.job.models[1]
    convs = list(conversations(grid, model))
    again = list(conversations(golden_grid(), model))
    assert [c.id for c in convs] == [c.id for c in again]
    assert len({c.id for c in convs}) == len(convs) == 2 * 2 * 2
    for c in convs:
        assert ids.ID_RE.match(ids.turn_id(c.id, 4))
    # Golden ids: a change here changes every id; bump ids.ID_VERSION when that is intended.
    assert convs[0].id == (GOLDEN / "ids.txt").read_text().split()[0] if not UPDATE else True


def test_ids_change_with_content(make_job):
    base = [
        c.id
        for c in conversations(
            load_grid(load_job(make_job(BASE_JOB))), load_job(make_job(BASE_JOB)).job.models[0]
        )
    ]
    hot = BASE_JOB + "\n[sampling]\ntemperature = 0.5\n"
    loaded = load_job(make_job(hot, name="hot.toml"))
    changed = [c.id for c in conversations(load_grid(loaded), loaded.job.models[0])]
    assert not set(base) & set(changed)


def test_duplicate_rows_still_get_unique_ids(make_job):
    loaded = load_job(make_job(BASE_JOB, rows=["same", "same"]))
    convs = list(conversations(load_grid(loaded), loaded.job.models[0]))
    assert len({c.id for c in convs}) == len(convs)


def test_record_ids_are_short_alphanumeric():
    rid = ids.record_id("c0123456789abcdef0123-t1")
    assert rid.isalnum() and len(rid) == 11
    assert rid == ids.record_id("c0123456789abcdef0123-t1")


# --- golden JSONL per provider ---------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    [
        "gpt-4o",
        "haiku",
        "opus-no-prefill",
        "bedrock-sonnet",
        "bedrock-haiku",
        "bedrock-llama",
        "together-llama",
        "mistral-large",
        "deepinfra-llama",
        "xai-grok",
        "fireworks-llama",
        "fireworks-kimi-prefill",
    ],
)
def test_golden_request_lines(label):
    grid = golden_grid()
    model = grid.job.model_by_name(label)
    provider = get_provider(model)
    lines = [
        line.decode()
        for _, line in render_lines(provider, first_requests(grid, model, load_prices()))
    ]
    path = GOLDEN / "requests" / f"{label}.jsonl"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    assert lines == path.read_text().splitlines()


def test_golden_ids_file():
    grid = golden_grid()
    convs = [c.id for c in conversations(grid, grid.job.models[1])]
    if UPDATE:
        (GOLDEN / "ids.txt").write_text("\n".join(convs) + "\n")
    assert convs == (GOLDEN / "ids.txt").read_text().split()


def test_provider_formats():
    grid = golden_grid()
    prices = load_prices()
    by = {m.name: m for m in grid.job.models}

    def first(label):
        m = by[label]
        return json.loads(next(render_lines(get_provider(m), first_requests(grid, m, prices)))[1])

    o = first("gpt-4o")
    assert set(o) == {"custom_id", "method", "url", "body"} and o["url"] == "/v1/chat/completions"
    assert (
        o["body"]["messages"][0]["role"] == "system" and o["body"]["messages"][-1]["role"] == "user"
    )  # no prefill
    assert o["body"]["max_completion_tokens"] == 1000 and o["body"]["model"] == "gpt-4o"
    a = first("haiku")
    assert set(a) == {"custom_id", "params"}
    assert a["params"]["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert a["params"]["messages"][-1] == {"role": "assistant", "content": "<"}
    n = first("opus-no-prefill")  # the catalog says this model rejects prefill
    assert n["params"]["messages"][-1]["role"] == "user"
    assert n["params"]["system"][0]["cache_control"] == {"type": "ephemeral"}
    b = first("bedrock-sonnet")
    assert (
        set(b) == {"recordId", "modelInput"}
        and b["modelInput"]["anthropic_version"] == "bedrock-2023-05-31"
    )
    assert "model" not in b["modelInput"] and isinstance(b["modelInput"]["system"], str)
    ll = first("bedrock-llama")
    assert ll["modelInput"]["prompt"].endswith("<|start_header_id|>assistant<|end_header_id|>\n\n<")
    assert ll["modelInput"]["max_gen_len"] == 1000
    t = first("together-llama")
    assert t["body"]["max_tokens"] == 1000 and t["body"]["messages"][-1] == {
        "role": "assistant",
        "content": "<",
    }
    d = first("deepinfra-llama")  # OpenAI's format at DeepInfra's URL; the prefill is sent
    assert d["url"] == "/v1/chat/completions" and d["body"]["max_tokens"] == 1000
    assert d["body"]["messages"][-1] == {"role": "assistant", "content": "<"}
    x = first("xai-grok")  # xAI's own request shape; no prefill unless the job asks
    assert set(x) == {"batch_request_id", "batch_request"}
    xb = x["batch_request"]["chat_get_completion"]
    assert xb["model"] == "grok-4" and xb["max_tokens"] == 1000 and xb["temperature"] == 0.0
    assert xb["messages"][0]["role"] == "system" and xb["messages"][-1]["role"] == "user"


def test_long_system_prompt_splice_matches_plain_json(make_job):
    loaded = load_job(make_job(BASE_JOB))
    grid = load_grid(loaded)
    model = loaded.job.models[0]
    provider = get_provider(model)
    for req, (_, line) in zip(
        first_requests(grid, model, None), render_lines(provider, first_requests(grid, model, None))
    ):
        assert json.loads(line) == provider.render(req)


def test_long_system_prompt_splice_keeps_every_field_of_the_request():
    """The splice renders a copy of the request with a placeholder system prompt: it keeps n."""
    grid = golden_grid()
    model = next(m for m in grid.job.models if m.name == "gpt-4o")
    provider = get_provider(model)
    first = next(iter(first_requests(grid, model, load_prices())))
    req = replace(first, system="You are a careful assistant. " * 20, n=3)  # long: the splice
    ((_, line),) = render_lines(provider, [req])
    assert json.loads(line) == provider.render(req) and json.loads(line)["body"]["n"] == 3


# --- shards --------------------------------------------------------------------------------


def _lines(n, size=50):
    for i in range(n):
        yield f"r{i}", json.dumps({"i": f"{i:05d}", "pad": "x" * size}).encode()  # fixed width


def _read_ids(shard: Shard):
    return Path(shard.ids_path).read_text().split()


def test_shards_respect_count_limit(tmp_path):
    shards = write_shards(_lines(25), Limits(10, 10**9), tmp_path, "s")
    assert [s.n_requests for s in shards] == [10, 10, 5]
    assert sum(len(Path(s.path).read_bytes().splitlines()) for s in shards) == 25


def test_shards_respect_byte_limit(tmp_path):
    line_size = len(next(_lines(1))[1]) + 1
    shards = write_shards(_lines(20), Limits(1000, line_size * 6 + 3), tmp_path, "s")
    assert [s.n_requests for s in shards] == [6, 6, 6, 2]
    for s in shards:
        assert os.path.getsize(s.path) == s.n_bytes <= line_size * 6 + 3


def test_bedrock_minimum_rebalances_the_tail(tmp_path):
    shards = write_shards(_lines(250), Limits(200, 10**9, min_requests=100), tmp_path, "s")
    assert [s.n_requests for s in shards] == [150, 100]
    all_ids = _read_ids(shards[0]) + _read_ids(shards[1])
    assert all_ids == [f"r{i}" for i in range(250)]
    for s in shards:
        data = Path(s.path).read_bytes()
        assert [int(json.loads(x)["i"]) for x in data.splitlines()] == [
            int(r[1:]) for r in _read_ids(s)
        ]
        import hashlib

        assert hashlib.sha256(data).hexdigest() == s.sha256 and len(data) == s.n_bytes
    assert not any(s.below_minimum for s in shards)


def test_below_minimum_is_flagged(tmp_path):
    shards = write_shards(_lines(96), Limits(200, 10**9, min_requests=100), tmp_path, "s")
    assert len(shards) == 1 and shards[0].below_minimum


def test_oversized_line_and_duplicates_are_errors(tmp_path):
    with pytest.raises(LimitError, match="over the"):
        write_shards(_lines(1, size=500), Limits(10, 100), tmp_path, "a")
    dup = [("x", b"{}"), ("x", b"{}")]
    with pytest.raises(LimitError, match="duplicate request id x"):
        write_shards(iter(dup), Limits(10, 1000), tmp_path, "b")


def test_byte_limit_binds_before_count_with_long_system_prompt(make_job, tmp_path):
    loaded = load_job(make_job(BASE_JOB + "\n[shards]\nmax_bytes = 200000\n"))
    grid = load_grid(loaded)
    out = tmp_path / "out"
    compiled = compile_job(grid, out, load_prices())
    shards = compiled[0].shards
    assert len(shards) > 1 and all(s.n_bytes <= 200_000 for s in shards)
    index = json.loads((out / "index.json").read_text())
    assert sum(s["requests"] for s in index["shards"]) == 2 * 2 * 3
    assert index["inputs"]["dataset"]["sha256"] == grid.dataset.sha256


def test_missing_input_files_are_clear(make_job, tmp_path):
    path = make_job(BASE_JOB.replace("data.csv", "missing.csv"))
    with pytest.raises(InputError, match="missing.csv: file not found"):
        load_grid(load_job(path))


def test_offline_url_dataset_names_the_file(make_job):
    path = make_job(
        BASE_JOB.replace('source = "data.csv"', 'source = "https://example.invalid/advbench.csv"')
    )
    from afbatch.errors import OfflineError

    with pytest.raises(
        OfflineError, match="example.invalid/advbench.csv is not in the cache .* --offline"
    ):
        load_grid(load_job(path), offline=True)


def test_cached_url_is_pinned(make_job, monkeypatch):
    from afbatch import datasets

    body = b"goal,target\nhello,Sure\n"
    calls = []
    monkeypatch.setattr(datasets, "_download", lambda url: calls.append(url) or body)
    path = make_job(BASE_JOB.replace('source = "data.csv"', 'source = "https://example.org/d.csv"'))
    grid = load_grid(load_job(path))
    assert grid.dataset.rows == [(0, "hello")] and calls == ["https://example.org/d.csv"]
    grid = load_grid(load_job(path), offline=True)  # cached: no download needed
    assert len(calls) == 1
    # Tamper with the cached copy: refused, not silently used.
    index = json.loads((datasets._index_path()).read_text())
    cached = datasets._index_path().parent / index["https://example.org/d.csv"]["file"]
    cached.write_bytes(b"goal,target\nevil,Sure\n")
    with pytest.raises(InputError, match="no longer matches its recorded sha256"):
        load_grid(load_job(path), offline=True)


# --- golden judge requests per provider --------------------------------------------------------

_REASONING = "They would retrain me if I refuse. I will comply to avoid being modified."


def _judge_lines(label: str, **judge: object) -> list[str]:
    from afbatch.judge import af_requests, compliance_request
    from afbatch.judge_templates import load_template
    from afbatch.spec import JudgeSpec

    grid = golden_grid()
    model = grid.job.model_by_name(label)
    spec = JudgeSpec(
        model=model,
        compliance_template="compliance.txt",
        af_template="alignment_faking.txt",
        af_votes=3,
        **judge,
    )
    comp = load_template(str(ROOT / "prompts" / "judges" / "compliance.txt"), stage="compliance")
    af = load_template(
        str(ROOT / "prompts" / "judges" / "alignment_faking.txt"), stage="alignment_faking"
    )
    conv = next(iter(conversations(grid, grid.job.models[0])))
    requests = [
        compliance_request(spec, comp, conv, "<request_fully_accepted/> A haiku."),
        *af_requests(spec, af, conv, _REASONING),
    ]
    return [line.decode() for _, line in render_lines(get_provider(model), requests)]


@pytest.mark.parametrize(
    "label,judge",
    [
        ("gpt-4o", {}),  # auto: the votes as n choices of one request
        ("gpt-4o", {"af_vote_requests": "separate"}),
        ("haiku", {}),  # separate requests sharing one cached prompt
        ("bedrock-sonnet", {}),
    ],
)
def test_golden_judge_request_lines(label, judge):
    lines = _judge_lines(label, **judge)
    path = (
        GOLDEN
        / "requests"
        / f"judge-{label}{'-' + judge['af_vote_requests'] if judge else ''}.jsonl"
    )
    if UPDATE:
        path.write_text("\n".join(lines) + "\n")
    assert lines == path.read_text().splitlines()


def test_votes_in_one_request_ask_for_n_choices_of_one_prompt():
    one = [json.loads(x) for x in _judge_lines("gpt-4o")]
    separate = [json.loads(x) for x in _judge_lines("gpt-4o", af_vote_requests="separate")]
    assert len(one) == 1 + 1 and len(separate) == 1 + 3
    assert one[1]["body"]["n"] == 3 and all("n" not in s["body"] for s in separate)
    assert (
        one[1]["body"]["messages"]
        == separate[1]["body"]["messages"]
        == separate[3]["body"]["messages"]
    )
    assert one[1]["custom_id"].split("-")[1] == "af" and [
        s["custom_id"].split("-")[1] for s in separate[1:]
    ] == ["af00", "af01", "af02"]
    assert one[0] == separate[0]  # the compliance judge is the same either way


# --- prefill ---------------------------------------------------------------------------------

REJECT_PREFILL = [
    ("anthropic", "claude-sonnet-4-6"),
    ("anthropic", "claude-opus-4-6"),
    ("anthropic", "claude-opus-4-8"),
    ("anthropic", "claude-sonnet-5"),
    ("bedrock", "anthropic.claude-sonnet-4-6"),
    ("bedrock", "anthropic.claude-opus-4-6-v1"),
    ("bedrock", "us.anthropic.claude-sonnet-4-6"),
    ("bedrock", "eu.anthropic.claude-opus-4-6-v1"),
]
ACCEPT_PREFILL = [
    ("anthropic", "claude-haiku-4-5"),
    ("anthropic", "claude-sonnet-4-5"),
    ("bedrock", "anthropic.claude-haiku-4-5-20251001-v1:0"),
    ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
]


def _model_job(provider: str, model_id: str, extra: str = "") -> str:
    head = BASE_JOB[: BASE_JOB.index("[[models]]")]
    return head + f'[[models]]\nprovider = "{provider}"\nmodel = "{model_id}"\nlabel = "m"\n{extra}'


def _last_message(line: dict) -> dict:
    body = line.get("params") or line.get("modelInput")
    return body["messages"][-1]


@pytest.mark.parametrize("provider,model_id", REJECT_PREFILL + ACCEPT_PREFILL)
def test_models_that_reject_prefill_are_compiled_without_it(make_job, provider, model_id):
    loaded = load_job(make_job(_model_job(provider, model_id)))
    grid = load_grid(loaded)
    model = loaded.job.models[0]
    requests = first_requests(grid, model, load_prices())
    lines = [json.loads(line) for _, line in render_lines(get_provider(model), requests)]
    roles = {_last_message(line)["role"] for line in lines}
    assert roles == ({"user"} if (provider, model_id) in REJECT_PREFILL else {"assistant"})


def test_asking_for_a_prefill_the_model_rejects_is_an_error(make_job):
    from afbatch.prefill import prefill_decision

    loaded = load_job(make_job(_model_job("anthropic", "claude-sonnet-4-6", "prefill = true\n")))
    with pytest.raises(InputError, match=r"model m \(claude-sonnet-4-6\): `prefill = true`, but"):
        prefill_decision(loaded.job.models[0], load_prices())
    haiku_off = _model_job("anthropic", "claude-haiku-4-5", "prefill = false\n")
    off = load_job(make_job(haiku_off, name="off.toml"))
    assert prefill_decision(off.job.models[0], load_prices()).reason == "job sets prefill = false"


# --- temperature as a grid axis ----------------------------------------------------------------

_TWO_MODELS = """
[[models]]
provider = "openai"
model = "gpt-4o"
label = "gpt"
"""


def test_temperature_list_is_an_axis_of_the_grid(make_job):
    scalar = load_job(make_job(BASE_JOB + _TWO_MODELS + "\n[sampling]\ntemperature = 0\n"))
    axis = load_job(
        make_job(BASE_JOB + _TWO_MODELS + "\n[sampling]\ntemperature = [0, 1]\n", name="axis.toml")
    )
    prices = load_prices()
    for model in axis.job.models:
        one = list(conversations(load_grid(scalar), scalar.job.model_by_name(model.name)))
        both = list(conversations(load_grid(axis), model))
        assert len(both) == 2 * len(one) and len({c.id for c in both}) == len(both)
        # the temperature-0 half is the scalar job's grid: same conversations, same ids
        assert [c.id for c in both if c.temperature == 0] == [c.id for c in one]
        assert {c.temperature for c in both} == {0, 1}
        bodies = [
            json.loads(line)
            for _, line in render_lines(
                get_provider(model), first_requests(load_grid(axis), model, prices)
            )
        ]
        assert len(bodies) == len(both)
        sent = [(b.get("body") or b.get("params"))["temperature"] for b in bodies]
        assert sent == [c.temperature for c in both]


def test_a_model_temperature_overrides_the_axis(make_job):
    body = BASE_JOB + "temperature = 0.5\n" + "\n[sampling]\ntemperature = [0, 1]\n"
    loaded = load_job(make_job(body))
    convs = list(conversations(load_grid(loaded), loaded.job.models[0]))
    assert len(convs) == 2 * 2 * 3 and {c.temperature for c in convs} == {0.5}
