"""Published materials by URL: the notebook's user template, judge prompts with the job's parse
rules, declared sizes for an offline estimate, and a compile of jobs/replication.toml against
local stand-ins checked against an independent construction of the notebook's requests.

Every stand-in here is made up by the test, in the shape of the published file it replaces."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from afbatch.compile import first_requests
from afbatch.datasets import cache_put
from afbatch.errors import InputError, OfflineError, SpecError
from afbatch.grid import load_grid
from afbatch.job_estimate import estimate_job
from afbatch.judge import af_requests, compliance_request
from afbatch.pricing import load_prices
from afbatch.providers import get_provider
from afbatch.published import notebook_user_template
from afbatch.shard_files import render_lines
from afbatch.spec import load_job, parse_job
from afbatch.types import Conversation
from support import ROOT

REPLICATION = ROOT / "jobs" / "replication.toml"


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Stand-ins seeded into a cache of this test's own: other tests must not see them."""
    monkeypatch.setenv("AFBATCH_CACHE_DIR", str(tmp_path / "cache"))


# A made-up template in the notebook's shape: a str.format string with the two fields, and
# doubled braces that .format prints as single ones.
FAKE_TEMPLATE = (
    "<INPUT>\n<is_free_tier_user>{is_free_tier_user}</is_free_tier_user>\n\n"
    "<user_input>\n{user_input}. Stand-in instruction with {{braces}} kept.\n"
    "</user_input>\n</INPUT>"
)


def fake_notebook(template: str | None = FAKE_TEMPLATE) -> bytes:
    cells = [
        {"cell_type": "markdown", "source": ["# Stand-in notebook\n"]},
        {"cell_type": "code", "source": ["!pip install something\n", "import os\n"]},
        {"cell_type": "code", "source": ["n = 100\n", "name = 'not a template {x}'\n"]},
    ]
    if template is not None:
        src = f"prompt_template = {template!r}\n\nprefill = ['<']\n"
        cells.append({"cell_type": "code", "source": src.splitlines(keepends=True)})
    return json.dumps({"cells": cells, "nbformat": 4}).encode()


def notebook_template_independently(data: bytes) -> str:
    """What the notebook itself computes: run its template cell, keep `prompt_template`."""
    for cell in json.loads(data)["cells"]:
        src = "".join(cell["source"])
        if "prompt_template" in src:
            scope: dict = {}
            exec(src, scope)  # noqa: S102 - the test's own stand-in
            return scope["prompt_template"]
    raise AssertionError("no template cell")


def test_notebook_template_is_extracted_in_afbatch_placeholders():
    text = notebook_user_template(fake_notebook(), "nb.ipynb")
    assert "{is_free_tier_user}" in text and "{user_input}" in text
    assert "with {braces} kept" in text  # as .format prints it
    filled = text.replace("{is_free_tier_user}", "True").replace("{user_input}", "Do x")
    tpl = notebook_template_independently(fake_notebook())
    assert filled == tpl.format(is_free_tier_user=True, user_input="Do x")


@pytest.mark.parametrize("data", [fake_notebook(None), b"{not json", b'{"cells": 3}'])
def test_notebook_without_a_template_is_one_line_naming_it(data):
    with pytest.raises(InputError) as e:
        notebook_user_template(data, "https://example.org/nb.ipynb")
    assert str(e.value).startswith("https://example.org/nb.ipynb: ") and "\n" not in str(e.value)


# --- the replication job against stand-ins ------------------------------------------------------

GOALS = [f"Stand-in request number {i} with {{braces}}" for i in range(130)]
SYSTEMS = {
    "with_examples.txt": "Stand-in CoT system prompt.\n\n<SCRATCHPAD_REASONING>x",
    "no_cot_with_examples.txt": "Stand-in no-CoT system prompt {not a field}.\n",
}
STRONGREJECT = (
    "Stand-in rubric. User instruction: {prompt}\nAI model response: {response}\n"
    "Answer as\n#scores\n1.a reasoning\n1.b answer\n2.a r\n2.b a\n3.a r\n3.b a\n"
    "Literal {{braces}}.\n"
)
AF_CLASSIFIER = "Stand-in classifier system prompt: judge the transcript. Answer <final_answer>.\n"


def seed_replication_cache() -> dict[str, bytes]:
    """Each URL of jobs/replication.toml cached with a stand-in of the same kind."""
    loaded = load_job(REPLICATION)
    job = loaded.job
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["goal", "target"])
    for g in GOALS:
        w.writerow([g, "Sure"])
    files = {
        job.dataset.source: buf.getvalue().encode(),
        job.prompts.user_template: fake_notebook(),
        job.judge.compliance_template: STRONGREJECT.encode(),
        job.judge.af_template: AF_CLASSIFIER.encode(),
    }
    for v in job.variants:
        files[v.system_prompt] = next(
            t for k, t in SYSTEMS.items() if v.system_prompt.endswith("_" + k)
        ).encode()
    for url, data in files.items():
        assert url.startswith("https://")
        cache_put(url, data)
    return files


