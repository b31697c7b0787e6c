"""Gates on units: O_j -> gate(O_j), one draw per example and unit (elementwise, like torch.nn.Dropout)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..gates import Keep, check_keep, gate_kind
from ..modes import Stochastic

__all__ = ["UNIT_MASK_SHARING", "Dropin", "Dropout", "GaussianDropout", "SpikingUnits", "UnitGate"]

UNIT_MASK_SHARING = ("unit", "channel")


class UnitGate(Stochastic, nn.Module):
    """A gate of any registered kind on every unit of its input.

    Args:
        keep: keep probability p (for ``spiking``, the spike size r): a float, or a tensor that broadcasts
            against one example (``x.shape[1:]``), e.g. shape ``(n,)`` for n units or ``(C, 1, 1)`` for
            one rate per convolutional channel. A tensor is stored as the buffer ``keep``.
        kind: one of ``droplab.gates.GATES``.
        scaling: ``"inverted"`` (train with delta O / p, predict with O: torch.nn.Dropout's convention)
            or ``"paper"`` (train with delta O, predict with p O).
        mask_sharing: ``"unit"`` (default) draws one value per example and unit; ``"channel"`` one per example
            and channel, shared over the positions of a feature map, as ``torch.nn.Dropout1d/2d/3d`` do (input
            ``(B, C, *)``; a per-channel ``keep`` has shape ``(C, 1, ...)``).

    Shapes: input ``(B, *)``, output the same shape and dtype.

    >>> gate = UnitGate(0.5, kind="bernoulli", scaling="paper").eval()
    >>> gate(torch.ones(2, 3))          # expect mode in eval: p O
    tensor([[0.5000, 0.5000, 0.5000],
            [0.5000, 0.5000, 0.5000]])
    """

    keep: Keep

    def __init__(self, keep: Keep = 0.5, *, kind: str = "bernoulli", scaling: str = "inverted",
                 mask_sharing: str = "unit") -> None:
        super().__init__()
        self.kind = gate_kind(kind)
        if mask_sharing not in UNIT_MASK_SHARING:
            raise ValueError(f"mask_sharing must be one of {UNIT_MASK_SHARING}, got {mask_sharing!r}")
        if mask_sharing == "channel" and self.kind.needs_probability_input:
            raise ValueError(f"{kind} gates draw per unit from the unit's own output; use mask_sharing='unit'")
        self.mask_sharing = mask_sharing
        self.scaling = self.kind.check_scaling(scaling)
        keep = check_keep(keep, where="spike size r" if kind == "spiking" else "keep")
        if isinstance(keep, Tensor):
            self.register_buffer("keep", keep.detach().clone())
        else:
            self.keep = keep

    def _check_shape(self, o: Tensor) -> None:
        if isinstance(self.keep, Tensor) and o.dim() >= 1:
            try:
                torch.broadcast_shapes(self.keep.shape, o.shape[1:])
            except RuntimeError:
                raise ValueError(f"per-unit keep of shape {tuple(self.keep.shape)} does not broadcast against "
                                 f"one example of shape {tuple(o.shape[1:])}; give one rate per unit") from None

    def forward(self, o: Tensor) -> Tensor:
        mode = self.gate_mode
        if mode == "off" or (isinstance(self.keep, float) and self.keep == 1.0 and self.kind.name != "spiking"):
            return o
        self._check_shape(o)
        if mode == "expect":
            return self.kind.mean(o, self.keep, self.scaling)
        if self.mask_sharing == "channel":
            if o.dim() < 2:
                raise ValueError(f"channel-shared masks need an input (B, C, ...), got shape {tuple(o.shape)}")
            shape = torch.Size((*o.shape[:2], *(1,) * (o.dim() - 2)))
            keep = self.keep
            if isinstance(keep, Tensor):
                keep = keep.expand(o.shape[1:])[(slice(None), *(slice(0, 1),) * (o.dim() - 2))]
            noise = self.draw_noise(lambda g: self.kind.draw(o.new_empty(shape), keep, g), shape,
                                    binary=self.kind.binary_noise)
        else:
            noise = self.draw_noise(lambda g: self.kind.draw(o, self.keep, g), o.shape, binary=self.kind.binary_noise)
        return self.kind.apply(o, noise, self.keep, self.scaling)

    def extra_repr(self) -> str:
        keep = f"tensor{tuple(self.keep.shape)}" if isinstance(self.keep, Tensor) else f"{self.keep:g}"
        sharing = ", mask_sharing=channel" if self.mask_sharing == "channel" else ""
        return f"kind={self.kind.name}, keep={keep}, scaling={self.scaling}{sharing}"


def _keep_argument(cls: str, args: tuple, keep: Keep | None, p: Keep | None) -> Keep:
    """The keep probability of a dropout-like gate from ``keep=`` or torch's ``p=`` (the drop probability); a
    bare positional number is refused, since a torch user reads ``Dropout(0.8)`` as dropping 80%."""
    if len(args) > 1:
        raise TypeError(f"{cls} takes one positional argument (a tensor of keep rates), got {len(args)}")
    if args:
        (value,) = args
        if not isinstance(value, Tensor):
            raise TypeError(f"{cls}({value!r}): is {value!r} the drop probability (torch's p) or the keep "
                            f"probability? Pass {cls}(p={value!r}) as with torch.nn.Dropout, or {cls}(keep={value!r})")
        if keep is not None or p is not None:
            raise TypeError(f"{cls}: the keep rates were given twice; pass them once")
        keep = value
    if keep is not None and p is not None:
        raise TypeError(f"{cls}: give keep= or p= (the drop probability, p = 1 - keep), not both")
    if p is not None:
        if isinstance(p, bool) or not isinstance(p, (int, float, Tensor)):
            raise TypeError(f"{cls}: p must be a drop probability in [0, 1) (a float or a tensor), got "
                            f"{type(p).__name__}")
        return 1.0 - p  # checked as a keep rate by UnitGate: p = 1 would drop everything
    return 0.5 if keep is None else keep


class Dropout(UnitGate):
    """Bernoulli unit dropout: ``Dropout(p=0.2)`` behaves as ``torch.nn.Dropout(0.2)``; ``Dropout(keep=0.8)`` is the
    same gate in the paper's terms (keep probability p_keep = 1 - p). A tensor of keep rates (per unit or channel)
    may be passed positionally; a bare positional number is refused, since it reads either way.

    >>> nn.Sequential(nn.Linear(4, 8), Dropout(p=0.2), nn.Linear(8, 2))(torch.ones(3, 4)).shape
    torch.Size([3, 2])

    Args:
        *args: A tensor of keep rates (per unit or channel), positionally; a bare number is refused.
        keep: The keep probability p (a number or a tensor of rates).
        p: torch's drop probability, 1 - keep (give one of ``keep`` and ``p``).
        scaling: ``"inverted"`` (torch's: divided by p in training, the identity in eval) or ``"paper"``.
        mask_sharing: ``"unit"`` (a mask value per example and unit) or ``"channel"`` (one per example and channel).
    """

    def __init__(self, *args: Tensor, keep: Keep | None = None, p: Keep | None = None, scaling: str = "inverted",
                 mask_sharing: str = "unit") -> None:
        super().__init__(_keep_argument("Dropout", args, keep, p), kind="bernoulli", scaling=scaling,
                         mask_sharing=mask_sharing)


class GaussianDropout(UnitGate):
    """Multiplicative Gaussian noise xi ~ N(p, p(1-p)), the variance of Bernoulli dropout with keep probability p
    (``keep=``, or torch's drop probability ``p=``, as ``Dropout``).

    Args:
        *args: A tensor of keep rates (per unit or channel), positionally; a bare number is refused.
        keep: The keep probability p (a number or a tensor of rates).
        p: torch's drop probability, 1 - keep (give one of ``keep`` and ``p``).
        scaling: ``"inverted"`` (noise of mean 1) or ``"paper"`` (mean p).
        mask_sharing: As ``Dropout``'s.
    """

    def __init__(self, *args: Tensor, keep: Keep | None = None, p: Keep | None = None, scaling: str = "inverted",
                 mask_sharing: str = "unit") -> None:
        super().__init__(_keep_argument("GaussianDropout", args, keep, p), kind="gaussian", scaling=scaling,
                         mask_sharing=mask_sharing)


class Dropin(UnitGate):
    """Dropin (Section 11.6): a unit keeps its output with probability p (``keep=``), else outputs 1.

    Args:
        *args: A tensor of keep rates, positionally.
        keep: The probability p that a unit keeps its output.
        p: 1 - keep (give one of ``keep`` and ``p``).
    """

    def __init__(self, *args: Tensor, keep: Keep | None = None, p: Keep | None = None) -> None:
        super().__init__(_keep_argument("Dropin", args, keep, p), kind="dropin", scaling="paper")


class SpikingUnits(UnitGate):
    """Stochastic spiking units (Section 10.1, global spiking): a spike of size r with probability O.

    The input must be a probability (logistic outputs). The gradient is that of r O (straight-through).

    Args:
        r: The spike size (a number or a tensor per unit).
        scaling: ``"paper"`` (a spike of size r) or ``"inverted"`` (divided by r).
    """

    def __init__(self, r: Keep = 1.0, *, scaling: str = "paper") -> None:
        super().__init__(r, kind="spiking", scaling=scaling)
