"""What the emulated Gemini service keeps: files (uploaded, or a batch's results) and batches,
as the API shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .batches import Job, Row


def rfc3339(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class GeminiFile:
    name: str  # files/<id>
    display_name: str | None
    mime_type: str
    size: int  # declared at the start of the upload
    data: bytearray = field(default_factory=bytearray)
    generated: bool = False  # a batch's results: downloadable (uploaded files are not)
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),
            "state": "ACTIVE",
            "source": "GENERATED" if self.generated else "UPLOADED",
        }
        if self.display_name:
            out["displayName"] = self.display_name
        return out


@dataclass
class GeminiBatch(Job):
    model: str = ""
    display_name: str | None = None
    rows: list[Row] = field(default_factory=list)
    state: str = "BATCH_STATE_PENDING"
    output_file: str | None = None
    inline: bool = False  # requests came in the create call; responses go back in the resource
    inline_results: list[dict[str, Any]] | None = None
    stats: dict[str, int] = field(default_factory=dict)
    ended_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        n = len(self.rows)
        stats = {"requestCount": n, "pendingRequestCount": n, **self.stats}
        meta: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{self.model}",
            "name": f"batches/{self.id}",
            "state": self.state,
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(self.ended_at or self.created),
            "batchStats": {k: str(v) for k, v in stats.items()},
        }
        if self.display_name is not None:
            meta["displayName"] = self.display_name
        if self.ended_at is not None:
            meta["endTime"] = rfc3339(self.ended_at)
        if self.output_file:
            meta["output"] = {"responsesFile": self.output_file}
        elif self.inline_results:
            meta["output"] = {"inlinedResponses": {"inlinedResponses": self.inline_results}}
        return {"name": f"batches/{self.id}", "metadata": meta, "done": self.ended}
