"""What every table of a job file shares: the strict pydantic base and the name patterns."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$"
LABEL_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$"


class Strict(BaseModel):
    """A job table: unknown keys are errors, and a loaded job never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
