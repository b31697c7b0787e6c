"""The statistics every estimator returns, and the streaming accumulator that computes them.

For each layer h and unit i, over the dropout ensemble and for each input b (shapes (B, n_h)):

    E = E(O), Var = Var(O), NWGM, WGM = G (only where O lies in [0, 1]), E_S = E(S), Var_S = Var(S),
    E_derivative = E(f'(S)), se_E = the standard error of E (Monte Carlo only).

Each chunk of members adds, per unit, sum_k w_k (x_k - c) and sum_k w_k (x_k - c)^2 to float64 totals,
with c a fixed shift close to the mean (the first chunk's mean) so that M2 = sum_k w_k (x_k - mean)^2
loses little to cancellation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .. import _compile, metrics, modes
from ..net import DropoutMLP, Trace
from ..statistics import STATISTICS, EnsembleStatistics, LayerStatistics, Pair

__all__ = ["STATISTICS", "Accumulator", "EnsembleStatistics", "LayerStatistics", "Pair"]
PAIR_BLOCK = 16 * 2**20  # bytes of pair products formed at once


def _unit_interval(net: DropoutMLP, h: int) -> bool:
    return h > 0 and net.transfers[h - 1].output_in_unit_interval


class _ShiftedMoments:
    """Weighted sums A = sum w (x - c) and Q = sum w (x - c)^2 of one quantity of one layer, in float64.

    c is a fixed shift close to the mean: the weight-scaled value (W or U) for the first chunk, then that
    chunk's mean (the sums are re-centred once, exactly). Then M2 = Q - A^2 / sum w loses little to
    cancellation, although each chunk's sums are float32 matrix-vector products w @ d (one read pass,
    vectorized across units: torch.var_mean over the member dimension ran 5-20x slower on CPU).
    The mean alone needs no shift: A = sum w x, one pass.
    """

    def __init__(self, second: bool) -> None:
        self.second = second
        self.a: Tensor | None = None
        self.q: Tensor | None = None
        self.shift: Tensor | None = None

    def add(self, x: Tensor, reference: Tensor, wsum: Any, chunk_weight: float) -> None:
        """One chunk x (k, B, n); ``wsum(t)`` is sum_k w_k t_k."""
        if not self.second:
            self.update(wsum(x), None, None, chunk_weight)
            return
        shift = self.current_shift(reference)
        d = x - shift
        a = wsum(d)
        self.update(a, wsum(d.square_()), shift, chunk_weight)

    def current_shift(self, reference: Tensor) -> Tensor:
        """The shift c the next chunk's sums are taken about: the reference (W or U) before the first chunk."""
        return reference if self.shift is None else self.shift

    def update(self, a: Tensor, q: Tensor | None, shift: Tensor | None, chunk_weight: float) -> None:
        """Add one chunk's sums A = sum w (x - c) and Q = sum w (x - c)^2, taken about ``shift`` = c (for a
        mean-only accumulator: A = sum w x, and Q and c None)."""
        a = a.to(torch.float64)
        if not self.second:
            self.a = a if self.a is None else self.a + a
            return
        assert q is not None and shift is not None
        q = q.to(torch.float64)
        first = self.a is None
        if not first or chunk_weight == 0:  # (a first chunk of weight 0 keeps the shift W)
            self.a, self.q, self.shift = (a, q, shift) if first else (self.a + a, self.q + q, shift)
            return
        # first chunk: re-centre the sums on its own mean c' (held in the values' dtype), exactly, in float64
        new_shift = (shift.to(torch.float64) + a / chunk_weight).to(shift.dtype)
        delta = new_shift.to(torch.float64) - shift.to(torch.float64)
        self.a, self.q, self.shift = a - chunk_weight * delta, q - 2 * delta * a + chunk_weight * delta.square(), \
            new_shift

    def mean_m2(self, total: float) -> tuple[Tensor, Tensor | None]:
        """The weighted mean and M2 = sum w (x - mean)^2 (None for a mean-only accumulator)."""
        assert self.a is not None
        if self.q is None or self.shift is None:
            return self.a / total, None
        offset = self.a / total
        return self.shift.to(torch.float64) + offset, self.q - self.a * offset


