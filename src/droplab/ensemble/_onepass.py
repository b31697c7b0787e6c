"""One pass for the dropout ensemble of any traceable torch model: the mean and the variance of every value,
carried through the model's graph (issue 36; the paper's Sections 2-5 and 9 for droplab's own networks).

``moments(model, x)`` traces the model with ``torch.fx`` and runs its graph once on pairs (mean, variance), the
variance diagonal (each value's own; covariances between values are taken as 0). ``covariance="full"`` carries,
for every (B, n) value from the first dropout site on (n up to ``FULL_LIMIT``), the n x n covariance of its
entries as well: exact through linear maps and dropout sites (a linear network's means, variances and covariances
are then exact, as Section 3's recursions are), through elementwise nonlinearities by Mehler's expansion to
second order in the covariance, Cov(f(X_i), f(X_j)) ~ E f'(X_i) E f'(X_j) C_ij + E f''(X_i) E f''(X_j) C_ij^2 / 2,
and the class probabilities then from fixed Gaussian draws of the logits (``DRAWS``). Values of other shapes
(feature maps) stay diagonal; one flattened into (B, n) starts carrying its covariance at the first linear map it
reaches (W diag(v) W^T), and a linear map's output wider than ``FULL_LIMIT`` is carried with its variances alone
(exact from the covariance before it). It costs a product of n x n matrices per input and layer, so it is for MLP-sized
layers; on MLPs with dropout after every layer it brings the logits' variance from a fifth (scikit-learn's digits)
or a half (MNIST) of Monte Carlo's to within a few percent of it (``tests/test_one_pass.py``,
``benchmarks/one_pass.py``). A dropout site turns (m, v) into the moments of the gated
values; every other operation propagates them:

- **exactly** on independent inputs (what a dropout site gives): ``Linear``, convolutions, average pooling,
  eval-mode BatchNorm (affine), reshapes, permutations, concatenation, indexing, additions and subtractions of
  independent terms, products with constants. One linear map after a dropout site is exact; a second one on its
  outputs (overlapping convolution windows pooled, a residual branch added to its own input) sums values that
  share masks, whose covariances the diagonal leaves out: there it is an approximation (the tests show both);
- **by approximation**: logistic (the paper's Eq. 242 for the mean, E ~ sigma(m / sqrt(1 + 0.368 v)); the
  variance by 48-point Gauss-Hermite quadrature of the Gaussian), tanh (as 2 sigma(2x) - 1), ReLU (the
  rectified Gaussian, closed form: exact for a Gaussian input), GELU (its mean in closed form, its variance to
  first order), LayerNorm (the statistics of the mean's row; the variance scaled with them);
- the output: ``"values"`` as they are; ``"logits"``: class probabilities by the extended probit,
  E(softmax(z))_c ~ softmax(m / sqrt(1 + pi v / 8))_c (the default: it spreads the probabilities as the variance
  grows, where the normalized NWGM of Eq. 47, softmax(m), ignores the variance; both are returned).

An operation without a rule on a random value is refused with its name and the module that calls it (max
pooling, products of two random tensors such as attention's, an unknown module), never passed through as if it
were deterministic. Deterministic parts of the graph run as they are.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import means
from ..statistics import EnsembleStatistics, PredictiveStatistics
from ._predictive import check_output

__all__ = ["MomentsCheck", "check_moments", "moments"]



# the widest (B, n) value whose full covariance ``covariance="full"`` carries: (B, n, n) numbers per value
FULL_LIMIT = 2048
FULL_CHUNK = 64  # inputs per pass under covariance="full" (64 x 2048^2 float32 numbers: 1 GiB at the widest)


@dataclass
class Gaussian:
    """A random value's mean and variance, and for a (B, n) value under ``covariance="full"`` the covariance of
    its n entries for each input (B, n, n; None where only the diagonal is carried)."""

    m: Tensor
    v: Tensor
    c: Tensor | None = None
    full: bool = False  # the covariance is carried: with c None, it is diag(v) (what a dropout site starts with)

    def __post_init__(self) -> None:
        self.full = self.full or self.c is not None

    def covariance(self) -> Tensor | None:
        """The carried covariance, made a matrix (None where only the diagonal is carried)."""
        return self.c if self.c is not None else torch.diag_embed(self.v) if self.full else None


def _with_diagonal(c: Tensor, v: Tensor) -> Tensor:
    """``c`` with its diagonal replaced by ``v`` (each rule's own variance, exact or better than the off-diagonal
    terms' order)."""
    return c - torch.diag_embed(torch.diagonal(c, dim1=-2, dim2=-1)) + torch.diag_embed(v)


def _scaled(c: Tensor | None, scale: Any) -> Tensor | None:
    """Cov(a_i X_i, a_j X_j) = a_i a_j Cov(X_i, X_j) for a scale per entry (a number, (n,) or (B, n))."""
    if c is None:
        return None
    if not isinstance(scale, Tensor):
        return c * float(scale) ** 2
    a = scale.expand(c.shape[:-1]) if scale.dim() <= 2 else None
    return None if a is None else c * a[..., :, None] * a[..., None, :]


def _dropout(value: Any, p: float, full: bool = False) -> Any:
    """Inverted dropout with rate p: E = m, Var = v / q + m^2 (1 - q) / q with q = 1 - p. The masks are independent
    of each other and of the values, so covariances between entries are unchanged: the gates add (v + m^2) p / q on
    the diagonal. With ``full``, a (B, n) value starts carrying its covariance here."""
    if p <= 0:
        return value
    if p >= 1:
        m = value.m if isinstance(value, Gaussian) else value
        return Gaussian(torch.zeros_like(m), torch.zeros_like(m))
    q = 1.0 - p
    m, v = (value.m, value.v) if isinstance(value, Gaussian) else (value, torch.zeros_like(value))
    c = value.c if isinstance(value, Gaussian) else None
    added = (v + m.square()) * (p / q)
    if c is not None:
        return Gaussian(m, v + added, c + torch.diag_embed(added), True)
    # a diagonal covariance (kept as the variances until a linear map mixes the entries)
    carried = (full or (isinstance(value, Gaussian) and value.full)) and m.dim() == 2 and m.shape[1] <= FULL_LIMIT
    return Gaussian(m, v + added, None, carried)


def _relu(g: Gaussian) -> Gaussian:
    """The rectified Gaussian: the mean by the paper's Eq. 72 (``means.relu_expectation_gaussian``), the second
    moment E(RL(S)^2) = (m^2 + v) Phi(m/s) + m s phi(m/s) beside it."""
    mean = means.relu_expectation_gaussian(g.m, g.v)
    s = g.v.clamp_min(0).sqrt()
    a = g.m / s.clamp_min(1e-30)
    second = (g.m.square() + g.v) * 0.5 * torch.erfc(-a / math.sqrt(2)) \
        + g.m * s * torch.exp(-0.5 * a.square()) / math.sqrt(2 * math.pi)
    var = torch.where(s > 0, (second - mean.square()).clamp_min(0), torch.zeros_like(g.m))
    out = Gaussian(mean, var, None, g.full)
    if g.c is None:
        return out
    # E RL'(X) = Phi(m / s), E RL''(X) = phi(m / s) / s (a point mass at 0); a deterministic entry: a step
    d1 = torch.where(s > 0, 0.5 * torch.erfc(-a / math.sqrt(2)), (g.m > 0).to(g.m.dtype))
    d2 = torch.where(s > 0, torch.exp(-0.5 * a.square()) / math.sqrt(2 * math.pi) / s.clamp_min(1e-30),
                     torch.zeros_like(g.m))
    return _elementwise_covariance(g, out, (d1, d2))


# Gauss-Hermite: E f(X) = sum_k w_k f(m + sqrt(2 v) t_k) / sqrt(pi)
_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(48)


def _hermite_variance(f: Any, g: Gaussian) -> Tensor:
    """Var f(X), X ~ N(m, v), by 48-point Gauss-Hermite quadrature (elementwise: 48 evaluations per value)."""
    t = torch.as_tensor(_NODES, dtype=g.m.dtype, device=g.m.device).view(-1, *([1] * g.m.dim()))
    w = torch.as_tensor(_WEIGHTS / math.sqrt(math.pi), dtype=g.m.dtype, device=g.m.device).view_as(t)
    values = f(g.m + torch.sqrt(2 * g.v.clamp_min(0)) * t)
    mean = (w * values).sum(0)
    return ((w * values.square()).sum(0) - mean.square()).clamp_min(0)


def _sigmoid_slopes(x: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(x)
    return s * (1 - s), s * (1 - s) * (1 - 2 * s)


def _sigmoid(g: Gaussian) -> Gaussian:
    # the mean by the paper's Eq. 242; the variance by quadrature (Daunizeau's closed form was 30-75% off)
    out = Gaussian(means.gaussian_expected_logistic(g.m, g.v), _hermite_variance(torch.sigmoid, g), None, g.full)
    if g.c is None:
        return out
    return _elementwise_covariance(g, out, _hermite_means(_sigmoid_slopes, g))


def _tanh(g: Gaussian) -> Gaussian:
    inner = _sigmoid(Gaussian(2 * g.m, 4 * g.v, None if g.c is None else 4 * g.c, g.full))  # 2 sigmoid(2x) - 1
    return Gaussian(2 * inner.m - 1, 4 * inner.v, None if inner.c is None else 4 * inner.c, inner.full)


def _gelu(g: Gaussian) -> Gaussian:
    # E[x Phi(x)] for x ~ N(m, v): m Phi(m / sqrt(1 + v)) + v / sqrt(1 + v) phi(m / sqrt(1 + v)); Var to first order
    r = torch.sqrt(1 + g.v)
    a = g.m / r
    pdf = torch.exp(-0.5 * a.square()) / math.sqrt(2 * math.pi)
    mean = g.m * 0.5 * torch.erfc(-a / math.sqrt(2)) + g.v / r * pdf
    pdf_m = torch.exp(-0.5 * g.m.square()) / math.sqrt(2 * math.pi)
    slope = 0.5 * torch.erfc(-g.m / math.sqrt(2)) + g.m * pdf_m
    out = Gaussian(mean, slope.square() * g.v, None, g.full)
    if g.c is None:
        return out

    def slopes(x: Tensor) -> tuple[Tensor, Tensor]:  # GELU' = Phi(x) + x phi(x), GELU'' = phi(x) (2 - x^2)
        phi = torch.exp(-0.5 * x.square()) / math.sqrt(2 * math.pi)
        return 0.5 * torch.erfc(-x / math.sqrt(2)) + x * phi, phi * (2 - x.square())

    return _elementwise_covariance(g, out, _hermite_means(slopes, g))


def _linear_map(fn: Any, weight: Tensor, bias: Tensor | None, g: Gaussian, **kwargs: Any) -> Gaussian:
    if (g.c is not None or g.full) and fn is F.linear and g.m.dim() == 2 and weight.shape[0] > FULL_LIMIT:
        # too wide an output to hold n x n numbers per input: its variances, exact from the covariance, then
        # diagonal from here on (diag(W C W^T) = rowsum((W C) * W))
        v = ((torch.matmul(weight, g.c) * weight).sum(-1) if g.c is not None
             else F.linear(g.v, weight.square(), None)).clamp_min(0)
        return Gaussian(fn(g.m, weight, bias), v)
    if (g.c is not None or g.full) and fn is F.linear and g.m.dim() == 2:
        # Cov(W X) = W Cov(X) W^T: exact for any covariance; W diag(v) W^T for a diagonal one
        c = torch.matmul(torch.matmul(weight, g.c), weight.T) if g.c is not None else \
            torch.matmul(weight * g.v[:, None, :], weight.T)
        return Gaussian(fn(g.m, weight, bias), torch.diagonal(c, dim1=-2, dim2=-1).clamp_min(0), c, True)
    return Gaussian(fn(g.m, weight, bias, **kwargs), fn(g.v, weight.square(), None, **kwargs))


def _elementwise_covariance(g: Gaussian, out: Gaussian, slopes: tuple[Tensor, Tensor]) -> Gaussian:
    """The covariance after an elementwise f of jointly Gaussian entries, by Mehler's expansion to second order:
    Cov(f(X_i), f(X_j)) ~ E f'(X_i) E f'(X_j) C_ij + E f''(X_i) E f''(X_j) C_ij^2 / 2 (exact for jointly Gaussian
    X up to the terms in C_ij^3); the diagonal is each unit's own variance, from the rule's closed form."""
    if g.c is None:
        return out
    d1, d2 = slopes
    c = g.c * d1[..., :, None] * d1[..., None, :] + 0.5 * g.c.square() * d2[..., :, None] * d2[..., None, :]
    return Gaussian(out.m, out.v, _with_diagonal(c, out.v), True)


def _hermite_means(f: Any, g: Gaussian) -> tuple[Tensor, ...]:
    """E f_k(X), X ~ N(m, v), for each tensor of the tuple f returns, by 48-point Gauss-Hermite quadrature (the
    functions share one evaluation at the nodes)."""
    t = torch.as_tensor(_NODES, dtype=g.m.dtype, device=g.m.device).view(-1, *([1] * g.m.dim()))
    w = torch.as_tensor(_WEIGHTS / math.sqrt(math.pi), dtype=g.m.dtype, device=g.m.device).view_as(t)
    return tuple((w * value).sum(0) for value in f(g.m + torch.sqrt(2 * g.v.clamp_min(0)) * t))


class _Refused(ValueError):
    pass


def _module_rule(name: str, module: nn.Module, g: Gaussian) -> Any:
    """The moments after ``module`` of a random input ``g``."""
    if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
        return _dropout(g, float(module.p))
    if isinstance(module, (nn.Identity, nn.Flatten, nn.Unflatten)):
        return _reshaped(g, module(g.m), module(g.v))
    if isinstance(module, nn.Linear):
        return _linear_map(F.linear, module.weight, module.bias, g)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) and module.padding_mode == "zeros":
        conv = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}[type(module)]
        return _linear_map(conv, module.weight, module.bias, g, stride=module.stride, padding=module.padding,
                           dilation=module.dilation, groups=module.groups)
    if isinstance(module, nn.ReLU):
        return _relu(g)
    if isinstance(module, nn.Sigmoid):
        return _sigmoid(g)
    if isinstance(module, nn.Tanh):
        return _tanh(g)
    if isinstance(module, nn.GELU) and module.approximate == "none":
        return _gelu(g)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.training and module.track_running_stats:
        shape = [1, -1] + [1] * (g.m.dim() - 2)
        scale = (module.weight if module.affine else 1) / torch.sqrt(module.running_var + module.eps)
        per_unit = scale
        scale = scale.view(shape) if isinstance(scale, Tensor) else scale
        return Gaussian(module(g.m), g.v * scale**2, _scaled(g.c, per_unit))
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                           nn.AdaptiveAvgPool3d)):
        # an average of n independent values has variance (sum v) / n^2 = avg(v) / n
        return Gaussian(module(g.m), module(g.v) / _window(name, module, g.m))
    if isinstance(module, nn.LayerNorm):
        dims = tuple(range(-len(module.normalized_shape), 0))
        mu = g.m.mean(dims, keepdim=True)
        sd = torch.sqrt(g.m.var(dims, keepdim=True, unbiased=False) + module.eps)
        w = module.weight if module.weight is not None else 1
        mean = (g.m - mu) / sd * w + (module.bias if module.bias is not None else 0)
        scale = w / sd if isinstance(w, Tensor) else 1 / sd
        return Gaussian(mean, g.v / sd.square() * (w**2 if isinstance(w, Tensor) else 1),
                        _scaled(g.c, scale) if len(dims) == 1 else None)
    raise _Refused(f"moments has no rule for {type(module).__name__} at {name!r} on a random input "
                   f"{_refusal_hint(module)}")


