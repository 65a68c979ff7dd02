"""Typed errors. The library raises these; only `cli.py` turns them into one line and an exit code."""

from __future__ import annotations


class AfbatchError(Exception):
    """Base class: the message is one line saying what is wrong, where, and how to fix it."""

    exit_code = 1


class SpecError(AfbatchError):
    """A job file is malformed or inconsistent."""

    exit_code = 2


class InputError(AfbatchError):
    """A prompt file, dataset or price file cannot be read, downloaded or verified."""

    exit_code = 2


class OfflineError(InputError):
    """A file must be downloaded but the network may not be used."""


class PriceError(AfbatchError):
    """A model has no price entry."""

    exit_code = 2


class BudgetError(AfbatchError):
    """The expected cost exceeds --max-cost, or a run has spent what --max-cost allows."""

    exit_code = 3


class LimitError(AfbatchError):
    """Requests cannot be sharded within a provider's limits."""

    exit_code = 2


class StoreError(AfbatchError):
    """The store (local folder or S3) cannot be read or written."""


class ConflictError(StoreError):
    """A conditional write lost a race; the caller reloads and retries."""


class ProviderError(AfbatchError):
    """A provider call failed; the message carries the provider's own words, never a key."""

    def __init__(self, message: str, *, retryable: bool = False, rejects_request: bool = False):
        super().__init__(message)
        self.retryable = retryable
        # The provider refused what was sent (HTTP 400/404/413/422): the batch's rows fail with this message.
        # Anything else that is not retryable (a missing key, no permission) stops the run instead.
        self.rejects_request = rejects_request


class RunError(AfbatchError):
    """A run cannot proceed (unknown run id, job changed under a run, ...)."""


class CancelledError(RunError):
    """`afbatch cancel` (from another process) cancelled the run this process was running."""

    exit_code = 4
