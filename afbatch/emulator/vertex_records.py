"""What the emulated Vertex AI batch prediction keeps (its jobs, as the REST API shows them) and
the lines it writes to ``predictions.jsonl``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .batches import Job, Outcome, Row
from .gemini_lines import result_line
from .gemini_records import rfc3339

# google.rpc code of a row error -> the HTTP status its error body carries
HTTP_OF_RPC = {3: 400, 7: 403, 8: 429, 13: 500, 14: 503}
REASONS = {400: "Bad Request", 403: "Forbidden", 429: "Too Many Requests", 503: "Unavailable"}


@dataclass
class VertexJob(Job):
    parent: str = ""  # projects/<p>/locations/<l>
    model: str = ""  # the bare model id, as the responder sees it
    display_name: str = ""
    source: str = ""  # gs:// input object
    dest: str = ""  # gs:// output prefix
    rows: list[Row] = field(default_factory=list)
    state: str = "JOB_STATE_PENDING"
    output_dir: str | None = None
    stats: dict[str, int] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    ended_at: float | None = None

    @property
    def name(self) -> str:
        return f"{self.parent}/batchPredictionJobs/{self.id}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "displayName": self.display_name,
            "model": f"publishers/google/models/{self.model}",
            "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [self.source]}},
            "outputConfig": {
                "predictionsFormat": "jsonl",
                "gcsDestination": {"outputUriPrefix": self.dest},
            },
            "state": self.state,
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(self.ended_at or self.created),
        }
        if self.state != "JOB_STATE_PENDING":
            out["startTime"] = rfc3339(self.created)
        if self.ended_at is not None:
            out["endTime"] = rfc3339(self.ended_at)
        if self.output_dir:
            out["outputInfo"] = {"gcsOutputDirectory": self.output_dir}
        if self.stats:
            out["completionStats"] = {k: str(v) for k, v in self.stats.items()}
        if self.error:
            out["error"] = self.error
        return out


def prediction_line(model: str, o: Outcome) -> dict[str, Any]:
    """A row's output line: its input's own columns (`key`, ...) passed through, the request,
    and the response, or `status`: the error as a message string."""
    line = dict(o.row.source) if isinstance(o.row.source, dict) else {}
    made = result_line(model, o)
    if "status" in made:
        err = made["status"]
        code = HTTP_OF_RPC.get(err["code"], 500)
        body = {"error": {"code": code, "message": err["message"], "status": err["status"]}}
        line["status"] = f"{REASONS.get(code, 'Internal Server Error')}: {json.dumps(body)}"
    else:
        line["response"] = made["response"]
        line["status"] = ""
    return line
