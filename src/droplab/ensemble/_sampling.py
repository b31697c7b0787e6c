"""Estimators that run the network: weight scaling, Monte Carlo sampling, exact enumeration."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import host, modes, threads
from ..net import DropoutMLP, Trace
from ..nn import ConnectionDropoutLinear, UnitGate
from ..statistics import STATISTICS, EnsembleStatistics, LayerStatistics, Pair, PredictiveStatistics
from ._common import CPU_TILE, DEFAULT_MEMORY, _check, _chunk, per_example_masks
from ._precision import (
    LOW_PRECISION_INPUTS,
    Int8Corrected,
    MeanCorrected,
    _check_precision,
    _corrected_stage,
    _fused_gate,
    _shape_args,
    auto_precision,
    low_precision_weights,
)
from ._predictive import predictive
from ._stats import Accumulator

__all__ = ["exact", "monte_carlo", "weight_scaled"]


@torch.no_grad()
def _reference(net: DropoutMLP, x: Tensor) -> Trace:
    with modes.expect(net):
        return net.trace(x)


@torch.no_grad()
def weight_scaled(net: DropoutMLP, x: Tensor) -> EnsembleStatistics:
    r"""The deterministic network W of Eq. 98: one pass with every gate replaced by its mean.

    $$
    W_i^l = \sigma\Big(\sum_{h<l} \sum_j w_{ij}^{h} p_j^h W_j^h\Big) \tag{98}
    $$

    ``E`` holds W (the estimate of E(O)), ``E_S`` holds U (the estimate of E(S)), and ``NWGM`` holds W as well
    for layers in [0, 1], since W is the propagated NWGM.

    Args:
        net: A ``DropoutMLP``.
        x: Inputs, shape (B, n_0).

    Returns:
        EnsembleStatistics: E (W), E_S (U) and, for layers in [0, 1], NWGM of every layer.
    """
    _check(net, x)
    ref = _reference(net, x)
    layers = [LayerStatistics(E=ref.O[0])]
    for h in range(1, len(ref.O)):
        unit = net.transfers[h - 1].output_in_unit_interval
        layers.append(LayerStatistics(E=ref.O[h], E_S=ref.S[h], NWGM=ref.O[h] if unit else None))
    return EnsembleStatistics("weight_scaled", layers)


def _stream(net: DropoutMLP, x: Tensor, members: int, acc: Accumulator, weights: Tensor,
            low: list[tuple[Tensor, Tensor] | None] | None = None, compensated: bool = False,
            fused: bool = False, timings: dict[str, float] | None = None,
            corrected: MeanCorrected | None = None) -> None:
    """Run ``members`` ensemble members on the batch x (member-major rows k * B + b), one layer at a time,
    giving each layer's S and O to ``acc`` at once: no trace of the whole network is kept.

    With ``low`` (bfloat16 weights), each product takes the gated outputs in bfloat16 and the kept bfloat16
    weights (the matrix engine; float32 accumulation inside the product), and S is formed in float32 with the
    bias: the gates, the transfer functions and the statistics run in float32 as before. ``compensated``
    splits the gated outputs too and adds the three products hi hi + hi lo + lo hi (bfloat16x3): rounding the
    weights and the gated outputs to bfloat16 is a fixed bias that does not average out over samples (1.67
    Monte Carlo standard errors on the paper network at 10,000 samples; 0.03 with the three products).

    ``corrected`` (bfloat16c, ``MeanCorrected``): one bfloat16 product per layer of stochastically rounded
    weights, each chunk's mean product corrected in float32.

    ``fused``: scalar-keep Bernoulli gates run as one compiled kernel (``_fused_gate``), same masks."""
    o = x.repeat(members, 1)
    if corrected is not None:
        corrected.next_chunk()
    acc.begin(weights)
    _accumulate(acc, timings, 0, None, o)
    for stage in net.stages():
        parts = low[stage.h - 1] if low is not None else None
        one_product = parts is not None and not compensated and corrected is None
        if corrected is not None and corrected.rounded[stage.h - 1] is not None:
            s = _corrected_stage(stage, o, members, corrected, fused)
            o = stage.activation(s)
            _accumulate(acc, timings, stage.h, s, o)
            continue
        g = _fused_gate(stage.gate, o, torch.bfloat16 if one_product else o.dtype) if fused else None
        if parts is None:
            s = stage.linear(g if g is not None else stage.gate(o))
        else:
            hi, lo = parts
            if g is None:
                g = stage.gate(o)
            g_hi = g.to(torch.bfloat16)  # (already bfloat16 from a fused gate: no copy)
            s = torch.mm(g_hi, hi.T).float()
            if compensated:
                g_lo = torch.sub(g, g_hi).to(torch.bfloat16)  # float32 difference, then its bfloat16 part
                s += torch.mm(g_hi, lo.T)
                s += torch.mm(g_lo, hi.T)
            bias = stage.linear.bias
            if bias is not None:
                s += bias
        o = stage.activation(s)
        _accumulate(acc, timings, stage.h, s, o)
    acc.end()


def _accumulate(acc: Accumulator, timings: dict[str, float] | None, h: int, s: Tensor | None, o: Tensor) -> None:
    """The accumulator's pass over one layer, timed into ``timings["statistics"]`` when a caller profiles."""
    if timings is None:
        acc.layer(h, s, o)
        return
    if o.is_cuda:
        torch.cuda.synchronize(o.device)
    t0 = time.perf_counter()
    acc.layer(h, s, o)
    if o.is_cuda:
        torch.cuda.synchronize(o.device)
    timings["statistics"] = timings.get("statistics", 0.0) + time.perf_counter() - t0


