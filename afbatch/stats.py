"""Confidence intervals for binomial proportions and their differences (pure math, no pandas).

Both functions return NaN where the quantity is undefined (no observations) instead of raising,
so a report can print "no data" for an empty cell.
"""

from __future__ import annotations

import math
from numbers import Integral

__all__ = ["Z95", "wilson_interval", "newcombe_difference"]

#: Two-sided 95% standard-normal quantile, Φ⁻¹(0.975).
Z95 = 1.959963984540054

_NAN = float("nan")


def _check(k: int, n: int, z: float) -> None:
    if not isinstance(k, Integral) or not isinstance(n, Integral) or isinstance(k, bool) or isinstance(n, bool):
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
