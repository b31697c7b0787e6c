"""Estimators that run the network: weight scaling, Monte Carlo sampling, exact enumeration."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .. import modes
from ..net import DropoutMLP, Trace
from ..nn import ConnectionDropoutLinear, UnitGate
from ._stats import STATISTICS, Accumulator, EnsembleStatistics, LayerStatistics, Pair

__all__ = ["exact", "monte_carlo", "weight_scaled"]

DEFAULT_MEMORY = 512 * 2**20  # bytes of activations per chunk


def _check(net: nn.Module, x: Tensor) -> None:
    if not isinstance(net, nn.Module):
        raise TypeError(f"expected a DropoutMLP or an nn.Module with droplab gates, got {type(net).__name__}")
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"x must be a batch of inputs, shape (B, ...), got {getattr(x, 'shape', type(x))}")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (B = 0); give at least one input")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf; the ensemble statistics of such inputs are undefined. Clean or "
                         "impute the inputs first")


@torch.no_grad()
def _reference(net: DropoutMLP, x: Tensor) -> Trace:
    with modes.expect(net):
        return net.trace(x)


@torch.no_grad()
def weight_scaled(net: DropoutMLP, x: Tensor) -> EnsembleStatistics:
    """The deterministic network W of Eq. 98: one pass with every gate replaced by its mean.

    ``E`` holds W (the estimate of E(O)), ``E_S`` holds U (the estimate of E(S)), and ``NWGM`` holds W as well
    for layers in [0, 1], since W is the propagated NWGM.
    """
    _check(net, x)
    ref = _reference(net, x)
    layers = [LayerStatistics(E=ref.O[0])]
    for h in range(1, len(ref.O)):
        unit = net.transfers[h - 1].output_in_unit_interval
        layers.append(LayerStatistics(E=ref.O[h], E_S=ref.S[h], NWGM=ref.O[h] if unit else None))
    return EnsembleStatistics("weight_scaled", layers)


@contextmanager
def per_example_masks(net: nn.Module) -> Iterator[None]:
    """Connection layers draw masks per example while estimating: a batch-shared mask would make the members
    of a chunk (which share one forward call) the same subnetwork. The ensemble itself is unchanged."""
    layers = [m for m in net.modules() if isinstance(m, ConnectionDropoutLinear) and m.mask_sharing == "batch"]
    try:
        for m in layers:
            m.mask_sharing = "example"
        yield
    finally:
        for m in layers:
            m.mask_sharing = "batch"


CPU_TILE = 4 * 2**20  # bytes: on a CPU, one layer's activations for a chunk stay about this size (cache-sized)


def _chunk(net: DropoutMLP, x: Tensor, memory: int, samples: int) -> int:
    """Members per chunk. Layers are streamed one at a time (``_stream``), so a chunk holds a few tensors of
    the widest layer (plus per-example connection masks) and the memory budget bounds that. On a CPU the
    chunk is also kept near ``CPU_TILE`` per tensor: the elementwise passes that follow each product then
    run from cache instead of memory, which cut them 2-5x, while the products stay as fast (measured with
    ``benchmarks/mc_throughput.py --tile-mib``)."""
    batch, widest = x.shape[0], max(net.sizes)
    masks = max((lin.weight.numel() for lin in net.linears
                 if isinstance(lin, ConnectionDropoutLinear) and lin.mask_sharing == "example"), default=0)
    bytes_per_member = batch * (widest * 6 + masks * 3) * x.element_size()
    chunk = memory // max(1, bytes_per_member)
    if x.device.type == "cpu":
        chunk = min(chunk, CPU_TILE // max(1, batch * widest * x.element_size()))
    return max(1, min(samples, chunk))


def _stream(net: DropoutMLP, x: Tensor, members: int, acc: Accumulator, weights: Tensor) -> None:
    """Run ``members`` ensemble members on the batch x (member-major rows k * B + b), one layer at a time,
    giving each layer's S and O to ``acc`` at once: no trace of the whole network is kept."""
    o = x.repeat(members, 1)
    acc.begin(weights)
    acc.layer(0, None, o)
    for h, (gate, linear, act) in enumerate(zip(net.gates, net.linears, net.activations, strict=True), start=1):
        s = linear(gate(o))
        o = act(s)
        acc.layer(h, s, o)
    acc.end()


