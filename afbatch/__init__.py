"""afbatch: Alignment-Faking-style evaluations through provider batch APIs.

The Python API (README, "Python API"): `open_run` reads a stored run's tables, `estimate` prices a
job. Both import pandas and the rest on first use: `import afbatch` stays cheap.
"""

from afbatch.api import RunTables, estimate, open_run

__version__ = "0.1.0"
__all__ = ["RunTables", "__version__", "estimate", "open_run"]
