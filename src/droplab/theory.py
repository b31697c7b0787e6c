"""Closed forms that need no network: the expected dropout gradient and its adaptive regularization (Section 11),
L2 as Gaussian input noise and the ensemble error (the lecture), the p(1 - p) penalty of a linear unit (the article).

Symbols follow the paper: I the inputs, w the weights, p the keep rates, delta ~ B(p) the gates, t the target,
U = sum_j w_j p_j I_j the ensemble unit's input sum, sigma the logistic. ``exact_expected_gradient`` is the
reference the formulas are tested against: every Bernoulli mask of a small network, enumerated.

>>> import torch
>>> w, inputs, keep = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 1.0]), torch.tensor([0.5, 0.5])
>>> linear_unit_penalty(w, inputs, keep)  # 1/2 sum p(1 - p) w^2 I^2
tensor(0.5312)
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from . import modes
from .net import DropoutMLP

__all__ = ["deep_linear_correction", "ensemble_error", "ensemble_gradient_linear_unit",
           "ensemble_gradient_logistic_unit", "exact_expected_gradient", "l2_as_gaussian_noise",
           "linear_unit_expected_gradient", "linear_unit_penalty", "logistic_unit_expected_gradient",
           "top_layer_expected_gradient"]


def _tensors(*values: Tensor | float) -> list[Tensor]:
    """Tensors of one floating dtype (the widest among the tensors given; Python numbers follow it)."""
    dtypes = [v.dtype for v in values if isinstance(v, Tensor) and torch.is_floating_point(v)]
    dtype = max(dtypes, key=lambda d: torch.finfo(d).bits) if dtypes else torch.get_default_dtype()
    out = [v.to(dtype) if isinstance(v, Tensor) and torch.is_floating_point(v) else torch.as_tensor(v, dtype=dtype)
           if not isinstance(v, Tensor) else v for v in values]
    for v in out:
        if not torch.is_floating_point(v):
            raise TypeError(f"expected floating-point tensors or numbers, got dtype {v.dtype}")
        if not torch.isfinite(v).all():
            raise ValueError("expected finite values; got NaN or inf")
    return out


def _check_keep(keep: Tensor) -> None:
    if ((keep <= 0) | (keep > 1)).any():
        raise ValueError(f"keep rates must be in (0, 1], got {keep.min().item():g} to {keep.max().item():g}")


# ------------------------------------------------------------------------------------------- Section 11.2
def ensemble_gradient_linear_unit(w: Tensor, inputs: Tensor, keep: Tensor, target: float | Tensor) -> Tensor:
    r"""Eq. 144: dE_ENS/dw_i = -(t - sum_j p_j w_j I_j) p_i I_i for the ensemble of a linear unit.

    $$
    \frac{\partial E_{ENS}}{\partial w_i} = -\Big(t - \sum_j p_j w_j I_j\Big)\, p_i I_i \tag{144}
    $$

    Args:
        w: The weights w_i (one unit's), or one weight.
        inputs: The inputs I_i of the unit.
        keep: The keep probabilities p_i of its inputs.
        target: The target t.

    Returns:
        Tensor: dE_ENS/dw_i, shaped as ``w``.
    """
    w, inputs, keep, target = _tensors(w, inputs, keep, target)
    _check_keep(keep)
    return -(target - (keep * w * inputs).sum(-1, keepdim=True)) * keep * inputs


def linear_unit_expected_gradient(w: Tensor, inputs: Tensor, keep: Tensor, target: float | Tensor) -> Tensor:
    r"""Eq. 147: E(dE_D/dw_i) = dE_ENS/dw_i + w_i I_i^2 p_i (1 - p_i), exactly, for O = sum_j delta_j w_j I_j and
    E_D = (t - O)^2 / 2: the ensemble gradient plus an adaptive weight decay with coefficient I^2 Var(delta).

    $$
    E\Big(\frac{\partial E_D}{\partial w_i}\Big) = \frac{\partial E_{ENS}}{\partial w_i} + w_i I_i^2\, p_i (1
        - p_i) \tag{147}
    $$

    Args:
        w: The weights w_i (one unit's), or one weight.
        inputs: The inputs I_i of the unit.
        keep: The keep probabilities p_i of its inputs.
        target: The target t.

    Returns:
        Tensor: E(dE_D/dw_i), shaped as ``w``.
    """
    w, inputs, keep, target = _tensors(w, inputs, keep, target)
    return ensemble_gradient_linear_unit(w, inputs, keep, target) + w * inputs**2 * keep * (1 - keep)


def linear_unit_penalty(w: Tensor, inputs: Tensor, keep: Tensor) -> Tensor:
    r"""Eq. 148 (and the article): E(E_D) - E_ENS = 1/2 sum_i p_i (1 - p_i) w_i^2 I_i^2, an L2 penalty whose
    coefficient p(1 - p) is largest at p = 0.5.

    $$
    E(E_D) - E_{ENS} = \frac12 \sum_i p_i (1 - p_i)\, w_i^2 I_i^2 \tag{148}
    $$

    Args:
        w: The weights w_i (one unit's), or one weight.
        inputs: The inputs I_i of the unit.
        keep: The keep probabilities p_i of its inputs.

    Returns:
        Tensor: E(E_D) - E_ENS.
    """
    w, inputs, keep = _tensors(w, inputs, keep)
    _check_keep(keep)
    return 0.5 * (keep * (1 - keep) * w**2 * inputs**2).sum(-1)


# ------------------------------------------------------------------------------------------- Section 11.3
def deep_linear_correction(w: Tensor | float, var_alpha: Tensor | float, cov_alpha_beta: Tensor | float) -> Tensor:
    r"""Eq. 155: in a deep linear network, S = alpha w + beta for one weight w, and
    E(dE_D/dw) = dE_ENS/dw + w Var(alpha) + Cov(alpha, beta); this returns the correction w Var(alpha) + Cov.

    $$
    E\Big(\frac{\partial E_D}{\partial w}\Big) - \frac{\partial E_{ENS}}{\partial w} = w\,\mathrm{Var}(\alpha)
        + \mathrm{Cov}(\alpha, \beta) \tag{155}
    $$

    Args:
        w: The weights w_i (one unit's), or one weight.
        var_alpha: Var(alpha), the dropout variance of the weight's multiplier.
        cov_alpha_beta: Cov(alpha, beta).

    Returns:
        Tensor: w Var(alpha) + Cov(alpha, beta).
    """
    w, var_alpha, cov_alpha_beta = _tensors(w, var_alpha, cov_alpha_beta)
    if (var_alpha < 0).any():
        raise ValueError(f"var_alpha is a variance and must be >= 0, got {var_alpha.min().item():g}")
    return w * var_alpha + cov_alpha_beta


# ------------------------------------------------------------------------------------------- Sections 11.4-11.5
def ensemble_gradient_logistic_unit(w: Tensor, inputs: Tensor, keep: Tensor, target: float | Tensor, *,
                                    lam: float = 1.0) -> Tensor:
    r"""Eq. 159: the gradient of the relative entropy of the ensemble unit sigma(U), U = sum_j w_j p_j I_j:
    -lam (t - sigma(U)) p_i I_i.

    $$
    \frac{\partial E_{ENS}}{\partial w_i} = -\lambda\big(t - \sigma(U)\big)\, p_i I_i, \quad U
        = \sum_j w_j p_j I_j \tag{159}
    $$

    Args:
        w: The weights w_i (one unit's), or one weight.
        inputs: The inputs I_i of the unit.
        keep: The keep probabilities p_i of its inputs.
        target: The target t.
        lam: The logistic's slope lambda.

    Returns:
        Tensor: dE_ENS/dw_i, shaped as ``w``.
    """
    w, inputs, keep, target = _tensors(w, inputs, keep, target)
    _check_keep(keep)
    u = (keep * w * inputs).sum(-1, keepdim=True)
    return -lam * (target - torch.sigmoid(lam * u)) * keep * inputs


def logistic_unit_expected_gradient(w: Tensor, inputs: Tensor, keep: Tensor, target: float | Tensor, *,
                                    lam: float = 1.0) -> Tensor:
    r"""Eq. 164: E(dE_D/dw_i) ~ dE_ENS/dw_i + lam sigma'(U) w_i I_i^2 p_i (1 - p_i) for one logistic unit with the
    relative entropy error (first order in the dropout variance of S; sigma'(U) = lam sigma (1 - sigma)).

    $$
    E\Big(\frac{\partial E_D}{\partial w_i}\Big) \approx \frac{\partial E_{ENS}}{\partial w_i}
        + \lambda\,\sigma'(U)\, w_i I_i^2\, p_i (1 - p_i) \tag{164}
    $$

    Args:
        w: The weights w_i (one unit's), or one weight.
        inputs: The inputs I_i of the unit.
        keep: The keep probabilities p_i of its inputs.
        target: The target t.
        lam: The logistic's slope lambda.

    Returns:
        Tensor: E(dE_D/dw_i), shaped as ``w``.
    """
    w, inputs, keep, target = _tensors(w, inputs, keep, target)
    u = lam * (keep * w * inputs).sum(-1, keepdim=True)
    slope = lam * torch.sigmoid(u) * (1 - torch.sigmoid(u))
    ens = ensemble_gradient_logistic_unit(w, inputs, keep, target, lam=lam)
    return ens + lam * slope * w * inputs**2 * keep * (1 - keep)


def top_layer_expected_gradient(w: Tensor, hidden: Tensor, mean_o: Tensor, var_o: Tensor, keep: Tensor,
                                target: float | Tensor, output: Tensor | float, u: Tensor | float) -> Tensor:
    r"""Eq. 181: a logistic output unit i over a dropout layer with outputs O_j:
    E(dE_D/dw_ij) ~ -(t - W_i) p_j W_j + w_ij sigma'(U_i) Var(delta_j O_j), with W the deterministic network's
    outputs (``output`` = W_i, ``hidden`` = W_j, ``u`` = U_i) and Var(delta_j O_j) = p_j (Var(O_j) + E(O_j)^2)
    - (p_j E(O_j))^2 from the dropout mean and variance of O_j.

    $$
    E\Big(\frac{\partial E_D}{\partial w_{ij}}\Big) \approx -(t - W_i)\, p_j W_j
        + w_{ij}\, \sigma'(U_i)\, \mathrm{Var}(\delta_j O_j) \tag{181}
    $$

    Args:
        w: The weights w_i (one unit's), or one weight.
        hidden: W_j, the deterministic network's outputs of the layer below.
        mean_o: E(O_j), the dropout means of that layer.
        var_o: Var(O_j), their dropout variances.
        keep: The keep probabilities p_i of its inputs.
        target: The target t.
        output: W_i, the deterministic network's output of unit i.
        u: U_i, its input sum.

    Returns:
        Tensor: E(dE_D/dw_ij), shaped as ``w``.
    """
    w, hidden, mean_o, var_o, keep, target, output, u = _tensors(w, hidden, mean_o, var_o, keep, target, output, u)
    _check_keep(keep)
    var_gated = keep * (var_o + mean_o**2) - (keep * mean_o) ** 2
    return -(target - output) * keep * hidden + w * torch.sigmoid(u) * (1 - torch.sigmoid(u)) * var_gated


# ------------------------------------------------------------------------------------------- the lecture
def l2_as_gaussian_noise(mse: Tensor | float, w: Tensor, alpha: float) -> Tensor:
    r"""Lecture: for linear regression, E_n[((x + n)^T w - y)^2] = f(w) + alpha ||w||^2 with n ~ N(0, alpha I),
    where f(w) is the mean squared error without noise.

    $$
    E_n\big[\big((x + n)^\top w - y\big)^2\big] = f(w) + \alpha \|w\|^2, \quad n \sim N(0, \alpha I)
    $$

    Args:
        mse: f(w), the mean squared error without noise.
        w: The weights w_i (one unit's), or one weight.
        alpha: The variance of the Gaussian input noise.

    Returns:
        Tensor: f(w) + alpha ||w||^2.
    """
    mse, w = _tensors(mse, w)
    if not alpha >= 0:
        raise ValueError(f"alpha is a noise variance and must be >= 0, got {alpha!r}")
    return mse + alpha * w.square().sum(-1)


def ensemble_error(v: float | Tensor, c: float | Tensor, n: int | Tensor) -> Tensor:
    r"""Lecture: the mean squared error of the average of n predictors whose errors have variance v and pairwise
    covariance c: v / n + (n - 1) c / n.

    $$
    E\Big[\Big(\frac1n \sum_k \epsilon_k\Big)^2\Big] = \frac{v}{n} + \frac{n - 1}{n}\,c
    $$

    Args:
        v: The variance of each predictor's error.
        c: The covariance of two predictors' errors.
        n: The number of predictors averaged.

    Returns:
        Tensor: The mean squared error of the average.
    """
    v, c = _tensors(v, c)
    n = torch.as_tensor(n, dtype=v.dtype)
    if (n < 1).any():
        raise ValueError(f"n is an ensemble size and must be >= 1, got {n.min().item():g}")
    return v / n + (n - 1) * c / n


# ------------------------------------------------------------------------------------------- the reference
def exact_expected_gradient(net: DropoutMLP, x: Tensor, y: Tensor, *, loss: str = "cross_entropy",
                            max_configurations: int = 2**16) -> list[Tensor]:
    """E over every Bernoulli unit mask of the gradient of the loss with respect to each weight matrix.

    Every gate of ``net`` must be a Bernoulli unit gate (with any scaling); the masks of all examples in ``x``
    are shared per configuration, as in Section 11's single-example analysis (give one example to match it).
    ``loss`` is ``cross_entropy`` (softmax output) or ``squared`` (1/2 sum (t - O)^2). Returns one tensor per
    weight layer, shaped like its weight.

    Args:
        net: A ``DropoutMLP`` whose every gate is a Bernoulli unit gate.
        x: Inputs, (B, n_0) (one example matches Section 11).
        y: Targets: class labels (cross entropy) or values (squared error).
        loss: ``"cross_entropy"`` (softmax output) or ``"squared"``.
        max_configurations: The most mask configurations it enumerates before refusing.

    Returns:
        list[Tensor]: One tensor per weight layer, shaped as its weight.

    Raises:
        ValueError: A gate that is not a Bernoulli unit gate, or more configurations than ``max_configurations``.
    """
    from .train import _loss  # the training loss itself, so the reference differentiates what training does

    gates = [(f"gates.{h}", g) for h, g in enumerate(net.gates) if not isinstance(g, torch.nn.Identity)]
    for name, gate in gates:
        kind = getattr(getattr(gate, "kind", None), "name", type(gate).__name__)
        if kind != "bernoulli":
            raise ValueError(f"exact_expected_gradient enumerates Bernoulli masks; {name} is {kind!r}")
    if any(not isinstance(lin, torch.nn.Linear) for lin in net.linears):
        raise ValueError("exact_expected_gradient enumerates unit gates; this network has connection dropout")
    keeps = [torch.as_tensor(gate.keep).to(x).expand(net.sizes[int(name.split(".")[1])]) for name, gate in gates]
    total_units = sum(len(k) for k in keeps)
    if 2**total_units > max_configurations:
        raise ValueError(f"{total_units} gated units give 2^{total_units} masks, more than max_configurations="
                         f"{max_configurations}; use a smaller network or raise the limit")
    if x.dim() != 2 or x.shape[1] != net.sizes[0] or len(y) != len(x):
        raise ValueError(f"x must be (B, {net.sizes[0]}) inputs and y one target per input, got x "
                         f"{tuple(x.shape)} and y {tuple(y.shape)}")
    if loss == "cross_entropy" and (y.is_floating_point() or y.dim() != 1 or int(y.min()) < 0
                                    or int(y.max()) >= net.sizes[-1]):
        raise ValueError(f"y must be class indices in [0, {net.sizes[-1] - 1}] for loss='cross_entropy', got "
                         f"{y.tolist()[:5]}")
    grads = [torch.zeros_like(lin.weight) for lin in net.linears]
    for bits in itertools.product((0.0, 1.0), repeat=total_units):
        d = torch.tensor(bits, dtype=x.dtype, device=x.device)
        noise, prob, start = {}, torch.ones((), dtype=x.dtype, device=x.device), 0
        for (name, _), keep in zip(gates, keeps, strict=True):
            mask = d[start:start + len(keep)]
            start += len(keep)
            prob = prob * torch.prod(keep**mask * (1 - keep) ** (1 - mask))
            noise[name] = mask.expand(len(x), -1)
        if prob == 0:
            continue
        net.zero_grad()
        with modes.replay(net, noise):
            _loss(net, net(x), y, loss).backward()
        for g, lin in zip(grads, net.linears, strict=True):
            g += prob * lin.weight.grad
    return grads


from ._contract import checked as _checked  # noqa: E402  (every public function checks its arguments first)

for _name in __all__:
    globals()[_name] = _checked(globals()[_name])