def _window(name: str, module: nn.Module, m: Tensor) -> float:
    """How many values each output of an average pool averages (padding counted, as torch's default does)."""
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)):
        spatial, out = m.shape[2:], module(m).shape[2:]
        if any(s % o for s, o in zip(spatial, out, strict=True)):
            raise _Refused(f"moments: {type(module).__name__} at {name!r} pools windows of unequal sizes "
                           f"({tuple(spatial)} to {tuple(out)}); use Monte Carlo")
        return float(math.prod(s // o for s, o in zip(spatial, out, strict=True)))
    if not getattr(module, "count_include_pad", True) and any(
            p for p in (module.padding if isinstance(module.padding, tuple) else (module.padding,))):
        raise _Refused(f"moments: {type(module).__name__} at {name!r} averages windows of unequal sizes at the "
                       "border (count_include_pad=False); use Monte Carlo")
    k = module.kernel_size
    return float(math.prod(k) if isinstance(k, tuple) else k ** (m.dim() - 2))


def _refusal_hint(module: nn.Module) -> str:
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)):
        return "(the maximum of Gaussians has no closed form droplab uses: Monte Carlo handles it)"
    if isinstance(module, nn.MultiheadAttention):
        return "(attention multiplies two random tensors: Monte Carlo handles it)"
    return "(use ensemble.predictive, Monte Carlo, for this model)"