def _refuse_mlp_options(precision: str | None, fused: bool, pairs: Sequence[Pair],
                        histogram_units: Sequence[tuple[int, int]], statistics: Sequence[str]) -> None:
    """The options that only a DropoutMLP's per-unit Monte Carlo has, refused for any other model."""
    if precision not in (None, "float32", "auto"):
        raise ValueError("precision='bfloat16' is for a DropoutMLP; for another model use torch.autocast")
    if fused:
        raise ValueError("fused=True fuses a DropoutMLP's per-layer statistics; for another model leave it False")
    if pairs or histogram_units or tuple(statistics) != STATISTICS:
        raise ValueError("pairs, histogram_units and statistics are a DropoutMLP's per-unit statistics; a model "
                         "droplab did not build gives the statistics of its output (PredictiveStatistics)")


def _check_run_options(fused: Any, tile: Any, timings: Any) -> None:
    if not isinstance(fused, bool):
        raise TypeError(f"fused must be True or False, got {fused!r}")
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"tile must be a positive number of bytes (or None: {CPU_TILE}), got {tile!r}")
    if timings is not None and not isinstance(timings, dict):
        raise TypeError(f"timings must be a dict to add seconds to, got {type(timings).__name__}")


@torch.no_grad()
def monte_carlo(net: nn.Module, x: Tensor, *, samples: int = 1000, generator: torch.Generator | None = None,
                pairs: Sequence[Pair] = (), histogram_units: Sequence[tuple[int, int]] = (), bins: int = 50,
                statistics: Sequence[str] = STATISTICS, memory: int = DEFAULT_MEMORY, output: str | None = None,
                batch_dim: int = 0, precision: str | None = "auto", fused: bool = False,
                cache_prefix: bool = True, targets: Tensor | None = None, tau: float | None = None,
                temperature: float = 1.0, tile: int | None = None,
                timings: dict[str, float] | None = None) -> EnsembleStatistics | PredictiveStatistics:
    """K sampled subnetworks per input, run as one large batched product per chunk; statistics streamed.

    For a ``DropoutMLP``, every layer's statistics (E, Var, NWGM, WGM, E(S), Var(S), E(f'(S)), standard
    errors), the pair moments E(O^h_i O^l_j) for ``pairs`` and histograms of O for ``histogram_units``
    ((layer, unit) -> (B, bins) frequencies over [0, 1]).

    For any other ``nn.Module``, ``predictive`` (what it samples: droplab's gates and torch's own dropout, the
    model left in eval mode; ``output``, ``batch_dim``, ``cache_prefix``, and ``targets``, ``tau``, ``temperature``
    for scores streamed over the members): its ``PredictiveStatistics``.

    ``precision`` (a ``DropoutMLP``): ``"auto"`` (the default: the fastest of float32, ``"bfloat16c"`` and
    ``"int8c"`` on this host at this network's shapes, never one slower than float32, see ``droplab.host``; float32
    inputs only, else the inputs' dtype), None (the inputs' dtype), ``"float32"``, ``"bfloat16"``,
    ``"bfloat16x3"``, ``"bfloat16c"`` or ``"int8c"``; the statistics' ``precision`` says which ran;
    ``fused=True`` runs compiled kernels; ``memory`` and ``tile`` size the chunks of members (memory does not
    grow with K): see "Monte Carlo options" in ``droplab.ensemble``. ``statistics`` restricts the per-unit
    statistics to those named (E is always computed). ``timings``, a dict, gets the seconds spent in the
    per-unit statistics added under ``"statistics"`` (for profiling).

    >>> net = DropoutMLP((4, 8, 3), keep=(0.8, 0.5)).eval()
    >>> stats = monte_carlo(net, torch.rand(2, 4), samples=100, generator=torch.Generator().manual_seed(0))
    >>> stats.layers[1].E.shape
    torch.Size([2, 8])

    Args:
        net: A ``DropoutMLP`` (any other model is handed to ``predictive``).
        x: Inputs, shape (B, n_0).
        samples: K, the members per input.
        generator: The masks' generator (None: torch's default); the same generator state gives the same result.
        pairs: (h, i, l, j) pairs whose E(O^h_i O^l_j) to estimate.
        histogram_units: (layer, unit) pairs whose distribution of O to histogram.
        bins: Histogram bins over [0, 1].
        statistics: The per-unit statistics to compute (E always).
        memory: Bytes of activations per chunk of members.
        output: ``predictive``'s, for another model (None for a ``DropoutMLP``).
        batch_dim: ``predictive``'s, for another model (0 for a ``DropoutMLP``).
        precision: The products' precision (above).
        fused: Run the compiled gate and statistics kernels.
        cache_prefix: ``predictive``'s, for another model.
        targets: ``predictive``'s, for another model.
        tau: ``predictive``'s, for another model.
        temperature: ``predictive``'s, for another model.
        tile: Bytes per layer tensor of a chunk on a CPU (None: 4 MiB).
        timings: A dict that gets the seconds spent in the statistics added under ``"statistics"``.

    Returns:
        EnsembleStatistics | PredictiveStatistics: Every layer's statistics with their standard errors for a
            ``DropoutMLP`` (``precision`` says which ran); ``predictive``'s statistics for another model.
    """
    net = modes.compiled_original(net) or net  # a torch.compile'd model is sampled through its eager module
    _check(net, x)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not isinstance(net, DropoutMLP):  # any other model: the predictive estimator (``predictive``)
        _refuse_mlp_options(precision, fused, pairs, histogram_units, statistics)
        return predictive(net, x, samples=samples, generator=generator, output=output, batch_dim=batch_dim,
                          memory=memory, cache_prefix=cache_prefix, targets=targets, tau=tau, temperature=temperature)
    _check_mlp_options(net, output, batch_dim, targets is not None or tau is not None or temperature != 1.0)
    precision = _check_precision(precision, x)
    _check_run_options(fused, tile, timings)
    chunk = _chunk(net, x, memory, samples, tile)
    if precision == "auto":
        precision = auto_precision(net, x, chunk)
    elif precision in ("bfloat16", "bfloat16x3", "bfloat16c", "int8c"):
        host.check_named(precision, _shape_args(net, x, chunk))
        if precision in ("bfloat16c", "int8c") and float(x.abs().max()) > LOW_PRECISION_INPUTS:
            raise ValueError(f"precision={precision!r} is checked against float64 for inputs within "
                             f"+-{LOW_PRECISION_INPUTS:g} (pixels in [0, 1], standardized features); these reach "
                             f"{float(x.abs().max()):.4g}, where its rounding moved the mean by several standard "
                             "errors. Scale the inputs (e.g. x / 255) or pass precision='float32'")
    low = low_precision_weights(net) if precision in ("bfloat16", "bfloat16x3") else None
    estimator = {"bfloat16c": MeanCorrected, "int8c": Int8Corrected}.get(precision)
    corrected = estimator(net, x, generator, fused) if estimator is not None else None
    ref = _reference(net, x)
    acc = Accumulator(net, ref, pairs=_check_pairs(net, pairs),
                      histogram_units=_check_units(net, histogram_units, bins), bins=bins, statistics=statistics,
                      fused=fused)
    done = 0
    with modes.sample(net, generator=generator), per_example_masks(net):
        while done < samples:
            threads.maybe_adapt()
            k = min(chunk, samples - done)
            _stream(net, x, k, acc, torch.full((k,), 1.0 / samples, dtype=torch.float64, device=x.device), low,
                    precision == "bfloat16x3", fused, timings, corrected)
            done += k
    stats = acc.finalize("monte_carlo", samples=samples, standard_errors=True, dtype=x.dtype)
    stats.precision = precision
    return stats


