"""Analytic estimators: exact moment recursions for linear networks (Section 3), and Gaussian moment
propagation (independence assumption) with E(f(S)) by Eq. 242, Gauss-Hermite quadrature or sampling.

Every gate is written Y = A O + B with (A, B) independent of O and of the other gates:
bernoulli and gaussian A = s delta (s = 1, or 1/p under inverted scaling), B = 0; dropin A = delta,
B = 1 - delta. Only E(A), E(B), E(A^2), E(AB), E(B^2) enter the first two moments, so Bernoulli and
Gaussian gates (whose noise has the same first two moments) give the same linear moments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .. import means
from ..gates import GATES, gate_kind
from ..net import DropoutMLP
from ..nn import ConnectionDropoutLinear, UnitGate
from ..statistics import EnsembleStatistics, LayerStatistics

__all__ = ["dropconnect_inference", "gaussian_moments", "linear_moments"]


@dataclass(frozen=True)
class _GateMoments:
    a: Tensor  # E(A)
    b: Tensor  # E(B)
    aa: Tensor  # E(A^2)
    ab: Tensor  # E(AB)
    bb: Tensor  # E(B^2)

    def mean(self, m: Tensor) -> Tensor:
        return self.a * m + self.b

    def var(self, m: Tensor, v: Tensor) -> Tensor:
        """Var(A O + B) for one O with mean m and variance v."""
        return self.aa * (v + m.square()) + 2 * self.ab * m + self.bb - self.mean(m).square()


def _moments_of(kind: str, keep: Tensor, scaling: str) -> _GateMoments:
    gate = gate_kind(kind)
    if gate.linear_moments is None:
        able = sorted(name for name, g in GATES.items() if g.linear_moments is not None)
        raise ValueError(f"moment propagation handles {', '.join(able)} gates, not {kind}; use monte_carlo")
    return _GateMoments(*gate.linear_moments(keep, scaling))


def _unit_gate(gate: nn.Module, n: int, like: Tensor) -> _GateMoments:
    if isinstance(gate, nn.Identity):
        one = torch.ones(n, dtype=like.dtype, device=like.device)
        return _GateMoments(one, one * 0, one, one * 0, one * 0)
    assert isinstance(gate, UnitGate)
    keep = torch.as_tensor(gate.keep, dtype=like.dtype, device=like.device).expand(n)
    return _moments_of(gate.kind.name, keep, gate.scaling)


def _connection(linear: nn.Module, like: Tensor) -> _GateMoments | None:
    if not isinstance(linear, ConnectionDropoutLinear):
        return None
    keep = torch.as_tensor(linear.keep, dtype=like.dtype, device=like.device).expand(linear.weight.shape)
    return _moments_of(linear.kind.name, keep, linear.scaling)


def _check_net(net: nn.Module, x: Tensor) -> None:
    if not isinstance(net, DropoutMLP):
        raise TypeError(f"analytic estimators run on a DropoutMLP, got {type(net).__name__}")
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError(f"x must be a batch of inputs of shape (B, n0), got {getattr(x, 'shape', type(x))}")
    if x.shape[1] != net.sizes[0]:
        raise ValueError(f"x has {x.shape[1]} features but the network takes {net.sizes[0]}; flatten or select "
                         f"inputs to shape (B, {net.sizes[0]})")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (B = 0); give at least one input")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf; the ensemble statistics of such inputs are undefined")


# ---------------------------------------------------------------------------------------------------- linear
@torch.no_grad()
def linear_moments(net: DropoutMLP, x: Tensor) -> EnsembleStatistics:
    r"""Exact means, variances and covariances of every unit of a linear network (Section 3, Eqs. 24-26): the
    means pass through the layers with the keep rates as weights,

    $$
    E(S_i^h) = \sum_{l < h} \sum_j p_{ij}^{hl} w_{ij}^{hl} E(S_j^l) \tag{26}
    $$

    and the variances and covariances by the same recursion on second moments (independent gates).

    Dropout on units or connections, any keep rates. The full covariance of layer h is in
    ``stats.covariances[h]``, shape (B, n_h, n_h).

    Args:
        net: A ``DropoutMLP`` whose transfer functions are all linear.
        x: Inputs, shape (B, n_0).

    Returns:
        EnsembleStatistics: E, Var, E_S, Var_S and E_derivative of every layer, and ``covariances``.

    Raises:
        ValueError: A network with a nonlinear unit (the recursions are exact for linear networks only).
    """
    _check_net(net, x)
    bad = [t.name for t in net.transfers if not t.kind.linear]
    if bad:
        raise ValueError(f"linear_moments is exact for linear networks only; this one uses {sorted(set(bad))}. "
                         "Use gaussian_moments or monte_carlo")
    x = x.to(torch.float64)
    m, cov = x, torch.zeros(x.shape[0], x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
    layers, covs = [LayerStatistics(E=x, Var=torch.zeros_like(x))], [cov]
    for stage in net.stages():
        h, gate, linear = stage.h - 1, stage.gate, stage.linear
        w = linear.weight.to(x.dtype)
        bias = linear.bias.to(x.dtype) if linear.bias is not None else torch.zeros(w.shape[0], dtype=x.dtype)
        g = _unit_gate(gate, net.sizes[h], x)
        ey = g.mean(m)  # E(Y), (B, n)
        # Cov(Y): off-diagonal a_i a_j Cov(O_i, O_j); diagonal Var(A O + B) with Var(O) from cov
        cov_y = g.a[:, None] * g.a[None, :] * cov
        var_o = torch.diagonal(cov, dim1=1, dim2=2)
        cov_y = cov_y + torch.diag_embed(g.var(m, var_o) - g.a.square() * var_o)
        c = _connection(linear, x)
        if c is None:
            mean_s = ey @ w.T + bias
            cov_s = w @ cov_y @ w.T
        else:
            wa = w * c.a
            mean_s = ey @ wa.T + (w * c.b).sum(1) + bias
            cov_s = wa @ cov_y @ wa.T
            # diagonal: sum_j w_ij^2 [Var(A_ij Y_j + B_ij) - a_ij^2 Var(Y_j)] (each connection its own gate)
            var_y = torch.diagonal(cov_y, dim1=1, dim2=2)[:, None, :]
            extra = (w.square() * (c.var(ey[:, None, :], var_y) - c.a.square() * var_y)).sum(-1)
            cov_s = cov_s + torch.diag_embed(extra)
        lam = stage.transfer.lam
        m, cov = lam * mean_s, lam**2 * cov_s
        var = torch.diagonal(cov, dim1=1, dim2=2).clamp_min(0)
        layers.append(LayerStatistics(E=m, Var=var, E_S=mean_s, Var_S=torch.diagonal(cov_s, dim1=1, dim2=2),
                                      E_derivative=torch.full_like(m, lam)))
        covs.append(cov)
    return EnsembleStatistics("linear_moments", layers, covariances=covs)


# ---------------------------------------------------------------------------------------------------- Gaussian
_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(40)  # probabilists' Gauss-Hermite, weight exp(-x^2/2)


def _quadrature(f, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    nodes = torch.as_tensor(_NODES, dtype=mean.dtype, device=mean.device)
    weights = torch.as_tensor(_WEIGHTS / math.sqrt(2 * math.pi), dtype=mean.dtype, device=mean.device)
    values = f(mean[..., None] + var.clamp_min(0).sqrt()[..., None] * nodes)  # (B, n, K)
    return (values * weights).sum(-1), (values.square() * weights).sum(-1)


@torch.no_grad()
def gaussian_moments(net: DropoutMLP, x: Tensor, *, method: str = "quadrature", propagate_variance: bool = True,
                     samples: int = 1000, generator: torch.Generator | None = None) -> EnsembleStatistics:
    r"""Mean and variance of every S propagated layer by layer, each S taken as Gaussian (fast dropout).

    With S ~ N(mu_S, sigma_S^2), ``method="eq242"`` averages a logistic unit by Eq. 242 and a rectified linear
    unit by Eq. 72 (Phi the standard normal distribution function):

    $$
    E(O) \approx \frac{1}{1 + e^{-(1 + 0.368\,\sigma_S^2)^{-1/2} \mu_S}} \tag{242}
    $$

    $$
    E(RL(S)) = \lambda \mu_S \Phi\Big(\frac{\mu_S}{\sigma_S}\Big) + \frac{\lambda \sigma_S}{\sqrt{2\pi}}
        e^{-\mu_S^2 / 2\sigma_S^2} \tag{72}
    $$

    ``method``: how E(O) = E(f(S)) is computed for S ~ N(E(S), Var(S)): ``"eq242"`` (the logistic's closed
    form, Eq. 242; Eq. 72 for rectified linear units), ``"quadrature"`` (Gauss-Hermite, 40 nodes) or
    ``"sample"`` (``samples`` draws of S from ``generator``). Var(O) comes from quadrature (or the draws).
    A softmax output is always averaged over ``samples`` Gaussian draws of its S vector.
    ``propagate_variance=False`` treats each layer's averaged outputs as deterministic inputs to the next
    layer, as Wan et al. (2013) do for DropConnect inference.

    Args:
        net: A ``DropoutMLP``.
        x: Inputs, shape (B, n_0).
        method: ``"eq242"``, ``"quadrature"`` or ``"sample"``.
        propagate_variance: Carry Var(S) to the next layer (False: Wan et al.'s deterministic inputs).
        samples: Draws of S, for ``method="sample"`` and a softmax output.
        generator: The draws' generator (None: torch's default).

    Returns:
        EnsembleStatistics: E, Var, E_S and Var_S of every layer.
    """
    _check_net(net, x)
    if method not in ("eq242", "quadrature", "sample"):
        raise ValueError(f"method must be 'eq242', 'quadrature' or 'sample', got {method!r}")
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer (Gaussian draws of S), got {samples!r}")
    m, v = x, torch.zeros_like(x)
    layers = [LayerStatistics(E=x, Var=v)]
    for stage in net.stages():
        h, gate, linear = stage.h - 1, stage.gate, stage.linear
        if not propagate_variance:
            v = torch.zeros_like(v)
        w = linear.weight.to(x.dtype)
        bias = linear.bias.to(x.dtype) if linear.bias is not None else 0.0
        g = _unit_gate(gate, net.sizes[h], x)
        ey, vy = g.mean(m), g.var(m, v)
        c = _connection(linear, x)
        if c is None:
            mean_s, var_s = ey @ w.T + bias, vy @ w.square().T  # independence: Var(S) = sum_j w_ij^2 Var(Y_j)
        else:
            mean_s = ey @ (w * c.a).T + (w * c.b).sum(1) + bias
            var_s = (w.square() * c.var(ey[:, None, :], vy[:, None, :])).sum(-1)
        m, v = _expect_transfer(stage.transfer, mean_s, var_s, method, samples, generator)
        layers.append(LayerStatistics(E=m, Var=v, E_S=mean_s, Var_S=var_s))
    name = "gaussian_moments" if propagate_variance else "dropconnect_inference"
    return EnsembleStatistics(name, layers, samples=samples if method == "sample" else None)


def _expect_transfer(transfer, mean_s: Tensor, var_s: Tensor, method: str, samples: int,
                     generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    if transfer.kind.linear:
        return transfer.lam * mean_s, transfer.lam**2 * var_s
    if not transfer.kind.elementwise or method == "sample":
        z = torch.randn((samples, *mean_s.shape), generator=generator, dtype=mean_s.dtype, device=mean_s.device)
        o = transfer(mean_s + var_s.clamp_min(0).sqrt() * z)
        return o.mean(0), o.var(0, unbiased=False)
    if transfer.kind.gaussian_closed_form:  # relu: quadrature misses the kink (26% off in E at S ~ N(-0.5, 1))
        return _relu_gaussian_moments(mean_s - transfer.t, var_s, transfer.lam)
    e, e2 = _quadrature(transfer, mean_s, var_s)
    if method == "eq242" and transfer.kind.sigmoidal_approximation:
        e = means.gaussian_expected_logistic(mean_s, var_s, c=transfer.c, lam=transfer.lam)
    return e, (e2 - e.square()).clamp_min(0)


def _relu_gaussian_moments(mu: Tensor, var: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """E and Var of lam max(S, 0) for S ~ N(mu, var), exactly: with z = mu / s, Phi and phi the standard normal
    cdf and density, E = lam (mu Phi(z) + s phi(z)) (Eq. 72) and E(RL^2) = lam^2 ((mu^2 + s^2) Phi(z) + mu s phi(z))."""
    e = means.relu_expectation_gaussian(mu, var, lam=lam)
    s = var.clamp_min(0).sqrt()
    safe = torch.where(s > 0, s, torch.ones_like(s))
    z = mu / safe
    cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    pdf = torch.exp(-0.5 * z.square()) / math.sqrt(2 * math.pi)
    e2 = lam**2 * ((mu.square() + var) * cdf + mu * s * pdf)
    e2 = torch.where(s > 0, e2, lam**2 * mu.clamp_min(0).square())
    return e, (e2 - e.square()).clamp_min(0)


def dropconnect_inference(net: DropoutMLP, x: Tensor, *, samples: int = 1000,
                          generator: torch.Generator | None = None) -> EnsembleStatistics:
    """DropConnect inference as Wan et al. (2013): per layer, match a Gaussian to S given the averaged
    outputs below, draw ``samples`` values of S, and average f over them.

    Args:
        net: A ``DropoutMLP``.
        x: Inputs, shape (B, n_0).
        samples: Draws of each layer's Gaussian S.
        generator: The draws' generator (None: torch's default).

    Returns:
        EnsembleStatistics: E, Var, E_S and Var_S of every layer.
    """
    return gaussian_moments(net, x, method="sample", propagate_variance=False, samples=samples, generator=generator)
