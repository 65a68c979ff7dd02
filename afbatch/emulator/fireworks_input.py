"""What the emulated Fireworks service accepts, as the real one does: the ids, models, fields
and parameters a create call may name, and a job's input dataset (structural problems fail the
job, parameter problems fail their row)."""

from __future__ import annotations

import json
import re
from typing import Any

from .batches import Row, text_of
from .fireworks_records import FireworksJob
from .responders import CallContext

ID_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
MODEL_RE = re.compile(r"^accounts/[a-z0-9-]+/models/[a-z0-9._-]+$")
BODY_PARAMS = frozenset(
    (
        "messages",
        "max_tokens",
        "temperature",
        "top_p",
        "top_k",
        "n",
        "stop",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "response_format",
    )
)
JOB_FIELDS = frozenset(
    (
        "displayName",
        "model",
        "inputDatasetId",
        "outputDatasetId",
        "inferenceParameters",
        "precision",
        "continuedFromJobName",
    )
)
DATASET_FIELDS = frozenset(
    (
        "displayName",
        "exampleCount",
        "userUploaded",
        "evaluationResult",
        "transformed",
        "splitted",
        "evalProtocol",
        "externalUrl",
        "format",
        "sourceJobName",
    )
)
PARAMS: dict[str, type | tuple[type, ...]] = {
    "maxTokens": int,
    "temperature": (int, float),
    "topP": (int, float),
    "topK": int,
    "n": int,
    "extraBody": str,
}


def read_rows(j: FireworksJob, data: bytes, max_bytes: int) -> tuple[list[Row], str | None]:
    """Validate the input dataset (`data`, its files joined) as the job does before running
    it: the rows, or the problem that fails the job."""
    if len(data) > max_bytes:
        return [], f"the input dataset is over {max_bytes} bytes"
    rows, seen = [], set()
    for n, raw in enumerate((ln for ln in data.splitlines() if ln.strip()), 1):
        try:
            obj = json.loads(raw)
        except ValueError:
            return [], f"line {n}: not valid JSON"
        if not isinstance(obj, dict) or set(obj) != {"custom_id", "body"}:
            return [], f"line {n}: a line must be exactly {{custom_id, body}}"
        cid, body = obj["custom_id"], obj["body"]
        if not isinstance(cid, str) or not cid or cid in seen:
            return [], f"line {n}: custom_id must be a unique non-empty string"
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return [], f"line {n}: body.messages must be an array"
        seen.add(cid)
        rows.append(input_row(j, cid, body))
    return rows, None if rows else "the input dataset is empty"


def input_row(j: FireworksJob, cid: str, body: dict[str, Any]) -> Row:
    """One input line's row: its CallContext, or the problem that fails that row."""
    unknown = sorted(set(body) - BODY_PARAMS)
    if unknown:  # the model is the job's: a row does not choose it
        return Row(cid, None, invalid=f"unknown request field(s) {unknown}")
    mt = body.get("max_tokens")
    if mt is not None and (type(mt) is not int or mt < 1):
        return Row(cid, None, invalid="max_tokens must be an integer >= 1")
    t = body.get("temperature")
    if t is not None and (type(t) not in (int, float) or not 0 <= t <= 2):
        return Row(cid, None, invalid="temperature must be within [0, 2]")
    try:
        msgs = [
            (m["role"], text_of(m.get("content"), f"messages.{i}.content"))
            for i, m in enumerate(body["messages"])
        ]
    except (ValueError, KeyError, TypeError) as exc:
        return Row(cid, None, invalid=f"invalid messages: {exc}")
    if not msgs or any(r not in ("system", "user", "assistant") for r, _ in msgs):
        return Row(cid, None, invalid="messages need roles system, user or assistant")
    system = [c for r, c in msgs if r == "system"]
    # A trailing assistant turn stays a message: continuing it is not documented.
    turns = [{"role": r, "content": c} for r, c in msgs if r != "system"]
    params = {k: v for k, v in body.items() if k != "messages"}
    ctx = CallContext(
        "fireworks",
        j.model,
        cid,
        "\n\n".join(system) if system else None,
        turns,
        None,
        params,
        j.name,
    )
    return Row(cid, ctx, cache_marked=True, source=body)  # batch jobs cache automatically
