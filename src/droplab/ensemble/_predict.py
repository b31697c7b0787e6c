"""Predictions and uncertainty from any estimator, and the paper's approximations built from W alone."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .. import metrics, modes
from ..net import DropoutMLP
from ..nn import UnitGate
from ..statistics import EnsembleStatistics, Pair
from ._sampling import _check_pairs

__all__ = ["mutual_information", "pair_approximations", "predict", "predictive_entropy", "variance_approximations"]


def predict(stats: EnsembleStatistics, *, rule: str = "mean") -> Tensor:
    """Class probabilities (B, k): ``mean`` = E(O^L) (the ensemble average), ``nwgm`` = the normalized
    geometric mean (Eq. 47, what weight scaling computes).

    Args:
        stats: Any estimator's statistics of a softmax ``DropoutMLP``.
        rule: ``"mean"`` or ``"nwgm"``.

    Returns:
        Tensor: (B, k) class probabilities.
    """
    if rule not in ("mean", "nwgm"):
        raise ValueError(f"rule must be 'mean' or 'nwgm', got {rule!r}")
    out = stats.output
    if rule == "nwgm":
        if out.NWGM is None:
            raise ValueError(f"the {stats.estimator} estimator gives no NWGM for the output layer; use rule='mean'")
        return out.NWGM
    return out.E


def predictive_entropy(probabilities: Tensor) -> Tensor:
    """H(p) = -sum_k p_k log p_k per input (nats); 0 log 0 = 0 (``metrics.entropy``).

    Args:
        probabilities: Class probabilities, classes along the last dimension.

    Returns:
        Tensor: The entropy of each row, in nats.
    """
    return metrics.entropy(probabilities.clamp_min(0))


mutual_information = metrics.mutual_information  # one function: H(E(p)) - E(H(p)), from statistics or probabilities


def variance_approximations(weight_scaled: EnsembleStatistics) -> list[dict[str, Tensor]]:
    """Per layer, the two estimates of Var(O) from W alone: W(1 - W) (Eq. 117) and 0 (Eq. 118).

    Args:
        weight_scaled: The statistics of ``weight_scaled``.

    Returns:
        list: Per layer, {``"W(1-W)"``, ``"0"``} -> (B, n_h) tensors.
    """
    return [{"W(1-W)": layer.E * (1 - layer.E), "0": torch.zeros_like(layer.E)} for layer in weight_scaled.layers]


def _gate_mean_factor(net: DropoutMLP, h: int, o: Tensor) -> Tensor:
    """E(gated O^h_j) / O^h_j per unit: p_j under paper scaling, 1 under inverted scaling."""
    gate = net.gates[h]
    if not isinstance(gate, UnitGate):
        return torch.ones(net.sizes[h], dtype=o.dtype, device=o.device)
    return gate.kind.mean(torch.ones(net.sizes[h], dtype=o.dtype, device=o.device), gate.keep, gate.scaling)


@torch.no_grad()
def pair_approximations(net: DropoutMLP, x: Tensor, pairs: Sequence[Pair]) -> dict[str, dict[Pair, Tensor]]:
    """Estimates of E(O^h_i O^l_j) from the deterministic network, each (B,) per pair:

    * ``"W W"``: W^h_i W^l_j (Eq. 119, independence);
    * ``"0"``: the trivial estimate;
    * for connected pairs (|h - l| = 1, unit j feeding unit i or the reverse), ``"W_ij W_j"`` with W_ij the
      output of the upper unit when the lower unit is removed, by forward propagation (Eqs. 121 and 124),
      and ``"taylor"``: (W_i - f'(U_i) w_ij p_j W_j) W_j (Eq. 122).

    Args:
        net: A ``DropoutMLP``.
        x: Inputs, shape (B, n_0).
        pairs: (h, i, l, j) pairs.

    Returns:
        dict: Estimate name -> {pair -> (B,) tensor}.
    """
    pairs = _check_pairs(net, pairs)
    with modes.expect(net):
        t = net.trace(x)
    out: dict[str, dict[Pair, Tensor]] = {"W W": {}, "0": {}, "W_ij W_j": {}, "taylor": {}}
    for pair in pairs:
        h, i, l, j = pair
        out["W W"][pair] = t.O[h][:, i] * t.O[l][:, j]
        out["0"][pair] = torch.zeros_like(t.O[h][:, i])
        if abs(h - l) != 1:
            continue
        (up, u), (low, d) = ((h, i), (l, j)) if h > l else ((l, j), (h, i))
        transfer = net.transfers[up - 1]
        w = net.linears[up - 1].weight[u, d]
        contribution = w * _gate_mean_factor(net, low, t.O[low])[d] * t.O[low][:, d]  # w_ij p_j W_j
        s_removed = t.S[up].clone()
        s_removed[:, u] -= contribution  # Eq. 121: propagate with unit j removed
        if not transfer.kind.elementwise:  # softmax: O_i depends on the whole vector; dO_i/dS_i = lam O_i (1 - O_i)
            w_removed = transfer(s_removed)[:, u]
            slope = transfer.lam * t.O[up][:, u] * (1 - t.O[up][:, u])
        else:
            w_removed = transfer(s_removed[:, u])
            slope = transfer.derivative(t.S[up][:, u])
        taylor = t.O[up][:, u] - slope * contribution  # Eq. 122
        out["W_ij W_j"][pair] = w_removed * t.O[low][:, d]
        out["taylor"][pair] = taylor * t.O[low][:, d]
    return out