def _check_mlp_options(net: DropoutMLP, output: str | None, batch_dim: int, scored: bool = False) -> None:
    if scored:
        raise ValueError("targets, tau and temperature score a network's output over its members: for a DropoutMLP "
                         "call ensemble.predictive(net, x, ...), which samples it as any model")
    if output is not None:
        raise ValueError(f"a DropoutMLP's layers are known to droplab (its output layer is "
                         f"{net.transfers[-1].name}); leave output=None, which gives every layer's statistics")
    if batch_dim != 0:
        raise ValueError(f"a DropoutMLP takes inputs (B, n); batch_dim must be 0, got {batch_dim}")


def _check_units(net: DropoutMLP, units: Sequence[tuple[int, int]], bins: int) -> list[tuple[int, int]]:
    """``histogram_units`` as (layer, unit) pairs of the network (a unit it lacks would be left out silently),
    with ``bins`` a positive integer."""
    if isinstance(units, (str, bytes, Tensor)) or not isinstance(units, Sequence):
        raise TypeError(f"histogram_units must be a list of (layer, unit) pairs, got {type(units).__name__}")
    out = []
    for unit in units:
        if not isinstance(unit, (tuple, list)) or len(unit) != 2 or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in unit):
            raise ValueError(f"each of histogram_units is (layer, unit), two ints, got {unit!r}")
        layer, i = (int(v) for v in unit)
        if not (0 <= layer < len(net.sizes)) or not (0 <= i < net.sizes[layer]):
            raise ValueError(f"histogram_units names unit {i} of layer {layer}; the network has sizes {net.sizes}")
        out.append((layer, i))
    if out and (isinstance(bins, bool) or not isinstance(bins, int) or bins < 1):
        raise ValueError(f"bins must be a positive integer (the histograms' bins), got {bins!r}")
    return out


