"""Transfer functions O = f(S) and their derivatives, as pure functions.

The paper's logistic (Eq. 27) is sigma(S) = 1 / (1 + c exp(-lambda S)); the rectified linear unit of
Eq. 69 has threshold t and slope lambda. Each transfer is a frozen dataclass with ``__call__`` (f) and
``derivative`` (f'), so estimators can compute E(f'(S)) and backpercolation can gate with f'(S).

>>> logistic(c=1.0, lam=1.0)(torch.zeros(1))
tensor([0.5000])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["TRANSFERS", "TRANSFER_KINDS", "Transfer", "TransferKind", "linear", "logistic", "make_transfer", "relu",
           "softmax", "tanh"]


@dataclass(frozen=True)
class TransferKind:
    """One kind of transfer function: how to compute it and what the estimators may assume of it. Code asks
    these capabilities (``transfer.kind.linear``, ``.elementwise``...) instead of testing names.

    Attributes:
        name: Its name in ``TRANSFER_KINDS``.
        function: f(S).
        derivative: f'(S) elementwise (softmax: the Jacobian's diagonal).
        max_slope: sup_S f'(S) / lambda.
        unit_interval: Its outputs are probabilities in [0, 1].
        elementwise: False where each output depends on the whole layer (softmax).
        normalized: Its outputs sum to 1 over the layer (softmax).
        linear: f is linear: Section 3's moment recursions are exact.
        nwgm_exact: NWGM(O) = f(E(S)) exactly for any gates (Eqs. 34-39).
        log_output: log f(S) without log(0), for the geometric means; None where undefined.
        gaussian_closed_form: E and Var of f(S) for Gaussian S in closed form (Eq. 72).
        sigmoidal_approximation: Eq. 242's E(f(S)) for Gaussian S applies.
        glorot_gain: The Glorot-uniform gain that suits it (4 for the logistic).
    """

    name: str
    function: Callable[[Tensor, Transfer], Tensor]  # f(S)
    derivative: Callable[[Tensor, Transfer], Tensor]  # f'(S) elementwise (softmax: the Jacobian's diagonal)
    max_slope: float  # sup_S f'(S) / lambda
    unit_interval: bool  # outputs are probabilities in [0, 1]
    elementwise: bool = True  # False: each output depends on the whole layer (softmax)
    normalized: bool = False  # outputs sum to 1 over the layer: class probabilities (softmax)
    linear: bool = False  # f is linear: Section 3's moment recursions are exact
    nwgm_exact: bool = False  # NWGM(O) = f(E(S)) exactly for any gates (Eqs. 34-39)
    log_output: Callable[[Tensor, Transfer], Tensor] | None = None  # log f(S) without log(0): geometric means
    gaussian_closed_form: bool = False  # E and Var of f(S) for Gaussian S in closed form (Eq. 72)
    sigmoidal_approximation: bool = False  # Eq. 242's E(f(S)) for Gaussian S applies
    glorot_gain: float = 1.0  # the Glorot-uniform gain that suits it (4 for the logistic)


def _logistic(s: Tensor, f: Transfer) -> Tensor:  # 1 / (1 + c e^{-lam S}) = sigmoid(lam S - log c)
    return torch.sigmoid(f.lam * s - math.log(f.c)) if (f.c, f.lam) != (1.0, 1.0) else torch.sigmoid(s)


def _sigmoid_slope(s: Tensor, f: Transfer) -> Tensor:  # sigma' = lam sigma (1 - sigma)
    o = f(s)
    return f.lam * o * (1 - o)


TRANSFER_KINDS: dict[str, TransferKind] = {
    "logistic": TransferKind(
        "logistic", _logistic, _sigmoid_slope, 0.25, unit_interval=True, nwgm_exact=True,
        log_output=lambda s, f: -torch.nn.functional.softplus(-(f.lam * s - math.log(f.c))),
        sigmoidal_approximation=True, glorot_gain=4.0),
    "tanh": TransferKind(
        "tanh", lambda s, f: torch.tanh(f.lam * s) if f.lam != 1.0 else torch.tanh(s),
        lambda s, f: f.lam * (1 - torch.tanh(f.lam * s).square()), 1.0, unit_interval=False),
    "relu": TransferKind(
        "relu", lambda s, f: f.lam * torch.relu(s - f.t) if (f.lam, f.t) != (1.0, 0.0) else torch.relu(s),
        lambda s, f: f.lam * (s > f.t).to(s.dtype), 1.0, unit_interval=False, gaussian_closed_form=True),
    "linear": TransferKind(
        "linear", lambda s, f: f.lam * s if f.lam != 1.0 else s, lambda s, f: torch.full_like(s, f.lam), 1.0,
        unit_interval=False, linear=True),
    "softmax": TransferKind(
        "softmax", lambda s, f: torch.softmax(f.lam * s, dim=-1), _sigmoid_slope, 0.25, unit_interval=True,
        elementwise=False, normalized=True, log_output=lambda s, f: torch.log_softmax(f.lam * s, dim=-1)),
}
TRANSFERS = tuple(TRANSFER_KINDS)


@dataclass(frozen=True)
class Transfer:
    """A transfer function f of kind ``name`` (``TRANSFER_KINDS``) with parameters ``c`` (logistic offset),
    ``lam`` (slope/gain), ``t`` (threshold).

    Attributes:
        name: Its kind's name.
        c: The logistic's offset c (Eq. 27).
        lam: The slope (gain) lambda.
        t: The rectifier's threshold.
    """

    name: str
    c: float = 1.0
    lam: float = 1.0
    t: float = 0.0

    @property
    def kind(self) -> TransferKind:
        return TRANSFER_KINDS[self.name]

    def __call__(self, s: Tensor) -> Tensor:
        return self.kind.function(s, self)

    def derivative(self, s: Tensor) -> Tensor:
        """f'(S) elementwise (for softmax: the diagonal of the Jacobian, lam O_i (1 - O_i))."""
        return self.kind.derivative(s, self)

    def log(self, s: Tensor) -> Tensor:
        """log f(S), computed without log(0) (the kinds whose ``log_output`` is given)."""
        if self.kind.log_output is None:
            raise ValueError(f"{self.name} outputs are not positive: no logarithm (geometric means need logistic or "
                             "softmax units)")
        return self.kind.log_output(s, self)

    @property
    def max_derivative(self) -> float:
        """sup_S f'(S): lam/4 for the logistic, lam otherwise."""
        return self.lam * self.kind.max_slope

    @property
    def output_in_unit_interval(self) -> bool:
        return self.kind.unit_interval


