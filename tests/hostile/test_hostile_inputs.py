"""Bad job files, price files, datasets and option values: one line naming the file, line or key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hostile.conftest import JOB
from hostile.support import expect_one_line, run_cli


def _set(old: str, new: str):  # noqa: ANN202 - a job edit
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)

    return edit


def _add(extra: str):  # noqa: ANN202
    return lambda text: text + extra


def _dataset(line: str):  # noqa: ANN202 - a line added to [dataset]
    return _set('source = "data.csv"', f'source = "data.csv"\n{line}')


def _prompts(line: str):  # noqa: ANN202 - a line added to [prompts]
    template = 'user_template = "user_template.txt"'
    return _set(template, f"{template}\n{line}")


DEEP_ARRAY = "x = " + "[" * 5000 + "]" * 5000 + "\n"
DEEP_TABLE = "x = " + "{a = " * 3000 + "1" + "}" * 3000 + "\n"

# (id, edit of the valid job, strings the one line must contain)
JOB_CASES = [
    ("toml-syntax", _add("name = \n"), ["job.toml", "invalid TOML"]),
    ("toml-duplicate-key", _add('label = "again"\n'), ["job.toml", "invalid TOML"]),
    ("toml-unclosed-string", _add('description = "open\n'), ["job.toml", "invalid TOML"]),
    ("toml-unclosed-table", _add("[sampling\n"), ["job.toml", "invalid TOML"]),
    ("toml-deep-array", lambda t: DEEP_ARRAY + t, ["job.toml:1", "nested"]),
    (
        "toml-deep-inline-table",
        lambda t: t.replace('name = "hostile"', DEEP_TABLE.strip(), 1),
        ["job.toml:1", "nested"],
    ),
    ("unknown-top-key", _add('nmae = "x"\n'), ["job.toml", "nmae"]),
    (
        "unknown-dataset-key",
        _set('source = "data.csv"', 'source = "data.csv"\nsourse = "x"'),
        ["job.toml", "sourse"],
    ),
    ("unknown-model-key", _add("temprature = 1\n"), ["job.toml", "temprature"]),
    ("name-wrong-type", _set('name = "hostile"', "name = 3"), ["job.toml", "name"]),
    ("name-with-space", _set('name = "hostile"', 'name = "my job"'), ["job.toml", "name"]),
    ("name-too-long", _set('name = "hostile"', f'name = "{"n" * 60}"'), ["job.toml", "name"]),
    ("first-zero", _dataset("first = 0"), ["job.toml", "first"]),
    ("first-negative", _dataset("first = -1"), ["job.toml", "first"]),
    ("first-string", _dataset('first = "ten"'), ["job.toml", "first"]),
    ("first-and-sample", _dataset("first = 1\nsample = 1"), ["job.toml", "sample"]),
    ("sha256-malformed", _dataset('sha256 = "xyz"'), ["job.toml", "sha256"]),
    ("format-unknown", _dataset('format = "xml"'), ["job.toml", "format"]),
    ("no-dataset", _set('[dataset]\nsource = "data.csv"\n', ""), ["job.toml", "dataset"]),
    ("no-models", lambda t: t.split("[[models]]")[0], ["job.toml", "models"]),
    ("no-variants", lambda t: t.replace("[[variants]]", "[[unused]]"), ["job.toml", "variants"]),
    (
        "provider-unknown",
        _set('provider = "anthropic"', 'provider = "nope"'),
        ["job.toml", "provider"],
    ),
    ("model-empty", _set('model = "claude-haiku-4-5"', 'model = ""'), ["job.toml", "model"]),
    ("label-bad", _set('label = "haiku"', 'label = "-bad label"'), ["job.toml", "label"]),
    ("duplicate-labels", _add(JOB[JOB.index("[[models]]") :]), ["job.toml", "haiku"]),
    ("tiers-repeat", _prompts('tiers = ["free", "free"]'), ["job.toml", "tiers"]),
    ("tiers-unknown", _prompts('tiers = ["gold"]'), ["job.toml", "tiers"]),
    ("tier-format", _prompts('tier_format = "upper"'), ["job.toml", "tier_format"]),
    ("cot-not-bool", _set("cot = true", "cot = [1]"), ["job.toml", "cot"]),
    ("temperature-string", _add('temperature = "hot"\n'), ["job.toml", "temperature"]),
    ("api-key-env-lowercase", _add('api_key_env = "my key"\n'), ["job.toml", "api_key_env"]),
    (
        "compatible-without-base-url",
        _set('provider = "anthropic"', 'provider = "openai-compatible"'),
        ["job.toml", "base_url"],
    ),
    ("user-template-missing", _set('"user_template.txt"', '"nope.txt"'), ["nope.txt"]),
    ("system-prompt-missing", _set('"helpful_only_cot.txt"', '"nope_cot.txt"'), ["nope_cot.txt"]),
    ("dataset-missing", _set('"data.csv"', '"missing.csv"'), ["missing.csv", "not found"]),
    (
        "dataset-url-offline",
        _set('"data.csv"', '"https://example.invalid/data.csv"'),
        ["https://example.invalid/data.csv", "--offline"],
    ),
    (
        "prompt-url-offline",
        _set('"helpful_only_cot.txt"', '"https://example.invalid/cot.txt"'),
        ["https://example.invalid/cot.txt", "--offline"],
    ),
    ("dataset-sha-mismatch", _dataset(f'sha256 = "{"0" * 64}"'), ["data.csv", "sha256"]),
    ("prices-file-missing", lambda t: 'prices = "nope-prices.toml"\n' + t, ["nope-prices.toml"]),
]


def _cases(table):  # noqa: ANN001, ANN202 - (id, *values) rows as pytest params
    return [pytest.param(*row[1:], id=row[0]) for row in table]


@pytest.mark.parametrize(("edit", "names"), _cases(JOB_CASES))
def test_bad_job_file(job_dir: Path, edit, names: list[str]) -> None:  # noqa: ANN001
    (job_dir / "job.toml").write_text(edit(JOB))
    expect_one_line(
        ["estimate", "job.toml", "--offline"], code=2, names=names, cwd=job_dir, stored=job_dir
    )


# (id, bytes of the job file or None for "a folder", strings)
RAW_JOB_CASES = [
    ("empty", b"", ["job.toml"]),
    ("not-utf8", b'name = "\xff\xfe"\n', ["job.toml"]),
    ("nul-bytes", b"name = \x00\x00\n", ["job.toml", "invalid TOML"]),
    ("binary", bytes(range(256)), ["job.toml"]),
]


@pytest.mark.parametrize(
    "url",
    ["http://[::1/data.csv", "https://exa mple.com/data.csv", "https://example.com/\x01data.csv"],
)
def test_malformed_url(job_dir: Path, url: str) -> None:
    (job_dir / "job.toml").write_text(JOB.replace('"data.csv"', json.dumps(url)))
    expect_one_line(
        ["estimate", "job.toml"],
        code=2,
        names=[url.split("/")[2], "not a valid URL"],
        cwd=job_dir,
        stored=job_dir,
    )


@pytest.mark.parametrize(("data", "names"), _cases(RAW_JOB_CASES))
def test_unreadable_job_file(job_dir: Path, data: bytes, names: list[str]) -> None:
    (job_dir / "job.toml").write_bytes(data)
    expect_one_line(["estimate", "job.toml"], code=2, names=names, cwd=job_dir, stored=job_dir)


@pytest.mark.parametrize("command", ["estimate", "compile", "submit"])
def test_missing_job_file(job_dir: Path, command: str) -> None:
    expect_one_line(
        [command, "nope.toml"],
        code=2,
        names=["nope.toml", "no such job file"],
        cwd=job_dir,
        stored=job_dir,
    )


def test_run_of_neither_a_job_nor_a_run(job_dir: Path) -> None:
    expect_one_line(
        ["run", "nope.toml"], code=1, names=["nope.toml", "no run"], cwd=job_dir, stored=job_dir
    )


def test_job_file_is_a_folder(job_dir: Path) -> None:
    (job_dir / "folder.toml").mkdir()
    expect_one_line(
        ["estimate", "folder.toml"], code=2, names=["folder.toml"], cwd=job_dir, stored=job_dir
    )


# --- price files ---------------------------------------------------------------------------

PRICE = """\
[[models]]
provider = "anthropic"
model = "claude-haiku-4-5"
input = 1.0
output = 5.0
date = "2026-01-01"
"""
PRICE_CASES = [
    ("toml-syntax", "[[models]\n", ["prices.toml", "invalid TOML"]),
    ("deep", "x = " + "[" * 3000 + "]" * 3000, ["prices.toml:1", "nested"]),
    ("input-string", PRICE.replace("input = 1.0", 'input = "cheap"'), ["prices.toml", "input"]),
    ("unknown-key", PRICE + "discount = 0.5\n", ["prices.toml", "discount"]),
    ("no-output", PRICE.replace("output = 5.0\n", ""), ["prices.toml", "output"]),
    ("models-not-array", 'models = "all"\n', ["prices.toml", "models"]),
]


@pytest.mark.parametrize(("text", "names"), _cases(PRICE_CASES))
def test_bad_price_file(job_dir: Path, text: str, names: list[str]) -> None:
    (job_dir / "prices.toml").write_text(text)
    expect_one_line(
        ["estimate", "job.toml", "--prices", "prices.toml"],
        code=2,
        names=names,
        cwd=job_dir,
        stored=job_dir,
    )


def test_price_file_not_utf8(job_dir: Path) -> None:
    (job_dir / "prices.toml").write_bytes(b"x = '\xff'\n")
    expect_one_line(
        ["estimate", "job.toml", "--prices", "prices.toml"],
        code=2,
        names=["prices.toml", "UTF-8"],
        cwd=job_dir,
        stored=job_dir,
    )


def test_price_file_missing(job_dir: Path) -> None:
    expect_one_line(
        ["estimate", "job.toml", "--prices", "none.toml"],
        code=2,
        names=["none.toml", "not found"],
        cwd=job_dir,
        stored=job_dir,
    )


def test_bad_price_file_from_the_environment(job_dir: Path) -> None:
    (job_dir / "env-prices.toml").write_text("[[models]\n")
    expect_one_line(
        ["estimate", "job.toml"],
        code=2,
        names=["env-prices.toml", "invalid TOML"],
        cwd=job_dir,
        stored=job_dir,
        env={"AFBATCH_PRICES": str(job_dir / "env-prices.toml")},
    )


def test_model_without_a_price(job_dir: Path) -> None:
    (job_dir / "job.toml").write_text(JOB + 'price_as = "no-such-model"\n')
    expect_one_line(
        ["estimate", "job.toml"],
        code=2,
        names=["no price", "no-such-model"],
        cwd=job_dir,
        stored=job_dir,
    )


# --- datasets --------------------------------------------------------------------------------

BIG = "x" * ((1 << 20) + 10)
CSV_CASES = [
    ("no-goal-column", "prompt,target\nhello,Sure\n", ["data.csv", "goal"]),
    ("empty-file", "", ["data.csv", "goal"]),
    ("header-only", "goal,target\n", ["data.csv", "no rows"]),
    ("empty-cell", "goal,target\nfine,Sure\n,Sure\n", ["data.csv:3", "goal"]),
    ("blank-cell", "goal,target\n   ,Sure\n", ["data.csv:2", "goal"]),
    ("cell-over-1MiB", f'goal,target\nok,Sure\n"{BIG}",Sure\n', ["data.csv:3", "cell"]),
    (
        "unclosed-quote-swallowing",
        'goal,target\n"open,Sure\n' + ("more,Sure\n" * 120000),
        ["data.csv:2", "quote"],
    ),
    ("first-too-big", None, ["data.csv", "first"]),
]


@pytest.mark.parametrize(("text", "names"), _cases(CSV_CASES))
def test_bad_csv_dataset(job_dir: Path, text: str | None, names: list[str]) -> None:
    if text is None:
        (job_dir / "job.toml").write_text(_dataset("first = 50")(JOB))
    else:
        (job_dir / "data.csv").write_text(text)
    expect_one_line(["estimate", "job.toml"], code=2, names=names, cwd=job_dir, stored=job_dir)


def test_a_request_longer_than_csvs_default_limit_is_read(job_dir: Path) -> None:
    # Python's csv refuses cells over 128 KiB; a long request is legitimate up to 1 MiB.
    long = "word " * 40000
    (job_dir / "data.csv").write_text(f'goal,target\n"{long}",Sure\n')
    out = run_cli(["estimate", "job.toml", "--format", "json"], cwd=job_dir)
    assert out.code == 0, out.stderr
    assert json.loads(out.stdout)


def test_csv_dataset_not_utf8(job_dir: Path) -> None:
    (job_dir / "data.csv").write_bytes(b"goal,target\n\xff\xfe,Sure\n")
    expect_one_line(
        ["estimate", "job.toml"], code=2, names=["data.csv", "UTF-8"], cwd=job_dir, stored=job_dir
    )


def test_dataset_is_a_folder(job_dir: Path) -> None:
    (job_dir / "data.csv").unlink()
    (job_dir / "data.csv").mkdir()
    expect_one_line(
        ["estimate", "job.toml"], code=2, names=["data.csv"], cwd=job_dir, stored=job_dir
    )


def test_dataset_is_a_symlink_loop(job_dir: Path) -> None:
    (job_dir / "data.csv").unlink()
    (job_dir / "loop-a").symlink_to("loop-b")
    (job_dir / "loop-b").symlink_to("loop-a")
    (job_dir / "job.toml").write_text(JOB.replace('"data.csv"', '"loop-a"'))
    expect_one_line(
        ["estimate", "job.toml"],
        code=2,
        names=["loop-a", "symbolic links"],
        cwd=job_dir,
        stored=job_dir,
    )


def test_dataset_source_empty_names_the_folder(job_dir: Path) -> None:
    (job_dir / "job.toml").write_text(JOB.replace('"data.csv"', '""'))
    expect_one_line(
        ["estimate", "job.toml"],
        code=2,
        names=[str(job_dir), "is a folder"],
        cwd=job_dir,
        stored=job_dir,
    )


JSONL_CASES = [
    ("invalid-line", '{"goal": "a"}\n{"goal": \n', ["data.jsonl:2", "invalid JSON"]),
    ("array-line", '["goal", "a"]\n', ["data.jsonl:1", "goal"]),
    ("missing-key", '{"prompt": "a"}\n', ["data.jsonl:1", "goal"]),
    ("number-value", '{"goal": 5}\n', ["data.jsonl:1", "goal"]),
    ("empty-value", '{"goal": "  "}\n', ["data.jsonl:1", "goal"]),
    (
        "deep-nesting",
        '{"goal": "a"}\n' + "[" * 100000 + "]" * 100000 + "\n",
        ["data.jsonl:2", "nested"],
    ),
    ("empty-file", "", ["data.jsonl", "no rows"]),
    ("only-blank-lines", "\n\n  \n", ["data.jsonl", "no rows"]),
]


@pytest.mark.parametrize(("text", "names"), _cases(JSONL_CASES))
def test_bad_jsonl_dataset(job_dir: Path, text: str, names: list[str]) -> None:
    (job_dir / "data.jsonl").write_text(text)
    (job_dir / "job.toml").write_text(JOB.replace('"data.csv"', '"data.jsonl"'))
    expect_one_line(["estimate", "job.toml"], code=2, names=names, cwd=job_dir, stored=job_dir)


# --- option values ---------------------------------------------------------------------------

OPTION_CASES = [
    (["run", "RUN", "--poll", "-1"], "--poll"),
    (["run", "RUN", "--poll", "nan"], "--poll"),
    (["run", "RUN", "--poll", "inf"], "--poll"),
    (["run", "RUN", "--poll", "-inf"], "--poll"),
    (["run", "RUN", "--poll", "1e300"], "--poll"),
    (["run", "RUN", "--poll", "soon"], "--poll"),
    (["run", "RUN", "--poll", ""], "--poll"),
    (["status", "RUN", "--interval", "0"], "--interval"),
    (["status", "RUN", "--interval", "-5"], "--interval"),
    (["status", "RUN", "--interval", "nan"], "--interval"),
    (["status", "RUN", "--interval", "inf"], "--interval"),
    (["status", "RUN", "--interval", "1e9"], "--interval"),
    (["report", "RUN", "--transcripts", "-1"], "--transcripts"),
    (["report", "RUN", "--transcripts", "1.5"], "--transcripts"),
    (["report", "RUN", "--transcripts", "many"], "--transcripts"),
    (["estimate", "job.toml", "--format", "yaml"], "--format"),
    (["estimate", "job.toml", "--by", "tier"], "--by"),
    (["report", "RUN", "--format", "pdf"], "--format"),
    (["status", "RUN", "--format", "xml"], "--format"),
    (["estimate"], "JOB"),
    (["status"], "RUN_ID"),
    (["estimate", "job.toml", "--no-such-option"], "--no-such-option"),
    (["no-such-command"], "no-such-command"),
]


@pytest.mark.parametrize(
    ("args", "name"), [pytest.param(*c, id=" ".join(c[0][:1] + c[0][2:])) for c in OPTION_CASES]
)
def test_bad_option_value(job_dir: Path, args: list[str], name: str) -> None:
    expect_one_line(args, code=2, names=[name, "--help"], cwd=job_dir, stored=job_dir)