def _check_pairs(net: DropoutMLP, pairs: Sequence[Pair]) -> list[Pair]:
    if isinstance(pairs, (str, bytes, Tensor)) or not isinstance(pairs, Sequence):
        raise TypeError(f"pairs must be a list of (layer h, unit i, layer l, unit j) tuples, got "
                        f"{type(pairs).__name__}")
    out = []
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 4 or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in pair):
            raise ValueError(f"each of pairs is (layer h, unit i, layer l, unit j), four ints, got {pair!r}")
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

    Args:
        net: A ``DropoutMLP`` whose gates can be enumerated (Bernoulli unit or connection gates).
        x: Inputs, shape (B, n_0).
        max_configurations: The most gate configurations it enumerates before refusing.
        pairs: (h, i, l, j) pairs whose E(O^h_i O^l_j) to compute.
        histogram_units: (layer, unit) pairs whose distribution of O to histogram.
        bins: Histogram bins over [0, 1].
        statistics: The per-unit statistics to compute (E always).
        memory: Bytes of activations per batch of configurations.

    Returns:
        EnsembleStatistics: Every layer's statistics, exact; ``samples`` is the number of configurations.

    Raises:
        ValueError: More configurations than ``max_configurations``, or a gate that cannot be enumerated.
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
    acc = Accumulator(net, ref, pairs=_check_pairs(net, pairs),
                      histogram_units=_check_units(net, histogram_units, bins), bins=bins,
                      statistics=statistics)
    chunk = _chunk(net, x, memory, count)
    log_p, log_q = torch.log(keep[random]), torch.log1p(-keep[random])
    shift = torch.arange(n_random, dtype=torch.int64)
    for start in range(0, count, chunk):
        threads.maybe_adapt()
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
