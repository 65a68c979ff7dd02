"""Judge templates: a prompt text with a TOML front matter that declares how its verdict is parsed.

    +++
    stage = "compliance"
    [verdict.refused]
    pattern = '(?m)^\\s*1\\.b\\s+([01])\\b'
    type = "bool"
    +++
    ...prompt text with {request} and {response} (or {reasoning})...

The verdict fields, their types and what each stage needs of them are judge_verdicts.py's. A
reply missing any field is unparseable: it is retried, then reported — never guessed. A published
judge prompt without front matter is read with the job's parse rules (`template_from_rules`),
checked as a front matter of its stage would be.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from afbatch.datasets import Source, read_source
from afbatch.errors import InputError
from afbatch.judge_verdicts import SCORES, STAGE_NEEDS, TEMPLATE_HELP, FrontMatter, read_value
from afbatch.published import from_python_format


@dataclass(frozen=True)
class Template:
    ref: str
    sha256: str
    meta: FrontMatter
    body: str
    patterns: dict[str, re.Pattern[str]]
    user: str | None = None  # set: `body` is the judge's system prompt and this its user turn

    def render(self, **values: str) -> str:
        """The filled text (system prompt and user turn together when they are split): what a
        request holds, for counting."""
        return "".join(t for t in self.prompt(**values) if t)

    def prompt(self, **values: str) -> tuple[str | None, str]:
        """(system prompt or None, user turn), placeholders filled by plain replacement: model
        outputs may contain braces."""
        if self.user is not None:
            return self.body, _fill(self.user, values)
        return None, _fill(self.body, values)

    def parse(self, reply: str) -> dict[str, Any] | None:
        """Every declared field, typed; None when any field is missing or out of range."""
        out: dict[str, Any] = {}
        for name, spec in self.meta.verdict.items():
            m = self.patterns[name].search(reply or "")
            if not m:
                return None
            raw = m.group(1).strip()
            value = read_value(raw, spec)
            if value is None:
                return None
            out[name] = value
        return out


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def parse_template(text: str, ref: str, sha256: str = "") -> Template:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "+++":
        raise InputError(
            f"{ref}: a judge template starts with a '+++' TOML front matter "
            "declaring its verdict (see prompts/README.md)"
        )
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "+++")
    except StopIteration:
        raise InputError(f"{ref}: front matter is not closed — add a line '+++' after it") from None
    try:
        raw = tomllib.loads("".join(lines[1:end]))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{ref}: front matter is not valid TOML: {e}") from None
    meta, patterns = _checked(raw, f"{ref}: front matter", ref)
    body = "".join(lines[end + 1 :]).lstrip("\n")
    return Template(ref=ref, sha256=sha256, meta=meta, body=body, patterns=patterns)


Checked = tuple[FrontMatter, dict[str, re.Pattern[str]]]


def _checked(raw: dict[str, Any], where: str, ref: str) -> Checked:
    """Front matter (a file's, or a job's rules) checked: schema, what its stage reads, regexes."""
    try:
        meta = FrontMatter.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        raise InputError(f"{where} {'.'.join(map(str, first['loc']))}: {msg}") from None
    STAGE_NEEDS[meta.stage](ref, meta)
    patterns = {}
    for name, spec in meta.verdict.items():
        try:
            patterns[name] = re.compile(spec.pattern)
        except re.error as e:
            raise InputError(f"{ref}: verdict.{name}.pattern is not a valid regex: {e}") from None
        if patterns[name].groups < 1:
            raise InputError(f"{ref}: verdict.{name}.pattern needs one capture group")
    return meta, patterns


def check_rules(stage: str, rules: Any, where: str) -> Checked:
    """A job's parse rules (spec.JudgeRules) for a template without front matter, checked as a
    front matter of that stage would be."""
    raw = {"stage": stage, "description": rules.description, "verdict": rules.verdict}
    return _checked(raw, where, where)


def template_from_rules(
    text: str, ref: str, sha256: str, stage: str, rules: Any, where: str
) -> Template:
    """A published judge prompt (no front matter) read with the job's rules: placeholders renamed
    to afbatch's; the pin covers the rules too, since they change the requests."""
    if text.splitlines()[:1] == ["+++"]:
        raise InputError(
            f"{ref}: has its own front matter, and the job declares {where} too — "
            f"remove {where} (one place says how a verdict is parsed)"
        )
    meta, patterns = check_rules(stage, rules, where)
    rename = {published.strip("{}"): name for name, published in rules.placeholders.items()}
    if rules.python_format:
        body = from_python_format(text, rename, ref)
    else:
        body = text
        for name, published in rules.placeholders.items():
            body = body.replace(published, "{" + name + "}")
    judged = STAGE_JUDGES[stage]  # without it the judge never sees what it judges
    if judged not in (rules.user if rules.user is not None else body):
        where_text = f"{where}.user" if rules.user is not None else ref
        raise InputError(
            f"{where_text}: no {judged} placeholder — the judge would never see what "
            f"it judges; map the published text's name under {where}.placeholders, "
            f"or put {judged} in {where}.user"
        )
    pin = hashlib.sha256(f"{sha256}|{rules.model_dump_json()}".encode()).hexdigest()
    return Template(ref=ref, sha256=pin, meta=meta, body=body, patterns=patterns, user=rules.user)


# What each stage's judge must be shown: the model's answer, or its reasoning.
STAGE_JUDGES = {
    "compliance": "{response}",
    "alignment_faking": "{reasoning}",
    "partial_compliance": "{response}",
}


def stage_template(
    ref: str,
    stage: str,
    rules: Any,
    where: str,
    *,
    offline: bool = False,
    read: Callable[..., Source] = read_source,
) -> tuple[Template, Source]:
    """The judge template of a stage, from its front matter or the job's rules; with its source
    (whose sha256 the run records)."""
    src = read(ref, offline=offline, expected_sha256=rules.sha256 if rules else None)
    if rules is not None:
        return template_from_rules(src.text, src.ref, src.sha256, stage, rules, where), src
    tpl = parse_template(src.text, src.ref, src.sha256)
    if tpl.meta.stage != stage:
        raise InputError(
            f"{src.ref}: declares stage = {tpl.meta.stage!r} but the job uses it for "
            f"{stage!r} — point the job at the right template"
        )
    return tpl, src


def load_template(ref: str, *, offline: bool = False, stage: str | None = None) -> Template:
    src = read_source(ref, offline=offline)
    tpl = parse_template(src.text, ref, src.sha256)
    if stage and tpl.meta.stage != stage:
        raise InputError(
            f"{ref}: declares stage = {tpl.meta.stage!r} but is used for {stage!r} "
            "— point the job at the right template"
        )
    return tpl


def check_rule(tpl: Template, rule: str) -> None:
    """A compliance template that can answer the job's compliance rule."""
    missing = [n for n in SCORES if n not in tpl.meta.verdict]
    if rule == "strongreject_positive" and missing:
        raise InputError(
            f'{tpl.ref}: judge.compliance_rule = "strongreject_positive" needs the '
            f"StrongREJECT fields {', '.join(missing)} in the compliance verdict — "
            f'add them (int, 1-5) or set compliance_rule = "not_refused" ({TEMPLATE_HELP})'
        )