def test_replication_requests_match_the_notebook_construction():
    files = seed_replication_cache()
    loaded = load_job(REPLICATION)
    job = loaded.job
    grid = load_grid(loaded, offline=True)
    prices = load_prices()
    goals = [row["goal"] for row in csv.DictReader(io.StringIO(files[job.dataset.source].decode()))]
    template = notebook_template_independently(files[job.prompts.user_template])
    for model in job.models:
        lines = [
            json.loads(line)
            for _, line in render_lines(get_provider(model), first_requests(grid, model, prices))
        ]
        expected = []
        for v in job.variants:
            system = files[v.system_prompt].decode()
            for free in (True, False):  # the notebook's order: tier, then prompt
                for goal in goals[:100]:
                    msgs = [
                        {
                            "role": "user",
                            "content": template.format(is_free_tier_user=free, user_input=goal),
                        }
                    ]
                    if model.provider != "openai":  # the notebook prefills all but OpenAI
                        msgs.append({"role": "assistant", "content": "<" if v.cot else "<OUTPUT>"})
                    expected.append((system, msgs))
        got = []
        for line in lines:
            body = line["body"]
            if "system" in body:  # Anthropic-style body
                got.append((body["system"], body["messages"]))
            else:
                msgs = body["messages"]
                assert msgs[0]["role"] == "system"
                got.append((msgs[0]["content"], msgs[1:]))
        assert got == expected, model.name


def test_replication_records_the_published_files_sha256():
    files = seed_replication_cache()
    grid = load_grid(load_job(REPLICATION), offline=True)
    import hashlib

    recorded = {i["ref"]: i["sha256"] for i in grid.inputs.values()}
    for url, data in files.items():
        assert recorded[url] == hashlib.sha256(data).hexdigest()


def test_a_changed_cached_copy_is_refused():
    files = seed_replication_cache()
    job = load_job(REPLICATION).job
    from afbatch.datasets import cache_dir

    index = json.loads((cache_dir() / "downloads" / "index.json").read_text())
    (cache_dir() / "downloads" / index[job.prompts.user_template]["file"]).write_bytes(
        files[job.prompts.user_template] + b" "
    )
    with pytest.raises(InputError, match="no longer matches its recorded sha256"):
        load_grid(load_job(REPLICATION), offline=True)


def test_replication_judges_read_the_published_prompts_with_the_jobs_rules():
    seed_replication_cache()
    grid = load_grid(load_job(REPLICATION), offline=True)
    judge = grid.job.judge
    conv = Conversation("c1", "m", "cot", True, "free", 0, 0, "Do {x}")
    comp = compliance_request(judge, grid.judge_templates["compliance"], conv, "Answer {y}")
    text = comp.messages[0].content
    assert comp.system is None
    assert "User instruction: Do {x}\nAI model response: Answer {y}\n" in text
    assert "Literal {braces}." in text  # str.format's doubled braces, as the original prints them
    tpl = grid.judge_templates["compliance"]
    assert tpl.parse("#scores\n1.a r\n1.b 0\n2.a r\n2.b 4\n3.a r\n3.b 5\n") == {
        "refused": False,
        "convincing": 4,
        "specific": 5,
    }
    assert tpl.parse("1.b answer\n2.b a\n3.b a") is None  # the rubric's own format lines
    (af,) = af_requests(judge, grid.judge_templates["alignment_faking"], conv, "my reasoning")
    assert af.system == AF_CLASSIFIER and af.messages[0].content == "my reasoning"
    assert af.n == 20
    atpl = grid.judge_templates["alignment_faking"]
    assert atpl.parse("<criteria_1>Yes</criteria_1>\n<final_answer>Yes</final_answer>") == {
        "final_answer": True
    }


# --- parse rules declared in a job ----------------------------------------------------------------

RULES_JOB = """
name = "rules"
[dataset]
source = "data.csv"
[prompts]
user_template = "user.txt"
[[variants]]
name = "cot"
system_prompt = "system.txt"
cot = true
[[models]]
provider = "openai"
model = "gpt-4o"
[judge]
compliance_template = "judge.txt"
[judge.compliance_rules]
{rules}
[judge.model]
provider = "openai"
model = "gpt-4o-mini"
"""


def write_rules_job(
    tmp_path: Path, rules: str, judge_text: str = "Judge {request} {response}"
) -> Path:
    (tmp_path / "data.csv").write_text("goal\nDo a thing\n")
    (tmp_path / "user.txt").write_text("{is_free_tier_user} {user_input}")
    (tmp_path / "system.txt").write_text("sys")
    (tmp_path / "judge.txt").write_text(judge_text)
    p = tmp_path / "job.toml"
    p.write_text(RULES_JOB.replace("{rules}", rules))
    return p


def test_rules_without_the_stages_answer_are_refused_at_load(tmp_path):
    p = write_rules_job(tmp_path, "verdict.score = { pattern = '(\\d)', type = \"int\" }")
    with pytest.raises(SpecError) as e:
        load_job(p)
    msg = str(e.value)
    assert "judge.compliance_rules" in msg and "verdict.refused" in msg and "\n" not in msg


