"""Transfer functions as modules, and activations whose backward pass is gated (backpercolation)."""

from __future__ import annotations

from typing import Any

import torch  # noqa: F401  (used by the docstring examples)
from torch import Tensor, nn

from ..gates import bernoulli_noise, check_keep
from ..modes import Stochastic
from ..transfer import Transfer, make_transfer

__all__ = ["Activation", "BackpercolatedActivation"]


def _as_transfer(transfer: Transfer | str) -> Transfer:
    if isinstance(transfer, Transfer):
        return transfer
    if isinstance(transfer, str):
        return make_transfer(transfer)
    raise TypeError(f"transfer must be a droplab.transfer.Transfer or a name, got {type(transfer).__name__}")


class Activation(nn.Module):
    """O = f(S) for a ``droplab.transfer.Transfer`` (logistic with c and lambda, tanh, relu, linear, softmax).

    >>> Activation("logistic")(torch.zeros(2))
    tensor([0.5000, 0.5000])

    Args:
        transfer: A ``Transfer`` or a transfer kind's name.
    """

    def __init__(self, transfer: Transfer | str) -> None:
        super().__init__()
        self.transfer = _as_transfer(transfer)

    def forward(self, s: Tensor) -> Tensor:
        return self.transfer(s)

    def extra_repr(self) -> str:
        t = self.transfer
        return f"{t.name}, c={t.c:g}, lam={t.lam:g}, t={t.t:g}"


def check_backward(keep: Any, transfer: Transfer) -> str | float:
    """``keep`` if backpercolation can use it on a layer with ``transfer``: ``"derivative"`` (needs an elementwise
    transfer with f'(S) <= 1) or a probability in (0, 1]; else a ValueError that says which to use."""
    if isinstance(keep, str):
        if keep != "derivative":
            raise ValueError(f"keep must be 'derivative' or a probability in (0, 1], got {keep!r}")
        if not transfer.kind.elementwise:
            raise ValueError("backpercolation gates single units; softmax couples them. Use it on hidden layers")
        if transfer.max_derivative > 1.0:
            raise ValueError(f"keep='derivative' needs f'(S) <= 1 everywhere, but {transfer.name} with "
                             f"lambda={transfer.lam:g} reaches {transfer.max_derivative:g}; use "
                             "lambda <= 4 for the logistic (<= 1 otherwise) or a fixed keep probability")
        return keep
    return check_keep(keep)


class BackpercolatedActivation(Stochastic, nn.Module):
    """O = f(S) forward; backward, the error reaching S_j is kept with probability q_j and passed unattenuated.

    Section 10.2: backpropagation multiplies the error by f'(S_j) at every unit. If f'(S) <= 1 (the logistic
    with lambda <= 4, tanh, relu and linear with slope <= 1), f'(S_j) is a probability, and backpropagation is
    the ensemble average of a backward pass in which each unit's error passes whole with probability f'(S_j)
    and is dropped otherwise ("backpercolation"). ``keep="derivative"`` does exactly that, so the expected
    gradient is the ordinary gradient. ``keep=p`` (a float) keeps the error with a fixed probability p and
    passes it unattenuated, ignoring f' (the fixed-p variation the paper mentions); its expectation is
    p dE/dO, not the gradient.

    In ``expect`` and ``off`` modes the backward pass is the ordinary one. The noise (the backward mask) is
    drawn in the forward pass, so ``record``/``replay`` and generators apply as for every gate.
    Forward dropout is independent of this module: put a gate after it, or not.

    Args:
        transfer: A ``Transfer`` or a transfer kind's name, with f'(S) <= 1.
        keep: ``"derivative"`` (q_j = f'(S_j), exact backpercolation) or a fixed probability q.
    """

    def __init__(self, transfer: Transfer | str, *, keep: str | float = "derivative") -> None:
        super().__init__()
        self.transfer = _as_transfer(transfer)
        keep = check_backward(keep, self.transfer)
        self.keep = keep

    def forward(self, s: Tensor) -> Tensor:
        o = self.transfer(s)
        if self.gate_mode in ("off", "expect") or not s.requires_grad:
            return o
        prob = self.transfer.derivative(s.detach()) if self.keep == "derivative" else self.keep
        mask = self.draw_noise(lambda g: bernoulli_noise(s.shape, prob, generator=g, dtype=s.dtype,
                                                         device=s.device), s.shape)  # replay may give E(mask) = f'(S)
        # value f(S) exactly (S - S.detach() is 0); gradient dO/dS replaced by the mask
        return o.detach() + (s - s.detach()) * mask

    def extra_repr(self) -> str:
        return f"{self.transfer.name}, lam={self.transfer.lam:g}, keep={self.keep}"
