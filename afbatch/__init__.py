"""afbatch: Alignment-Faking-style evaluations through provider batch APIs."""

__version__ = "0.1.0"
