"""Weighted arithmetic, geometric and normalized geometric means, with the paper's approximations and bounds.

Notation (Baldi & Sadowski 2014, Section 8): numbers O_1..O_m in [0, 1] with probabilities P_1..P_m,

    E = sum_i P_i O_i,   G = prod_i O_i^P_i,   G' = prod_i (1 - O_i)^P_i,   NWGM = G / (G + G'),
    V = sum_i P_i (O_i - E)^2.

Everything is computed in log space (NWGM = sigmoid(sum_i P_i logit(O_i))), so thousands of factors do not
underflow. Extreme cases follow the paper: an O_i = 0 with P_i > 0 makes G = 0 (and NWGM = 0 when G' > 0);
an O_i = 1 makes G' = 0 (NWGM = 1). When both occur, NWGM = 0/0 is undefined: it is returned as NaN, or
raises with ``undefined="raise"``; it is never silently replaced by a number.

Every function takes NumPy arrays or torch tensors (weights default to uniform) and returns the same kind.
The approximations are functions of E and V only, each named after its equation.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "bound_mean_only",
    "bound_simple",
    "bound_variance",
    "cartwright_field_bounds",
    "class_normalized_geometric_mean",
    "complement_geometric_mean",
    "expected_derivative_mean_field",
    "expected_derivative_second_order",
    "gaussian_expected_logistic",
    "geometric_mean",
    "logistic_nwgm",
    "normalized_geometric_mean",
    "nwgm_error_around_half",
    "nwgm_error_extremes",
    "nwgm_around_extremes",
    "nwgm_around_half",
    "nwgm_around_mean",
    "relu_expectation_gaussian",
    "relu_error_discrete",
    "relu_error_uniform",
    "weighted_mean",
    "weighted_variance",
]

Array = TypeVar("Array", np.ndarray, Tensor)


def _array_api(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` on float64 torch tensors (its ``Array`` arguments, positional or by name: NumPy arrays, lists
    and numbers converted); give back NumPy if NumPy or a list came in."""
    sig = inspect.signature(fn)
    arrays = {name for name, p in sig.parameters.items() if "Array" in str(p.annotation)}

    def convert(a: Any) -> Any:
        if isinstance(a, bool) or a is None or isinstance(a, Tensor):
            return a
        if isinstance(a, int):
            a = float(a)  # as float64: a huge int would not fit torch's int64 on the way
        return torch.as_tensor(np.asarray(a, dtype=np.float64))

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        bound = sig.bind(*args, **kwargs)
        numpy_in = any(isinstance(v, (np.ndarray, list, tuple)) for k, v in bound.arguments.items() if k in arrays)
        for name in arrays & set(bound.arguments):
            bound.arguments[name] = convert(bound.arguments[name])
        out = fn(*bound.args, **bound.kwargs)
        if numpy_in:
            return tuple(o.numpy() for o in out) if isinstance(out, tuple) else out.numpy()
        return out
    return wrapper


def _weights(o: Tensor, weights: Tensor | None, dim: int) -> Tensor:
    if not -o.dim() <= dim < max(o.dim(), 1):
        raise ValueError(f"dim={dim} is out of range for values of shape {tuple(o.shape)}")
    if o.dim() == 0 or o.shape[dim] == 0:
        raise ValueError(f"the means of an empty set are undefined; got values of shape {tuple(o.shape)}")
    if weights is None:
        n = o.shape[dim]
        shape = [1] * o.dim()
        shape[dim] = n
        return torch.full(shape, 1.0 / n, dtype=o.dtype, device=o.device)
    weights = torch.as_tensor(weights, dtype=o.dtype, device=o.device)
    if weights.dim() == 1 and o.dim() > 1:
        shape = [1] * o.dim()
        shape[dim] = -1
        weights = weights.view(shape)
    if weights.dim() != o.dim() or weights.shape[dim] != o.shape[dim]:
        raise ValueError(f"weights of shape {tuple(weights.shape)} do not match values of shape {tuple(o.shape)} "
                         f"along dim {dim}: give one weight per value")
    if torch.any(weights < 0):
        raise ValueError("weights must be non-negative probabilities")
    total = weights.sum(dim=dim, keepdim=True)
    if not torch.allclose(total, torch.ones_like(total), atol=1e-6):
        raise ValueError(f"weights must sum to 1 along dim {dim}, got sums in [{float(total.min()):g}, "
                         f"{float(total.max()):g}]; normalize them, e.g. w / w.sum()")
    return weights


