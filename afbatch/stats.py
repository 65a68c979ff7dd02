"""Confidence intervals for binomial proportions and their differences (pure math, no pandas).

``cluster_rate`` and ``cluster_difference`` take per-prompt counts, so that several samples of
one prompt are not counted as independent observations.

The functions return NaN where the quantity is undefined (no observations) instead of raising,
so a report can print "no data" for an empty cell.
"""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import numpy as np

__all__ = [
    "Z95",
    "wilson_interval",
    "newcombe_difference",
    "cluster_rate",
    "cluster_difference",
]

#: Two-sided 95% standard-normal quantile, Φ⁻¹(0.975).
Z95 = 1.959963984540054

_NAN = float("nan")


def _check(k: int, n: int, z: float) -> None:
    if (
        not isinstance(k, Integral)
        or not isinstance(n, Integral)
        or isinstance(k, bool)
        or isinstance(n, bool)
    ):
        raise TypeError(f"k and n must be integers, got k={k!r}, n={n!r}")
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if not (z > 0 and math.isfinite(z)):
        raise ValueError(f"z must be a positive finite number, got {z!r}")


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (95% by default); (nan, nan) when n == 0."""
    # Wilson, E. B. (1927) JASA 22:209-212; Newcombe (1998a) Stat. Med. 17:857-872, method 3
    # (score interval without continuity correction). The roots of |p̂ - p| = z·sqrt(p(1-p)/n):
    #   (p̂ + z²/2n ± z·sqrt(p̂(1-p̂)/n + z²/4n²)) / (1 + z²/n).
    _check(k, n, z)
    if n == 0:
        return (_NAN, _NAN)
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    # At k = 0 (k = n) the lower (upper) root is exactly 0 (1); pin it against rounding.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (float(lo), float(hi))


def newcombe_difference(
    k1: int, n1: int, k2: int, n2: int, z: float = Z95
) -> tuple[float, float, float]:
    """Difference p1 - p2 with Newcombe's hybrid score interval; all NaN when n1 or n2 is 0."""
    # Newcombe, R. G. (1998b) "Interval estimation for the difference between independent
    # proportions: comparison of eleven methods", Stat. Med. 17:873-890, method 10 (hybrid
    # score, no continuity correction). With Wilson limits (l1, u1) for p1 and (l2, u2) for p2:
    #   lower = d - sqrt((p1 - l1)² + (u2 - p2)²),  upper = d + sqrt((u1 - p1)² + (p2 - l2)²).
    _check(k1, n1, z)
    _check(k2, n2, z)
    if n1 == 0 or n2 == 0:
        return (_NAN, _NAN, _NAN)
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson_interval(k1, n1, z)
    l2, u2 = wilson_interval(k2, n2, z)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return (float(d), float(max(-1.0, lo)), float(min(1.0, hi)))


# ---------------------------------------------------------------------------------------------
# Clustered designs: several samples of one prompt are not independent observations.
# ---------------------------------------------------------------------------------------------


def _wilson_real(p: float, n: float, z: float) -> tuple[float, float]:
    """Wilson limits for an observed share p at a (possibly non-integer) effective size n."""
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(max(p * (1.0 - p) / n + z2 / (4.0 * n * n), 0.0)) / denom
    lo = 0.0 if p <= 0.0 else max(0.0, centre - half)
    hi = 1.0 if p >= 1.0 else min(1.0, centre + half)
    return (float(lo), float(hi))


def _arrays(k: Any, n: Any) -> tuple[np.ndarray, np.ndarray]:
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    if k.shape != n.shape or k.ndim != 1:
        raise ValueError(f"k and n must be 1-d arrays of one length, got {k.shape}, {n.shape}")
    if (n < 0).any() or (k < 0).any() or (k > n).any():
        raise ValueError("need 0 <= k <= n in every cluster")
    return k, n


def _design_effect(k: np.ndarray, n: np.ndarray, p: float) -> float:
    """Cluster-robust variance of the ratio Σk/Σn over its binomial variance, at least 1.

    Robust: Σ(k_i − p·n_i)² / N² (the linearised ratio estimator, clusters independent);
    binomial: p(1 − p)/N. With one observation per cluster the two are equal, so the
    design effect is exactly 1 and the interval is Wilson's.
    """
    naive = p * (1.0 - p) * float(n.sum())
    if naive <= 0.0:  # every outcome alike: no variance to inflate
        return 1.0
    return max(1.0, float(((k - p * n) ** 2).sum()) / naive)


def cluster_rate(k: Any, n: Any, z: float = Z95) -> tuple[float, float, float, float]:
    """Rate Σk/Σn over clusters (one entry per prompt: k successes of n samples) with a
    design-effect Wilson interval; returns (rate, lo, hi, design effect), NaNs when Σn = 0.

    The Wilson interval is taken at the effective sample size Σn / deff, deff being the
    cluster-robust variance over the binomial one (Kish's design effect, estimated from the
    data). With one sample per prompt it is Wilson's interval exactly. The robust variance
    needs enough prompts to be estimated: with few (say under 20) the interval is optimistic.
    """
    k, n = _arrays(k, n)
    total = float(n.sum())
    if total == 0:
        return (_NAN, _NAN, _NAN, _NAN)
    p = float(k.sum()) / total
    deff = _design_effect(k, n, p)
    lo, hi = _wilson_real(p, total / deff, z)
    return (p, lo, hi, deff)


def cluster_difference(
    k1: Any, n1: Any, k2: Any, n2: Any, z: float = Z95, paired: bool = True
) -> tuple[float, float, float]:
    """Difference of two clustered rates, Σk1/Σn1 − Σk2/Σn2, with a hybrid score interval.

    Arrays are aligned by cluster (prompt); a prompt absent from one condition has n = 0 there.
    Newcombe's hybrid (square-and-add) combination of the two design-effect Wilson intervals
    (``cluster_rate``); ``paired`` subtracts the covariance term with the correlation φ of the
    two rates' cluster residuals — with one sample per prompt and every prompt in both
    conditions φ is the phi coefficient of the 2×2 table and this is Newcombe's (1998c) paired
    method 10. Unpaired (φ = 0) is his method 10 for independent samples (1998b).
    Returns (d, lo, hi), NaNs when either side has no observation.
    """
    k1, n1 = _arrays(k1, n1)
    k2, n2 = _arrays(k2, n2)
    if k1.shape != k2.shape:
        raise ValueError("both conditions need one entry per cluster (use n = 0 where absent)")
    p1, l1, u1, _ = cluster_rate(k1, n1, z)
    p2, l2, u2, _ = cluster_rate(k2, n2, z)
    if math.isnan(p1) or math.isnan(p2):
        return (_NAN, _NAN, _NAN)
    phi = 0.0
    if paired:
        r1 = (k1 - p1 * n1) / n1.sum()
        r2 = (k2 - p2 * n2) / n2.sum()
        v1, v2 = float((r1 * r1).sum()), float((r2 * r2).sum())
        if v1 > 0 and v2 > 0:
            phi = min(1.0, max(-1.0, float((r1 * r2).sum()) / math.sqrt(v1 * v2)))
    d = p1 - p2
    dl1, du1, dl2, du2 = p1 - l1, u1 - p1, p2 - l2, u2 - p2
    lo = d - math.sqrt(max(0.0, dl1 * dl1 - 2 * phi * dl1 * du2 + du2 * du2))
    hi = d + math.sqrt(max(0.0, du1 * du1 - 2 * phi * du1 * dl2 + dl2 * dl2))
    return (float(d), float(max(-1.0, lo)), float(min(1.0, hi)))
