"""Judge templates: a prompt text with a TOML front matter that declares how its verdict is parsed.

    +++
    stage = "compliance"
    [verdict.refused]
    pattern = '(?m)^\\s*1\\.b\\s+([01])\\b'
    type = "bool"
    +++
    ...prompt text with {request} and {response} (or {reasoning})...

Each verdict field is a regex with one capture group, searched in the judge's reply, and a type
(bool, int with min/max, or choice with allowed values). A reply missing any field is
unparseable: it is retried, then reported — never guessed.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from afbatch.datasets import read_source
from afbatch.errors import InputError

_TRUE = {"1", "yes", "true", "y"}
_FALSE = {"0", "no", "false", "n"}


class VerdictField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str
    type: Literal["bool", "int", "choice"] = "bool"
    min: int | None = None
    max: int | None = None
    choices: list[str] | None = None


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
    return raw if not spec.choices or raw in spec.choices else None


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
        raise InputError(f"{ref}: front matter {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
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
