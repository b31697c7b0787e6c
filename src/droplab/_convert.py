"""``droplab.convert``: a copy of any model with torch's dropout modules replaced by droplab gates."""

from __future__ import annotations

import copy

from torch import nn

from .nn import Dropout

__all__ = ["convert"]

_CHANNEL = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)


def convert(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in which every ``nn.Dropout`` becomes ``droplab.nn.Dropout(keep=1 - p)`` and
    every ``nn.Dropout1d/2d/3d`` a droplab ``Dropout`` with channel-shared masks (one draw per example and
    channel, as torch does); inverted scaling, so outputs in train and eval mode mean what they meant.

    The gates can then be given per-unit or per-channel keep rates (replace one with
    ``droplab.nn.Dropout(torch.full((C, 1, 1), 0.9), mask_sharing="channel")``), and ``exact``-style replay
    and the ``droplab.modes`` work on them by name. ``model`` itself is not changed. ``AlphaDropout`` and
    ``FeatureAlphaDropout`` (SELU networks) have no droplab gate and stay as they are, as do functional
    dropout calls and attention dropout: ``droplab.modes`` and ``monte_carlo`` handle those in place.

    >>> converted = convert(nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 2)))
    >>> converted[1]
    Dropout(kind=bernoulli, keep=0.8, scaling=inverted)

    Args:
        model: Any torch module.

    Returns:
        nn.Module: The converted copy (``model`` itself is left as it was).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"convert expects a torch.nn.Module, got {type(model).__name__}")
    out = copy.deepcopy(model)
    if isinstance(out, (nn.Dropout, *_CHANNEL)):
        return _gate(out, "")
    for name, module in list(out.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, (nn.Dropout, *_CHANNEL)):
                setattr(module, child_name, _gate(child, f"{name}.{child_name}".lstrip(".")))
    return out


def _gate(module: nn.Module, name: str) -> nn.Module:
    p = float(module.p)  # type: ignore[arg-type]
    if p >= 1.0:
        raise ValueError(f"{name or 'the model'} is {type(module).__name__}(p={p:g}), which drops everything; "
                         "droplab gates need a keep rate above 0 (p < 1)")
    gate = Dropout(keep=1.0 - p, scaling="inverted", mask_sharing="channel" if isinstance(module, _CHANNEL) else "unit")
    gate.train(module.training)
    return gate