_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.permute, torch.transpose, torch.squeeze, torch.unsqueeze,
                    torch.movedim, operator.getitem}
_SHAPE_METHODS = {"view", "reshape", "flatten", "permute", "transpose", "squeeze", "unsqueeze", "contiguous",
                  "movedim", "unflatten", "__getitem__", "expand", "t"}
# those that leave every entry where it was when the shape is unchanged (the covariance then stays)
_LAYOUT_KEPT = {"view", "reshape", "flatten", "squeeze", "contiguous", torch.flatten, torch.reshape, torch.squeeze}


def _reshaped(g: Gaussian, m: Tensor, v: Tensor) -> Gaussian:
    """A shape operation's result: the covariance stays where the entries stay where they were (same shape)."""
    same = m.shape == g.m.shape
    return Gaussian(m, v, g.c if same else None, g.full and same)


class _Interpreter(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule, full: bool = False) -> None:
        super().__init__(gm)
        self.modules_by_name = dict(gm.named_modules())
        self.full = full

    def call_module(self, target: str, args: tuple, kwargs: dict) -> Any:
        module = self.modules_by_name[target]
        if isinstance(module, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
            return _dropout(args[0], float(module.p), self.full and isinstance(module, nn.Dropout)) \
                if args and not kwargs else module(*args, **kwargs)
        hidden = _dropout_inside(module)
        if hidden:  # torch.fx keeps torch.nn's modules whole: dropout inside one would run as if deterministic
            raise _Refused(f"moments cannot see into {type(module).__name__} at {target!r}: it holds dropout "
                           f"({hidden}) that would be left out of the ensemble; use Monte Carlo "
                           "(ensemble.predictive), or set that dropout to 0 to average the model's other dropout")
        if not any(isinstance(a, Gaussian) for a in args):
            return module(*args, **kwargs)
        if len(args) != 1 or kwargs:
            raise _Refused(f"moments: {type(module).__name__} at {target!r} takes several inputs, one random")
        return _module_rule(target, module, self._carried(args[0]) if isinstance(module, nn.Linear) else args[0])

    def _carried(self, value: Any) -> Any:
        """Under covariance='full', a (B, n) value that reaches a linear map with its variances alone (a feature
        map's, flattened) starts carrying its covariance there: the map's outputs share every input, and
        W diag(v) W^T holds what they share."""
        if (self.full and isinstance(value, Gaussian) and value.c is None and not value.full
                and value.m.dim() == 2 and value.m.shape[1] <= FULL_LIMIT):
            return Gaussian(value.m, value.v, None, True)
        return value

    def call_function(self, target: Any, args: tuple, kwargs: dict) -> Any:
        randoms = [a for a in (*args, *kwargs.values()) if isinstance(a, Gaussian)]
        if target in (F.dropout, torch.dropout) or getattr(target, "__name__", "") == "dropout":
            # a dropout site whatever its training flag, as Monte Carlo dropout samples it (droplab.modes)
            p = kwargs.get("p", args[1] if len(args) > 1 else 0.5)
            return _dropout(args[0], float(p), self.full)
        if not randoms:
            return target(*args, **kwargs)
        if target is F.linear and args:
            args = (self._carried(args[0]), *args[1:])
        return _function_rule(getattr(target, "__name__", str(target)), target, args, kwargs)

    def call_method(self, target: str, args: tuple, kwargs: dict) -> Any:
        randoms = [a for a in (*args, *kwargs.values()) if isinstance(a, Gaussian)]
        if not randoms:
            return getattr(args[0], target)(*args[1:], **kwargs)
        if target in _SHAPE_METHODS and isinstance(args[0], Gaussian) and len(randoms) == 1:
            g = args[0]
            same = target in _LAYOUT_KEPT
            return _reshaped(g if same else Gaussian(g.m, g.v), getattr(g.m, target)(*args[1:], **kwargs),
                             getattr(g.v, target)(*args[1:], **kwargs))
        if target in ("relu", "sigmoid", "tanh") and len(args) == 1:
            return {"relu": _relu, "sigmoid": _sigmoid, "tanh": _tanh}[target](args[0])
        if target == "mean" and isinstance(args[0], Gaussian):
            return _mean(args[0], *args[1:], **kwargs)
        if target in ("__add__", "add", "__sub__", "sub", "__mul__", "mul", "__truediv__", "div"):
            return _arith(target.strip("_").replace("truediv", "div")[:3], args[0], args[1])
        raise _Refused(f"moments has no rule for the method .{target}() on a random value")


def _dropout_inside(module: nn.Module) -> str:
    """The dropout a module runs inside itself (its submodules, attention's and recurrent layers' own rates)."""
    found = []
    for name, m in module.named_modules():
        if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)) and float(m.p) > 0:
            found.append(f"{name or type(m).__name__} p={float(m.p):g}")
        elif isinstance(m, (nn.MultiheadAttention, nn.RNNBase)) and float(m.dropout) > 0:
            found.append(f"{name or type(m).__name__}.dropout={float(m.dropout):g}")
    return ", ".join(found[:3]) + (" ..." if len(found) > 3 else "")


