"""Wilson and Newcombe intervals against published values and an independent derivation."""

from __future__ import annotations

import math

import pytest

from afbatch.stats import Z95, newcombe_difference, wilson_interval

Z = 1.959963984540054


def wilson_by_quadratic(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """Independent derivation: the Wilson limits are the roots p of (p̂ - p)² = z² p (1 - p) / n,
    i.e. (1 + z²/n) p² - (2 p̂ + z²/n) p + p̂² = 0, solved with the quadratic formula."""
    ph = k / n
    a = 1 + z * z / n
    b = -(2 * ph + z * z / n)
    c = ph * ph
    disc = math.sqrt(b * b - 4 * a * c)
    return ((-b - disc) / (2 * a), (-b + disc) / (2 * a))


def test_z95_is_the_975_quantile():
    from statistics import NormalDist

    assert Z95 == pytest.approx(NormalDist().inv_cdf(0.975), abs=1e-12)


# Newcombe (1998a), Stat. Med. 17:857-872, Table I, method 3 (Wilson score, no continuity correction).
@pytest.mark.parametrize(
    "k,n,lo,hi",
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe_1998a(k, n, lo, hi):
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(lo, abs=5e-5)
    assert got[1] == pytest.approx(hi, abs=5e-5)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 37, 100, 1000])
def test_wilson_matches_quadratic_roots(n):
    for k in range(0, n + 1, max(1, n // 13)):
        lo, hi = wilson_interval(k, n)
        rlo, rhi = wilson_by_quadratic(k, n)
        assert lo == pytest.approx(max(rlo, 0.0), abs=1e-12)
        assert hi == pytest.approx(min(rhi, 1.0), abs=1e-12)
        assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_wilson_edges():
    # k = 0: lower limit exactly 0, upper z²/(n + z²); k = n mirrors it.
    lo, hi = wilson_interval(0, 5)
    assert lo == 0.0
    assert hi == pytest.approx(Z * Z / (5 + Z * Z), abs=1e-12)  # 0.43448
    lo, hi = wilson_interval(5, 5)
    assert hi == 1.0
    assert lo == pytest.approx(5 / (5 + Z * Z), abs=1e-12)  # 0.56552
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_wilson_is_symmetric_and_z_matters():
    lo, hi = wilson_interval(3, 11)
    lo2, hi2 = wilson_interval(8, 11)
    assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)
    narrow = wilson_interval(3, 11, z=1.6448536269514722)
    assert lo < narrow[0] < narrow[1] < hi


@pytest.mark.parametrize("k,n", [(-1, 5), (6, 5), (0, -1)])
def test_wilson_rejects_impossible_counts(k, n):
    with pytest.raises(ValueError):
        wilson_interval(k, n)


def test_wilson_rejects_bad_types_and_z():
    with pytest.raises(TypeError):
        wilson_interval(1.5, 4)
    with pytest.raises(ValueError):
        wilson_interval(1, 4, z=0)


# Newcombe (1998b), Stat. Med. 17:873-890, Table II, method 10 (hybrid score, no continuity correction).
@pytest.mark.parametrize(
    "k1,n1,k2,n2,lo,hi",
    [
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0),
        (10, 10, 0, 10, 0.6075, 1.0),
    ],
)
def test_newcombe_matches_newcombe_1998b(k1, n1, k2, n2, lo, hi):
    d, got_lo, got_hi = newcombe_difference(k1, n1, k2, n2)
    assert d == pytest.approx(k1 / n1 - k2 / n2, abs=1e-12)
    assert got_lo == pytest.approx(lo, abs=5e-5)
    assert got_hi == pytest.approx(hi, abs=5e-5)


def test_newcombe_example_in_detail():
    # 56/70 - 48/80 = 0.8 - 0.6 = 0.2; Wilson(56/70) = (0.6918, 0.8770), Wilson(48/80) = (0.4905, 0.7004):
    # lower = 0.2 - sqrt((0.8-0.6918)² + (0.7004-0.6)²) = 0.2 - sqrt(0.021787) = 0.2 - 0.1476 = 0.0524
    # upper = 0.2 + sqrt((0.8770-0.8)² + (0.6-0.4905)²) = 0.2 + sqrt(0.017919) = 0.2 + 0.1339 = 0.3339
    d, lo, hi = newcombe_difference(56, 70, 48, 80)
    assert (round(d, 4), round(lo, 4), round(hi, 4)) == (0.2, 0.0524, 0.3339)


def test_newcombe_all_or_nothing_by_hand():
    # 5/5 - 0/5: Wilson(5/5) = (5/(5+z²), 1), Wilson(0/5) = (0, z²/(5+z²)); both widths are w = z²/(5+z²).
    # lower = 1 - sqrt(w² + w²) = 1 - √2·0.43448 = 0.38555; upper = 1 + sqrt(0 + 0) = 1.
    w = Z * Z / (5 + Z * Z)
    d, lo, hi = newcombe_difference(5, 5, 0, 5)
    assert d == 1.0
    assert lo == pytest.approx(1 - math.sqrt(2) * w, abs=1e-12)
    assert round(lo, 4) == 0.3855
    assert hi == 1.0


def test_newcombe_is_antisymmetric_and_contains_estimate():
    for args in [(3, 17, 9, 21), (0, 4, 4, 4), (7, 7, 2, 9), (1, 1, 0, 1)]:
        d, lo, hi = newcombe_difference(*args)
        k1, n1, k2, n2 = args
        d2, lo2, hi2 = newcombe_difference(k2, n2, k1, n1)
        assert d2 == pytest.approx(-d) and lo2 == pytest.approx(-hi) and hi2 == pytest.approx(-lo)
        assert -1.0 <= lo <= d <= hi <= 1.0


def test_newcombe_empty_group_is_nan():
    for args in [(0, 0, 3, 5), (3, 5, 0, 0), (0, 0, 0, 0)]:
        assert all(math.isnan(x) for x in newcombe_difference(*args))


def test_newcombe_rejects_impossible_counts():
    with pytest.raises(ValueError):
        newcombe_difference(6, 5, 1, 5)