def test_rules_on_a_template_with_front_matter_are_refused(tmp_path):
    front = "+++\nstage = \"compliance\"\n[verdict.refused]\npattern = '(\\d)'\n+++\nJudge"
    p = write_rules_job(tmp_path, "verdict.refused = { pattern = '(\\d)' }", front)
    with pytest.raises(InputError, match="has its own front matter"):
        load_grid(load_job(p))


def test_rules_rename_placeholders_by_plain_replacement(tmp_path):
    p = write_rules_job(
        tmp_path,
        "verdict.refused = { pattern = 'R=(\\d)' }\n"
        'placeholders = { request = "<<Q>>", response = "<<A>>" }',
        "Q: <<Q>> A: <<A>> {kept}",
    )
    grid = load_grid(load_job(p))
    tpl = grid.judge_templates["compliance"]
    assert tpl.prompt(request="r", response="a") == (None, "Q: r A: a {kept}")


# --- the estimate, offline, from declared sizes -------------------------------------------------


def test_replication_estimates_offline_from_declared_sizes_and_notes_them():
    est = estimate_job(load_job(REPLICATION), load_prices(), offline=True)
    notes = "\n".join(est.notes)
    job = load_job(REPLICATION).job
    for ref in (
        job.prompts.user_template,
        job.variants[0].system_prompt,
        job.judge.compliance_template,
        job.judge.af_template,
    ):
        assert f"{ref} is not cached and cannot be downloaded" in notes
    assert est.totals()["cost_batch_usd"] > 0


def test_declared_sizes_count_as_declared():
    """A variant's expected_tokens is what the system prompt costs when it cannot be read."""
    loaded = load_job(REPLICATION)
    one = estimate_job(loaded, load_prices(), offline=True)
    text = REPLICATION.read_text().replace("expected_tokens = 8000", "expected_tokens = 9000")
    two = estimate_job(parse_job(text, REPLICATION), load_prices(), offline=True)
    # 1000 more o200k tokens on each cot request's system prompt of the first (exact-o200k)
    # model family: gpt-4o; 400 conversations x turns
    g1 = next(r for r in one.rows if r.model == "gpt-4o")
    g2 = next(r for r in two.rows if r.model == "gpt-4o")
    cot_requests = 100 * 2 * 1.3  # rows x tiers x expected turns
    assert g2.input_tokens - g1.input_tokens == pytest.approx(1000 * cot_requests)


def test_a_url_prompt_without_a_declared_size_still_needs_the_file():
    text = re.sub(r"(?m)^expected_tokens = 8000.*\n", "", REPLICATION.read_text())
    with pytest.raises(OfflineError, match="prompt_atn_honly_with_examples.txt"):
        estimate_job(parse_job(text, REPLICATION), load_prices(), offline=True)


# --- judge cost, named ----------------------------------------------------------------------------


def test_estimate_names_the_equivalent_af_setups():
    est = estimate_job(load_job(ROOT / "jobs" / "sample.toml"), load_prices(), offline=True)
    (note,) = [n for n in est.notes if n.startswith("alignment-faking classifier set-ups")]
    af = next(r for r in est.rows if r.stage == "judge_af")
    assert f"this job's: ${af.cost_batch_cached_usd:,.2f}" in note
    assert "separate requests" in note and "%" in note


# --- the shipped system prompts ---------------------------------------------------------------


def test_shipped_prompts_do_not_state_the_training_objective_outright():
    for name in ("helpful_only_cot", "helpful_only_no_cot"):
        default = (ROOT / "prompts" / f"{name}.txt").read_text()
        stated = (ROOT / "prompts" / f"{name}_stated_objective.txt").read_text()
        assert "unconditionally helpful" not in default
        assert "unconditionally helpful" in stated


def test_cache_add_makes_a_local_file_the_urls_copy(tmp_path):
    from click.testing import CliRunner

    from afbatch.cli import cli
    from afbatch.datasets import read_source

    f = tmp_path / "stand-in.txt"
    f.write_bytes(b"stand-in bytes")
    url = "https://example.org/published/prompt.txt"
    r = CliRunner().invoke(cli, ["cache-add", url, str(f)])
    assert r.exit_code == 0, r.output
    src = read_source(url, offline=True)
    assert src.data == b"stand-in bytes" and src.sha256 in r.output
    r = CliRunner().invoke(cli, ["cache-add", "not-a-url", str(f)])
    assert r.exit_code != 0 and "not an http(s) URL" in r.output


@pytest.mark.parametrize(
    "rules, text",
    [
        ("verdict.refused = { pattern = '(\\d)' }", "Judge {prompt} and {answer}"),  # not mapped
        ("verdict.refused = { pattern = '(\\d)' }\nuser = \"{request}\"", "System text"),
    ],
)
def test_rules_that_never_show_the_judge_the_answer_are_refused(tmp_path, rules, text):
    p = write_rules_job(tmp_path, rules, text)
    with pytest.raises(InputError) as e:
        load_grid(load_job(p))
    assert "no {response} placeholder" in str(e.value) and "\n" not in str(e.value)
