"""Means, approximations and bounds against closed forms, direct products, and quadrature."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from droplab import means

probs = st.lists(st.floats(0.001, 0.999), min_size=1, max_size=30)


def _weights(n, seed):
    w = np.random.default_rng(seed).random(n) + 0.01
    return w / w.sum()


def test_nwgm_equals_the_direct_product_formula():
    rng = np.random.default_rng(0)
    o, p = rng.random(12) * 0.98 + 0.01, _weights(12, 1)
    g, gc = np.prod(o**p), np.prod((1 - o) ** p)
    assert means.normalized_geometric_mean(o, p) == pytest.approx(g / (g + gc), rel=1e-12)
    assert means.geometric_mean(o, p) == pytest.approx(g, rel=1e-12)
    assert means.complement_geometric_mean(o, p) == pytest.approx(gc, rel=1e-12)
    assert means.weighted_mean(o, p) == pytest.approx(np.sum(p * o))
    assert means.weighted_variance(o, p) == pytest.approx(np.sum(p * (o - np.sum(p * o)) ** 2))
    assert isinstance(means.normalized_geometric_mean(o, p), np.ndarray)


@settings(max_examples=100, deadline=None)
@given(s=st.lists(st.floats(-4, 4), min_size=1, max_size=40), seed=st.integers(0, 10**6),
       c=st.floats(0.2, 5), lam=st.floats(0.1, 4))
def test_nwgm_of_logistic_outputs_is_logistic_of_mean_input(s, seed, c, lam):
    # Eqs. 34-39: NWGM(sigma(S)) = sigma(E(S)) for any distribution, any c and lambda
    s = np.array(s)
    p = _weights(len(s), seed)
    o = 1 / (1 + c * np.exp(-lam * s))
    expected = 1 / (1 + c * np.exp(-lam * np.sum(p * s)))
    assert means.normalized_geometric_mean(o, p) == pytest.approx(expected, abs=1e-8)  # 1 - O >= 1e-7 here
    assert means.logistic_nwgm(s, p, c=c, lam=lam) == pytest.approx(expected, rel=1e-12)


def test_normalized_exponential_identity_eq_47():
    torch.manual_seed(0)
    s = torch.randn(50, 7, dtype=torch.float64) * 3  # 50 subnetworks, 7 classes
    p = torch.rand(50, dtype=torch.float64)
    p /= p.sum()
    o = torch.softmax(s, dim=1)
    nwgm = means.class_normalized_geometric_mean(o, p.view(50, 1), dim=0, class_dim=1)
    assert torch.allclose(nwgm, torch.softmax((p.view(50, 1) * s).sum(0), 0), atol=1e-12)


def test_extreme_cases_follow_the_paper():
    assert means.normalized_geometric_mean(np.array([0.0, 0.5])) == 0.0  # G = 0
    assert means.normalized_geometric_mean(np.array([1.0, 0.5])) == 1.0  # G' = 0
    assert math.isnan(means.normalized_geometric_mean(np.array([0.0, 1.0])))  # 0/0
    with pytest.raises(ValueError, match="0/0"):
        means.normalized_geometric_mean(np.array([0.0, 1.0]), undefined="raise")
    # a zero-probability O = 0 does not count
    assert means.normalized_geometric_mean(np.array([0.0, 0.5]), np.array([0.0, 1.0])) == pytest.approx(0.5)


def test_no_underflow_with_many_factors():
    o = torch.full((100_000,), 1e-3, dtype=torch.float64)
    assert means.normalized_geometric_mean(o) == pytest.approx(1e-3)


@settings(max_examples=200, deadline=None)
@given(o=probs, seed=st.integers(0, 10**6))
def test_inequalities_of_section_8(o, seed):
    o = np.array(o)
    p = _weights(len(o), seed)
    e, v = means.weighted_mean(o, p), means.weighted_variance(o, p)
    g, gc = means.geometric_mean(o, p), means.complement_geometric_mean(o, p)
    nwgm = means.normalized_geometric_mean(o, p)
    tol = 1e-12
    assert g <= e + tol and gc <= 1 - e + tol  # Eq. 77
    assert g <= nwgm + tol  # G <= G/(G+G')
    lo, hi = means.cartwright_field_bounds(o, p)  # Eq. 78
    assert lo - tol <= e - g <= hi + tol
    assert v <= e * (1 - e) + tol  # Eq. 212
    if np.all(o <= 0.5):  # Ky Fan, Eq. 81: consistently low
        assert g - tol <= nwgm <= e + tol
    if np.all(o >= 0.5):  # Eq. 82: consistently high
        assert nwgm >= e - tol


@settings(max_examples=100, deadline=None)
@given(center=st.floats(0.1, 0.9), spread=st.floats(0.001, 0.03), seed=st.integers(0, 10**6))
def test_expansion_around_the_mean_is_third_order_in_the_spread(center, spread, seed):
    o = np.clip(center + spread * np.random.default_rng(seed).standard_normal(20), 0.01, 0.99)
    e, v = means.weighted_mean(o), means.weighted_variance(o)
    nwgm = means.normalized_geometric_mean(o)
    scale = min(e, 1 - e) ** 2
    assert abs(means.nwgm_around_mean(e, v) - nwgm) <= 20 * spread**3 / scale  # Eq. 202
    assert abs(e - nwgm) <= means.bound_variance(e, v) + 1e-9  # bound 1 of Eq. 87
    assert abs(e - nwgm) <= means.bound_mean_only(e) + 1e-9  # bound 2 of Eq. 87


@settings(max_examples=100, deadline=None)
@given(d=st.floats(0.001, 0.2), seed=st.integers(0, 10**6))
def test_expansion_around_half_is_third_order_in_the_distance_from_half(d, seed):
    o = 0.5 + d * np.random.default_rng(seed).uniform(-1, 1, 20)
    e, v = means.weighted_mean(o), means.weighted_variance(o)
    nwgm = means.normalized_geometric_mean(o)
    assert abs(means.nwgm_around_half(e, v) - nwgm) <= 4 * d**3  # Eq. 84
    assert abs(abs(e - nwgm) - means.nwgm_error_around_half(e, v)) <= 4 * d**3  # Eq. 87
    assert abs(means.nwgm_around_extremes(e, v) - nwgm) <= 4 * d**2 + 1e-12  # Eq. 207, a cruder expansion


def test_bound_curves_maxima_figs_8_1_and_8_2():
    e = np.linspace(0, 0.5, 2_000_001)
    assert e[np.argmax(means.bound_mean_only(e))] == pytest.approx(0.5 - math.sqrt(math.sqrt(5) - 2) / 2, abs=1e-6)
    assert e[np.argmax(means.bound_simple(e))] == pytest.approx(0.5 - math.sqrt(3) / 6, abs=1e-6)
    # Eq. 209-210: f(E) = E(1-E)/(1-E(1-E)) peaks at 1/3
    assert float(np.max(e * (1 - e) / (1 - e * (1 - e)))) == pytest.approx(1 / 3)


def test_bernoulli_case_attains_the_bound():
    # "optimal in the sense that they are attained in the case of a Bernoulli variable"
    e = 0.3
    o, p = np.array([1e-12, 1 - 1e-12]), np.array([1 - e, e])
    v = means.weighted_variance(o, p)
    assert v == pytest.approx(e * (1 - e))


def _gauss_hermite(f, mu, var, n=80):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return np.sum(w * f(mu + np.sqrt(var) * x)) / np.sqrt(2 * np.pi)


@pytest.mark.parametrize("mu,var", [(0.0, 1.0), (1.5, 0.5), (-2.0, 4.0), (0.7, 9.0)])
def test_gaussian_expectations_against_quadrature(mu, var):
    sig = lambda s: 1 / (1 + np.exp(-s))  # noqa: E731
    exact = _gauss_hermite(sig, mu, var)
    assert means.gaussian_expected_logistic(np.array(mu), np.array(var)) == pytest.approx(exact, abs=0.01)
    from scipy import integrate, stats

    density = stats.norm(mu, math.sqrt(var)).pdf
    relu_exact, _ = integrate.quad(lambda s: s * density(s), 0, np.inf)  # adaptive: the kink is at 0
    assert means.relu_expectation_gaussian(np.array(mu), np.array(var)) == pytest.approx(relu_exact, rel=1e-7)
    # Eq. 74: at mu = 0 the error of RL(E(S)) is lam sigma / sqrt(2 pi)
    assert means.relu_expectation_gaussian(np.array(0.0), np.array(var)) == pytest.approx(
        math.sqrt(var / (2 * math.pi)))


def test_expected_derivative_approximations():
    sig = lambda s: 1 / (1 + np.exp(-s))  # noqa: E731
    dsig = lambda s: sig(s) * (1 - sig(s))  # noqa: E731
    for mu, var in [(0.0, 0.01), (0.5, 0.05)]:
        exact = _gauss_hermite(dsig, mu, var)
        assert means.expected_derivative_mean_field(np.array(mu)) == pytest.approx(exact, abs=5e-3)
        assert means.expected_derivative_second_order(np.array(mu), np.array(var)) == pytest.approx(exact, abs=5e-3)


def test_relu_errors_uniform_and_discrete():
    a = 2.0
    x = np.linspace(-a, a, 400_001)
    assert means.relu_error_uniform(np.array(a)) == pytest.approx(np.mean(np.maximum(x, 0)), rel=1e-4)
    s, p = np.array([-3.0, 1.0, 0.5]), np.array([0.2, 0.5, 0.3])
    direct = abs(max(np.sum(p * s), 0) - np.sum(p * np.maximum(s, 0)))
    assert means.relu_error_discrete(s, p) == pytest.approx(direct)


def test_bad_inputs():
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        means.normalized_geometric_mean(np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="sum to 1"):
        means.weighted_mean(np.array([0.5, 0.2]), np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="non-negative"):
        means.weighted_mean(np.array([0.5, 0.2]), np.array([1.5, -0.5]))


def test_means_refuse_what_has_no_mean():
    import numpy as np

    from droplab import means

    with pytest.raises(ValueError, match="o is empty"):
        means.weighted_mean(np.zeros(0))
    with pytest.raises(ValueError, match="one weight per value"):
        means.weighted_mean(np.array([0.2, 0.4]), np.array([1.0]))
    with pytest.raises(ValueError, match="out of range"):
        means.weighted_mean(np.array([0.2, 0.4]), dim=3)
    with pytest.raises(ValueError, match=r"E must be in \[0, 1\]"):
        means.bound_variance(1.5, 0.1)
    assert means.weighted_mean([0.2, 0.4]) == pytest.approx(0.3)  # a Python list is accepted


def test_eq202_at_saturated_units_is_exact_not_nan():
    """A unit saturated at exactly 0 or 1 (float32 logistic outputs) has V = 0 and NWGM = E; Eq. 202's formula is
    0/0 there. Found on a reproduction (seed 1), where two layers' mean errors came out NaN."""
    e = np.array([0.0, 1.0, 0.5, 0.3])
    v = np.array([0.0, 0.0, 0.0, 0.01])
    got = means.nwgm_around_mean(e, v)
    assert np.isfinite(got).all()
    assert np.array_equal(got[:3], e[:3])
    assert got[3] == pytest.approx((0.3 - 0.01 / 0.6) / (1 - 0.01 / (2 * 0.3 * 0.7)))
