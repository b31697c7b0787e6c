"""Gates on connections: a linear layer whose every contribution w_ij O_j is gated (DropConnect)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..gates import Keep, check_keep, gate_kind
from ..modes import Stochastic

__all__ = ["ConnectionDropoutLinear", "MASK_SHARING"]

MASK_SHARING = ("example", "batch")


class ConnectionDropoutLinear(Stochastic, nn.Linear):
    """S_i = sum_j w_ij g_ij(O_j) + b_i, with an independent gate g_ij on every connection.

    Args:
        keep: keep probability per connection: a float, or a tensor shaped like ``weight``
            ``(out_features, in_features)`` (or broadcasting to it). For ``kind="spiking"`` it is the spike
            size r_ij (Eq. 134, connection-specific spiking).
        kind: ``bernoulli`` (DropConnect), ``gaussian``, ``dropin`` or ``spiking``.
        scaling: ``"paper"`` (train with delta w O, predict with p w O) or ``"inverted"``.
        mask_sharing: ``"example"`` (default) draws a fresh mask for every example and connection, so a
            batch of B inputs sees B different subnetworks, as the paper's analysis assumes;
            ``"batch"`` draws one mask per forward call, shared by the whole batch: B times cheaper in
            memory, but all examples of a batch then see the same subnetwork, so Monte Carlo estimates over
            a batch are correlated and a batch is one sample of the ensemble, not B.
        max_chunk_elements: bound on B_chunk * out * in elements materialized at once (example sharing).

    Shapes: input ``(B, in_features)``, output ``(B, out_features)``. Noise shape: ``(B, out, in)`` for
    example sharing, ``(out, in)`` for batch sharing.
    """

    keep: Keep

    def __init__(self, in_features: int, out_features: int, keep: Keep = 0.5, *, kind: str = "bernoulli",
                 scaling: str = "paper", mask_sharing: str = "example", bias: bool = True,
                 max_chunk_elements: int = 1 << 24, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.kind = gate_kind(kind)
        self.scaling = self.kind.check_scaling(scaling)
        if mask_sharing not in MASK_SHARING:
            raise ValueError(f"mask_sharing must be one of {MASK_SHARING}, got {mask_sharing!r}")
        if mask_sharing == "batch" and kind == "spiking":
            raise ValueError("spiking connections draw Delta ~ B(O_j) per example; use mask_sharing='example'")
        self.mask_sharing = mask_sharing
        self.max_chunk_elements = int(max_chunk_elements)
        keep = check_keep(keep, where="spike size r" if kind == "spiking" else "keep")
        if isinstance(keep, Tensor):
            try:
                torch.broadcast_shapes(keep.shape, self.weight.shape)
            except RuntimeError:
                raise ValueError(f"per-connection keep of shape {tuple(keep.shape)} does not broadcast to the "
                                 f"weight shape {tuple(self.weight.shape)} (out_features, in_features)") from None
            self.register_buffer("keep", keep.detach().clone())
        else:
            self.keep = keep

    def _affine(self, noise: Tensor | None) -> tuple[Tensor, Tensor]:
        """Coefficients (a, b) with gated(O) = a O + b: from the mean (noise None) or from given noise.

        Every kind except spiking is affine in O for fixed noise, and every kind's mean is affine in O.
        """
        shape = self.weight.shape
        one, zero = self.weight.new_ones(shape), self.weight.new_zeros(shape)
        if noise is None:
            b = self.kind.mean(zero, self.keep, self.scaling)
            return self.kind.mean(one, self.keep, self.scaling) - b, b
        b = self.kind.apply(zero, noise, self.keep, self.scaling)
        return self.kind.apply(one, noise, self.keep, self.scaling) - b, b

    def _linear_affine(self, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
        # S = x (W * a)^T + sum_j w_ij b_ij + bias
        extra = (self.weight * b).sum(1)
        bias = extra if self.bias is None else self.bias + extra
        return F.linear(x, self.weight * a, bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected input of shape (B, {self.in_features}), got {tuple(x.shape)}")
        mode = self.gate_mode
        if mode == "off":
            return F.linear(x, self.weight, self.bias)
        if mode == "expect":
            return self._linear_affine(x, *self._affine(None))
        if self.mask_sharing == "batch":
            noise = self.draw_noise(lambda g: self.kind.draw(self.weight.detach(), self.keep, g), self.weight.shape,
                                    binary=self.kind.binary_noise)
            return self._linear_affine(x, *self._affine(noise))
        shape = torch.Size((x.shape[0], *self.weight.shape))
        noise = self.draw_noise(lambda g: self._draw_per_example(x, g), shape, binary=self.kind.binary_noise)
        return self._gated_sum(x, noise)

    def _draw_per_example(self, x: Tensor, generator: torch.Generator | None) -> Tensor:
        o = x.detach().unsqueeze(1).expand(x.shape[0], *self.weight.shape)  # (B, out, in): O_j per connection
        return self.kind.draw(o, self.keep, generator)

    def _gated_sum(self, x: Tensor, noise: Tensor) -> Tensor:
        step = max(1, self.max_chunk_elements // max(1, self.weight.numel()))
        outs = []
        for start in range(0, x.shape[0], step):
            xc, nc = x[start:start + step], noise[start:start + step]
            o = xc.unsqueeze(1).expand(xc.shape[0], *self.weight.shape)  # (b, out, in)
            gated = self.kind.apply(o, nc, self.keep, self.scaling)
            outs.append(torch.einsum("boi,oi->bo", gated, self.weight))  # S_bi = sum_j w_ij g_bij
        s = torch.cat(outs) if len(outs) > 1 else outs[0]
        return s if self.bias is None else s + self.bias

    def extra_repr(self) -> str:
        keep = f"tensor{tuple(self.keep.shape)}" if isinstance(self.keep, Tensor) else f"{self.keep:g}"
        return (f"{super().extra_repr()}, kind={self.kind.name}, keep={keep}, scaling={self.scaling}, "
                f"mask_sharing={self.mask_sharing}")
