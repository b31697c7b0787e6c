"""The precisions of Monte Carlo's products on a ``DropoutMLP`` and the kernels behind them.

``PRECISIONS`` names them: float32; bfloat16 (one bfloat16 product per layer); bfloat16x3 (three, carrying the
low parts: about float32's accuracy); bfloat16c and int8c (one bfloat16 or int8 product per layer whose rounding
cannot bias the estimate: stochastic rounding and each chunk's mean product made exact, ``MeanCorrected`` and
``Int8Corrected``). ``auto_precision`` is what ``precision="auto"`` runs: ``droplab.host``'s fastest of float32,
bfloat16c and int8c at the network's shapes, never one slower than float32. The fused gate kernels (compiled by
``droplab._compile``) live here too, since each precision has its own. See "Monte Carlo options" in
``droplab.ensemble`` for what each was measured to give.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch
from torch import Tensor, nn

from .. import _compile, host
from ..gates import bernoulli_words, random_words
from ..net import DropoutMLP
from ..nn import ConnectionDropoutLinear, UnitGate

__all__ = ["LOW_PRECISION_INPUTS", "PRECISIONS", "Int8Corrected", "MeanCorrected", "auto_precision",
           "low_precision_weights"]

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
