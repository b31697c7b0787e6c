"""Transfer functions O = f(S) and their derivatives, as pure functions.

The paper's logistic (Eq. 27) is sigma(S) = 1 / (1 + c exp(-lambda S)); the rectified linear unit of
Eq. 69 has threshold t and slope lambda. Each transfer is a frozen dataclass with ``__call__`` (f) and
``derivative`` (f'), so estimators can compute E(f'(S)) and backpercolation can gate with f'(S).

>>> logistic(c=1.0, lam=1.0)(torch.zeros(1))
tensor([0.5000])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TRANSFERS", "Transfer", "linear", "logistic", "make_transfer", "relu", "softmax", "tanh"]


@dataclass(frozen=True)
class Transfer:
    """A transfer function f with parameters ``c`` (logistic offset), ``lam`` (slope/gain), ``t`` (threshold)."""

    name: str
    c: float = 1.0
    lam: float = 1.0
    t: float = 0.0

    def __call__(self, s: Tensor) -> Tensor:
        if self.name == "logistic":
            # 1 / (1 + c e^{-lam S}) = sigmoid(lam S - log c)
            return torch.sigmoid(self.lam * s - math.log(self.c)) if (self.c, self.lam) != (1.0, 1.0) \
                else torch.sigmoid(s)
        if self.name == "tanh":
            return torch.tanh(self.lam * s) if self.lam != 1.0 else torch.tanh(s)
        if self.name == "relu":
            return self.lam * torch.relu(s - self.t) if (self.lam, self.t) != (1.0, 0.0) else torch.relu(s)
        if self.name == "linear":
            return self.lam * s if self.lam != 1.0 else s
        if self.name == "softmax":
            return torch.softmax(self.lam * s, dim=-1)
        raise AssertionError(self.name)  # unreachable: names are checked in make_transfer

    def derivative(self, s: Tensor) -> Tensor:
        """f'(S) elementwise (for softmax: the diagonal of the Jacobian, lam O_i (1 - O_i))."""
        if self.name in ("logistic", "softmax"):
            o = self(s)
            return self.lam * o * (1 - o)  # sigma' = lam sigma (1 - sigma)
        if self.name == "tanh":
            return self.lam * (1 - torch.tanh(self.lam * s).square())
        if self.name == "relu":
            return self.lam * (s > self.t).to(s.dtype)
        return torch.full_like(s, self.lam)

    @property
    def max_derivative(self) -> float:
        """sup_S f'(S): lam/4 for the logistic, lam otherwise."""
        return self.lam / 4 if self.name in ("logistic", "softmax") else self.lam

    @property
    def output_in_unit_interval(self) -> bool:
        return self.name in ("logistic", "softmax")


TRANSFERS = ("logistic", "tanh", "relu", "linear", "softmax")


def make_transfer(name: str, *, c: float = 1.0, lam: float = 1.0, t: float = 0.0) -> Transfer:
    """Build a transfer by name, with checked parameters."""
    if name not in TRANSFERS:
        raise ValueError(f"unknown transfer function {name!r}; expected one of {TRANSFERS}")
    if not (isinstance(c, (int, float)) and c > 0):
        raise ValueError(f"logistic c must be a positive number, got {c!r}")
    if not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"slope lambda must be a positive finite number, got {lam!r}")
    return Transfer(name, float(c), float(lam), float(t))


def logistic(*, c: float = 1.0, lam: float = 1.0) -> Transfer:
    return make_transfer("logistic", c=c, lam=lam)


def tanh(*, lam: float = 1.0) -> Transfer:
    return make_transfer("tanh", lam=lam)


def relu(*, lam: float = 1.0, t: float = 0.0) -> Transfer:
    return make_transfer("relu", lam=lam, t=t)


def linear(*, lam: float = 1.0) -> Transfer:
    return make_transfer("linear", lam=lam)


def softmax(*, lam: float = 1.0) -> Transfer:
    return make_transfer("softmax", lam=lam)
