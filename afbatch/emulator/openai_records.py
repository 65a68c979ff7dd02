"""What the emulated OpenAI service keeps: uploaded files and batches, as the API shows them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .batches import Job

DAY = 24 * 3600


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    expires_at: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": self.expires_at,
            "status_details": None,
        }


@dataclass
class OpenAIBatch(Job):
    input_file_id: str = ""
    endpoint: str = ""
    completion_window: str = "24h"
    metadata: dict[str, Any] | None = None
    model: str | None = None
    status: str = "validating"
    times: dict[str, int | None] = field(default_factory=dict)
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    counts: dict[str, int] = field(
        default_factory=lambda: {"total": 0, "completed": 0, "failed": 0}
    )
    usage: dict[str, int] = field(default_factory=lambda: {"input": 0, "cached": 0, "output": 0})

    def to_json(self) -> dict[str, Any]:
        u = self.usage
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": None if self.errors is None else {"object": "list", "data": self.errors},
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created),
            "expires_at": int(self.created) + DAY,
            **{
                k: self.times.get(k)
                for k in (
                    "in_progress_at",
                    "finalizing_at",
                    "completed_at",
                    "failed_at",
                    "expired_at",
                    "cancelling_at",
                    "cancelled_at",
                )
            },
            "request_counts": dict(self.counts),
            "metadata": self.metadata,
            "model": self.model,
            "usage": {
                "input_tokens": u["input"],
                "input_tokens_details": {"cached_tokens": u["cached"]},
                "output_tokens": u["output"],
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": u["input"] + u["output"],
            },
        }