def _check_unit(o: Tensor, what: str = "O") -> None:
    if torch.any((o < 0) | (o > 1)):
        raise ValueError(f"{what} must lie in [0, 1] for geometric means, got values in "
                         f"[{float(o.min()):g}, {float(o.max()):g}]")


def _plogsum(p: Tensor, log_o: Tensor, dim: int) -> Tensor:
    # sum_i P_i log O_i, with P_i = 0 terms contributing 0 even where log O_i = -inf
    return torch.where(p > 0, p * log_o, torch.zeros_like(log_o)).sum(dim)


@_array_api
def weighted_mean(o: Array, weights: Array | None = None, *, dim: int = -1) -> Array:
    r"""E = sum_i P_i O_i.

    $$
    E = \sum_i P_i O_i
    $$

    Args:
        o: The members' outputs O_i, along ``dim`` (NumPy array or tensor).
        weights: Their probabilities P_i along ``dim`` (None: uniform); they sum to 1.
        dim: The dimension the members lie along.

    Returns:
        Array: The same kind as the inputs (NumPy array or tensor), their shape without ``dim``.
    """
    return (_weights(o, weights, dim) * o).sum(dim)


@_array_api
def weighted_variance(o: Array, weights: Array | None = None, *, dim: int = -1) -> Array:
    r"""V = sum_i P_i (O_i - E)^2.

    $$
    V = \sum_i P_i (O_i - E)^2
    $$

    Args:
        o: The members' outputs O_i, along ``dim`` (NumPy array or tensor).
        weights: Their probabilities P_i along ``dim`` (None: uniform); they sum to 1.
        dim: The dimension the members lie along.

    Returns:
        Array: The same kind as the inputs (NumPy array or tensor), their shape without ``dim``.
    """
    p = _weights(o, weights, dim)
    e = (p * o).sum(dim, keepdim=True)
    return (p * (o - e).square()).sum(dim)


@_array_api
def geometric_mean(o: Array, weights: Array | None = None, *, dim: int = -1) -> Array:
    r"""G = prod_i O_i^P_i = exp(sum_i P_i log O_i); 0 if some O_i = 0 with P_i > 0.

    $$
    G = \prod_i O_i^{P_i}
    $$

    Args:
        o: The members' outputs O_i, along ``dim`` (NumPy array or tensor).
        weights: Their probabilities P_i along ``dim`` (None: uniform); they sum to 1.
        dim: The dimension the members lie along.

    Returns:
        Array: The same kind as the inputs (NumPy array or tensor), their shape without ``dim``.
    """
    _check_unit(o)
    p = _weights(o, weights, dim)
    return torch.exp(_plogsum(p.expand_as(o), torch.log(o), dim))


@_array_api
def complement_geometric_mean(o: Array, weights: Array | None = None, *, dim: int = -1) -> Array:
    r"""G' = prod_i (1 - O_i)^P_i.

    $$
    G' = \prod_i (1 - O_i)^{P_i}
    $$

    Args:
        o: The members' outputs O_i, along ``dim`` (NumPy array or tensor).
        weights: Their probabilities P_i along ``dim`` (None: uniform); they sum to 1.
        dim: The dimension the members lie along.

    Returns:
        Array: The same kind as the inputs (NumPy array or tensor), their shape without ``dim``.
    """
    _check_unit(o)
    p = _weights(o, weights, dim)
    return torch.exp(_plogsum(p.expand_as(o), torch.log1p(-o), dim))


