"""The run's metadata as the report shows it: the protocol and judging records a report always
carries, and the metadata as (key, one printable line) pairs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from afbatch.columns import is_null
from afbatch.protocol import PROFILES, protocol_record
from afbatch.report.cells import _plain, _py
from afbatch.report.partial import rule_text
from afbatch.report.prep import Prep


def _named(values: list[Any]) -> list[str]:
    """The distinct values recorded, in order of appearance, as texts."""
    return [str(n) for n in dict.fromkeys(values) if not is_null(n)]


def _with_protocol(meta: Mapping[str, Any] | None, prep: Prep) -> dict[str, Any]:
    """The meta with its `protocol` record; when the caller gave none, the one the conversation
    table's ``profile`` column names, so a report always says which rules made its numbers."""
    out = dict(meta or {})
    if "protocol" not in out:
        names = _named(prep["profile"])
        if len(names) == 1 and names[0] in PROFILES:
            out["protocol"] = protocol_record(PROFILES[names[0]])
        elif names:
            out["protocol"] = {
                "profile": ", ".join(names),
                "rules": "several profiles in one table",
            }
    if "judging" not in out:
        rules = _named(prep["compliance_rule"])
        if rules:
            out["judging"] = {"compliance_rule": ", ".join(rules)}
        reads = _named(prep["partial_reads"])
        if rules and reads:  # the partial-compliance classifier's routing rule
            out["judging"]["partial_reads"] = ", ".join(reads)
    return out


def _meta_lines(meta: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    if not meta:
        return []
    out = []
    for k, v in meta.items():
        if k == "prefill":  # its own table (_prefill_view)
            continue
        if k == "protocol" and isinstance(v, Mapping):  # its rules, in words
            out.append(("protocol", _plain(str(v.get("rules") or v.get("profile")), 300)))
            continue
        val = v if isinstance(v, str) else json.dumps(_py(v), ensure_ascii=False, sort_keys=True)
        # the judging set-up names templates by path: kept whole, as the numbers depend on it
        out.append((_plain(k, 80), _plain(val, 2000 if k == "judging" else 300)))
        if k == "judging" and isinstance(v, Mapping) and v.get("partial_reads"):
            where = (
                f"{v['partial_template']} on {v.get('partial_model')}: "
                if v.get("partial_template")
                else ""
            )
            out.append(
                ("partial compliance", _plain(where + rule_text(str(v["partial_reads"])), 600))
            )
    return out