def _logistic_layer_sums(s: Tensor, o: Tensor, w: Tensor, shift_o: Tensor, shift_s: Tensor, lam: float,
                         log_c: float, var_o: bool, var_s: bool, deriv: bool, logo: bool) -> list[Tensor]:
    """One chunk's weighted sums over members for a logistic layer, s and o (k, B, n), w (k,): sum w (O - c),
    [sum w (O - c)^2], [sum w (S - c_S), sum w (S - c_S)^2], [sum w f'(S)], [sum w log O], in that order.
    Compiled (``_compile.run``), it reads S and O once and writes only the (B, n) sums."""
    wk = w[:, None, None]
    d = o - shift_o
    out = [(wk * d).sum(0)]
    if var_o:
        out.append((wk * d * d).sum(0))
    if var_s:
        ds = s - shift_s
        out += [(wk * ds).sum(0), (wk * ds * ds).sum(0)]
    if deriv:
        out.append((wk * (lam * o * (1 - o))).sum(0))  # sigma'(S) = lam sigma (1 - sigma)
    if logo:
        out.append((wk * -torch.nn.functional.softplus(log_c - lam * s)).sum(0))  # log O without log(0)
    return out


class _PairProducts:
    """Weighted sums of O^h_i O^l_j for the requested pairs: each chunk's layers leave the pairs' columns, and
    ``end`` multiplies them in blocks of bounded memory."""

    def __init__(self, pairs: Sequence[Pair], batch: int, device: torch.device) -> None:
        self.pairs = list(pairs)
        self.sum = torch.zeros(batch, len(self.pairs), dtype=torch.float64, device=device)
        needed: dict[int, set[int]] = {}
        for h, i, l, j in self.pairs:
            needed.setdefault(h, set()).add(i)
            needed.setdefault(l, set()).add(j)
        # the pairs' units, gathered per layer into one column block; each pair is two indices into the blocks
        self.needed = {h: torch.tensor(sorted(units), device=device) for h, units in sorted(needed.items())}
        position, start = {}, 0
        for h, units in self.needed.items():
            position.update({(h, int(u)): start + n for n, u in enumerate(units.tolist())})
            start += len(units)
        self.left = torch.tensor([position[(h, i)] for h, i, _, _ in self.pairs], dtype=torch.long, device=device)
        self.right = torch.tensor([position[(l, j)] for _, _, l, j in self.pairs], dtype=torch.long, device=device)
        self.columns: dict[int, Tensor] = {}

    def layer(self, h: int, o3: Tensor) -> None:
        if h in self.needed:
            self.columns[h] = o3.index_select(2, self.needed[h])  # (k, B, units the pairs need)

    def end(self, weights: Tensor) -> None:
        """sum_k w_k O_a[k] O_b[k] for every pair (a, b), per input: the columns laid out (input, unit, member) so
        each pair is a dot product of two contiguous rows, gathered in blocks of bounded memory (5x faster than
        gathering member-major columns, measured on the standard preset's 100,000 pairs)."""
        if self.pairs:
            cols = torch.cat([self.columns[h] for h in self.needed], -1)  # (k, B, columns), in position order
            plain = cols.permute(1, 2, 0).contiguous()  # (B, columns, k)
            weighted = (cols * weights.view(-1, 1, 1)).permute(1, 2, 0).contiguous()
            k, wide = cols.shape[0], torch.promote_types(cols.dtype, torch.float32)  # bfloat16 sums in float32
            block = max(1, PAIR_BLOCK // max(1, k * cols.element_size()))
            for b in range(plain.shape[0]):
                for start in range(0, len(self.pairs), block):
                    left, right = self.left[start:start + block], self.right[start:start + block]
                    dots = (weighted[b].index_select(0, left) * plain[b].index_select(0, right)).sum(1, dtype=wide)
                    self.sum[b, start:start + block] += dots.to(torch.float64)
        self.columns = {}

    def finalize(self, total: float, dtype: torch.dtype) -> dict[Pair, Tensor]:
        return {p: (self.sum[:, n] / total).to(dtype) for n, p in enumerate(self.pairs)}


class _Histograms:
    """Weighted histograms of O over [0, 1] for chosen (layer, unit)s, per input."""

    def __init__(self, units: Sequence[tuple[int, int]], bins: int, batch: int, device: torch.device) -> None:
        self.edges = torch.linspace(0, 1, bins + 1, device=device)
        self.hists = {u: torch.zeros(batch, bins, dtype=torch.float64, device=device) for u in units}

    def layer(self, h: int, o3: Tensor, w: Tensor) -> None:
        k, batch = o3.shape[:2]
        for (h_hist, i), hist in self.hists.items():
            if h_hist == h:
                idx = torch.bucketize(o3[:, :, i].clamp(0, 1), self.edges[1:-1])  # (k, B)
                hist.scatter_add_(1, idx.T.contiguous(), w[:, None].expand(k, batch).T.to(torch.float64)
                                  .contiguous())

    def finalize(self, total: float, dtype: torch.dtype) -> dict[tuple[int, int], Tensor]:
        return {u: (hist / total).to(dtype) for u, hist in self.hists.items()}


class Accumulator:
    """Streams chunks of K_c ensemble members (each with a weight) into weighted sums, then finalizes.

    Per chunk: ``begin(weights)``, ``layer(h, S, O)`` for each layer h (tensors (K_c * B, n_h), member-major:
    row k * B + b), ``end()``; or ``add(trace, weights)`` for a whole trace. ``weights`` (K_c,) are the
    members' probabilities (1/K for Monte Carlo). Memory: O(B * sum n_h).
    """

    def __init__(self, net: DropoutMLP, reference: Trace, *, pairs: Sequence[Pair] = (),
                 histogram_units: Sequence[tuple[int, int]] = (), bins: int = 50,
                 statistics: Sequence[str] = STATISTICS, fused: bool = False) -> None:
        unknown = sorted(set(statistics) - set(STATISTICS))
        if unknown:
            raise ValueError(f"unknown statistics {unknown}; expected some of {STATISTICS}")
        self.want = set(statistics) | {"E"}
        self.fused = bool(fused)
        self.net, self.ref = net, reference
        self.batch = reference.O[0].shape[0]
        device = reference.O[0].device
        self.total = 0.0
        self.sums: dict[str, list[Tensor | None]] = {}  # plain weighted sums (log O, f'(S)) per layer
        self.moments: dict[tuple[str, int], _ShiftedMoments] = {}  # ("o" or "s", layer)
        self.entropy_sum = torch.zeros(self.batch, dtype=torch.float64, device=device)
        self.pair_products = _PairProducts(pairs, self.batch, device)
        self.histograms = _Histograms(histogram_units, bins, self.batch, device)

    @property
    def pairs(self) -> list[Pair]:
        return self.pair_products.pairs

    def _acc(self, key: str, h: int, value: Tensor) -> None:
        slots = self.sums.setdefault(key, [None] * len(self.ref.O))
        value = value.to(torch.float64)
        slots[h] = value if slots[h] is None else slots[h] + value

    def _moments(self, key: str, h: int, x: Tensor, ref: Tensor, second: bool) -> None:
        acc = self.moments.setdefault((key, h), _ShiftedMoments(second))
        acc.add(x, ref, self._wsum, self.chunk_weight)

    def _fused_logistic(self, h: int, s3: Tensor, o3: Tensor) -> None:
        """Layer h's per-member statistics in one compiled pass (``_logistic_layer_sums``)."""
        transfer = self.net.transfers[h - 1]
        var_o, var_s = "Var" in self.want, "Var_S" in self.want
        deriv, logo = "E_derivative" in self.want, "WGM" in self.want
        mo = self.moments.setdefault(("o", h), _ShiftedMoments(var_o))
        ms = self.moments.setdefault(("s", h), _ShiftedMoments(True)) if var_s else None
        shift_o = mo.current_shift(self.ref.O[h]) if var_o else torch.zeros_like(self.ref.O[h])
        shift_s = ms.current_shift(self.ref.S[h]) if ms is not None else shift_o
        # compiled once per process (dynamic shapes: every chunk, batch and layer size reuses it)
        sums = list(_compile.run("mc_logistic_sums", _logistic_layer_sums, True, s3, o3, self.w, shift_o, shift_s,
                                 float(transfer.lam), math.log(transfer.c), var_o, var_s, deriv, logo))
        mo.update(sums.pop(0), sums.pop(0) if var_o else None, shift_o if var_o else None, self.chunk_weight)
        if ms is not None:
            ms.update(sums.pop(0), sums.pop(0), shift_s, self.chunk_weight)
        if deriv:
            self._acc("deriv", h, sums.pop(0))
        if logo:
            self._acc("logo", h, sums.pop(0))

    def _mean_m2(self, key: str, h: int) -> tuple[Tensor, Tensor | None]:
        return self.moments[(key, h)].mean_m2(self.total)

    def add(self, trace: Trace, weights: Tensor) -> None:
        """One chunk given as a whole trace: ``begin``, ``layer`` for every layer, ``end``."""
        self.begin(weights)
        for h in range(len(trace.O)):
            self.layer(h, trace.S[h], trace.O[h])
        self.end()

    def begin(self, weights: Tensor) -> None:
        """Start a chunk of ``len(weights)`` members; ``layer`` then takes its layers in any order."""
        self.w = weights.to(self.ref.O[0].dtype)
        self.chunk_weight = float(weights.sum(dtype=torch.float64))
        self.total += self.chunk_weight

    def _wsum(self, t: Tensor) -> Tensor:  # sum_k w_k t_k: one read pass (a matrix-vector product)
        return (self.w @ t.reshape(t.shape[0], -1)).view(t.shape[1:])

    def layer(self, h: int, s: Tensor | None, o: Tensor) -> None:
        """Layer h of the current chunk: S and O are (K_c * B, n_h), member-major. Called as soon as the layer
        is computed, while it is still in cache; nothing of it is kept but the pair columns."""
        k, w = self.w.shape[0], self.w
        o3 = o.view(k, self.batch, -1)
        self.pair_products.layer(h, o3)
        self.histograms.layer(h, o3, w)
        if h == 0:
            return
        s3 = s.view(k, self.batch, -1)
        transfer = self.net.transfers[h - 1]
        if self.fused and transfer.name == "logistic":
            self._fused_logistic(h, s3, o3)
            return
        self._moments("o", h, o3, self.ref.O[h], "Var" in self.want)
        if "Var_S" in self.want:  # E(S) itself comes from E(O^{h-1}) in finalize, at no cost per member
            self._moments("s", h, s3, self.ref.S[h], True)
        if "E_derivative" in self.want and transfer.kind.elementwise:
            self._acc("deriv", h, self._wsum(transfer.derivative(s3)))
        if transfer.kind.log_output is not None and transfer.kind.elementwise and "WGM" in self.want:
            # the weighted geometric mean from log O, computed without log(0) (logistic: -softplus(-(lam S - log c)))
            self._acc("logo", h, self._wsum(transfer.log(s3)))
        if transfer.kind.normalized and self.want & {"NWGM", "WGM"}:
            log_o = transfer.log(s3)
            self._acc("logo", h, self._wsum(log_o))
            self.entropy_sum += self._wsum(metrics.entropy(o3, log_p=log_o)).to(torch.float64)  # E(H(O))

    def end(self) -> None:
        """Finish the chunk: the pair products, from the columns its layers left."""
        self.pair_products.end(self.w)

    @torch.no_grad()
    def _conditional_mean_s(self, h: int, e_prev: Tensor) -> Tensor:
        """E(S^h) as the average over members of E(S^h | O^{h-1}) = (gate mean, then linear)(O^{h-1}).

        Every gate's mean is affine in O (p O, p O + 1 - p for dropin, r O for spiking) and its noise is drawn
        afresh, so E(S^h) = linear(gate mean(E(O^{h-1}))) exactly: for exact enumeration this is E(S^h), for
        Monte Carlo an unbiased estimate with less variance than the sample mean of S (Rao-Blackwell), and it
        costs one small product instead of a pass over every member's S. (Var(S) needs S itself; it is the
        members' own spread about their own mean.)
        """
        for module in (self.net.gates[h - 1], self.net.linears[h - 1]):
            kind = getattr(module, "kind", None)
            if kind is not None and not kind.affine_mean:
                raise ValueError(f"{kind.name} gates have a mean that is not affine in O, so E(S) cannot be taken "
                                 "from E(O); this estimator does not support them")
        dtype = self.ref.S[h].dtype
        with modes.expect(self.net):
            s = self.net.linears[h - 1](self.net.gates[h - 1](e_prev.to(dtype)))
        return s.to(torch.float64)

    def finalize(self, estimator: str, *, samples: int | None, standard_errors: bool,
                 dtype: torch.dtype) -> EnsembleStatistics:
        t = self.total
        layers = [LayerStatistics(E=self.ref.O[0], Var=torch.zeros_like(self.ref.O[0]))]
        e_prev = self.ref.O[0].to(torch.float64)
        for h in range(1, len(self.ref.O)):
            got = {key: (slots[h] / t if slots[h] is not None else None) for key, slots in self.sums.items()}
            e, m2 = self._mean_m2("o", h)
            var = (m2 / t).clamp_min(0) if m2 is not None else None
            transfer = self.net.transfers[h - 1]
            e_s = var_s = None
            if "Var_S" in self.want:
                var_s = (self._mean_m2("s", h)[1] / t).clamp_min(0)
            if "E_S" in self.want or ("NWGM" in self.want and transfer.kind.nwgm_exact):
                e_s = self._conditional_mean_s(h, e_prev)
            e_prev = e
            nwgm = wgm = None
            mean_log = got.get("logo")
            if mean_log is not None and "WGM" in self.want:
                wgm = torch.exp(mean_log)
            if "NWGM" in self.want and transfer.kind.nwgm_exact:  # NWGM = sigma(E(S)) exactly (Eq. 39)
                nwgm = transfer(e_s)
            elif "NWGM" in self.want and mean_log is not None:  # softmax: G_i / sum_l G_l (Eqs. 44-47)
                nwgm = torch.softmax(mean_log, dim=-1)
            deriv = got.get("deriv")
            if "E_S" not in self.want:
                e_s = None
            se = (var / samples).sqrt() if standard_errors and samples and var is not None else None
            cast = (lambda x: None if x is None else x.to(dtype))  # noqa: E731
            layers.append(LayerStatistics(E=cast(e), Var=cast(var), NWGM=cast(nwgm), WGM=cast(wgm), E_S=cast(e_s),
                                          Var_S=cast(var_s), E_derivative=cast(deriv), se_E=cast(se)))
        entropy = ((self.entropy_sum / t).to(dtype) if self.net.transfers[-1].kind.normalized and
                   self.want & {"NWGM", "WGM"} else None)
        hists = self.histograms.finalize(t, dtype)
        return EnsembleStatistics(estimator, layers, self.pair_products.finalize(t, dtype), entropy, hists,
                                  self.histograms.edges if hists else None, samples)