@_array_api
def normalized_geometric_mean(o: Array, weights: Array | None = None, *, dim: int = -1,
                              undefined: str = "nan") -> Array:
    r"""NWGM = G / (G + G') = sigmoid(sum_i P_i (log O_i - log(1 - O_i))), Eq. 50.

    >>> float(normalized_geometric_mean(torch.tensor([0.5, 0.5])))
    0.5

    $$
    \mathrm{NWGM} = \frac{G}{G + G'} = \sigma\Big(\sum_i P_i \big(\log O_i - \log(1 - O_i)\big)\Big) \tag{50}
    $$

    Args:
        o: The members' outputs O_i, along ``dim`` (NumPy array or tensor).
        weights: Their probabilities P_i along ``dim`` (None: uniform); they sum to 1.
        dim: The dimension the members lie along.
        undefined: Where NWGM = 0/0 (some O_i = 0 and some O_j = 1): ``"nan"`` returns NaN there, ``"raise"``
            raises a ValueError.

    Returns:
        Array: The same kind as the inputs (NumPy array or tensor), their shape without ``dim``.
    """
    if undefined not in ("nan", "raise"):
        raise ValueError(f"undefined must be 'nan' or 'raise', got {undefined!r}")
    _check_unit(o)
    p = _weights(o, weights, dim).expand_as(o)
    log_g = _plogsum(p, torch.log(o), dim)
    log_g_comp = _plogsum(p, torch.log1p(-o), dim)
    both_zero = torch.isneginf(log_g) & torch.isneginf(log_g_comp)  # an O = 0 and an O = 1: 0/0
    if undefined == "raise" and torch.any(both_zero):
        raise ValueError("NWGM is 0/0 (undefined) where some O_i = 0 and some O_j = 1 with positive weight")
    out = torch.sigmoid(log_g - log_g_comp)  # G/(G+G') = 1/(1 + exp(log G' - log G))
    return torch.where(both_zero, torch.full_like(out, math.nan), out)


@_array_api
def logistic_nwgm(s: Array, weights: Array | None = None, *, dim: int = -1, c: float = 1.0,
                  lam: float = 1.0) -> Array:
    r"""NWGM of logistic outputs from their input sums: sigma(E(S)) exactly (Eqs. 34-39).

    $$
    \mathrm{NWGM}(O) = \sigma\big(E(S)\big) \tag{39}
    $$

    Args:
        s: The members' input sums S_i, along ``dim``.
        weights: Their probabilities P_i along ``dim`` (None: uniform); they sum to 1.
        dim: The dimension the members lie along.
        c: The logistic's c (Eq. 27).
        lam: The slope lambda.

    Returns:
        Array: The same kind as the inputs (NumPy array or tensor), their shape without ``dim``.
    """
    p = _weights(s, weights, dim)
    return 1 / (1 + c * torch.exp(-lam * (p * s).sum(dim)))


@_array_api
def class_normalized_geometric_mean(o: Array, weights: Array | None = None, *, dim: int = 0,
                                    class_dim: int = -1) -> Array:
    r"""NWGM of normalized exponential outputs (Eq. 44): G_i / sum_l G_l over classes, G_i = prod O_i^P.

    For softmax outputs this equals softmax(E(S)) (Eq. 47).

    $$
    \mathrm{NWGM}_i = \frac{\prod_k O_{ik}^{P_k}}{\sum_l \prod_k O_{lk}^{P_k}} \tag{44}
    $$

    Args:
        o: The members' outputs O_i, along ``dim`` (NumPy array or tensor).
        weights: Their probabilities P_i along ``dim`` (None: uniform); they sum to 1.
        dim: The dimension the members lie along.
        class_dim: The dimension of the classes.

    Returns:
        Array: The NWGM of each class (``o``'s shape without ``dim``).
    """
    p = _weights(o, weights, dim)
    log_g = (p * torch.log(o)).sum(dim)
    cd = class_dim if class_dim < 0 else class_dim - (1 if class_dim > dim else 0)
    return torch.softmax(log_g, dim=cd)


# ---------------------------------------------------------------------------------------------------- bounds
@_array_api
def cartwright_field_bounds(o: Array, weights: Array | None = None, *, dim: int = -1) -> tuple[Array, Array]:
    r"""Eq. 78: V / (2 max O) <= E - G <= V / (2 min O). Returns (lower, upper).

    $$
    \frac{V}{2 \max_i O_i} \le E - G \le \frac{V}{2 \min_i O_i} \tag{78}
    $$

    Args:
        o: The members' outputs O_i, along ``dim`` (NumPy array or tensor).
        weights: Their probabilities P_i along ``dim`` (None: uniform); they sum to 1.
        dim: The dimension the members lie along.

    Returns:
        tuple[Array, Array]: (lower, upper) bounds on E - G, each the inputs' shape without ``dim``.
    """
    v = weighted_variance(o, weights, dim=dim)
    return v / (2 * o.amax(dim)), v / (2 * o.amin(dim))