def _mean(g: Gaussian, dim: Any = None, keepdim: bool = False) -> Gaussian:
    dims = tuple(range(g.m.dim())) if dim is None else dim
    n = math.prod(g.m.shape[d] for d in (dims if isinstance(dims, tuple) else (dims,)))
    return Gaussian(g.m.mean(dims, keepdim=keepdim), g.v.sum(dims, keepdim=keepdim) / n**2)


def _arith(op: str, a: Any, b: Any) -> Gaussian:
    def parts(x: Any) -> tuple[Any, Any]:
        return (x.m, x.v) if isinstance(x, Gaussian) else (x, 0)

    (am, av), (bm, bv) = parts(a), parts(b)
    ac, bc = (x.c if isinstance(x, Gaussian) else None for x in (a, b))
    if op in ("add", "sub"):  # independent terms: variances (and covariances) add
        m = am + bm if op == "add" else am - bm
        if isinstance(a, Gaussian) and isinstance(b, Gaussian):
            c = ac + bc if ac is not None and bc is not None else None
        else:  # a constant added: the covariance of the random term, where the shape is its own
            c = ac if isinstance(a, Gaussian) else bc
            c = c if c is not None and m.shape == (a if isinstance(a, Gaussian) else b).m.shape else None
        return Gaussian(m, av + bv, c)
    if op == "mul":
        if isinstance(a, Gaussian) and isinstance(b, Gaussian):
            raise _Refused("moments: a product of two random tensors (attention's, a gate's) has no rule here; "
                           "use Monte Carlo (ensemble.predictive)")
        g, k = (a, bm) if isinstance(a, Gaussian) else (b, am)
        m = am * bm
        c = _scaled(g.c, k) if m.shape == g.m.shape else None
        return Gaussian(m, av * bm**2 + bv * am**2, c)  # one factor is a constant (its variance 0)
    if op == "div" and not isinstance(b, Gaussian):
        m = am / bm
        return Gaussian(m, av / bm**2, _scaled(ac, 1 / bm) if m.shape == am.shape else None)
    raise _Refused("moments: a division by a random tensor has no rule here; use Monte Carlo")


