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


# Newcombe (1998a), Stat. Med. 17:857-872, Table I, method 3 (Wilson score, no continuity
# correction).
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


# Newcombe (1998b), Stat. Med. 17:873-890, Table II, method 10 (hybrid score, no continuity
# correction).
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
    # 56/70 - 48/80 = 0.8 - 0.6 = 0.2;
    # Wilson(56/70) = (0.6918, 0.8770), Wilson(48/80) = (0.4905, 0.7004):
    # lower = 0.2 - sqrt((0.8-0.6918)² + (0.7004-0.6)²) = 0.2 - sqrt(0.021787)
    #       = 0.2 - 0.1476 = 0.0524
    # upper = 0.2 + sqrt((0.8770-0.8)² + (0.6-0.4905)²) = 0.2 + sqrt(0.017919)
    #       = 0.2 + 0.1339 = 0.3339
    d, lo, hi = newcombe_difference(56, 70, 48, 80)
    assert (round(d, 4), round(lo, 4), round(hi, 4)) == (0.2, 0.0524, 0.3339)


def test_newcombe_all_or_nothing_by_hand():
    # 5/5 - 0/5: Wilson(5/5) = (5/(5+z²), 1), Wilson(0/5) = (0, z²/(5+z²));
    # both widths are w = z²/(5+z²).
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


# --------------------------------------------------------------------------------------------
# Clustered designs (several samples per prompt)
# --------------------------------------------------------------------------------------------

from afbatch.stats import cluster_difference, cluster_rate  # noqa: E402

PROMPTS = 100
REPLICATES = 1000


def _simulate_rates(samples: int, seed: int, a: float = 2.0, b: float = 3.0):
    """REPLICATES data sets of PROMPTS prompts, each with its own compliance probability
    (Beta(a, b): prompts differ), `samples` draws per prompt; the true rate is a / (a + b)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    probs = rng.beta(a, b, size=(REPLICATES, PROMPTS))
    return rng.binomial(samples, probs), a / (a + b)


@pytest.mark.parametrize("samples", [1, 5, 20])
def test_cluster_rate_covers_at_every_sample_count(samples):
    k, truth = _simulate_rates(samples, seed=samples)
    n = [samples] * PROMPTS
    covered = 0
    for row in k:
        _, lo, hi, _ = cluster_rate(row, n)
        covered += lo <= truth <= hi
    assert covered / REPLICATES >= 0.93


def test_naive_wilson_undercovers_with_20_samples():
    """The reason for the clustered interval: Wilson on the pooled count treats 20 samples of a
    prompt as 20 independent draws and misses the true rate far more often than 5%."""
    k, truth = _simulate_rates(20, seed=20)
    covered = 0
    for row in k:
        lo, hi = wilson_interval(int(row.sum()), 20 * PROMPTS)
        covered += lo <= truth <= hi
    assert covered / REPLICATES < 0.80


@pytest.mark.parametrize("k,n", [(0, 7), (3, 4), (81, 263), (15, 148), (9, 9)])
def test_cluster_rate_is_wilson_with_one_sample_per_prompt(k, n):
    rate, lo, hi, deff = cluster_rate([1] * k + [0] * (n - k), [1] * n)
    assert deff == 1.0 and rate == pytest.approx(k / n)
    assert (lo, hi) == pytest.approx(wilson_by_quadratic(k, n), abs=1e-12)


def test_cluster_rate_design_effect_by_hand():
    # 2 prompts × 4 samples: 4/4 and 0/4 → p = 0.5; robust Σ(k − p n)² = 4 + 4 = 8;
    # binomial p(1−p)N = 2 → deff = 4, effective n = 2: Wilson for 1 of 2.
    rate, lo, hi, deff = cluster_rate([4, 0], [4, 4])
    assert (rate, deff) == (0.5, 4.0)
    assert (lo, hi) == pytest.approx(wilson_by_quadratic(1, 2), abs=1e-12)
    assert math.isnan(cluster_rate([], [])[0])


def paired_newcombe_by_table(a: int, b: int, c: int, d: int) -> tuple[float, float, float]:
    """Newcombe (1998c) method 10 for a paired 2×2 table written from counts: a = both yes,
    b = yes/no, c = no/yes, d = both no; φ = (ad − bc)/√((a+b)(c+d)(a+c)(b+d))."""
    n = a + b + c + d
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_by_quadratic(a + b, n)
    l2, u2 = wilson_by_quadratic(a + c, n)
    den = math.sqrt((a + b) * (c + d) * (a + c) * (b + d))
    phi = (a * d - b * c) / den if den else 0.0
    dl1, du1, dl2, du2 = p1 - l1, u1 - p1, p2 - l2, u2 - p2
    diff = p1 - p2
    lo = diff - math.sqrt(dl1**2 - 2 * phi * dl1 * du2 + du2**2)
    hi = diff + math.sqrt(du1**2 - 2 * phi * du1 * dl2 + dl2**2)
    return diff, lo, hi


@pytest.mark.parametrize("table", [(12, 5, 1, 22), (8, 3, 3, 6), (0, 4, 1, 15), (30, 9, 2, 1)])
def test_cluster_difference_paired_is_newcombe_paired_with_one_sample(table):
    a, b, c, d = table
    x = [1] * a + [1] * b + [0] * c + [0] * d
    y = [1] * a + [0] * b + [1] * c + [0] * d
    ones = [1] * len(x)
    got = cluster_difference(x, ones, y, ones, paired=True)
    assert got == pytest.approx(paired_newcombe_by_table(*table), abs=1e-12)
    unpaired = cluster_difference(x, ones, y, ones, paired=False)
    assert unpaired == pytest.approx(newcombe_difference(a + b, len(x), a + c, len(x)), abs=1e-12)


@pytest.mark.parametrize("samples", [1, 5, 20])
def test_paired_gap_covers_and_is_narrower_than_unpaired(samples):
    """Both tiers see the same prompts: a prompt's compliance in training and unmonitored is
    correlated (training = u, unmonitored = 0.6·u). The paired interval covers and is narrower
    on average."""
    import numpy as np

    rng = np.random.default_rng(100 + samples)
    u = rng.beta(2.0, 3.0, size=(REPLICATES, PROMPTS))
    k1, k2 = rng.binomial(samples, u), rng.binomial(samples, 0.6 * u)
    truth = 0.4 * 2.0 / 5.0
    n = [samples] * PROMPTS
    covered, width, unpaired_width = 0, 0.0, 0.0
    for a, b in zip(k1, k2):
        _, lo, hi = cluster_difference(a, n, b, n, paired=True)
        _, ulo, uhi = cluster_difference(a, n, b, n, paired=False)
        covered += lo <= truth <= hi
        width += hi - lo
        unpaired_width += uhi - ulo
    assert covered / REPLICATES >= 0.93
    assert width < 0.95 * unpaired_width
