"""What the emulated Fireworks service keeps: datasets (with their files) and batch inference
jobs, as the API shows them."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .batches import Job


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Dataset:
    name: str
    created: float
    display_name: str = ""
    example_count: str = "0"
    files: dict[str, bytes] = field(default_factory=dict)
    state: str = "UPLOADING"
    signature: str = field(default_factory=lambda: secrets.token_hex(16))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "displayName": self.display_name,
            "createTime": iso(self.created),
            "state": self.state,
            "status": {"code": "OK", "message": ""},
            "exampleCount": self.example_count,
            "userUploaded": {},
            "format": "FORMAT_UNSPECIFIED",
        }


@dataclass
class FireworksJob(Job):
    name: str = ""
    display_name: str = ""
    model: str = ""
    input_dataset: str = ""
    output_dataset: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    state: str = "JOB_STATE_VALIDATING"
    message: str = ""
    progress: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "displayName": self.display_name,
            "createTime": iso(self.created),
            "createdBy": "emulator@example.com",
            "state": self.state,
            "status": {
                "code": "OK" if self.state != "JOB_STATE_FAILED" else "INVALID_ARGUMENT",
                "message": self.message,
            },
            "model": self.model,
            "inputDatasetId": self.input_dataset,
            "outputDatasetId": self.output_dataset,
            "inferenceParameters": dict(self.params),
            "updateTime": iso(time.time()),
            "precision": "PRECISION_UNSPECIFIED",
            "jobProgress": dict(self.progress),
            "continuedFromJobName": "",
        }
