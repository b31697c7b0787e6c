"""Estimators that run the network: weight scaling, Monte Carlo sampling, exact enumeration."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from .. import _compile, host, modes, threads
from ..gates import bernoulli_words, random_words
from ..net import DropoutMLP, Trace
from ..nn import ConnectionDropoutLinear, UnitGate
from ._stats import STATISTICS, Accumulator, EnsembleStatistics, LayerStatistics, Pair

if TYPE_CHECKING:
    from ._predictive import PredictiveStatistics

__all__ = ["exact", "monte_carlo", "weight_scaled"]

DEFAULT_MEMORY = 512 * 2**20  # bytes of activations per chunk


def _check(net: nn.Module, x: Tensor) -> None:
    if not isinstance(net, nn.Module):
        raise TypeError(f"expected a DropoutMLP or another torch.nn.Module, got {type(net).__name__}")
    if isinstance(net, torch.jit.ScriptModule):
        raise TypeError("a TorchScript model cannot be sampled: droplab answers torch's dropout calls and module hooks "
                        "in Python, which scripted code does not make; pass the eager module (before torch.jit.script)")
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__module__}.{type(x).__name__}; convert it, e.g. "
                        "torch.from_numpy(x).float() for a NumPy array")
    if x.dim() < 2:
        raise ValueError(f"x must be a batch of inputs, shape (B, ...), got shape {tuple(x.shape)}; add the batch "
                         "dimension (x.unsqueeze(0) for one input)")
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch (B = 0); give at least one input")
    if x.device.type == "meta":
        raise ValueError("x is on the meta device (shapes without values); give real inputs")
    weight = next((p for p in net.parameters() if p.is_floating_point()), None)
    if weight is not None and x.is_floating_point() and x.dtype != weight.dtype and not (
            isinstance(net, DropoutMLP) and x.dtype == torch.bfloat16):
        raise ValueError(f"x is {str(x.dtype).removeprefix('torch.')} but the model's parameters are "
                         f"{str(weight.dtype).removeprefix('torch.')}; cast one to the other (x.to({weight.dtype}) or "
                         f"model.to({x.dtype}))")
    if weight is not None and weight.device.type != "meta" and x.device != weight.device:
        raise ValueError(f"x is on {x.device} but the model is on {weight.device}; move one to the other")
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


CPU_MODULE_CHUNK = 64 * 2**20  # bytes of module outputs per chunk for other modules on a CPU: 512 MiB chunks
# ran 1.5x slower than 32-128 MiB ones on a small CNN and transformer (benchmarks/any_model.py models)
CPU_TILE = 4 * 2**20  # bytes: on a CPU, one layer's activations for a chunk stay about this size (cache-sized)


def _chunk(net: DropoutMLP, x: Tensor, memory: int, samples: int, tile: int | None = None) -> int:
    """Members per chunk. Layers are streamed one at a time (``_stream``), so a chunk holds a few tensors of
    the widest layer (plus per-example connection masks) and the memory budget bounds that. On a CPU the
    chunk is also kept near ``CPU_TILE`` per tensor: the elementwise passes that follow each product then
    run from cache instead of memory, which cut them 2-5x, while the products stay as fast (measured with
    ``benchmarks/mc_throughput.py --tile-mib``)."""
    batch, widest = x.shape[0], max(net.sizes)
    masks = max((lin.weight.numel() for lin in net.linears
                 if isinstance(lin, ConnectionDropoutLinear) and lin.mask_sharing == "example"), default=0)
    # sized as for 4-byte floats whatever x's dtype: the same members per chunk, so the same masks, for a seed in
    # float64, float32 and bfloat16 (a float64 run may use twice the budget)
    bytes_per_member = batch * (widest * 6 + masks * 3) * 4
    chunk = memory // max(1, bytes_per_member)
    if x.device.type == "cpu":
        chunk = min(chunk, (CPU_TILE if tile is None else tile) // max(1, batch * widest * 4))
    return max(1, min(samples, chunk))


PRECISIONS = ("float32", "bfloat16", "bfloat16x3", "bfloat16c", "int8c")


def _check_precision(precision: str | None, x: Tensor) -> str:
    if precision is None or (precision == "auto" and x.dtype != torch.float32):
        return "bfloat16" if x.dtype == torch.bfloat16 else str(x.dtype).removeprefix("torch.")
    if precision not in PRECISIONS and precision != "auto":
        raise ValueError(f"precision must be one of {('auto', *PRECISIONS)} (auto: chosen by the host) or None "
                         f"(the inputs' dtype), got {precision!r}")
    if precision == "auto":
        return precision
    if precision != "float32" and x.dtype != torch.float32:
        raise ValueError(f"precision={precision!r} takes float32 inputs (its elementwise work and statistics run in "
                         f"float32), got {x.dtype}; pass x.float()")
    return precision


def low_precision_weights(net: DropoutMLP) -> list[tuple[Tensor, Tensor] | None]:
    """Each plain linear layer's weight as a bfloat16 high part and a bfloat16 low part (W = hi + lo to about
    2^-16), made once per estimator call (a few milliseconds against the call's seconds) and held by it, not by
    the network: a cache keyed on the weight's version counter went stale after torch's fused Adam, which
    updates weights in place without bumping it. None for connection-dropout layers, whose per-example gated
    weights stay in float32."""
    out: list[tuple[Tensor, Tensor] | None] = []
    for linear in net.linears:
        if isinstance(linear, ConnectionDropoutLinear):
            out.append(None)
            continue
        w = linear.weight.detach()
        hi = w.to(torch.bfloat16)
        out.append((hi, (w - hi.float()).to(torch.bfloat16)))
    return out


SR_BLOCK = 8  # bfloat16c: chunks between fresh stochastic roundings of the weights and of the inputs


def stochastic_round(t: Tensor, dither: Tensor) -> Tensor:
    """float32 ``t`` rounded to a bfloat16 value (returned as float32) up or down with probabilities that make
    its expectation ``t``: 16 random low bits (``dither``, int32 on [0, 2^16), broadcasting to ``t``) are added
    to its bit pattern and the low 16 bits cleared. On the magnitude bits, so unbiased for either sign; a zero
    stays zero."""
    return (t.contiguous().view(torch.int32) + dither).bitwise_and_(-65536).view(torch.float32)


def _dither_words(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    """16 random bits per element of ``shape``, as int16 (to be read as unsigned)."""
    n = math.prod(shape)
    return random_words((n + 3) // 4, generator=generator, device=device).view(torch.int16)[:n].view(shape)


def _rounded_weight(w: Tensor, words: Tensor) -> tuple[Tensor, Tensor]:
    """``w`` (float32) rounded stochastically to bfloat16 with the 16 random bits of ``words`` (int16, w's
    shape), and what the rounding left, in bfloat16: (hi, lo) with hi + lo = w to about 2^-16. One pass when
    compiled (5.3 million weights of the paper network: the elementwise steps apart cost several times the
    random words' draw); the same bits either way (integer steps, an exact difference, round-to-nearest casts)."""
    high = stochastic_round(w, words.to(torch.int32) & 0xFFFF)
    return high.to(torch.bfloat16), (w - high).to(torch.bfloat16)


def _derived_generator(generator: torch.Generator | None, device: torch.device) -> torch.Generator:
    """A generator of bfloat16c's own, seeded from the state of the masks' generator (untouched, so the masks
    are those of any other precision with the same seed; a later state gives other roundings)."""
    if generator is None:
        generator = torch.default_generator if device.type == "cpu" else torch.cuda.default_generators[
            device.index if device.index is not None else torch.cuda.current_device()]
    digest = hashlib.blake2b(generator.get_state().numpy().tobytes(), digest_size=8).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest, "little") >> 1)