def _function_rule(name: str, target: Any, args: tuple, kwargs: dict) -> Any:
    if target in _SHAPE_FUNCTIONS and isinstance(args[0], Gaussian) and \
            not any(isinstance(a, Gaussian) for a in (*args[1:], *kwargs.values())):
        g = args[0]
        return _reshaped(g if target in _LAYOUT_KEPT else Gaussian(g.m, g.v), target(g.m, *args[1:], **kwargs),
                         target(g.v, *args[1:], **kwargs))
    if target in (torch.cat, torch.concat, torch.stack):
        items = args[0]
        ms = [i.m if isinstance(i, Gaussian) else i for i in items]
        vs = [i.v if isinstance(i, Gaussian) else torch.zeros_like(i) for i in items]
        return Gaussian(target(ms, *args[1:], **kwargs), target(vs, *args[1:], **kwargs))
    if target in (torch.relu, F.relu):
        return _relu(args[0])
    if target in (torch.sigmoid, F.sigmoid):
        return _sigmoid(args[0])
    if target in (torch.tanh, F.tanh):
        return _tanh(args[0])
    if target is F.gelu and kwargs.get("approximate", "none") == "none":
        return _gelu(args[0])
    if target is F.linear:
        return _linear_map(F.linear, args[1], args[2] if len(args) > 2 else kwargs.get("bias"), args[0])
    if target is torch.mean:
        return _mean(args[0], *args[1:], **kwargs)
    ops = {operator.add: "add", torch.add: "add", operator.sub: "sub", torch.sub: "sub", operator.mul: "mul",
           torch.mul: "mul", operator.truediv: "div", torch.div: "div"}
    if target in ops and len(args) == 2:
        return _arith(ops[target], args[0], args[1])
    raise _Refused(f"moments has no rule for {name} on a random value (use Monte Carlo, ensemble.predictive)")


