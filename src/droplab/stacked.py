"""Many small dropout networks trained together: one batched model over stacked parameters.

Gal & Ghahramani's UCI protocol trains hundreds of small networks (splits x grid points) of a few thousand
parameters each; trained one after another they spend their time in Python and in the launch overhead of tiny
kernels. A ``StackedMLP`` holds G = S x M networks of the same sizes as stacked tensors: S *groups* (for example
the data splits) of M *members* (for example the grid points of one split), each network with its own keep rates
and its own L2 coefficient. A training step is one batched forward and backward (``torch.baddbmm``, written out by
hand: no autograd graph) and one fused Adam update for all G networks; ``predictive`` runs Monte Carlo dropout on
all of them at once, streaming the mean and Gal & Ghahramani's log-likelihood over the samples. Both run as pure
functions of tensors compiled by ``torch.compile`` (the masks, ReLUs and gates fused around the products; prediction
in blocks of rows small enough to stay in the cache), eagerly with a warning where compiling fails, the same
numbers to rounding either way (``compiled=False`` asks for the eager functions).

The network is the protocol's: dropout on the inputs and on every hidden layer (inverted scaling, as Keras), ReLU
hidden units, a linear output, Glorot-uniform weights and zero biases, the loss Keras's mean squared error plus
``l2 * sum(W^2)`` over the weight matrices, Adam.

Random numbers, in this order from the one generator (the specification a one-network-at-a-time reference
reproduces, see ``tests/test_stacked.py``):

- at construction, for each layer, ``torch.rand(S, M, fan_in, fan_out)`` (the Glorot-uniform weights);
- at each epoch, ``torch.rand(S, N).argsort(1)`` (each group's row order);
- at each step, ``torch.empty(S, b, ceil(W / 2), dtype=int64).random_(-2**63, None)`` read as ``int32`` lanes
  ``(S, b, W)`` (W: the widths of every dropped layer side by side, inputs first); a unit is kept when its lane
  is ``<= round(keep * 2**32) - 2**31 - 1``, which happens with probability ``round(keep * 2**32) / 2**32``:
  the keep rate to 2.3e-10;
- in ``predictive``, for each block of rows (of ``n_b`` rows) and each chunk of ``k`` samples in turn, lanes
  ``(S, k, n_b, W)`` drawn the same way.

Members of a group see the same rows, in the same order, and the same lanes (common random numbers: each member's
masks are still independent Bernoulli draws at its own rate, and comparisons between members are less noisy);
groups are independent of each other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from . import _compile

__all__ = ["StackedMLP", "StackedPredictive", "fit_stacked"]


@dataclass(frozen=True)
class StackedPredictive:
    """Monte Carlo statistics of every network of a ``StackedMLP`` (float64).

    Attributes:
        mean: Each network's Monte Carlo mean prediction.
        log_likelihood: Each network's Monte Carlo log-likelihood of the targets, where targets were given.
        samples: K, the members sampled.
    """

    mean: Tensor  # (S, M, n, out): the Monte Carlo mean of the output
    log_likelihood: Tensor | None  # (S, M, n): Gal & Ghahramani's estimate, when targets and tau were given
    samples: int


def _tensor(value: float | Sequence | Tensor, shape: tuple[int, ...], name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64)
    try:
        t = torch.broadcast_to(t, shape).clone()
    except RuntimeError:
        raise ValueError(f"{name} must broadcast to {shape}, got shape {tuple(t.shape)}") from None
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {t.flatten()[~torch.isfinite(t.flatten())][:3].tolist()}")
    return t


class StackedMLP:
    """S x M dropout MLPs of the same ``sizes`` as stacked tensors (see the module's text).

    ``keep`` broadcasts to (S, M, len(sizes) - 1): each network's keep rate of its inputs and of each hidden
    layer, in (0, 1]. ``generator`` draws the Glorot-uniform weights.

    Args:
        sizes: Layer sizes, inputs ... outputs.
        groups: S, the groups of networks (each trains on its own data).
        members: M, the networks per group.
        keep: Keep rates, broadcasting to (S, M, len(sizes) - 1).
        generator: The weights' generator.
        dtype: The parameters' dtype.
        device: Where they live.
    """

    def __init__(self, sizes: Sequence[int], *, groups: int, members: int, keep: float | Sequence | Tensor,
                 generator: torch.Generator, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        sizes = list(sizes)
        if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"sizes must be two or more positive layer widths, inputs first, got {sizes!r}")
        if groups < 1 or members < 1:
            raise ValueError(f"groups and members must be at least 1, got {groups} and {members}")
        self.sizes, self.groups, self.members = sizes, groups, members
        self.keep = _tensor(keep, (groups, members, len(sizes) - 1), "keep")
        if bool(((self.keep <= 0) | (self.keep > 1)).any()):
            raise ValueError(f"keep rates must lie in (0, 1], got {self.keep.unique().tolist()}")
        g = groups * members
        self.weights: list[Tensor] = []
        self.biases: list[Tensor] = []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            u = torch.rand(groups, members, fan_in, fan_out, generator=generator, dtype=torch.float64)
            self.weights.append(((2 * u - 1) * limit).reshape(g, fan_in, fan_out).to(device, dtype))
            self.biases.append(torch.zeros(g, 1, fan_out, dtype=dtype, device=device))
        self._prepare()

    def _prepare(self) -> None:
        """The keep rates as int32 thresholds and inverted scales, (S, M, 1, 1) per dropped layer."""
        dtype, device = self.weights[0].dtype, self.weights[0].device
        count = torch.round(self.keep * 2.0**32).to(torch.int64)
        self._thresholds = [(count[..., i] - 2**31 - 1).to(torch.int32).to(device)[..., None, None]
                            for i in range(self.keep.shape[-1])]
        self._scales = [(1.0 / self.keep[..., i]).to(device, dtype)[..., None, None]
                        for i in range(self.keep.shape[-1])]

    @property
    def parameters(self) -> list[Tensor]:
        return [t for pair in zip(self.weights, self.biases, strict=True) for t in pair]

    def _factors(self, lanes: Tensor) -> list[Tensor]:
        return _mask_factors(lanes, self.sizes[:-1], self._thresholds, self._scales)

    def _draw_lanes(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        width = sum(self.sizes[:-1])
        words = torch.empty(*shape, (width + 1) // 2, dtype=torch.int64, device=self.weights[0].device)
        words.random_(-2**63, None, generator=generator)
        return words.view(torch.int32)[..., :width]

    def predictive(self, x: Tensor, *, samples: int, generator: torch.Generator, targets: Tensor | None = None,
                   tau: float | Sequence | Tensor | None = None, chunk_elements: int = 1 << 20,
                   compiled: bool = True) -> StackedPredictive:
        """Monte Carlo dropout on every network: ``samples`` masks per input, drawn as in training, in chunks of
        at most ``chunk_elements`` hidden values. ``x``: (S, n, d), each group's inputs. With ``targets``
        (S, n, out) and ``tau`` (broadcasts to (S, M), the observation precision), also each input's log-likelihood
        logsumexp_t(-tau/2 |y - y_t|^2) - log T - out/2 log 2 pi + out/2 log tau, streamed. ``compiled``: each
        chunk's forward and statistics in one ``torch.compile``d function (the same numbers to rounding)."""
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"samples must be a positive integer, got {samples!r}")
        s, m = self.groups, self.members
        if x.dim() != 3 or x.shape[0] != s or x.shape[2] != self.sizes[0]:
            raise ValueError(f"x must be (groups={s}, inputs, {self.sizes[0]}), got {tuple(x.shape)}")
        _finite(x, "x")
        n = x.shape[1]
        if (targets is None) != (tau is None):
            raise ValueError("the log-likelihood needs both targets and tau (the observation precision)")
        x = x.to(self.weights[0])
        targets_g = tau_g = None
        if targets is not None:
            targets_g = targets.to(x.device, torch.float64).reshape(s, 1, 1, n, -1).expand(s, m, 1, n, -1).flatten(0, 1)
            tau_t = _tensor(tau, (s, m), "tau")
            if bool((tau_t <= 0).any()):
                raise ValueError(f"tau (the observation precision) must be positive, got {tau_t.min().item()}")
            tau_g = tau_t.reshape(s * m, 1, 1).to(x.device)
        total = torch.zeros(s * m, n, self.sizes[-1], dtype=torch.float64, device=x.device)
        log_max = torch.full((s * m, n), -math.inf, dtype=torch.float64, device=x.device)
        log_sum = torch.zeros(s * m, n, dtype=torch.float64, device=x.device)
        # blocks of rows and of samples small enough to stay in the cache between the product and the gates
        per_row = s * m * max(self.sizes)
        rows = max(1, min(n, chunk_elements // per_row))
        args = (self.weights, self.biases, self._thresholds, self._scales, m, tau_g)
        with torch.no_grad():
            for r in range(0, n, rows):
                block = slice(r, min(n, r + rows))
                xr, nr = x[:, block].contiguous(), min(n, r + rows) - r
                k_max = max(1, chunk_elements // (per_row * nr))
                # contiguous blocks: the compiled function's guards see the same strides in every block
                acc = [t[:, block].contiguous() for t in (total, log_max, log_sum)]
                target = None if targets_g is None else targets_g[:, :, block].contiguous()
                done = 0
                while done < samples:
                    k = min(k_max, samples - done)
                    lanes = self._draw_lanes((s, k, nr), generator)
                    acc = _compile.run("stacked.predict", _predict_core, compiled, xr, k, lanes, *acc, *args, target)
                    done += k
                total[:, block], log_max[:, block], log_sum[:, block] = acc
        mean = (total / samples).view(s, m, n, -1)
        ll = None
        if targets is not None:
            o = self.sizes[-1]
            ll = (log_max + torch.log(log_sum) - math.log(samples)
                  + 0.5 * o * (torch.log(tau_g.view(-1, 1)) - math.log(2 * math.pi))).view(s, m, n)
        return StackedPredictive(mean=mean, log_likelihood=ll, samples=samples)

    def member(self, group: int, member: int) -> torch.nn.Module:
        """Network (group, member) as a ``droplab.DropoutMLP`` (a copy), for droplab's ``ensemble`` functions."""
        from .config import ModelConfig
        from .train import build_model

        if not (0 <= group < self.groups and 0 <= member < self.members):
            raise ValueError(f"no network ({group}, {member}): groups 0..{self.groups - 1}, "
                             f"members 0..{self.members - 1}")
        keep = [float(k) for k in self.keep[group, member]]
        model = build_model(ModelConfig(sizes=self.sizes, transfer="relu", output="linear", keep=keep,
                                        scaling="inverted", init="glorot"), seed=0)
        g = group * self.members + member
        with torch.no_grad():
            for linear, w, b in zip(model.linears, self.weights, self.biases, strict=True):
                linear.weight.copy_(w[g].T)
                linear.bias.copy_(b[g, 0])
        return model.to(self.weights[0].dtype)


def _mask_factors(lanes: Tensor, widths: Sequence[int], thresholds: list[Tensor], scales: list[Tensor]) -> list[Tensor]:
    """Each dropped layer's mask times its inverted scale, (G, ..., width), from lanes (S, ..., W) and each layer's
    thresholds and scales (S, M, 1, 1): the one place training and prediction cut their masks."""
    factors, start = [], 0
    for width, threshold, scale in zip(widths, thresholds, scales, strict=True):
        lane = lanes[..., start:start + width].unsqueeze(1)  # (S, 1, ..., width)
        extra = (1,) * (lane.dim() - 4)
        kept = lane <= threshold.view(*threshold.shape[:2], *extra, 1, 1)
        factors.append(torch.where(kept, scale.view(*scale.shape[:2], *extra, 1, 1), 0.0).flatten(0, 1))
        start += width
    return factors


def _finite(t: Tensor, name: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or inf ({int((~torch.isfinite(t)).sum())} values); clean or impute "
                         "them first")


def _rows(x: Tensor, index: Tensor) -> Tensor:
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _forward_core(x: Tensor, factors: list[Tensor], weights: list[Tensor], biases: list[Tensor],
                  members: int) -> tuple[Tensor, list[Tensor]]:
    """x (S, ..., rows, d) shared by the members of each group, factors from ``_mask_factors``: the output
    (G, ..., rows, out) and every layer's gated input."""
    a = (x.unsqueeze(1) * factors[0].unflatten(0, (x.shape[0], members))).flatten(0, 1)
    inputs = [a]
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        extra = (1,) * (a.dim() - 2)
        if w.shape[-1] == 1:  # a single output: a batched matrix-vector product is slow, a weighted sum is not
            pre = (a * w.view(w.shape[0], *extra, -1)).sum(-1, keepdim=True) + b.view(b.shape[0], *extra, 1)
        else:
            pre = torch.baddbmm(b, a.reshape(a.shape[0], -1, a.shape[-1]), w).view(*a.shape[:-1], w.shape[-1])
        if i == len(weights) - 1:
            return pre, inputs
        a = torch.relu(pre) * factors[i + 1]
        inputs.append(a)
    raise AssertionError("unreachable")


def _predict_core(x: Tensor, k: int, lanes: Tensor, total: Tensor, log_max: Tensor, log_sum: Tensor,
                  weights: list[Tensor], biases: list[Tensor], thresholds: list[Tensor], scales: list[Tensor],
                  members: int, tau: Tensor | None, targets: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """One chunk of Monte Carlo: k samples of the n rows x (S, n, d), added to the running sum of the outputs and,
    with targets, to the streamed logsumexp of -tau/2 |y - y_t|^2 (its running max and scaled sum)."""
    xs = x.unsqueeze(1).expand(x.shape[0], k, *x.shape[1:])
    factors = _mask_factors(lanes, [w.shape[1] for w in weights], thresholds, scales)
    out = _forward_core(xs, factors, weights, biases, members)[0].double()  # (G, k, n, out)
    total = total + out.sum(1)
    if targets is not None:
        a = -0.5 * tau * (out - targets).square().sum(-1)  # (G, k, n)
        new_max = torch.maximum(log_max, a.amax(1))
        log_sum = log_sum * torch.exp(log_max - new_max) + torch.exp(a - new_max[:, None]).sum(1)
        log_max = new_max
    return total, log_max, log_sum


def _step_core(xb: Tensor, yb: Tensor, l2: Tensor, lanes: Tensor, weights: list[Tensor], thresholds: list[Tensor],
               scales: list[Tensor], biases: list[Tensor], members: int) -> list[Tensor]:
    """The gradients of Keras's loss, mean((y - out)^2) + l2 sum(W^2), for every network (G, ...): a pure function
    of tensors, so that ``torch.compile`` fuses its elementwise work (masks, ReLU, gates) around the products."""
    factors = _mask_factors(lanes, [w.shape[1] for w in weights], thresholds, scales)
    pre, inputs = _forward_core(xb, factors, weights, biases, members)
    layers = len(weights)
    g = (pre - yb.repeat_interleave(members, 0)) * (2.0 / (pre.shape[1] * pre.shape[2]))
    grads: list[Tensor] = [g] * (2 * layers)  # [W0, b0, W1, b1, ...] as model.parameters
    for i in range(layers - 1, -1, -1):
        w = weights[i]
        if g.shape[-1] == 1:
            grads[2 * i] = (inputs[i] * g).sum(1).unsqueeze(-1) + w * (2.0 * l2)
        else:
            grads[2 * i] = torch.bmm(inputs[i].transpose(1, 2), g) + w * (2.0 * l2)
        grads[2 * i + 1] = g.sum(1, keepdim=True)
        if i:  # a single output: an outer product, cheaper than a batched matrix product
            back = g * w.transpose(1, 2) if g.shape[-1] == 1 else torch.bmm(g, w.transpose(1, 2))
            # relu' x mask x scale: the units with a > 0 are exactly the kept units with pre > 0
            g = torch.where(inputs[i] > 0, back * factors[i], 0.0)
    return grads


def fit_stacked(model: StackedMLP, x: Tensor, y: Tensor, *, l2: float | Sequence | Tensor, epochs: int,
                generator: torch.Generator, batch_size: int = 128, lr: float = 1e-3,
                betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-7, compiled: bool = True) -> StackedMLP:
    """Train every network of ``model`` in place on its group's data: ``x`` (S, N, d) and ``y`` (S, N, out),
    ``epochs`` passes in minibatches of ``batch_size`` (the last one smaller), Adam (torch's, fused; Keras's
    defaults), the loss mean((y - out)^2) + l2 sum(W^2) with ``l2`` broadcasting to (S, M). ``compiled``: the step's
    elementwise work fused by ``torch.compile`` (1.5-2x faster on a CPU; the same result to rounding). Returns
    ``model``.

    Args:
        model: The ``StackedMLP`` (trained in place).
        x: (S, N, d) inputs, one set per group.
        y: (S, N, out) targets.
        l2: The L2 coefficient, broadcasting to (S, M).
        epochs: Passes over the data.
        generator: The shuffling's and the masks' generator.
        batch_size: Rows per step.
        lr: Adam's learning rate.
        betas: Adam's betas.
        eps: Adam's epsilon.
        compiled: Fuse the step's elementwise work with ``torch.compile``.

    Returns:
        StackedMLP: ``model``.

    Raises:
        ValueError: Shapes that do not fit the model, non-finite data, or a bad count.
    """
    s, m = model.groups, model.members
    if x.dim() != 3 or y.dim() != 3 or x.shape[:2] != y.shape[:2] or x.shape[0] != s:
        raise ValueError(f"x and y must be (groups={s}, rows, features) and (groups, rows, outputs), got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[2] != model.sizes[0] or y.shape[2] != model.sizes[-1]:
        raise ValueError(f"x must have {model.sizes[0]} features and y {model.sizes[-1]} outputs, got "
                         f"{x.shape[2]} and {y.shape[2]}")
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    _finite(x, "x")
    _finite(y, "y")
    dtype, device = model.weights[0].dtype, model.weights[0].device
    x, y = x.to(device, dtype), y.to(device, dtype)
    coefficient = _tensor(l2, (s, m), "l2").reshape(s * m, 1, 1).to(device, dtype)
    params = model.parameters
    optimizer = torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True if dtype != torch.float64 else None)
    n = x.shape[1]
    with torch.no_grad():
        for _ in range(epochs):
            order = torch.rand(s, n, generator=generator, device=device).argsort(1)
            x_epoch, y_epoch = _rows(x, order), _rows(y, order)  # one gather per epoch; batches are slices
            for start in range(0, n, batch_size):
                xb, yb = x_epoch[:, start:start + batch_size], y_epoch[:, start:start + batch_size]
                lanes = model._draw_lanes((s, xb.shape[1]), generator)
                grads = _compile.run("stacked.step", _step_core, compiled, xb, yb, coefficient, lanes, model.weights,
                                     model._thresholds, model._scales, model.biases, model.members)
                for p, grad in zip(params, grads, strict=True):
                    p.grad = grad
                optimizer.step()
    for p in params:
        p.grad = None
    return model
