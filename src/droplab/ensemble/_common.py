"""What every sampling estimator shares: the argument check, the memory budget and how it becomes chunks of
members, and per-example connection masks while estimating."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..net import DropoutMLP
from ..nn import ConnectionDropoutLinear

__all__ = ["CPU_MODULE_CHUNK", "CPU_TILE", "DEFAULT_MEMORY", "chunk_size", "per_example_masks"]

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


def chunk_size(net: DropoutMLP, x: Tensor, memory: int = DEFAULT_MEMORY, samples: int = 1000,
               tile: int | None = None) -> int:
    """How many members ``monte_carlo(net, x, samples=samples, memory=memory, tile=tile)`` runs per chunk: each
    chunk is one batched product per layer of ``chunk x len(x)`` rows (benchmarks time products at this shape; the
    chunk size also decides how the masks are drawn, so two runs compare bit for bit only at the same size).

    Args:
        net: The network.
        x: The inputs, ``(B, n_in)``.
        memory: Bytes of activations per chunk.
        samples: The members wanted (a chunk is never larger).
        tile: Bytes per layer tensor of a chunk on a CPU (None: 4 MiB).

    Returns:
        int: Members per chunk, at least 1.
    """
    return _chunk(net, x, memory, samples, tile)