_HERMITE = np.polynomial.hermite.hermgauss(7)  # nodes and weights for E f(Z), Z ~ N(0, 1): x sqrt(2), w / sqrt(pi)


def expected_entropy(m: Tensor, v: Tensor) -> Tensor:
    """E(H(softmax(Z))) for logits Z ~ N(m, diag v), classes along the last dimension: the members' mean entropy
    that a one-pass mutual information H(E(p)) - E(H(p)) needs, without members.

    A cut-HDMR (first-order ANOVA) expansion around the mean: E f(Z) ~ f(m) + sum_k (E f(m + Z_k e_k) - f(m)), each
    one-dimensional expectation by 7-point Gauss-Hermite quadrature. It is exact to second order (it holds the
    Taylor term 1/2 sum_k v_k d^2H/dz_k^2) and follows each logit's own nonlinearity beyond it; what it leaves out are
    the interactions between two logits' fluctuations (terms in v_j v_k), small where the variances are (tested
    against sampled Gaussian logits in ``tests/test_one_pass.py``). Costs 7 C softmaxes of C classes an input."""
    from .. import metrics

    nodes = torch.as_tensor(_HERMITE[0] * math.sqrt(2.0), dtype=m.dtype, device=m.device)
    weights = torch.as_tensor(_HERMITE[1] / math.sqrt(math.pi), dtype=m.dtype, device=m.device)
    c = m.shape[-1]
    log_p = torch.log_softmax(m, -1)  # (p from it: one exponential a value, not a second softmax)
    center = metrics.entropy(log_p.exp(), log_p=log_p)
    # (..., k, j, c): the logits with the k-th one moved to m_k + sqrt(v_k) t_j
    shift = v.clamp_min(0).sqrt()[..., :, None] * nodes  # (..., k, j)
    eye = torch.eye(c, dtype=m.dtype, device=m.device)
    z = m[..., None, None, :] + shift[..., None] * eye[:, None, :]
    log_q = torch.log_softmax(z, -1)
    h = metrics.entropy(log_q.exp(), log_p=log_q)  # (..., k, j)
    return center + ((h * weights).sum(-1) - center[..., None]).sum(-1)


