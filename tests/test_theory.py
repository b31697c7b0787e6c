"""droplab.theory against exact enumeration of every dropout mask (float64), tight enough that a change to a
correction term fails."""

import itertools

import pytest
import torch

from droplab import theory
from droplab.net import DropoutMLP

F64 = torch.float64


def _unit(n: int, output: str, keep, seed: int, scale: float = 1.0) -> tuple[DropoutMLP, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    net = DropoutMLP((n, 1), output=output, keep=keep).double()
    with torch.no_grad():
        net.linears[0].weight.copy_(scale * torch.randn(1, n, generator=g, dtype=F64))
        net.linears[0].bias.zero_()
    return net, torch.rand(1, n, generator=g, dtype=F64) + 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_unit_gradient_is_exact(seed):
    keep = torch.tensor([0.2, 0.5, 0.7, 0.9, 0.35], dtype=F64)
    net, x = _unit(5, "linear", keep, seed)
    t = torch.tensor([[0.7]], dtype=F64)
    exact = theory.exact_expected_gradient(net, x, t, loss="squared")[0][0]
    w = net.linears[0].weight.detach()[0]
    formula = theory.linear_unit_expected_gradient(w, x[0], keep, t[0])
    assert torch.allclose(formula, exact, rtol=0, atol=1e-12)
    # the correction is what makes it exact: the ensemble gradient alone is off by w I^2 p(1-p)
    ens = theory.ensemble_gradient_linear_unit(w, x[0], keep, t[0])
    assert torch.allclose(exact - ens, w * x[0] ** 2 * keep * (1 - keep), atol=1e-12)
    assert (exact - ens).abs().max() > 1e-3


def test_linear_unit_penalty_is_exact_and_largest_at_one_half():
    g = torch.Generator().manual_seed(3)
    w, inputs, t = torch.randn(4, generator=g, dtype=F64), torch.randn(4, generator=g, dtype=F64), 0.3
    for p in (0.1, 0.5, 0.8):
        keep = torch.full((4,), p, dtype=F64)
        e_d = sum(float(torch.prod(keep**d * (1 - keep) ** (1 - d))) * 0.5 * float((t - (d * w * inputs).sum()) ** 2)
                  for d in (torch.tensor(b, dtype=F64) for b in itertools.product((0.0, 1.0), repeat=4)))
        e_ens = 0.5 * float((t - (keep * w * inputs).sum()) ** 2)
        assert e_d - e_ens == pytest.approx(float(theory.linear_unit_penalty(w, inputs, keep)), abs=1e-13)
    ps = torch.linspace(0.05, 0.95, 19, dtype=F64)
    penalties = torch.stack([theory.linear_unit_penalty(w, inputs, torch.full((4,), float(p), dtype=F64))
                             for p in ps])
    assert float(ps[penalties.argmax()]) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", [0, 1])
def test_logistic_unit_eq164_beats_the_ensemble_gradient_by_orders(seed):
    keep = torch.full((6,), 0.5, dtype=F64)
    net, x = _unit(6, "logistic", keep, seed, scale=0.1)
    t = torch.tensor([[1.0]], dtype=F64)
    # relative entropy of a logistic output: the squared-error path would differ; compute the exact gradient here
    w = net.linears[0].weight.detach()[0]
    exact = torch.zeros(6, dtype=F64)
    for bits in itertools.product((0.0, 1.0), repeat=6):
        d = torch.tensor(bits, dtype=F64)
        o = torch.sigmoid((d * w * x[0]).sum())
        exact += float(torch.prod(keep**d * (1 - keep) ** (1 - d))) * (-(t[0, 0] - o) * d * x[0])  # Eq. 160
    formula = theory.logistic_unit_expected_gradient(w, x[0], keep, t[0])
    ens = theory.ensemble_gradient_logistic_unit(w, x[0], keep, t[0])
    err = float((formula - exact).norm() / exact.norm())
    correction = formula - ens
    halved = ens + correction / 2
    assert err < 3e-4  # third order in the weights (scale 0.1); the correction itself is ~1e-2
    # a mutation of the correction term (halving it) is caught: its error is two orders larger
    assert float((halved - exact).norm() / exact.norm()) > 10 * err


def test_deep_linear_correction_matches_enumeration():
    # S = alpha w + beta with alpha, beta random over masks: E(dE/dw) - dE_ENS/dw = w Var(alpha) + Cov(alpha, beta)
    g = torch.Generator().manual_seed(5)
    alpha, beta = torch.randn(16, generator=g, dtype=F64), torch.randn(16, generator=g, dtype=F64)
    prob = torch.rand(16, generator=g, dtype=F64)
    prob /= prob.sum()
    w, t = 0.7, 0.2
    expected = (prob * (alpha * w + beta - t) * alpha).sum()  # d/dw (t - S)^2 / 2
    ea, eb = (prob * alpha).sum(), (prob * beta).sum()
    ens = (ea * w + eb - t) * ea
    var_a, cov = (prob * (alpha - ea) ** 2).sum(), (prob * (alpha - ea) * (beta - eb)).sum()
    assert float(expected - ens) == pytest.approx(float(theory.deep_linear_correction(w, var_a, cov)), abs=1e-13)


def test_lecture_formulas():
    assert float(theory.ensemble_error(1.0, 0.5, 10)) == pytest.approx(0.1 + 9 * 0.5 / 10)
    assert float(theory.ensemble_error(2.0, 2.0, 7)) == pytest.approx(2.0)  # perfectly correlated: no gain
    w = torch.tensor([1.0, -2.0], dtype=F64)
    assert float(theory.l2_as_gaussian_noise(0.5, w, 0.1)) == pytest.approx(0.5 + 0.1 * 5)


def test_exact_expected_gradient_refuses_what_it_cannot_enumerate():
    with pytest.raises(ValueError, match="Bernoulli"):
        theory.exact_expected_gradient(DropoutMLP((3, 2), keep=0.5, gate="gaussian"), torch.rand(1, 3),
                                       torch.tensor([0]))
    with pytest.raises(ValueError, match="max_configurations"):
        theory.exact_expected_gradient(DropoutMLP((30, 2), keep=0.5), torch.rand(1, 30), torch.tensor([0]))
    with pytest.raises(ValueError, match="keep"):
        theory.linear_unit_penalty(torch.ones(2), torch.ones(2), torch.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match="finite"):
        theory.linear_unit_penalty(torch.ones(2), torch.tensor([1.0, float("nan")]), torch.ones(2))