class MeanCorrected:
    """bfloat16c for one estimator call: one bfloat16 product per layer, with

    - the weights, and the inputs of the first product, rounded to bfloat16 *stochastically* (expectation
      exact), redrawn every ``SR_BLOCK`` chunks from a generator of their own (``_derived_generator``): no
      rounding of them is the same in every sample, so none is a bias that the samples cannot average out;
    - each chunk's mean product made exact to second order (``finish``): mean_k(g_k) W^T - mean_k(hi(g_k))
      hi(W)^T, from two sums over the chunk's members and two bfloat16 products B rows high, added to every
      member's product. What is left in a member is a rounding error of mean zero over the chunk, whose effect
      on E(O) is of second order, and of mean zero over the roundings.

    Measured on the paper network: plain bfloat16's bias of 1.7 Monte Carlo standard errors at 10,000 samples
    (weights 1.5, inputs 0.9) falls to the few hundredths that ``benchmarks/mc_throughput.py`` prints."""

    def __init__(self, net: DropoutMLP, x: Tensor, generator: torch.Generator | None, fused: bool = False) -> None:
        self.weights = [None if isinstance(lin, ConnectionDropoutLinear) else lin.weight.detach()
                        for lin in net.linears]
        self.x_shape = tuple(x.shape)
        self.device = x.device
        self.generator = _derived_generator(generator, x.device)
        self.chunks = 0
        self.rounded: list[tuple[Tensor, ...] | None] = []
        self.dither: Tensor | None = None
        self.fused = fused  # the weights' rounding in one compiled pass (the same bits)

    def next_chunk(self) -> None:
        """Every ``SR_BLOCK`` chunks: the weights' stochastic rounding and the inputs' dither drawn afresh (in that
        order, layer by layer, from this estimator's own generator)."""
        if self.chunks % SR_BLOCK == 0:
            self.rounded = [None if w is None else self.round_weight(w, _dither_words(tuple(w.shape), self.generator,
                                                                                    self.device))
                            for w in self.weights]
            self.dither = self.input_dither(_dither_words(self.x_shape, self.generator, self.device))
        self.chunks += 1

    def round_weight(self, w: Tensor, words: Tensor) -> tuple[Tensor, ...]:
        """One weight rounded stochastically with the random bits ``words``: bfloat16 (hi, lo)."""
        return _compile.run("mc_round_weights", _rounded_weight, self.fused, w, words)

    def input_dither(self, words: Tensor) -> Tensor:
        """The inputs' dither from 16 random bits per input and unit: int32 on [0, 2^16), added to the bit pattern."""
        return words.to(torch.int32).bitwise_and_(0xFFFF)

    def product(self, h: int, g: Tensor, members: int) -> Tensor:
        """Layer h's product of the gated outputs g (float32, member-major rows) with its weights, corrected."""
        n = g.shape[-1]
        per_member = g.reshape(members, -1, n)
        if h == 1:  # the inputs: rounded stochastically with a dither per input and unit, shared by the members
            assert self.dither is not None
            g_hi = stochastic_round(per_member, self.dither).to(torch.bfloat16)
        else:
            g_hi = per_member.to(torch.bfloat16)
        return self.finish(h, g_hi.view(g.shape), per_member.sum(0), g_hi.sum(0, dtype=torch.float32), members)

    def finish(self, h: int, g_hi: Tensor, total: Tensor, total_hi: Tensor, members: int) -> Tensor:
        """The bfloat16 product of g_hi (member-major rows) plus the correction c = mean_k(g_k - hi(g_k)) hi(W)^T +
        mean_k(g_k) lo(W)^T (lo = W - hi(W)), itself from two bfloat16 products B rows high: its own rounding is
        of second order (2^-8 of a term already 2^-8 of S). ``total`` and ``total_hi``: the sums over the members
        of g and of g_hi, (B, n) float32."""
        hi, lo = self.rounded[h - 1]  # type: ignore[misc]
        s = torch.mm(g_hi, hi.T).float()
        correction = torch.mm(((total - total_hi) / members).to(torch.bfloat16), hi.T).float()
        correction += torch.mm((total / members).to(torch.bfloat16), lo.T).float()
        s.view(members, -1, s.shape[-1]).add_(correction)
        return s