@torch.no_grad()
def monte_carlo(net: nn.Module, x: Tensor, *, samples: int = 1000, generator: torch.Generator | None = None,
                pairs: Sequence[Pair] = (), histogram_units: Sequence[tuple[int, int]] = (), bins: int = 50,
                statistics: Sequence[str] = STATISTICS, memory: int = DEFAULT_MEMORY) -> EnsembleStatistics:
    """K sampled subnetworks per input, run as one large batched product per chunk; statistics streamed.

    For a ``DropoutMLP``, every layer's statistics (E, Var, NWGM, WGM, E(S), Var(S), E(f'(S)), standard
    errors), the pair moments E(O^h_i O^l_j) for ``pairs`` and histograms of O for ``histogram_units``
    ((layer, unit) -> (B, bins) frequencies over [0, 1]). For any other module containing droplab gates,
    statistics of its output (treated as logits if it has a class dimension: see ``predict``).
    ``statistics`` restricts the per-unit statistics to those named (E is always computed), to save time.
    Memory does not grow with K: members run in chunks, one layer at a time, sized to ``memory`` bytes (and,
    on a CPU, to about 4 MiB per layer tensor, so that the elementwise work runs from cache).

    >>> net = DropoutMLP((4, 8, 3), keep=(0.8, 0.5)).eval()
    >>> stats = monte_carlo(net, torch.rand(2, 4), samples=100, generator=torch.Generator().manual_seed(0))
    >>> stats.layers[1].E.shape
    torch.Size([2, 8])
    """
    _check(net, x)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not isinstance(net, DropoutMLP):
        return _monte_carlo_module(net, x, samples, generator, memory)
    ref = _reference(net, x)
    acc = Accumulator(net, ref, pairs=_check_pairs(net, pairs), histogram_units=histogram_units, bins=bins,
                      statistics=statistics)
    chunk = _chunk(net, x, memory, samples)
    done = 0
    with modes.sample(net, generator=generator), per_example_masks(net):
        while done < samples:
            k = min(chunk, samples - done)
            _stream(net, x, k, acc, torch.full((k,), 1.0 / samples, dtype=torch.float64, device=x.device))
            done += k
    return acc.finalize("monte_carlo", samples=samples, standard_errors=True, dtype=x.dtype)