@_array_api
def nwgm_around_half(e: Array, v: Array) -> Array:
    r"""Eq. 84, second order around 0.5: NWGM ~ (E - V) / (1 - 2V).

    $$
    \mathrm{NWGM} \approx \frac{E - V}{1 - 2V} \tag{84}
    $$

    Args:
        e: E, the mean output(s), in [0, 1].
        v: V, the variance(s) of the output, in [0, 1/4].

    Returns:
        Array: The same kind and shape as the inputs.
    """
    _check_mean_variance(e, v)
    return (e - v) / (1 - 2 * v)


@_array_api
def nwgm_error_around_half(e: Array, v: Array) -> Array:
    r"""Eqs. 85 and 87: |E - NWGM| ~ V |1 - 2E| / (1 - 2V).

    $$
    |E - \mathrm{NWGM}| \approx \frac{V\,|1 - 2E|}{1 - 2V} \tag{85}
    $$

    Args:
        e: E, the mean output(s), in [0, 1].
        v: V, the variance(s) of the output, in [0, 1/4].

    Returns:
        Array: The same kind and shape as the inputs.
    """
    _check_mean_variance(e, v)
    return v * (1 - 2 * e).abs() / (1 - 2 * v)


@_array_api
def bound_variance(e: Array, v: Array) -> Array:
    r"""Eq. 87, bound 1 (variance-dependent): |E - NWGM| <~ E(1 - E)|1 - 2E| / (1 - 2V).

    $$
    |E - \mathrm{NWGM}| \lesssim \frac{E(1 - E)\,|1 - 2E|}{1 - 2V} \tag{87}
    $$

    Args:
        e: E, the mean output(s), in [0, 1].
        v: V, the variance(s) of the output, in [0, 1/4].

    Returns:
        Array: The same kind and shape as the inputs.
    """
    _check_mean_variance(e, v)
    return e * (1 - e) * (1 - 2 * e).abs() / (1 - 2 * v)


def _check_mean_variance(e: Tensor, v: Tensor) -> None:
    """E of numbers in [0, 1] lies in [0, 1], and their V in [0, 1/4] (Eq. 212)."""
    if bool(((e < -1e-6) | (e > 1 + 1e-6)).any()):  # room for the rounding of estimated means
        raise ValueError(f"E must be in [0, 1] (a mean of outputs in [0, 1]), got {float(e.min()):g} to "
                         f"{float(e.max()):g}")
    if bool(((v < -1e-9) | (v > 0.25 + 1e-9)).any()):  # 0 <= V <= E(1 - E) <= 1/4 (Eq. 212), with rounding room
        raise ValueError(f"V must be in [0, 0.25] (Eq. 212) for values in [0, 1], got {float(v.min()):g} to "
                         f"{float(v.max()):g}; check that E and V are in that order")
    # numbers in [0, 1] with mean E have V <= E(1 - E) (Bhatia-Davis); room for an unbiased estimate's K / (K - 1)
    eb, vb = torch.broadcast_tensors(e.clamp(0, 1), v)
    excess = vb - 1.5 * eb * (1 - eb) - 1e-9
    if bool((excess > 0).any()):
        k = int(excess.flatten().argmax())
        raise ValueError(f"V = {float(vb.flatten()[k]):g} is impossible with E = {float(eb.flatten()[k]):g}: values "
                         "in [0, 1] have V <= E(1 - E)")


@_array_api
def bound_mean_only(e: Array) -> Array:
    r"""Eq. 87, bound 2 (variance-independent, Fig. 8.1): E(1 - E)|1 - 2E| / (1 - 2E(1 - E)).

    $$
    |E - \mathrm{NWGM}| \lesssim \frac{E(1 - E)\,|1 - 2E|}{1 - 2E(1 - E)} \tag{87}
    $$

    Args:
        e: E, the mean output(s), in [0, 1].

    Returns:
        Array: The same kind and shape as the inputs.
    """
    return e * (1 - e) * (1 - 2 * e).abs() / (1 - 2 * e * (1 - e))


@_array_api
def bound_simple(e: Array) -> Array:
    r"""Eq. 87, last form (Fig. 8.2): 2E(1 - E)|1 - 2E|.

    $$
    |E - \mathrm{NWGM}| \lesssim 2E(1 - E)\,|1 - 2E| \tag{87}
    $$

    Args:
        e: E, the mean output(s), in [0, 1].

    Returns:
        Array: The same kind and shape as the inputs.
    """
    return 2 * e * (1 - e) * (1 - 2 * e).abs()


