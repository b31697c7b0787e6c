"""Thin torch.nn modules over ``droplab.gates``."""

from ._activation import Activation, BackpercolatedActivation
from ._connection import MASK_SHARING, ConnectionDropoutLinear
from ._unit import Dropin, Dropout, GaussianDropout, SpikingUnits, UnitGate

__all__ = [
    "MASK_SHARING",
    "Activation",
    "BackpercolatedActivation",
    "ConnectionDropoutLinear",
    "Dropin",
    "Dropout",
    "GaussianDropout",
    "SpikingUnits",
    "UnitGate",
]
