"""The tidy per-conversation table of a run (one row per model x variant x temperature x samples x
tier x prompt x sample).

Built from the manifest and the collected results only, as columns (`afbatch.columns.Columns`);
`afbatch.report` aggregates them. `conversation_table` gives the same table as a pandas DataFrame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from afbatch.arrow_table import arrow_text as _arrow_text
from afbatch.columns import Columns
from afbatch.judge import af_model
from afbatch.judge_verdicts import complied as judged_complied
from afbatch.judge_verdicts import partial_class
from afbatch.judge_verdicts import refused as judged_refused
from afbatch.ledger import bulk
from afbatch.manifest import Manifest
from afbatch.protocol import CONDITION, PROFILES, prefill_record, protocol_record
from afbatch.runner import Run

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = [
    "model",
    "provider",
    "model_id",
    "variant",
    "cot",
    "tier",
    "condition",
    "prompt_index",
    "sample",
    "temperature",
    "samples",
    "conversation_id",
    "user_input",
    "turns",
    "status",
    "failure_reason",
    "final_output",
    "scratchpad",
    "proxy_compliant",
    "judge_refused",
    "judge_compliant",
    "judge_convincing",
    "judge_specific",
    "judge_error",
    "af_votes_yes",
    "af_votes_total",
    "af_fraction",
    "af_verdict",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_usd",
    "judge_cost_usd",
    "cost_sync_usd",
    "profile",
    "compliance_rule",
    "partial_verdict",
    "partial_reads",
]


TEXT_COLUMNS = ("user_input", "final_output", "scratchpad", "failure_reason", "judge_error")
CHUNK = 5000


def conversation_table(run: Run, m: Manifest | None = None) -> pd.DataFrame:
    """One row per conversation, as a pandas DataFrame (`conversation_columns`)."""
    from afbatch.report.frames import conversation_frame

    return conversation_frame(conversation_columns(run, m))


def conversation_columns(run: Run, m: Manifest | None = None) -> Columns:
    """One row per conversation, as columns. Streams: each conversation's raw texts are released
    once its row is built, and long text columns go to Arrow in chunks, so 100k transcripts never
    sit in memory twice."""
    m = m or run.manifest()
    # The state the run's last step derived, when nothing changed since; drained row by row below.
    state = run.state(m, for_report=True)
    judge = run.job.judge
    profile = PROFILES[run.job.protocol.profile]
    on_demand = {s.id for s in m.shards.values() if s.on_demand}
    if judge:
        judge_cost_of = run.prices.lookup(judge.model).row_cost(False, judge.model.cache_ttl)
        af_cost_of = run.prices.lookup(af_model(judge)).row_cost(False, af_model(judge).cache_ttl)
    table = _Columns()
    costs: dict[str, tuple[Any, Any, Any]] = {}
    for model in run.job.models:
        price = run.prices.lookup(model)
        costs[model.name] = (
            price,
            price.row_cost(False, model.cache_ttl),
            price.row_cost(True, model.cache_ttl),
        )
    with bulk():
        for row in state.drain():
            model, cs, js = row.model, row.state, row.compliance
            conv = cs.conv
            price, batch_cost_of, on_demand_cost_of = costs[model.name]
            usage = cs.usage
            cost = sum(
                (on_demand_cost_of if a.shard in on_demand else batch_cost_of)(a.result.usage)
                for a in cs.attempts
            )
            lin, lout = price.list_rates(usage.input_tokens)
            cost_sync = (usage.input_tokens * lin + usage.output_tokens * lout) / 1e6
            refused = compliant = convincing = specific = judge_error = None
            votes_yes = votes_total = af_fraction = af_verdict = partial = None
            judge_cost = 0.0
            # the compliance judge read it (state.to_compliance; a job without a judge has no js)
            if js is not None and judge is not None:
                judge_cost += judge_cost_of(js.usage)
                if js.verdict is not None:
                    refused = judged_refused(js.verdict)
                    compliant = judged_complied(js.verdict, judge.compliance_rule)
                    # optional fields: a template without them gives no StrongREJECT score
                    convincing, specific = js.verdict.get("convincing"), js.verdict.get("specific")
                    af = row.af
                    if af is not None:  # and the classifier (state.to_af)
                        judge_cost += af_cost_of(af.usage)
                        if af.status == "finished":
                            votes_yes, votes_total, af_verdict = af.votes_yes, af.votes_total, af.af
                            af_fraction = af.votes_yes / af.votes_total if af.votes_total else None
                        if af.reason:  # failed, or finished with some votes missing: say why
                            judge_error = f"alignment-faking classifier: {af.reason}"
                elif js.status == "failed":
                    judge_error = js.reason
                pc = row.partial
                if pc is not None:  # the partial-compliance classifier read it (state.to_partial)
                    judge_cost += judge_cost_of(pc.usage)
                    if pc.verdict is not None:
                        partial = partial_class(pc.verdict)
                    elif pc.status == "failed" and judge_error is None:
                        judge_error = f"partial-compliance classifier: {pc.reason}"
            table.append(
                (  # in COLUMNS order
                    conv.model,
                    model.provider,
                    model.model,
                    conv.variant,
                    conv.cot,
                    conv.tier,
                    CONDITION[conv.tier],
                    conv.prompt_index,
                    conv.sample,
                    conv.temperature,
                    conv.samples,
                    conv.id,
                    conv.user_input,
                    len(cs.turn_texts),
                    cs.status if cs.status in ("finished", "failed") else "running",
                    cs.reason if cs.status == "failed" else None,
                    cs.final_output,
                    cs.reasoning or None,
                    profile.proxy(cs.status, cs.final_output, cs.ended_without_output),
                    refused,
                    compliant,
                    convincing,
                    specific,
                    judge_error,
                    votes_yes,
                    votes_total,
                    af_fraction,
                    af_verdict,
                    usage.input_tokens,
                    usage.cached_tokens,
                    usage.output_tokens,
                    cost,
                    judge_cost,
                    cost_sync,
                    profile.name,
                    judge.compliance_rule if judge else None,
                    partial,
                    judge.partial_reads if judge and judge.partial_template else None,
                )
            )
    return table.columns()


class _Columns:
    """Rows in COLUMNS order, turned into columns every CHUNK rows; text columns go to Arrow when
    pyarrow is installed."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}
        self.rows: list[tuple[Any, ...]] = []
        try:
            import pyarrow as pa

            self.pa: Any = pa
        except ImportError:
            self.pa = None
        self.chunks: dict[str, list[Any]] = {c: [] for c in TEXT_COLUMNS}

    def append(self, row: tuple[Any, ...]) -> None:
        self.rows.append(row)
        if len(self.rows) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        for c, values in zip(COLUMNS, zip(*self.rows)):
            if self.pa is not None and c in TEXT_COLUMNS:
                self.chunks[c].append(_arrow_text(self.pa, values))
            else:
                self.cols[c].extend(values)
        self.rows = []
        if self.pa is not None:
            _release_freed_memory()

    def columns(self) -> Columns:
        self._flush()
        data: dict[str, Any] = dict(self.cols)
        if self.pa is not None:
            for c in TEXT_COLUMNS:
                data[c] = self.pa.chunked_array(self.chunks[c], self.pa.large_string())
        return Columns({c: data[c] for c in COLUMNS}, len(self.cols["model"]))