@torch.no_grad()
def moments(model: nn.Module, x: Tensor, *, output: str | None = None, batch_dim: int = 0,
            covariance: str = "diagonal") -> PredictiveStatistics | EnsembleStatistics:
    """The dropout ensemble's mean and variance of what ``model`` returns, in one pass (see the module's doc).

    ``model`` is any torch module ``torch.fx`` can trace, in eval mode; its dropout (modules and ``F.dropout``)
    is averaged analytically, not sampled. ``output`` as in ``predictive``: ``"values"`` (default) or
    ``"logits"`` (class probabilities by the extended probit, with ``mean_logits``, ``predictive_entropy``, the
    members' ``expected_entropy`` by ``expected_entropy`` and the one-pass ``mutual_information``, their difference;
    ``variation_ratio`` is left None: votes need members). Returns ``PredictiveStatistics`` with ``samples = 0`` and
    ``estimator = "moments"`` (for a ``DropoutMLP``, ``gaussian_moments``' ``EnsembleStatistics`` of every layer, as
    ``monte_carlo`` returns for one); ``standard_error`` is 0 (no sampling error; the approximation's error is what
    ``benchmarks/one_pass.py`` measures against Monte Carlo).

    Raises ValueError for a model that cannot be traced, or an operation without a rule on a random value (its
    name and module in the message).

    Args:
        model: Any torch module ``torch.fx`` can trace, in eval mode (or a ``DropoutMLP``).
        x: Its inputs; their variance is taken as 0.
        output: ``"values"`` (default) or ``"logits"``.
        batch_dim: The inputs' and outputs' batch dimension.
        covariance: ``"diagonal"`` (each value's variance alone: one pass at about an eval forward's cost) or
            ``"full"`` (also the covariance of the entries of (B, n) values, n <= ``FULL_LIMIT``: see the module's
            doc; its class probabilities from ``DRAWS`` fixed draws of the logits).

    Returns:
        PredictiveStatistics: For any model (``samples`` 0, ``estimator`` ``"moments"``); for a ``DropoutMLP``,
            ``gaussian_moments``' ``EnsembleStatistics``.

    Raises:
        ValueError: A model that cannot be traced, or an operation without a rule on a random value.
    """
    output = check_output(output, batch_dim)
    from ..net import DropoutMLP

    if covariance not in ("diagonal", "full"):
        raise ValueError(f"covariance must be 'diagonal' or 'full', got {covariance!r}")
    if covariance == "full" and batch_dim != 0:
        raise ValueError("covariance='full' carries the covariance of the entries of (B, n) values with the batch "
                         "first; give batch_dim=0 (or covariance='diagonal')")
    if isinstance(model, DropoutMLP) and covariance == "full":
        raise ValueError("a DropoutMLP's one pass is gaussian_moments, which carries variances only; use "
                         "covariance='diagonal', or linear_moments (exact covariances) for a linear network")
    if isinstance(model, DropoutMLP):  # droplab's own network: the paper's Gaussian moments, layer by layer
        from ._moments import gaussian_moments

        if output != "values" or batch_dim != 0:
            raise ValueError("a DropoutMLP's output layer is known to droplab: leave output and batch_dim unset")
        # every layer's statistics, as monte_carlo gives a DropoutMLP's; a softmax output's expectation over its
        # Gaussian S is integrated with a fixed generator, so the pass is deterministic
        return gaussian_moments(model, x, method="quadrature",
                                generator=torch.Generator(device=x.device).manual_seed(0))
    if output == "probabilities":
        raise ValueError("moments carries logits' moments to class probabilities; give a model that returns logits "
                         "(output='logits'), or values")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if batch_dim >= x.dim():
        raise ValueError(f"batch_dim={batch_dim} but x has {x.dim()} dimensions (shape {tuple(x.shape)})")
    if any(m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        raise ValueError("moments needs BatchNorm in eval mode (its running statistics): call model.eval() first")
    try:
        gm = torch.fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001  (fx raises many kinds: each becomes one refusal)
        raise ValueError(f"moments needs a model torch.fx can trace, and tracing {type(model).__name__} failed "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); use "
                         "ensemble.predictive (Monte Carlo)") from None
    # the full covariance holds n x n numbers per input and value: the inputs go through in chunks
    chunks = x.split(FULL_CHUNK) if covariance == "full" else (x,)
    parts = []
    for chunk in chunks:
        try:
            out = _Interpreter(gm, full=covariance == "full").run(chunk)
        except _Refused as exc:
            raise ValueError(str(exc)) from None
        if not isinstance(out, (Gaussian, Tensor)):
            raise ValueError(f"moments needs a model that returns one tensor, got {type(out).__name__}")
        parts.append(out if isinstance(out, Gaussian) else Gaussian(out, torch.zeros_like(out)))
    g = parts[0] if len(parts) == 1 else Gaussian(
        torch.cat([q.m for q in parts]), torch.cat([q.v for q in parts]),
        torch.cat([q.covariance() for q in parts]) if all(q.full for q in parts) else None)
    m, v = g.m.movedim(batch_dim, 0), g.v.movedim(batch_dim, 0)
    if output == "values":
        return PredictiveStatistics("values", 0, x, m, v, torch.zeros_like(v), estimator="moments")
    from .. import metrics

    if g.full and m.dim() == 2:  # the logits' covariance: probabilities from fixed Gaussian draws
        p, var, members = _softmax_draws(m, g.covariance())
        return PredictiveStatistics("logits", 0, x, p, var, torch.zeros_like(p), mean_logits=m,
                                    predictive_entropy=metrics.entropy(p), expected_entropy=members,
                                    mutual_information=metrics.mutual_information(p, members), estimator="moments",
                                    nwgm=torch.softmax(m, -1))
    p = torch.softmax(m / torch.sqrt(1 + math.pi * v / 8), -1)

    nwgm = torch.softmax(m, -1)
    # the probabilities' variance, to first order: J diag(v) J^T's diagonal, J the softmax's Jacobian at m
    jac_sq = (nwgm * (1 - nwgm)).square() * v + nwgm.square() * ((nwgm.square() * v).sum(-1, keepdim=True)
                                                                 - nwgm.square() * v)
    members = expected_entropy(m, v)
    return PredictiveStatistics("logits", 0, x, p, jac_sq, torch.zeros_like(p), mean_logits=m,
                                predictive_entropy=metrics.entropy(p), expected_entropy=members,
                                mutual_information=metrics.mutual_information(p, members), estimator="moments",
                                nwgm=nwgm)


# Gaussian draws of the logits under covariance="full": fixed (the pass stays deterministic), in antithetic pairs
DRAWS = 2000


