"""droplab: the dropout learning algorithm of Baldi & Sadowski (2014), on PyTorch.

Symbols follow the paper: S is a unit's input sum, O = f(S) its output, p (``keep``) a keep probability,
W the output of the deterministic weight-scaled network (Eq. 98), E an expectation over dropout masks.
"""

from . import gates, metrics, modes, nn, transfer
from ._convert import convert
from .config import DataConfig, ModelConfig
from .modes import expect, off, record, replay, sample
from .net import DropoutMLP, Trace

__version__ = "0.6.0"

__all__ = [
    "DataConfig",
    "DropoutMLP",
    "ModelConfig",
    "Trace",
    "convert",
    "expect",
    "gates",
    "metrics",
    "modes",
    "nn",
    "off",
    "record",
    "replay",
    "sample",
    "transfer",
]
