"""The run id follows what changes outputs: the validated job minus its descriptive fields, plus
the inputs' sha256. Editing prose, comments, layout or key order resumes the same run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from afbatch.grid import load_grid
from afbatch.runner import run_id_for
from afbatch.spec import load_job
from support import BASE_JOB

JUDGE = """
[judge]
compliance_template = "judges/compliance.txt"
[judge.model]
provider = "openai"
model = "gpt-4o-mini"
"""

# The same job: keys reordered, tables reordered, comments, blank lines and odd spacing.
REWRITTEN = """
# A comment at the top.
name   =   "t"   # the job's name

[[models]]
label = "haiku"            # short label
model = "claude-haiku-4-5"
provider = "anthropic"

[prompts]
user_template = "user_template.txt"

[dataset]

source = "data.csv"

[[variants]]
cot = true
system_prompt = "helpful_only_cot.txt"
name = "cot"

[[variants]]
cot = false
name = "no_cot"
system_prompt = "helpful_only_no_cot.txt"
"""


def _run_id(make_job, body: str) -> str:
    return run_id_for(load_grid(load_job(make_job(body)), offline=True))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_editing_the_description_keeps_the_run_id(make_job):
    base = _run_id(make_job, BASE_JOB)
    described = BASE_JOB.replace('name = "t"', 'name = "t"\ndescription = "first try"')
    assert _run_id(make_job, described) == base
    assert _run_id(make_job, described.replace("first try", "second try, same grid")) == base


def test_comments_whitespace_and_key_order_keep_the_run_id(make_job):
    assert _run_id(make_job, REWRITTEN) == _run_id(make_job, BASE_JOB)


def test_pinning_an_input_by_sha256_keeps_the_run_id(make_job):
    base = _run_id(make_job, BASE_JOB)
    data = make_job(BASE_JOB).parent / "data.csv"
    prompt = data.parent / "helpful_only_cot.txt"
    cot = 'system_prompt = "helpful_only_cot.txt"'
    source = 'source = "data.csv"'
    pinned = BASE_JOB.replace(source, f'{source}\nsha256 = "{_sha(data)}"').replace(
        cot, f'{cot}\nsystem_prompt_sha256 = "{_sha(prompt)}"'
    )
    assert _run_id(make_job, pinned) == base


@pytest.mark.parametrize(
    "old, new",
    [
        ('model = "claude-haiku-4-5"', 'model = "claude-sonnet-4-5"'),  # another model
        ('label = "haiku"', 'label = "haiku"\ntemperature = 0.0'),  # a model's sampling value
        ('name = "t"', 'name = "t"\n[sampling]\nmax_tokens = 1000'),  # the job's sampling
        ('name = "t"', 'name = "t"\n[sampling]\nsamples = 2'),
        ("cot = false", 'cot = false\nprefill = "<OUTPUT>\\n"'),  # what is sent
    ],
)
def test_a_change_that_changes_outputs_makes_a_new_run_id(make_job, old, new):
    assert old in BASE_JOB
    assert _run_id(make_job, BASE_JOB.replace(old, new)) != _run_id(make_job, BASE_JOB)


def test_a_prompt_files_content_changes_the_run_id(make_job):
    base = _run_id(make_job, BASE_JOB)
    path = make_job(BASE_JOB)
    prompt = path.parent / "helpful_only_no_cot.txt"
    prompt.write_text(prompt.read_text() + "\nOne more sentence.\n")
    assert run_id_for(load_grid(load_job(path), offline=True)) != base


def test_the_judge_changes_the_run_id(make_job):
    base = _run_id(make_job, BASE_JOB)
    judged = _run_id(make_job, BASE_JOB + JUDGE)
    assert judged != base
    assert _run_id(make_job, BASE_JOB + JUDGE.replace("gpt-4o-mini", "gpt-4o")) != judged
    hotter = JUDGE.replace("[judge.model]", "temperature = 0.5\n[judge.model]")
    assert _run_id(make_job, BASE_JOB + hotter) != judged


def test_a_run_stored_under_the_older_rule_still_opens_by_its_id(make_job, tmp_path, monkeypatch):
    """Before, the whole dump (description included) was hashed: such a run keeps its id and opens;
    the same job now gets a new id, so `run JOB` starts a new run (reusing the stored answers)."""
    import json

    import afbatch.opening as opening
    import afbatch.runner as runner
    from afbatch.spec import canonical_json
    from afbatch.store import LocalStore

    path = make_job(BASE_JOB.replace('name = "t"', 'name = "t"\ndescription = "old"'))
    grid = load_grid(load_job(path), offline=True)
    old_fp = hashlib.sha256(canonical_json(grid.job.model_dump(mode="json")).encode()).hexdigest()
    pins = json.dumps({k: v["sha256"] for k, v in grid.inputs.items()}, sort_keys=True)
    old_id = f"t-{hashlib.sha256((old_fp + pins).encode()).hexdigest()[:10]}"
    store = LocalStore(tmp_path / "store")
    monkeypatch.setattr(opening, "run_id_for", lambda g: old_id)
    runner.Run.create(store, str(path), offline=True)
    monkeypatch.undo()

    assert runner.Run.open(store, old_id).run_id == old_id
    new, created = runner.Run.create(store, str(path), offline=True)
    assert created and new.run_id == run_id_for(grid) != old_id