INT8_LEVELS = 127 * (1 - 2**-16)  # int8c's scale: |v| / amax * INT8_LEVELS stays under 127 after float rounding
INT8_MAX_INPUTS = 133_000  # 127 * 127 * K < 2^31: the products' int32 sums cannot overflow


def int8_layer(linear: nn.Module) -> bool:
    """Whether int8c runs this layer's product in int8: a plain linear layer whose sizes are multiples of 8 (the
    rule of CUDA's int8 product, applied on every device so that a network takes the same path everywhere) and
    whose inputs are few enough for the int32 sums; the others (the paper network's 10 outputs, connection
    dropout) run in float32, exactly."""
    return (type(linear) is nn.Linear and linear.in_features % 8 == 0 and linear.out_features % 8 == 0
            and linear.in_features <= INT8_MAX_INPUTS)


def _rounded_int8_weight(w: Tensor, words: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``w`` (float32, (N, K)) rounded stochastically to int8 steps of its row's scale: (q, scale, q as bfloat16,
    what the rounding left as bfloat16) with q * scale + lo = w to about 2^-8 of a step. q is the floor of
    w / scale plus a uniform draw from the 16 random bits of ``words`` (int16, w's shape), so its expectation is
    w / scale to 2^-16 of a step; a row of zeros gets scale 0 and stays 0."""
    amax = w.abs().amax(1, keepdim=True)
    scale = amax / INT8_LEVELS
    inverse = torch.where(amax > 0, INT8_LEVELS / amax, torch.zeros((), dtype=w.dtype, device=w.device))
    u = (words.to(torch.int32) & 0xFFFF).to(w.dtype) * 2**-16
    q = torch.floor(w * inverse + u)
    return q.to(torch.int8), scale.view(-1), q.to(torch.bfloat16), (w - q * scale).to(torch.bfloat16)


def gate_divisor(gate: nn.Module) -> float | None:
    """What a gate divides its kept outputs by, so that |gated output| <= |output| / divisor: 1 with no gate or
    paper scaling, p under inverted scaling (a scalar-keep Bernoulli gate); None for gates whose output their
    input does not bound (Gaussian noise, dropin, spiking, per-unit rates)."""
    if isinstance(gate, nn.Identity):
        return 1.0
    if isinstance(gate, UnitGate) and gate.kind.name == "bernoulli" and isinstance(gate.keep, float):
        return gate.keep if gate.scaling == "inverted" else 1.0
    return None


def _input_bounds(net: DropoutMLP, x: Tensor) -> list[Tensor | None]:
    """Per layer, a bound (B,) on the magnitude of its gated inputs that holds for every member, or None where
    none is known before the chunk is computed: the first layer's is max_i |x_bi| / the gate's divisor (the
    largest gated input of a chunk of many members, to the last bit, unless the largest input is dropped in every
    member); a hidden layer's is 1 / the divisor where the transfer's outputs lie in [0, 1]."""
    bounds: list[Tensor | None] = []
    for h, gate in enumerate(net.gates):
        divisor = gate_divisor(gate)
        if divisor is None or (h > 0 and not net.transfers[h - 1].output_in_unit_interval):
            bounds.append(None)
        else:
            top = x.abs().amax(1) if h == 0 else torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
            bounds.append(top / divisor if divisor != 1.0 else top)
    return bounds


def _masked(o: Tensor, words: Tensor, limit: int, keep: float, inverted: bool) -> Tensor:
    """O where its random word is under the limit, else 0, divided by p under inverted scaling: a Bernoulli gate's
    output inside a compiled kernel, cut from the words the gate itself draws."""
    if words.dtype != torch.int32:  # byte and 16-bit words: compared as floats (exact), which vectorize
        words = words.to(torch.float32)  # (a uint8 compare in the compiled kernel ran 25x slower)
    g = torch.where(words < limit, o, torch.zeros((), dtype=o.dtype, device=o.device))
    return g / keep if inverted else g


def _int8_gate_kernel(o: Tensor, words: Tensor, limit: int, keep: float, inverted: bool, members: int,
                      inverse: Tensor, dither: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """int8c's gate in one pass: the gated outputs scaled by ``inverse`` (per input) and rounded to int8 levels
    (stochastically with the first layer's ``dither``, else to nearest), with the sums over the members of the
    gated outputs and of their levels."""
    g = _masked(o, words, limit, keep, inverted)
    per_member = g.view(members, -1, g.shape[-1])
    levels = per_member * inverse[:, None]
    levels = torch.floor(levels + dither) if dither is not None else torch.round(levels)
    return levels.to(torch.int8).view(g.shape), per_member.sum(0), levels.sum(0)


def _dequantized(acc: Tensor, members: int, scale: Tensor, correction: Tensor, bias: Tensor | None) -> Tensor:
    """S from the int32 sums: acc * (input scale x weight scale) + the chunk's correction (+ the bias)."""
    s = acc.view(members, -1, acc.shape[-1]) * scale
    s.add_(correction)
    if bias is not None:
        s.add_(bias)
    return s.view(acc.shape)


class Int8Corrected(MeanCorrected):
    """int8c for one estimator call: bfloat16c's estimator with the products in int8 (the matrix engine's
    integer path: on the 2-core benchmark CPU 1.8-2.2x the bfloat16 rate, exact int32 sums):

    - each weight row scaled to 127 levels and rounded to them stochastically (``_rounded_int8_weight``),
      redrawn every ``SR_BLOCK`` chunks from bfloat16c's own generator;
    - the gated outputs scaled per input to 127 levels of a bound on their magnitude (``_input_bounds``: the
      first layer's largest input, a hidden layer's transfer bound such as the logistic's 1, each times the
      gate's 1/p under inverted scaling; where no bound is known, the chunk's largest gated output): rounded
      stochastically on the first layer (a dither per input and unit, shared by the members and redrawn with the
      weights: the inputs are the same in every sample), to nearest on the others;
    - each chunk's mean product made exact to second order as in bfloat16c (``finish``), from two bfloat16
      products B rows high.

    Layers ``int8_layer`` refuses, and chunks of at most 16 rows, run their product in float32. Fused, a
    Bernoulli gate with a known bound is one compiled pass (mask, scale, rounding, the chunk's sums), and so is
    the dequantization (scales, correction, bias)."""

    def __init__(self, net: DropoutMLP, x: Tensor, generator: torch.Generator | None, fused: bool = False) -> None:
        super().__init__(net, x, generator, fused)
        self.float_weights = [lin.weight.detach() for lin in net.linears]
        self.weights = [lin.weight.detach() if int8_layer(lin) else None for lin in net.linears]
        for w in self.weights:
            if w is not None and not bool(torch.isfinite(w).all()):
                raise ValueError("precision='int8c' cannot scale weights that hold NaN or inf; the network's weights "
                                 "are not finite (did training diverge?). Fix the weights, or use precision='float32'")
        self.bounds = _input_bounds(net, x)

    def round_weight(self, w: Tensor, words: Tensor) -> tuple[Tensor, ...]:
        """One weight rounded stochastically to int8 levels: (q, scale, q as bfloat16, lo as bfloat16)."""
        return _compile.run("mc_round_int8", _rounded_int8_weight, self.fused, w, words)

    def input_dither(self, words: Tensor) -> Tensor:
        """The inputs' dither: uniform on [0, 1) in steps of 2^-16, added to the levels before the floor."""
        return (words.to(torch.int32) & 0xFFFF).to(torch.float32) * 2**-16

    def input_scale(self, h: int, per_member: Tensor | None) -> tuple[Tensor, Tensor]:
        """(127 levels / bound, bound / 127 levels) per input for layer h's gated inputs ``per_member`` (members,
        B, n); the bound is ``_input_bounds``'s, or the chunk's largest |gated input| where none is known."""
        bound = self.bounds[h - 1]
        if bound is None:
            assert per_member is not None
            bound = per_member.abs().amax((0, 2))
            if not bool(torch.isfinite(bound).all()):
                raise ValueError(f"precision='int8c': layer {h - 1}'s outputs overflowed to inf, which int8 cannot "
                                 "scale; use precision='float32' for this network")
        inverse = torch.where(bound > 0, INT8_LEVELS / bound, torch.zeros((), dtype=bound.dtype, device=bound.device))
        return inverse, bound / INT8_LEVELS

    def stage(self, stage: Any, o: Tensor, members: int) -> Tensor:
        """Layer ``stage.h``'s S from the previous layer's outputs o (float32, member-major rows): the gate, the
        int8 product with its correction, the bias; the gate and the rounding in one compiled pass when fused
        and the gate's bound is known."""
        h, bias = stage.h, stage.linear.bias
        # (_fusable_words draws nothing where it gives None, so the masks stay those of the other paths)
        one_pass = self.fused and self.bounds[h - 1] is not None and o.shape[0] > 16
        drawn = _fusable_words(stage.gate, o) if one_pass else None
        if drawn is None:
            g = _fused_gate(stage.gate, o, o.dtype) if self.fused else None
            return self.product(h, g if g is not None else stage.gate(o), members, bias)
        inverse, g_scale = self.input_scale(h, None)
        levels, total, total_levels = _compile.run(
            "mc_int8_gate", _int8_gate_kernel, True, o, drawn[0], drawn[1], stage.gate.keep,
            stage.gate.scaling == "inverted", members, inverse, self.dither if h == 1 else None)
        return self.int8_product(h, levels, total, total_levels, g_scale, members, bias)

    def product(self, h: int, g: Tensor, members: int, bias: Tensor | None = None) -> Tensor:
        """Layer h's product of the gated outputs g (float32, member-major rows) with its weights, corrected,
        plus the bias."""
        rows, n = g.shape
        if rows <= 16:  # CUDA's int8 product wants more rows: so few run in float32 everywhere
            s = torch.mm(g, self.float_weights[h - 1].T)
            return s if bias is None else s + bias
        per_member = g.view(members, -1, n)
        inverse, g_scale = self.input_scale(h, per_member)
        levels = per_member * inverse[:, None]
        if h == 1:
            levels.add_(self.dither).floor_()
        else:
            levels.round_()
        return self.int8_product(h, levels.to(torch.int8).view(rows, n), per_member.sum(0), levels.sum(0), g_scale,
                                 members, bias)

    def int8_product(self, h: int, levels: Tensor, total: Tensor, total_levels: Tensor, g_scale: Tensor,
                     members: int, bias: Tensor | None) -> Tensor:
        """S from the int8 levels (member-major rows), the chunk's sums over the members of the gated outputs and
        of their levels (B, n), and the inputs' scale (B,): the int8 product, dequantized, plus the correction
        that makes the chunk's mean product exact to second order, plus the bias."""
        q8w, w_scale, hi, lo = self.rounded[h - 1]  # type: ignore[misc]
        acc = torch._int_mm(levels, q8w.T)
        total_q = total_levels * g_scale[:, None]
        correction = torch.mm(((total - total_q) / members).to(torch.bfloat16), hi.T).float() * w_scale
        correction += torch.mm((total / members).to(torch.bfloat16), lo.T).float()
        return _compile.run("mc_int8_dequantize", _dequantized, self.fused, acc, members, g_scale[:, None] * w_scale,
                            correction, bias)


def _corrected_gate_kernel(o: Tensor, words: Tensor, limit: int, keep: float, inverted: bool, members: int,
                           dither: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """bfloat16c's gate in one pass: the gated outputs rounded to bfloat16 (stochastically with ``dither``, the
    first layer's), and the sums over the members of the float32 and of the rounded outputs."""
    g = _masked(o, words, limit, keep, inverted)
    per_member = g.view(members, -1, g.shape[-1])
    if dither is not None:
        g_hi = ((per_member.view(torch.int32) + dither) & -65536).view(torch.float32).to(torch.bfloat16)
    else:
        g_hi = per_member.to(torch.bfloat16)
    return g_hi.view(g.shape), per_member.sum(0), g_hi.float().sum(0)


def _gate_kernel(o: Tensor, words: Tensor, limit: int, keep: float, inverted: bool, dtype: torch.dtype) -> Tensor:
    """A Bernoulli gate in one pass: O where its word is under the limit, else 0 (divided by p under inverted
    scaling), in ``dtype``: the mask, the multiply and the cast to bfloat16 that the unfused path runs apart."""
    return _masked(o, words, limit, keep, inverted).to(dtype)


def _fusable_words(gate: nn.Module, o: Tensor) -> tuple[Tensor, int] | None:
    """The random words and limit of a scalar-keep Bernoulli unit gate's mask for outputs ``o``, drawn as the gate
    would draw them (``gates.bernoulli_words``), so a compiled kernel cuts the same mask; None where the gate is
    of another kind, per-unit rates, channel-shared, recording, or draws nothing (it then runs itself)."""
    if not (isinstance(gate, UnitGate) and gate.kind.name == "bernoulli" and gate.mask_sharing == "unit"
            and isinstance(gate.keep, float) and gate.gate_mode == "sample"
            and getattr(gate, "_droplab_sink", None) is None):
        return None
    return bernoulli_words(o.shape, gate.keep, generator=getattr(gate, "_droplab_generator", None), device=o.device)


def _fused_gate(gate: nn.Module, o: Tensor, dtype: torch.dtype) -> Tensor | None:
    """The sampled output of a scalar-keep Bernoulli unit gate through ``_gate_kernel`` compiled, the same mask
    as the gate's own; None where ``_fusable_words`` is None."""
    drawn = _fusable_words(gate, o)
    if drawn is None:
        return None
    return _compile.run("mc_gate", _gate_kernel, True, o, drawn[0], drawn[1], gate.keep, gate.scaling == "inverted",
                        dtype)


def _fused_corrected_gate(gate: nn.Module, o: Tensor, members: int,
                          dither: Tensor | None) -> tuple[Tensor, Tensor, Tensor] | None:
    """bfloat16c's gate through ``_corrected_gate_kernel`` compiled, the same mask as the gate's own; None where
    ``_fusable_words`` is None (the gate then runs itself)."""
    drawn = _fusable_words(gate, o)
    if drawn is None:
        return None
    return _compile.run("mc_corrected_gate", _corrected_gate_kernel, True, o, drawn[0], drawn[1], gate.keep,
                        gate.scaling == "inverted", members, dither)


def _corrected_stage(stage: Any, o: Tensor, members: int, corrected: MeanCorrected, fused: bool) -> Tensor:
    """One layer's S under bfloat16c: the gate (fused with the rounding and the sums where it can be), the
    corrected product, the bias."""
    if isinstance(corrected, Int8Corrected):  # its own rounding (the gate and the rounding one kernel when fused)
        return corrected.stage(stage, o, members)
    parts = _fused_corrected_gate(stage.gate, o, members, corrected.dither if stage.h == 1 else None) \
        if fused else None
    if parts is not None:
        s = corrected.finish(stage.h, *parts, members)
    else:
        s = corrected.product(stage.h, stage.gate(o), members)
    if stage.linear.bias is not None:
        s += stage.linear.bias
    return s


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
    """
    net = modes.compiled_original(net) or net  # a torch.compile'd model is sampled through its eager module
    _check(net, x)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    if not isinstance(net, DropoutMLP):  # any other model: the predictive estimator (``predictive``)
        from ._predictive import predictive

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


def _shape_args(net: DropoutMLP, x: Tensor, chunk: int) -> dict[str, Any]:
    return {"sizes": list(net.sizes), "rows": chunk * x.shape[0], "device": str(x.device),
            "low_layers": [type(lin) is nn.Linear for lin in net.linears],
            "int8_layers": [int8_layer(lin) for lin in net.linears]}


# bfloat16c and int8c were checked against float64 on inputs within this bound (MNIST pixels in [0, 1], scaled up to
# x16: within 0.05 standard errors on a 784-1200-1200-10 logistic network, the same masks); issue 35
# found 0-255 pixels 6.5 SE off under int8c on a trained network: beyond the bound auto takes float32, a named low
# precision is refused
LOW_PRECISION_INPUTS = 16.0


def auto_precision(net: DropoutMLP, x: Tensor, chunk: int) -> str:
    """What ``precision="auto"`` runs ``monte_carlo`` in: ``host.choose``'s fastest of float32, bfloat16c and int8c
    at the chunk's shapes. Only a network whose hidden outputs lie in [0, 1] (logistic units) is a candidate for the
    low precisions: their error stays within 0.5 standard errors of float64 there (measured on the paper network),
    while on ReLU networks a unit that fires in one sample of thousands moved up to 2.2 standard errors."""
    if not all(t.output_in_unit_interval for t in net.transfers[:-1]):
        return "float32"
    if float(x.abs().max()) > LOW_PRECISION_INPUTS:  # outside the range the low precisions were checked on
        return "float32"
    choice = host.choose("monte_carlo", **_shape_args(net, x, chunk))
    if choice.precision == "int8c" and not all(torch.isfinite(lin.weight).all() for lin in net.linears):
        return "float32"  # int8 cannot scale them (int8c refuses); float32 gives what such weights give
    return choice.precision


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