def make_transfer(name: str, *, c: float = 1.0, lam: float = 1.0, t: float = 0.0) -> Transfer:
    """Build a transfer by name, with checked parameters.

    Args:
        name: A transfer kind: one of ``TRANSFER_KINDS``.
        c: The logistic's offset c (Eq. 27), > 0.
        lam: The slope (gain) lambda, > 0.
        t: The rectifier's threshold.

    Returns:
        Transfer: It, with its parameters checked.

    Raises:
        ValueError: An unknown name, or a parameter out of range.
    """
    if name not in TRANSFER_KINDS:
        raise ValueError(f"unknown transfer function name={name!r}; expected one of {tuple(TRANSFER_KINDS)}")
    if not (isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and c > 0):
        raise ValueError(f"logistic c must be a positive finite number, got {c!r}")
    if not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"slope lambda must be a positive finite number, got {lam!r}")
    return Transfer(name, float(c), float(lam), float(t))


def logistic(*, c: float = 1.0, lam: float = 1.0) -> Transfer:
    r"""The logistic transfer with offset c and slope lambda (Eq. 27).

    $$
    \sigma(S) = \frac{1}{1 + c\, e^{-\lambda S}} \tag{27}
    $$

    Args:
        c: The logistic's offset c (Eq. 27), > 0.
        lam: The slope (gain) lambda, > 0.

    Returns:
        Transfer: It, with its parameters checked.
    """
    return make_transfer("logistic", c=c, lam=lam)


def tanh(*, lam: float = 1.0) -> Transfer:
    r"""The tanh transfer with slope lambda.

    $$
    f(S) = \tanh(\lambda S)
    $$

    Args:
        lam: The slope (gain) lambda, > 0.

    Returns:
        Transfer: It, with its parameters checked.
    """
    return make_transfer("tanh", lam=lam)


def relu(*, lam: float = 1.0, t: float = 0.0) -> Transfer:
    r"""The rectified linear transfer with slope lambda and threshold t (Eq. 69).

    $$
    RL(S) = \begin{cases} 0 & S \le t \\ \lambda S - \lambda t & \text{otherwise} \end{cases} \tag{69}
    $$

    Args:
        lam: The slope (gain) lambda, > 0.
        t: The rectifier's threshold.

    Returns:
        Transfer: It, with its parameters checked.
    """
    return make_transfer("relu", lam=lam, t=t)


def linear(*, lam: float = 1.0) -> Transfer:
    r"""The linear transfer with slope lambda.

    $$
    f(S) = \lambda S
    $$

    Args:
        lam: The slope (gain) lambda, > 0.

    Returns:
        Transfer: It, with its parameters checked.
    """
    return make_transfer("linear", lam=lam)


def softmax(*, lam: float = 1.0) -> Transfer:
    r"""The softmax transfer with slope lambda (Eq. 43).

    $$
    O_i = \frac{e^{\lambda S_i}}{\sum_{j=1}^{k} e^{\lambda S_j}} \tag{43}
    $$

    Args:
        lam: The slope (gain) lambda, > 0.

    Returns:
        Transfer: It, with its parameters checked.
    """
    return make_transfer("softmax", lam=lam)


from ._contract import checked as _checked  # noqa: E402  (every public function checks its arguments first)

for _name in __all__:
    globals()[_name] = _checked(globals()[_name])
