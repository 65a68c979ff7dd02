"""Typed errors. The library raises these; only the CLI (`cli/`) turns them into one line and an
exit code."""

from __future__ import annotations

import errno
import os
import tempfile


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


class DamagedStoreError(StoreError):
    """An object the manifest points to is missing or does not hold what was written there.

    The message names the store key and the problem; `afbatch verify RUN` lists every problem, and
    `afbatch verify RUN --repair` restores what it can (nothing stored is overwritten)."""


class ConflictError(StoreError):
    """A conditional write lost a race; the caller reloads and retries."""


class ProviderError(AfbatchError):
    """A provider call failed; the message carries the provider's own words, never a key."""

    def __init__(self, message: str, *, retryable: bool = False, rejects_request: bool = False):
        super().__init__(message)
        self.retryable = retryable
        # The provider refused what was sent (HTTP 400/404/413/422): the batch's rows fail with this
        # message. Anything else that is not retryable (a missing key, no permission) stops the run
        # instead.
        self.rejects_request = rejects_request


class RunError(AfbatchError):
    """A run cannot proceed (unknown run id, job changed under a run, ...)."""


class CancelledError(RunError):
    """`afbatch cancel` (from another process) cancelled the run this process was running."""

    exit_code = 4


# Env variables whose value is a path afbatch uses: an OS error under one of them names it.
_PATH_ENV = ("AFBATCH_STORE", "AFBATCH_CACHE_DIR", "AFBATCH_PRICES", "XDG_CACHE_HOME", "TMPDIR")


def os_error_message(e: OSError, path: str | os.PathLike[str] | None = None) -> str:
    """One line for a file-system error: the path, what is wrong with it, and the fix."""
    where = path if path is not None else e.filename
    if where is None:
        where = e.filename2
    name = str(where) if where is not None else None
    code = e.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on the device" if code == errno.ENOSPC else "disk quota exceeded"
        if name is None:  # a write to an open file: name the places afbatch writes to
            name = f"the store, the cache or the temp folder ({tempfile.gettempdir()})"
        return (
            f"{name}: {what} — free some space and rerun the same command "
            f"(writes are atomic: what was stored is intact){_env_hint(name)}"
        )
    if name is None:
        return f"{e.strerror or e} — check the paths given to afbatch"
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"{name}: permission denied — make it accessible to this user "
            f"or choose another path{_env_hint(name)}"
        )
    if code == errno.EROFS:
        return f"{name}: read-only file system — choose another path{_env_hint(name)}"
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocker = _file_in_the_way(name)
        target = f" (for {name})" if blocker != os.path.abspath(name) else ""
        return (
            f"{blocker}: is a file where a folder is needed{target} — move the file away "
            f"or choose another path{_env_hint(name)}"
        )
    if code == errno.ENOENT:
        parent = os.path.dirname(os.path.abspath(name))
        if not os.path.isdir(parent):
            return (
                f"{name}: folder {parent} does not exist — create it or fix the path"
                f"{_env_hint(name)}"
            )
        return f"{name}: no such file — fix the path{_env_hint(name)}"
    if code == errno.EISDIR:
        return f"{name}: is a folder where a file is needed — give a file path{_env_hint(name)}"
    return f"{name}: {e.strerror or e} — check the path{_env_hint(name)}"


def _file_in_the_way(name: str) -> str:
    """The deepest existing part of `name` that is not a folder (itself when nothing else is)."""
    p = os.path.abspath(name)
    while True:
        if os.path.lexists(p) and not os.path.isdir(p):
            return p
        parent = os.path.dirname(p)
        if parent == p:
            return os.path.abspath(name)
        p = parent


def _env_hint(name: str) -> str:
    for var in _PATH_ENV:
        value = os.environ.get(var)
        root = os.path.abspath(os.path.expanduser(value)) if value else None
        path = os.path.abspath(name)
        if root and (path == root or path.startswith(root.rstrip(os.sep) + os.sep)):
            return f" (the path comes from ${var})"
    return ""
