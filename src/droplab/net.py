"""The paper's layered network: O^0 = I, S^h = W^h g^{h-1}(O^{h-1}) + b^h, O^h = f_h(S^h).

A gate g^{h-1} sits on the outputs of every layer that feeds another (the input layer included), so a
network with sizes (n_0, ..., n_L) has L weight layers and L unit gates (``keep`` has L entries: input,
then each hidden layer). Connection dropout replaces weight layer h by a ``ConnectionDropoutLinear``
(``connection_keep`` has L entries). ``forward`` returns S^L (logits for a softmax output); ``trace``
returns every S^h and the outputs O^h the paper defines (before their gate).

>>> net = DropoutMLP((4, 8, 3), keep=(0.8, 0.5))
>>> t = net.trace(torch.zeros(2, 4))
>>> [tuple(o.shape) for o in t.O]
[(2, 4), (2, 8), (2, 3)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from . import _contract
from .config import ModelConfig
from .nn import Activation, BackpercolatedActivation, ConnectionDropoutLinear, UnitGate
from .transfer import make_transfer

__all__ = ["DropoutMLP", "Stage", "Trace"]

KeepSpec = float | Tensor | None


@dataclass(frozen=True)
class Trace:
    """Per layer h = 0..L: input sums S[h] (S[0] is None: the input layer has none) and outputs O[h].

    Attributes:
        S: Per layer, the input sums (B, n_h); S[0] is None.
        O: Per layer, the outputs (B, n_h); O[0] is the input.
    """

    S: list[Tensor | None]
    O: list[Tensor]


class Stage(NamedTuple):
    """One step of the network, from layer h - 1 to layer h: O^{h-1} -> gate -> linear -> S^h -> f -> O^h.
    Every estimator walks the network through ``DropoutMLP.stages()``.

    Attributes:
        h: The layer it computes.
        gate: The gate on layer h - 1's outputs.
        linear: The weights (a ``Linear`` or a ``ConnectionDropoutLinear``).
        activation: The transfer function's module.
        transfer: The ``Transfer``.
    """

    h: int
    gate: nn.Module
    linear: nn.Module
    activation: nn.Module
    transfer: Any


def _listed(value: Any) -> Any:
    """Sequences (other than strings and tensors) as tuples, the form ModelConfig holds."""
    if isinstance(value, (str, Tensor)) or value is None or not isinstance(value, Sequence):
        return value
    return tuple(value)


class DropoutMLP(nn.Module):
    """A fully connected network with a dropout gate per layer.

    Args:
        sizes: layer sizes (n_0 = inputs, ..., n_L = outputs); at least two.
        transfer: hidden transfer function name, or one per hidden layer: logistic, tanh, relu, linear.
        output: output transfer: softmax (classification), linear (regression), or logistic.
        c: the logistic's c (Eq. 27).
        lam: the logistic's lambda (Eq. 27); the slope of the other transfers.
        keep: keep rate per gated layer (input, hidden...): float, tensor of shape (n_h,), or one value for all.
        gate: gate kind, or one per gated layer: bernoulli, gaussian, dropin, spiking.
        connection_keep: None (plain weights), or per weight layer a keep rate (float or tensor shaped like
            the weight) for connection dropout; None entries leave a layer plain.
        connection_kind: gate kind on connections.
        mask_sharing: for connection dropout, ``example`` or ``batch`` (see ConnectionDropoutLinear).
        scaling: ``paper`` (train with delta O, predict with p O) or ``inverted``.
        backward: None, ``"derivative"`` or a float: backpercolation on every hidden layer (Section 10.2).
        init: ``"default"`` (PyTorch's uniform(+-1/sqrt(n_in))) or ``"glorot"`` (Glorot & Bengio 2010:
            uniform(+-g sqrt(6 / (n_in + n_out))), zero biases).
        init_gain: the Glorot gain g; None means 4 for logistic layers and 1 otherwise (Glorot & Bengio's
            logistic gain: unit variances are large from the first epoch). The paper's regime, small random
            weights with dropout variances near 0 at the start (Section 9.6), is gain 2 on every layer.
    """

    _droplab_only = True  # every gate is droplab's and the forward calls no torch dropout (modes need no hooks)

    def __init__(self, sizes: Sequence[int], *, transfer: str | Sequence[str] = "logistic",
                 output: str = "softmax", c: float = 1.0, lam: float = 1.0,
                 keep: KeepSpec | Sequence[KeepSpec] = 1.0, gate: str | Sequence[str] = "bernoulli",
                 connection_keep: KeepSpec | Sequence[KeepSpec] = None, connection_kind: str = "bernoulli",
                 mask_sharing: str = "example", scaling: str = "paper",
                 backward: str | float | None = None, init: str = "default",
                 init_gain: float | None = None) -> None:
        super().__init__()
        # every rule about these settings is ModelConfig's (checked there, once)
        cfg = ModelConfig(sizes=tuple(sizes), transfer=_listed(transfer), output=output, c=c, lam=lam,
                          keep=_listed(keep), gate=_listed(gate), connection_keep=_listed(connection_keep),
                          connection_kind=connection_kind, mask_sharing=mask_sharing, scaling=scaling,
                          backward=backward, init=init, init_gain=init_gain)
        self.model_config = cfg
        sizes = cfg.sizes
        n_weight = len(sizes) - 1
        transfers, keeps, kinds, ckeeps = cfg.transfers, cfg.keeps, cfg.gates, cfg.connection_keeps
        self.sizes, self.output_name = sizes, output
        self.transfers = [make_transfer(t, c=c, lam=lam) for t in transfers] + [make_transfer(output, c=c, lam=lam)]
        self.gates = nn.ModuleList()
        self.linears = nn.ModuleList()
        self.activations = nn.ModuleList()
        for h in range(n_weight):
            self.gates.append(self._make_gate(h, keeps[h], kinds[h], scaling))
            self.linears.append(self._make_linear(h, ckeeps[h], connection_kind, scaling, mask_sharing))
            hidden = h < n_weight - 1
            if hidden and backward is not None:
                self.activations.append(BackpercolatedActivation(self.transfers[h], keep=backward))
            else:
                self.activations.append(Activation(self.transfers[h]))
        if init == "glorot":
            self.glorot_()

    @torch.no_grad()
    def glorot_(self) -> None:
        """Glorot-uniform weights (gain ``init_gain``, else 4 for logistic layers and 1 otherwise), zero biases."""
        for transfer, linear in zip(self.transfers, self.linears, strict=True):
            gain = self.model_config.init_gain or transfer.kind.glorot_gain
            bound = gain * (6.0 / (linear.in_features + linear.out_features)) ** 0.5
            linear.weight.uniform_(-bound, bound)
            if linear.bias is not None:
                linear.bias.zero_()

    def _make_gate(self, h: int, keep: KeepSpec, kind: str, scaling: str) -> nn.Module:
        if not self.model_config.gated(h, keep, kind):
            return nn.Identity()
        return UnitGate(keep, kind=kind, scaling=scaling)

    def _make_linear(self, h: int, keep: KeepSpec, kind: str, scaling: str, sharing: str) -> nn.Module:
        n_in, n_out = self.sizes[h], self.sizes[h + 1]
        if keep is None:
            return nn.Linear(n_in, n_out)
        return ConnectionDropoutLinear(n_in, n_out, keep, kind=kind, scaling=scaling, mask_sharing=sharing)

    # ------------------------------------------------------------------------------------------------
    def trace(self, x: Tensor) -> Trace:
        """Run the network and keep every layer's S and O (O before its gate). x: (B, n_0)."""
        self._check_input(x)
        S: list[Tensor | None] = [None]
        O: list[Tensor] = [x]
        for stage in self.stages():
            s = stage.linear(stage.gate(O[-1]))
            S.append(s)
            O.append(stage.activation(s))
        return Trace(S, O)

    def stages(self) -> list[Stage]:
        """The steps layer h - 1 -> h, for h = 1..L."""
        return [Stage(h, gate, linear, act, transfer) for h, (gate, linear, act, transfer) in
                enumerate(zip(self.gates, self.linears, self.activations, self.transfers, strict=True), start=1)]

    def forward(self, x: Tensor) -> Tensor:
        """S^L, the output layer's input sum: logits for a softmax output. x: (B, n_0) -> (B, n_L)."""
        self._check_input(x)
        o = x
        stages = self.stages()
        for stage in stages[:-1]:
            o = stage.activation(stage.linear(stage.gate(o)))
        return stages[-1].linear(stages[-1].gate(o))

    def output(self, x: Tensor) -> Tensor:
        """O^L = f_L(S^L): class probabilities for a softmax output."""
        return self.transfers[-1](self(x))

    def _check_input(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a tensor of shape (B, {self.sizes[0]}), got {type(x).__name__}")
        if x.dim() != 2 or x.shape[1] != self.sizes[0]:
            raise ValueError(f"expected input of shape (B, {self.sizes[0]}), got {tuple(x.shape)}; "
                             "flatten images first, e.g. x.reshape(len(x), -1)")

    # ------------------------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """A JSON-serializable description (``model_config.as_dict()``, per-layer entries as lists); tensor keep
        rates are stored as state (buffers), not here. ``init_gain`` appears only when set (configs saved before
        it still compare equal)."""
        cfg = self.model_config
        values = cfg.as_dict()
        for key, expanded in (("keep", cfg.keeps), ("connection_keep", cfg.connection_keeps), ("gate", cfg.gates),
                              ("transfer", cfg.transfers)):
            values[key] = ["tensor" if isinstance(v, Tensor) else v for v in expanded]
        if values["init_gain"] is None:
            del values["init_gain"]
        else:
            values["init_gain"] = float(values["init_gain"])
        return values

    @classmethod
    def build(cls, config: ModelConfig) -> DropoutMLP:
        """The network a ``ModelConfig`` describes."""
        return cls(**{name: getattr(config, name) for name in config.__dataclass_fields__})

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DropoutMLP:
        """Rebuild from ``config()``; tensor rates get placeholders that ``load_state_dict`` overwrites."""
        return cls.build(ModelConfig.from_network_dict(config))

    def max_norm_(self, max_norm: float) -> None:
        """Constrain each unit's incoming weight vector to L2 norm at most ``max_norm`` (in place)."""
        with torch.no_grad():
            for linear in self.linears:
                w = linear.weight
                norms = torch.linalg.vector_norm(w, dim=1)
                over = norms > max_norm
                # as torch.renorm (rows above the norm scaled to it), but one read pass and, on a CPU, no write
                # at all when no row is above it (the usual case): renorm plus the copy back cost 14% of a
                # bfloat16 training step
                if w.device.type != "cpu" or bool(over.any()):
                    w.mul_(torch.where(over, max_norm / (norms + 1e-7), torch.ones_like(norms))[:, None])

    def weights(self) -> list[Tensor]:
        return [linear.weight for linear in self.linears]


_contract.register_class("DropoutMLP", DropoutMLP)  # annotations that name it are checked against it
