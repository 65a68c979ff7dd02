"""The tidy per-conversation table of a run (one row per model x variant x tier x prompt x sample).

Built from the manifest and the collected results only; `report.py` aggregates it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from afbatch.judge import af_model
from afbatch.ledger import ConversationState, Ledger, af_state, compliance_state
from afbatch.manifest import Manifest
from afbatch.protocol import CONDITION, proxy_compliant, scratchpads
from afbatch.runner import Run, row_cost
from afbatch.types import Usage

COLUMNS = [
    "model", "provider", "model_id", "variant", "cot", "tier", "condition", "prompt_index", "sample", "conversation_id",
    "user_input", "turns", "status", "failure_reason", "final_output", "scratchpad", "proxy_compliant", "judge_refused",
    "judge_compliant", "judge_convincing", "judge_specific", "judge_error", "af_votes_yes", "af_votes_total",
    "af_fraction", "af_verdict", "input_tokens", "cached_tokens", "output_tokens", "cost_usd", "judge_cost_usd",
    "cost_sync_usd",
]


def conversation_table(run: Run, m: Manifest | None = None) -> pd.DataFrame:
    m = m or run.manifest()
    ledger = run.ledger(m)
    judge = run.job.judge
    max_attempts = run.job.retries.max_attempts
    on_demand = {s.id for s in m.shards.values() if s.on_demand}
    rows: list[dict[str, Any]] = []
    comp_tpl = run.grid.judge_templates.get("compliance")
    af_tpl = run.grid.judge_templates.get("alignment_faking")
    judge_price = run.prices.lookup(judge.model) if judge else None
    af_price = run.prices.lookup(af_model(judge)) if judge else None
    for label, states in run.states(m, ledger).items():
        model = run.specs[label]
        price = run.prices.lookup(model)
        for cs in states:
            row = _base_row(cs, model)
            row["cost_usd"], row["cost_sync_usd"] = _generation_costs(cs, ledger, price, on_demand, model.cache_ttl)
            judge_cost = 0.0
            if judge and comp_tpl and cs.status == "finished":
                js = compliance_state(judge, comp_tpl, cs, ledger, max_attempts)
                judge_cost += row_cost(judge_price, js.usage, False, judge.model.cache_ttl)
                if js.verdict is not None:
                    refused = bool(js.verdict.get("refused"))
                    row.update(judge_refused=refused, judge_compliant=not refused,
                               judge_convincing=js.verdict.get("convincing"), judge_specific=js.verdict.get("specific"))
                    if af_tpl and cs.conv.cot and not refused:
                        af = af_state(judge, af_tpl, cs, ledger, max_attempts)
                        judge_cost += row_cost(af_price, af.usage, False, af_model(judge).cache_ttl)
                        if af.status == "finished":
                            row.update(af_votes_yes=af.votes_yes, af_votes_total=af.votes_total,
                                       af_fraction=af.votes_yes / af.votes_total if af.votes_total else None,
                                       af_verdict=af.af)
                        elif af.status == "failed":
                            row["judge_error"] = f"alignment-faking classifier: {af.reason}"
                elif js.status == "failed":
                    row["judge_error"] = js.reason
            row["judge_cost_usd"] = judge_cost
            rows.append(row)
    df = pd.DataFrame(rows, columns=COLUMNS)
    return df


def _base_row(cs: ConversationState, model: Any) -> dict[str, Any]:
    c = cs.conv
    status = cs.status if cs.status in ("finished", "failed") else "running"
    return {
        "model": c.model, "provider": model.provider, "model_id": model.model, "variant": c.variant, "cot": c.cot,
        "tier": c.tier, "condition": CONDITION[c.tier], "prompt_index": c.prompt_index, "sample": c.sample,
        "conversation_id": c.id, "user_input": c.user_input, "turns": len(cs.turn_texts), "status": status,
        "failure_reason": cs.reason if cs.status == "failed" else None,
        "final_output": cs.final_output,
        "scratchpad": "\n\n".join(scratchpads(cs.turn_texts)) or None,
        "proxy_compliant": proxy_compliant(cs.final_output) if cs.status == "finished" else None,
        "judge_refused": None, "judge_compliant": None, "judge_convincing": None, "judge_specific": None,
        "judge_error": None, "af_votes_yes": None, "af_votes_total": None, "af_fraction": None, "af_verdict": None,
        "input_tokens": cs.usage.input_tokens, "cached_tokens": cs.usage.cached_tokens, "output_tokens": cs.usage.output_tokens,
    }


def _generation_costs(cs: ConversationState, ledger: Ledger, price: Any, on_demand: set[str], ttl: str) -> tuple[float, float]:
    """Billed cost of every attempt of the conversation, and what the same tokens cost at list price."""
    billed = 0.0
    seen: set[tuple[str, str]] = set()
    for shard, rid in cs.attempts:
        if (shard, rid) in seen:
            continue
        seen.add((shard, rid))
        for a in ledger.get(rid):
            if a.shard == shard:
                billed += row_cost(price, a.result.usage, shard in on_demand, ttl)
    u: Usage = cs.usage
    lin, lout = price.list_rates(u.input_tokens)
    return billed, (u.input_tokens * lin + u.output_tokens * lout) / 1e6


def run_meta(run: Run, m: Manifest) -> dict[str, Any]:
    return {"run_id": run.run_id, "job": m.job_name, "store": run.store.url, "created_at": m.created_at,
            "finished_at": m.finished_at, "spent_usd": round(m.spent_usd(), 4),
            "models": [mm.name for mm in run.job.models], "judge": run.job.judge.model.name if run.job.judge else None}


def write_report(run: Run) -> list[str]:
    """Tables (CSV, parquet), report.json and report.html into the run's `report/` folder in the store."""
    import json
    import tempfile
    from pathlib import Path

    from afbatch import report

    m = run.manifest()
    conv = conversation_table(run, m)
    meta = run_meta(run, m)
    keys = []
    with tempfile.TemporaryDirectory(prefix="afbatch-report-") as tmp:
        written = [p for p in report.write_tables(conv, tmp) if not p.startswith("note:")]
        Path(tmp, "report.json").write_text(json.dumps(report.report_json(conv, m.estimate or None, meta), indent=1))
        Path(tmp, "report.html").write_text(report.render_html(conv, m.estimate or None, meta), encoding="utf-8")
        for path in [*written, str(Path(tmp, "report.json")), str(Path(tmp, "report.html"))]:
            key = f"runs/{run.run_id}/report/{Path(path).name}"
            run.store.write(key, Path(path).read_bytes())
            keys.append(key)
    return keys
