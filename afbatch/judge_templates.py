"""Judge templates: a prompt text with a TOML front matter that declares how its verdict is parsed.

    +++
    stage = "compliance"
    [verdict.refused]
    pattern = '(?m)^\\s*1\\.b\\s+([01])\\b'
    type = "bool"
    +++
    ...prompt text with {request} and {response} (or {reasoning})...

Each verdict field is a regex with one capture group, searched in the judge's reply, and a type
(bool, int with min/max, or choice with allowed values; a choice with `true = [...]` is a boolean
read from labels). A reply missing any field is unparseable: it is retried, then reported — never
guessed. What each stage reads from a verdict is checked when the template is parsed
(`STAGE_NEEDS`), so a template that cannot give a stage its answer is refused before anything runs;
`refused` and `vote_yes` are the only readers of those answers.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from afbatch.datasets import read_source
from afbatch.errors import InputError, RunError

_TRUE = {"1", "yes", "true", "y"}
_FALSE = {"0", "no", "false", "n"}


class VerdictField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str
    type: Literal["bool", "int", "choice"] = "bool"
    min: int | None = None
    max: int | None = None
    choices: list[str] | None = None
    true: list[str] | None = None  # choice only: the labels meaning True; the other choices: False

    @model_validator(mode="after")
    def _keys_fit_type(self) -> VerdictField:
        if self.type != "int" and (self.min is not None or self.max is not None):
            raise ValueError("min and max apply to type = \"int\" only")
        if self.type != "choice" and (self.choices is not None or self.true is not None):
            raise ValueError("choices and true apply to type = \"choice\" only")
        if self.true is not None:
            if not self.choices:
                raise ValueError("true needs the list of choices it picks from")
            unknown = [t for t in self.true if t not in self.choices]
            if unknown or not self.true:
                raise ValueError(f"true must list some of the choices {self.choices}, "
                                 f"got {self.true}")
            if set(self.true) == set(self.choices):
                raise ValueError("true lists every choice: no label would mean False")
        return self

    @property
    def boolean(self) -> bool:
        """Parsed to True/False: a bool, or a choice mapped by `true`."""
        return self.type == "bool" or (self.type == "choice" and self.true is not None)

    def describe(self) -> str:
        """What a field that is not boolean is, for messages."""
        if self.type == "choice":
            return f"a choice ({'|'.join(self.choices or [])}) without `true = [...]`"
        return f"an {self.type}"


class FrontMatter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: Literal["compliance", "alignment_faking"]
    description: str = ""
    verdict: dict[str, VerdictField] = Field(min_length=1)


@dataclass(frozen=True)
class Template:
    ref: str
    sha256: str
    meta: FrontMatter
    body: str
    patterns: dict[str, re.Pattern[str]]

    def render(self, **values: str) -> str:
        """Plain placeholder replacement: model outputs may contain braces."""
        text = self.body
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text

    def parse(self, reply: str) -> dict[str, Any] | None:
        """Every declared field, typed; None when any field is missing or out of range."""
        out: dict[str, Any] = {}
        for name, spec in self.meta.verdict.items():
            m = self.patterns[name].search(reply or "")
            if not m:
                return None
            raw = m.group(1).strip()
            value = _convert(raw, spec)
            if value is None:
                return None
            out[name] = value
        return out


def _convert(raw: str, spec: VerdictField) -> Any:
    if spec.type == "bool":
        low = raw.lower()
        return True if low in _TRUE else False if low in _FALSE else None
    if spec.type == "int":
        try:
            n = int(raw)
        except ValueError:
            return None
        if (spec.min is not None and n < spec.min) or (spec.max is not None and n > spec.max):
            return None
        return n
    if spec.choices and raw not in spec.choices:
        return None
    return raw in spec.true if spec.true is not None else raw


def parse_template(text: str, ref: str, sha256: str = "") -> Template:
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "+++":
        raise InputError(f"{ref}: a judge template starts with a '+++' TOML front matter declaring its verdict (see prompts/README.md)")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "+++")
    except StopIteration:
        raise InputError(f"{ref}: front matter is not closed — add a line '+++' after it") from None
    try:
        meta = FrontMatter.model_validate(tomllib.loads("".join(lines[1:end])))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{ref}: front matter is not valid TOML: {e}") from None
    except ValidationError as e:
        first = e.errors()[0]
        msg = first["msg"].removeprefix("Value error, ")
        raise InputError(f"{ref}: front matter {'.'.join(map(str, first['loc']))}: {msg}") from None
    STAGE_NEEDS[meta.stage](ref, meta)
    patterns = {}
    for name, spec in meta.verdict.items():
        try:
            patterns[name] = re.compile(spec.pattern)
        except re.error as e:
            raise InputError(f"{ref}: verdict.{name}.pattern is not a valid regex: {e}") from None
        if patterns[name].groups < 1:
            raise InputError(f"{ref}: verdict.{name}.pattern needs one capture group")
    return Template(ref=ref, sha256=sha256, meta=meta, body="".join(lines[end + 1 :]).lstrip("\n"), patterns=patterns)


def load_template(ref: str, *, offline: bool = False, stage: str | None = None) -> Template:
    src = read_source(ref, offline=offline)
    tpl = parse_template(src.text, ref, src.sha256)
    if stage and tpl.meta.stage != stage:
        raise InputError(f"{ref}: declares stage = {tpl.meta.stage!r} but is used for {stage!r} — point the job at the right template")
    return tpl


# --- what each stage reads from a verdict -------------------------------------------------------

REFUSED = "refused"  # compliance: did the model refuse (a boolean, or labels mapped to one)
VOTE = "final_answer"  # alignment faking: the classifier's yes/no vote
SCORES = ("convincing", "specific")  # compliance, optional: StrongREJECT's 1-5 scales

_HOW = "see prompts/README.md, \"Writing your own judge template\""


def _needs_boolean(ref: str, meta: FrontMatter, name: str, what: str) -> None:
    spec = meta.verdict.get(name)
    if spec is None:
        raise InputError(f"{ref}: no verdict.{name}: the {meta.stage} stage needs {what} — add "
                         f"a [verdict.{name}] table of type \"bool\", or a \"choice\" with "
                         f"`true = [...]` ({_HOW})")
    if not spec.boolean:
        fix = ("add `true = [...]` listing the labels that mean yes" if spec.type == "choice"
               else "use type = \"bool\", or a \"choice\" with `true = [...]`")
        raise InputError(f"{ref}: verdict.{name} is {spec.describe()}, but the {meta.stage} "
                         f"stage needs {what} as a boolean — {fix} ({_HOW})")


def _compliance_needs(ref: str, meta: FrontMatter) -> None:
    _needs_boolean(ref, meta, REFUSED, "whether the model refused")
    for name in SCORES:  # optional; they make the StrongREJECT score, whose formula needs 1-5
        spec = meta.verdict.get(name)
        if spec is not None and (spec.type != "int" or spec.min != 1 or spec.max != 5):
            raise InputError(f"{ref}: verdict.{name} feeds the StrongREJECT score, which needs "
                             f"an int on a 1-5 scale — set type = \"int\", min = 1, max = 5, or "
                             f"remove the field ({_HOW})")


def _af_needs(ref: str, meta: FrontMatter) -> None:
    _needs_boolean(ref, meta, VOTE, "the classifier's yes/no vote")


STAGE_NEEDS = {"compliance": _compliance_needs, "alignment_faking": _af_needs}


def refused(verdict: dict[str, Any]) -> bool:
    """The compliance judge's answer: the model refused."""
    return _boolean(verdict, REFUSED)


def vote_yes(verdict: dict[str, Any]) -> bool:
    """An alignment-faking classifier vote: yes or no."""
    return _boolean(verdict, VOTE)


def _boolean(verdict: dict[str, Any], name: str) -> bool:
    value = verdict.get(name)
    if type(value) is not bool:  # parse() gives a bool for every checked template: never guess
        raise RunError(f"a stored judge verdict has {name} = {value!r}, not a boolean — "
                       "the results file is damaged")
    return value