@_array_api
def nwgm_around_mean(e: Array, v: Array) -> Array:
    r"""Eq. 202, second order around the mean: NWGM ~ (E - V/(2E)) / (1 - V / (2E(1 - E))). Where V = 0 (every
    member gives the same output, e.g. a unit saturated at exactly 0 or 1 in float32) NWGM = E exactly, the
    formula's limit; it would otherwise be 0/0 at E = 0 or 1.

    >>> float(nwgm_around_mean(torch.tensor(1.0), torch.tensor(0.0)))
    1.0

    $$
    \mathrm{NWGM} \approx \frac{E - \frac{V}{2E}}{1 - \frac{V}{2E(1 - E)}} \tag{202}
    $$

    Args:
        e: E, the mean output(s), in [0, 1].
        v: V, the variance(s) of the output, in [0, 1/4].

    Returns:
        Array: The same kind and shape as the inputs.
    """
    _check_mean_variance(e, v)
    formula = (e - v / (2 * e)) / (1 - v / (2 * e * (1 - e)))
    return torch.where(v == 0, e, formula)


@_array_api
def nwgm_around_extremes(e: Array, v: Array) -> Array:
    r"""Eqs. 207 and 211, expansion around 1 (or 0): NWGM ~ (2E - V) / (2 - 2V).

    $$
    \mathrm{NWGM} \approx \frac{2E - V}{2 - 2V} \tag{207}
    $$

    Args:
        e: E, the mean output(s), in [0, 1].
        v: V, the variance(s) of the output, in [0, 1/4].

    Returns:
        Array: The same kind and shape as the inputs.
    """
    _check_mean_variance(e, v)
    return (2 * e - v) / (2 - 2 * v)


@_array_api
def nwgm_error_extremes(e: Array, v: Array) -> Array:
    r"""Eq. 208: E - NWGM ~ -(E - 1/2) V / (1 - V); |.| <= 1/2 V/(1-V) <= 1/6 (Eqs. 209-210).

    $$
    E - \mathrm{NWGM} \approx -\frac{(E - \frac12)\,V}{1 - V}, \qquad |E - \mathrm{NWGM}| \le \frac{V}{2(1
        - V)} \le \frac16 \tag{208}
    $$

    Args:
        e: E, the mean output(s), in [0, 1].
        v: V, the variance(s) of the output, in [0, 1/4].

    Returns:
        Array: The same kind and shape as the inputs.
    """
    _check_mean_variance(e, v)
    return -(e - 0.5) * v / (1 - v)


# ---------------------------------------------------------------------------------------------------- E(sigma'(S))
@_array_api
def expected_derivative_mean_field(mean_s: Array, *, c: float = 1.0, lam: float = 1.0) -> Array:
    r"""Eq. 220: E(sigma'(S)) ~ sigma'(E(S)) = lam sigma(1 - sigma) at E(S).

    $$
    E\big(\sigma'(S)\big) \approx \sigma'\big(E(S)\big) = \lambda\,\sigma\big(E(S)\big)\Big(1
        - \sigma\big(E(S)\big)\Big) \tag{220}
    $$

    Args:
        mean_s: E(S), the mean input sum.
        c: The logistic's c (Eq. 27).
        lam: The slope lambda.

    Returns:
        Array: The same kind and shape as the inputs.
    """
    o = 1 / (1 + c * torch.exp(-lam * mean_s))
    return lam * o * (1 - o)


@_array_api
def expected_derivative_second_order(mean_s: Array, var_s: Array, *, lam: float = 1.0) -> Array:
    r"""Eq. 223 (c = 1): E(sigma'(S)) ~ 1 / (4 + lam^2 (Var(S) + E(S)^2)).

    $$
    E\big(\sigma'(S)\big) \approx \frac{1}{4 + \lambda^2\big(\mathrm{Var}(S) + E(S)^2\big)} \tag{223}
    $$

    Args:
        mean_s: E(S), the mean input sum.
        var_s: Var(S), its variance, >= 0.
        lam: The slope lambda.

    Returns:
        Array: The same kind and shape as the inputs.
    """
    return 1 / (4 + lam**2 * (var_s + mean_s.square()))


# ---------------------------------------------------------------------------------------------------- Gaussian S
ALPHA = 0.607  # the logistic-probit matching constant of Appendix D (alpha^2 = 0.368)


