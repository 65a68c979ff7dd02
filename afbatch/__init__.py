"""afbatch: Alignment-Faking-style evaluations through provider batch APIs.

The Python API (README, "Python API"): `open_run` reads a stored run's tables, `estimate` prices a
job. Both import pandas and the rest on first use: `import afbatch` stays cheap.
"""

import sys
import types

from afbatch.api import RunTables, estimate, open_run

__version__ = "0.1.0"
__all__ = ["RunTables", "__version__", "estimate", "open_run"]


class _Package(types.ModuleType):
    """`afbatch.estimate` is the function above, although a submodule has that name too: importing
    a submodule sets it as an attribute of its package, which would replace the function after its
    first call. The module stays importable (`from afbatch.estimate import estimate_job`)."""

    def __setattr__(self, name: str, value: object) -> None:
        if name == "estimate" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