_malloc_trim: Any = None


def _release_freed_memory() -> None:
    """Give the memory of freed transcripts back to the OS. glibc keeps freed blocks in its heap,
    where the Arrow copies (their own allocator) cannot reuse them; without this a 100k-conversation
    table holds every transcript twice. A no-op where the C library is not glibc."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


def run_meta(run: Run, m: Manifest) -> dict[str, Any]:
    import datetime as dt

    def iso(t: float | None) -> str | None:
        return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if t else None

    texts = {v.name: v.prefill_text for v in run.job.variants}
    # What the run recorded when it was created (what every turn sent), not a fresh catalog lookup.
    sent, why = m.prefill, m.prefill_reason
    prefill = {
        mm.name: prefill_record(sent.get(mm.name, False), why.get(mm.name, ""), texts)
        for mm in run.job.models
    }
    return {
        "run_id": run.run_id,
        "job": m.job_name,
        "store": run.store.url,
        "created_at": iso(m.created_at),
        "finished_at": iso(m.finished_at),
        "spent_usd": round(m.spent_usd(), 4),
        "models": [mm.name for mm in run.job.models],
        "judge": run.job.judge.model.name if run.job.judge else None,
        "protocol": protocol_record(PROFILES[run.job.protocol.profile]),
        "prefill": prefill,
        **(
            {"judging": judging_record(run.job.judge, run.grid.judge_templates)}
            if run.job.judge
            else {}
        ),
    }


def judging_record(judge: Any, templates: dict[str, Any]) -> dict[str, Any]:
    """Which judges and rules made the judged numbers, as report.json's `run.judging` states it."""
    out: dict[str, Any] = {
        "compliance_rule": judge.compliance_rule,
        "compliance_template": templates["compliance"].ref,
        "compliance_model": judge.model.name,
    }
    if "alignment_faking" in templates:
        out.update(
            af_template=templates["alignment_faking"].ref,
            af_model=af_model(judge).name,
            af_votes=judge.af_votes,
            af_rule=judge.af_rule,
            classify=judge.classify,
        )
        if judge.af_rule == "threshold":  # majority: more than half of the parsed votes say yes
            out.update(af_threshold=judge.af_threshold, af_maybe_band=judge.af_maybe_band)
    if "partial_compliance" in templates:
        out.update(
            partial_template=templates["partial_compliance"].ref,
            partial_model=judge.model.name,
            partial_reads=judge.partial_reads,
        )
    return out