def _softmax_draws(m: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """E(p), Var(p) and E(H(p)) of p = softmax(Z), Z ~ N(m, c) per input, over ``DRAWS`` fixed draws of Z (a
    Cholesky factor of each input's covariance; a matrix that rounding left not quite positive definite gets a
    small ridge). Costs DRAWS softmaxes an input, no forward."""
    from .. import metrics

    n = m.shape[-1]
    eye = torch.eye(n, dtype=m.dtype, device=m.device)
    ridge = 1e-9 * torch.diagonal(c, dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)[:, None, None]
    factor, bad = torch.linalg.cholesky_ex(c + ridge * eye)
    if bool(bad.any()):  # eigen-clip the few that are not positive definite
        w, q = torch.linalg.eigh(c[bad > 0])
        factor[bad > 0] = q * w.clamp_min(0).sqrt()[..., None, :]
    half = torch.randn(DRAWS // 2, n, generator=torch.Generator().manual_seed(0), dtype=torch.float64).to(m)
    eps = torch.cat([half, -half])  # (K, n)
    z = m[:, None, :] + torch.matmul(eps, factor.transpose(-1, -2))  # (B, K, n)
    p = torch.softmax(z, -1)
    return p.mean(1), p.var(1, unbiased=False), metrics.entropy(p, log_p=torch.log_softmax(z, -1)).mean(1)


@dataclass
class MomentsCheck:
    """Where the one pass can be trusted, input by input: ``z`` is each output value's |one-pass mean - Monte Carlo
    mean| in Monte Carlo standard errors (``samples`` members), ``flagged`` marks the inputs with a value beyond
    ``threshold``; ``one_pass`` and ``monte_carlo`` are the two estimates.

    Attributes:
        z: Each output value's distance in Monte Carlo standard errors.
        flagged: (B,) True where an input has a value beyond ``threshold``.
        threshold: The distance allowed.
        samples: The Monte Carlo members drawn.
        one_pass: ``moments``' statistics.
        monte_carlo: ``predictive``'s statistics.
    """

    z: Tensor
    flagged: Tensor
    threshold: float
    samples: int
    one_pass: PredictiveStatistics
    monte_carlo: PredictiveStatistics

    def summary(self) -> str:
        return (f"moments against {self.samples} Monte Carlo samples: {int(self.flagged.sum())} of "
                f"{len(self.flagged)} inputs beyond {self.threshold:g} standard errors (largest "
                f"{float(self.z.max()):.2f})")


def check_moments(model: nn.Module, x: Tensor, *, samples: int = 256, threshold: float = 4.0,
                  generator: torch.Generator | None = None, output: str | None = None,
                  batch_dim: int = 0) -> MomentsCheck:
    """Run ``moments`` and, beside it, ``samples`` Monte Carlo members (``predictive``), and flag the inputs whose
    one-pass mean lies more than ``threshold`` Monte Carlo standard errors from the Monte Carlo mean: where the
    Gaussian assumption breaks (a unit whose input is far from Gaussian, covariances the diagonal leaves out), a
    user sees it per input and can fall back to Monte Carlo there. With few samples the test is loose by design: it
    flags gross errors cheaply (256 members cost 256 forwards, against the K = 30-100 a Monte Carlo run needs).

    Args:
        model: Any torch module ``moments`` takes (traceable by ``torch.fx``, in eval mode).
        x: Its inputs.
        samples: Monte Carlo members drawn beside the pass (``predictive``).
        threshold: How many Monte Carlo standard errors from the Monte Carlo mean an output's one-pass mean may lie
            before its input is flagged.
        generator: The Monte Carlo draws' generator (None: torch's default).
        output: What the model returns, as in ``predictive``: ``"values"``, ``"logits"`` or ``"probabilities"``.
        batch_dim: The inputs' and outputs' batch dimension.

    Returns:
        MomentsCheck: The one-pass and the Monte Carlo statistics, each output's distance in standard errors and the
            inputs flagged.
    """
    from ._predictive import predictive

    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ValueError(f"threshold must be a positive number of standard errors, got {threshold!r}")
    one = moments(model, x, output=output, batch_dim=batch_dim)
    if isinstance(one, EnsembleStatistics):  # a DropoutMLP: its output layer, sampled from its logits if softmax
        softmax = model.transfers[-1].name == "softmax"  # type: ignore[union-attr]
        one = PredictiveStatistics("logits" if softmax else "values", 0, x, one.output.E, one.output.Var,
                                   torch.zeros_like(one.output.E), estimator="moments")
        output = "logits" if softmax else None
    mc = predictive(model, x, samples=samples, generator=generator, output=output, batch_dim=batch_dim)
    mean_mc = mc.mean if mc.mean.shape == one.mean.shape else mc.mean.movedim(batch_dim, 0)
    se = (mc.standard_error if mc.standard_error.shape == one.mean.shape
          else mc.standard_error.movedim(batch_dim, 0))
    floor = 1e-6 * float(mean_mc.abs().max().clamp_min(1))  # a value every member agrees on: no spread to divide
    z = (one.mean - mean_mc).abs() / se.clamp_min(floor)
    flagged = (z > threshold).flatten(1).any(1) if z.dim() > 1 else z > threshold
    return MomentsCheck(z, flagged, float(threshold), samples, one, mc)
