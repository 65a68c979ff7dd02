"""Rows grouped by a key without sorting (groups in order of first appearance), and sums per group:
the report's group-bys, in numpy."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import compress
from typing import Any

import numpy as np


class Groups:
    """Each row's group number (``ids``) and the groups' keys in order of first appearance."""

    def __init__(self, keys: Iterable[Any]):
        index: dict[Any, int] = {}
        self.ids = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.intp)
        self.keys = list(index)
        self.first = np.unique(self.ids, return_index=True)[1]  # each group's first row

    @classmethod
    def of(cls, columns: Sequence[Sequence[Any]], rows: np.ndarray | None = None) -> Groups:
        """The rows (those ``rows`` marks, when given) grouped by the values of several columns
        together; keys are tuples, ``first`` positions in the whole table."""
        keys: Iterable[tuple[Any, ...]] = zip(*columns)
        if rows is None:
            return cls(keys)
        out = cls(compress(keys, rows.tolist()))
        out.first = np.flatnonzero(rows)[out.first]
        return out

    def sums(self, columns: Sequence[np.ndarray]) -> np.ndarray:
        """Each column summed per group: a (groups × columns) float array (sums of 0/1 are
        exact)."""
        n = len(self.keys)
        if not columns:
            return np.zeros((n, 0))
        return np.stack([np.bincount(self.ids, weights=c, minlength=n) for c in columns], axis=1)

    def members(self) -> list[np.ndarray]:
        """The rows of each group, in order."""
        order = np.argsort(self.ids, kind="stable")
        bounds = np.cumsum(np.bincount(self.ids, minlength=len(self.keys)))[:-1]
        return np.split(order, bounds) if len(self.keys) else []