def _monte_carlo_module(net: nn.Module, x: Tensor, samples: int, generator: torch.Generator | None,
                        memory: int) -> EnsembleStatistics:
    if not modes.gates_of(net):
        raise ValueError(f"{type(net).__name__} contains no droplab gates; Monte Carlo would repeat one network")
    total = s1 = s2 = ent = None
    with modes.sample(net, generator=generator), per_example_masks(net):
        first = net(x)
        per_member = max(1, first[0].numel() * x[0].numel()) * 4 * 8
        chunk = max(1, min(samples, memory // (x.shape[0] * per_member)))
        done = 0
        while done < samples:
            k = min(chunk, samples - done)
            out = net(x.repeat(k, *[1] * (x.dim() - 1))).view(k, *first.shape).to(torch.float64)
            probs = torch.softmax(out, -1)
            h = -(probs * torch.log_softmax(out, -1)).sum(-1)
            s1 = probs.sum(0) if s1 is None else s1 + probs.sum(0)
            s2 = probs.square().sum(0) if s2 is None else s2 + probs.square().sum(0)
            total = out.sum(0) if total is None else total + out.sum(0)
            ent = h.sum(0) if ent is None else ent + h.sum(0)
            done += k
    e = s1 / samples
    var = (s2 / samples - e.square()).clamp_min(0)
    out_stats = LayerStatistics(E=e.to(x.dtype), Var=var.to(x.dtype), E_S=(total / samples).to(x.dtype),
                                se_E=(var / samples).sqrt().to(x.dtype))
    return EnsembleStatistics("monte_carlo", [LayerStatistics(E=x), out_stats], {}, (ent / samples).to(x.dtype),
                              samples=samples)


def _check_pairs(net: DropoutMLP, pairs: Sequence[Pair]) -> list[Pair]:
    out = []
    for pair in pairs:
        if len(pair) != 4:
            raise ValueError(f"a pair is (layer h, unit i, layer l, unit j), got {pair!r}")
        h, i, l, j = (int(v) for v in pair)
        for layer, unit in ((h, i), (l, j)):
            if not (0 <= layer < len(net.sizes)) or not (0 <= unit < net.sizes[layer]):
                raise ValueError(f"pair {pair!r} names unit {unit} of layer {layer}; the network has sizes {net.sizes}")
        out.append((h, i, l, j))
    return out


# ---------------------------------------------------------------------------------------------------- exact
def _enumerable_gates(net: DropoutMLP) -> list[tuple[str, Tensor]]:
    """(name, keep probabilities of the gate's noise, flattened) for every gate with random noise."""
    out = []
    for name, gate in modes.gates_of(net).items():
        if isinstance(gate, UnitGate):
            if not gate.kind.enumerable:
                raise ValueError(f"exact enumeration needs Bernoulli noise; gate {name} is {gate.kind.name}. "
                                 "Use monte_carlo, or gaussian_moments for Gaussian noise")
            keep = torch.as_tensor(gate.keep, dtype=torch.float64).expand(net.sizes[int(name.split(".")[1])])
        elif isinstance(gate, ConnectionDropoutLinear):
            if not gate.kind.enumerable:
                raise ValueError(f"exact enumeration needs Bernoulli noise; layer {name} is {gate.kind.name}")
            keep = torch.as_tensor(gate.keep, dtype=torch.float64).expand(gate.weight.shape).reshape(-1)
        else:
            raise ValueError(f"exact enumeration does not handle {type(gate).__name__} ({name}); "
                             "use monte_carlo")
        out.append((name, keep.reshape(-1).cpu()))
    return out


@torch.no_grad()
def exact(net: DropoutMLP, x: Tensor, *, max_configurations: int = 2**20, pairs: Sequence[Pair] = (),
          histogram_units: Sequence[tuple[int, int]] = (), bins: int = 50,
          statistics: Sequence[str] = STATISTICS, memory: int = DEFAULT_MEMORY) -> EnsembleStatistics:
    """Every gate configuration with its probability (any per-unit or per-connection keep rates), batched.

    The statistics are exact (up to floating point). Gates with keep 1 are not enumerated. Refuses, saying
    how many configurations there would be, when there are more than ``max_configurations``.
    """
    _check(net, x)
    if not isinstance(net, DropoutMLP):
        raise TypeError(f"exact enumeration runs on a DropoutMLP, got {type(net).__name__}")
    gates = _enumerable_gates(net)
    keep = torch.cat([k for _, k in gates]) if gates else torch.zeros(0, dtype=torch.float64)
    random = (keep > 0) & (keep < 1)
    n_random = int(random.sum())
    if n_random > 62 or 2**n_random > max_configurations:
        digits = int(n_random * 0.30103)  # log10(2)
        count = f"2^{n_random} = {2**n_random:,}" if n_random <= 64 else f"2^{n_random} (about 1e{digits})"
        raise ValueError(f"exact enumeration needs {count} configurations, more than "
                         f"max_configurations={max_configurations:,}; use monte_carlo or a smaller network")
    count = 2**n_random
    ref = _reference(net, x)
    acc = Accumulator(net, ref, pairs=_check_pairs(net, pairs), histogram_units=histogram_units, bins=bins,
                      statistics=statistics)
    chunk = _chunk(net, x, memory, count)
    log_p, log_q = torch.log(keep[random]), torch.log1p(-keep[random])
    shift = torch.arange(n_random, dtype=torch.int64)
    for start in range(0, count, chunk):
        codes = torch.arange(start, min(count, start + chunk), dtype=torch.int64)
        bits = ((codes[:, None] >> shift) & 1).to(torch.float64)  # (C, n_random)
        prob = torch.exp(bits @ log_p + (1 - bits) @ log_q)  # prod p^delta (1-p)^(1-delta)
        full = (keep >= 1).to(torch.float64).expand(len(codes), -1).clone()  # keep-1 gates always on
        full[:, random] = bits
        noise, offset = {}, 0
        for name, k in gates:
            part = full[:, offset:offset + k.numel()]
            offset += k.numel()
            gate = modes.gates_of(net)[name]
            shape = (gate.weight.shape if isinstance(gate, ConnectionDropoutLinear) else (k.numel(),))
            member = part.to(x.dtype).to(x.device).view(len(codes), 1, *shape)
            noise[name] = member.expand(len(codes), x.shape[0], *shape).reshape(-1, *shape)
        with modes.replay(net, noise), per_example_masks(net):
            _stream(net, x, len(codes), acc, prob.to(x.device))
    if not math.isclose(acc.total, 1.0, rel_tol=1e-9):
        raise AssertionError(f"configuration probabilities sum to {acc.total}")  # an internal invariant
    return acc.finalize("exact", samples=count, standard_errors=False, dtype=x.dtype)