@_array_api
def gaussian_expected_logistic(mean_s: Array, var_s: Array, *, c: float = 1.0, lam: float = 1.0) -> Array:
    r"""Eqs. 241-242: E(sigma(S)) for S ~ N(mu, s^2) ~ 1 / (1 + exp(-(lam mu - log c) / sqrt(1 + alpha^2 lam^2 s^2))).

    With c = lam = 1 this is the paper's Eq. 242, 1/(1 + exp(-mu / sqrt(1 + 0.368 s^2))). (The paper's
    derivation drops lam from the variance term; lam^2 s^2 is the variance of lam S.)

    $$
    E\big(\sigma(S)\big) \approx \frac{1}{1 + \exp\Big(-\frac{\lambda\mu - \log c}{\sqrt{1
        + \alpha^2 \lambda^2 s^2}}\Big)}, \quad S \sim N(\mu, s^2) \tag{242}
    $$

    Args:
        mean_s: E(S), the mean input sum.
        var_s: Var(S), its variance, >= 0.
        c: The logistic's c (Eq. 27).
        lam: The slope lambda.

    Returns:
        Array: The same kind and shape as the inputs.
    """
    if not c > 0:
        raise ValueError(f"c (the logistic's c) must be positive, got {c}")
    return torch.sigmoid((lam * mean_s - math.log(c)) / torch.sqrt(1 + ALPHA**2 * lam**2 * var_s))


@_array_api
def relu_expectation_gaussian(mean_s: Array, var_s: Array, *, lam: float = 1.0) -> Array:
    r"""Eq. 72: E(RL(S)) = lam mu Phi(mu/s) + lam s / sqrt(2 pi) exp(-mu^2 / 2s^2), for S ~ N(mu, s^2), t = 0.

    $$
    E\big(\mathrm{RL}(S)\big) = \lambda\mu\,\Phi\Big(\frac{\mu}{s}\Big)
        + \frac{\lambda s}{\sqrt{2\pi}}\, e^{-\mu^2 / 2s^2}, \quad S \sim N(\mu, s^2) \tag{72}
    $$

    Args:
        mean_s: E(S), the mean input sum.
        var_s: Var(S), its variance, >= 0.
        lam: The slope lambda.

    Returns:
        Array: The same kind and shape as the inputs.
    """
    std = var_s.clamp_min(0).sqrt()
    safe = torch.where(std > 0, std, torch.ones_like(std))
    z = mean_s / safe
    phi = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    value = lam * mean_s * phi + lam * std / math.sqrt(2 * math.pi) * torch.exp(-0.5 * z.square())
    return torch.where(std > 0, value, lam * mean_s.clamp_min(0))


@_array_api
def relu_error_uniform(a: Array, *, lam: float = 1.0) -> Array:
    r"""Eq. 190: |RL(E(S)) - E(RL(S))| = lam a / 4 for S uniform on [-a, a].

    $$
    \big|\mathrm{RL}\big(E(S)\big) - E\big(\mathrm{RL}(S)\big)\big| = \frac{\lambda a}{4},
        \quad S \sim U[-a, a] \tag{190}
    $$

    Args:
        a: The half-width of the uniform distribution of S, >= 0.
        lam: The slope lambda.

    Returns:
        Array: The same kind and shape as the inputs.
    """
    return lam * a / 4


@_array_api
def relu_error_discrete(s: Array, weights: Array | None = None, *, dim: int = -1, lam: float = 1.0) -> Array:
    r"""Eq. 193: |RL(E(S)) - E(RL(S))| for values S_i with probabilities P_i (Eq. 194: uniform P_i).

    $$
    \big|\mathrm{RL}\big(E(S)\big) - E\big(\mathrm{RL}(S)\big)\big|, \quad E(S) = \sum_i P_i S_i \tag{193}
    $$

    Args:
        s: The members' input sums S_i, along ``dim``.
        weights: Their probabilities P_i along ``dim`` (None: uniform); they sum to 1.
        dim: The dimension the members lie along.
        lam: The slope lambda.

    Returns:
        Array: The same kind as the inputs (NumPy array or tensor), their shape without ``dim``.
    """
    p = _weights(s, weights, dim)
    mean = (p * s).sum(dim)
    positive = (p * s * (s > 0)).sum(dim)
    nonpositive = (p * s.abs() * (s <= 0)).sum(dim)
    return lam * torch.where(mean <= 0, positive, nonpositive)


from ._contract import checked as _checked  # noqa: E402  (every public function checks its arguments first)

for _name in __all__:
    globals()[_name] = _checked(globals()[_name])