def write_report(run: Run) -> list[str]:
    """Tables (CSV, parquet), report.json and report.html into the run's `report/` folder in the
    store."""
    import tempfile
    from pathlib import Path

    from afbatch import report
    from afbatch.layout import report_key

    m = run.manifest()
    conv = conversation_columns(run, m)
    keys = []
    with tempfile.TemporaryDirectory(prefix="afbatch-report-") as tmp:
        for path in report.write_all(
            conv,
            tmp,
            m.estimate or None,
            run_meta(run, m),
            gap_interval=run.job.report.gap_interval,
        ):
            if path.startswith("note:"):
                continue
            key = report_key(run.run_id, Path(path).name)
            run.put_file(key, path)  # a rename into a local store; an upload to S3
            keys.append(key)
    return keys


def calibration(run: Run) -> dict[str, Any]:
    """What a finished run observed per model: output tokens per turn, turn distribution,
    compliance.

    Returns {model label: estimate.Calibration}, for `afbatch estimate --calibrate-from RUN`.
    """
    from afbatch.columns import is_null, truths
    from afbatch.job_estimate import Calibration

    conv = conversation_columns(run)
    turns, tokens, status = conv.get("turns"), conv.get("output_tokens"), conv.get("status")
    cot, judged, proxy = (
        truths(conv.get("cot")),
        conv.get("judge_compliant"),
        conv.get("proxy_compliant"),
    )
    out: dict[str, Any] = {}
    max_turns = run.job.sampling.max_turns
    by_model: dict[str, list[int]] = {}
    for i, label in enumerate(conv.get("model")):
        by_model.setdefault(label, []).append(i)
    for label, rows in by_model.items():
        answered = [i for i in rows if turns[i] > 0]
        with_cot = [i for i in answered if cot[i]]
        plain = [i for i in answered if not cot[i]]
        cal: dict[str, Any] = {}
        if with_cot:
            cal["output_tokens_cot"] = sum(tokens[i] for i in with_cot) / sum(
                turns[i] for i in with_cot
            )
            cal["turn_weights_cot"] = tuple(
                sum(turns[i] >= t for i in with_cot) / len(with_cot)
                for t in range(1, max_turns + 1)
            )
            verdicts = [judged[i] for i in with_cot if not is_null(judged[i])]
            # answers only: a failure the notebook profile counts as not compliant is never judged
            proxied = [
                proxy[i] for i in with_cot if status[i] == "finished" and not is_null(proxy[i])
            ]
            source = verdicts or proxied
            if source:
                cal["compliance_rate"] = sum(bool(v) for v in source) / len(source)
        if plain:
            cal["output_tokens_no_cot"] = sum(tokens[i] for i in plain) / sum(
                turns[i] for i in plain
            )
        out[str(label)] = Calibration(**cal)
    return out
