"""Runs answered by the emulator live in a store of their own, marked so that no real run shares it.

A new run reuses answers any run in its store got, and must never take a fake model's; so a command
that sends requests opens its store only if the store holds emulator runs exactly when the emulator
answers (`afbatch run --emulator`, or `afbatch emulate`'s exports in the shell).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from afbatch.errors import InputError
from afbatch.providers import EMULATOR_ENV

if TYPE_CHECKING:
    from afbatch.store import Store

EMULATOR_STORE = "manifests-emulator"  # the default store while emulating
EMULATOR_MARK = "emulator-store.txt"  # at the store's root: its runs were answered by the emulator


def emulated() -> bool:
    """The emulator answers this process's provider calls."""
    return bool(os.environ.get(EMULATOR_ENV))


def open_checked(store_url: str, *, spending: bool = False) -> Store:
    """The store; for a command that sends requests, checked to hold emulator runs iff emulating
    (a new local store is marked when an emulated command first uses it)."""
    from afbatch import manifest as mf
    from afbatch.store import open_store

    store = open_store(store_url)
    if not spending:
        return store
    marked = store.exists(EMULATOR_MARK)
    if emulated() and not marked:
        if store.url.startswith("s3://") or mf.list_runs(store):
            raise InputError(
                f"store {store.url} holds real runs: emulator runs need a local "
                f"folder of their own — leave out --store (default "
                f"{EMULATOR_STORE}/) or pass an empty folder"
            )
        store.write(
            EMULATOR_MARK,
            b"The runs in this store were answered by afbatch's emulator, not by real models.\n",
        )
    elif marked and not emulated():
        raise InputError(
            f"store {store.url} holds emulator runs (a fake model's answers): pass "
            "another --store for real runs, or use --emulator"
        )
    return store
