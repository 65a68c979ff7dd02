"""What the emulated Anthropic service keeps: its message batches, as the API shows them."""

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
class AnthropicBatch(Job):
    rows: list[Row] = field(default_factory=list)
    results: list[str] | None = None  # the output lines, as served
    counts: dict[str, int] = field(default_factory=dict)
    ended_at: float | None = None

    def to_json(self, base_url: str) -> dict[str, Any]:
        status = (
            "ended"
            if self.ended
            else ("canceling" if self.cancel_at is not None else "in_progress")
        )
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        counts.update(self.counts if self.ended else {"processing": len(self.rows)})
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": rfc3339(self.ended_at),
            "created_at": rfc3339(self.created),
            "expires_at": rfc3339(self.created + 24 * 3600),
            "archived_at": None,
            "cancel_initiated_at": rfc3339(self.cancel_at),
            "results_url": f"{base_url}/v1/messages/batches/{self.id}/results"
            if self.ended
            else None,
        }
