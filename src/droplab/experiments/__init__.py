"""One module per paper figure or claim; each exports an ``Experiment`` (see ``_base``).

The library never imports this package; ``droplab.report`` and the command line use it.
"""

from __future__ import annotations

from typing import Any

from . import bounds, dynamics, generalization, gradients, lecture, network, sampling, spiking
from ._base import Context, Experiment, Verdict

EXPERIMENTS: list[Experiment] = [
    bounds.EXPERIMENT,
    sampling.EXPERIMENT,
    network.APPROXIMATIONS,
    network.VARIANCE,
    network.PAIRS,
    dynamics.EXPERIMENT,
    spiking.THREE_NETWORKS,
    spiking.BACKPERCOLATION,
    gradients.EXPERIMENT,
    gradients.DROPIN,
    generalization.EXPERIMENT,
    lecture.EXPERIMENT,
]

_STUDY_QUICK: dict[str, Any] = dict(
    dataset="digits", hidden=[128, 128, 128, 128], keep_input=0.8, keep_hidden=0.5, epochs=150, batch_size=32,
    lr=1.0, lr_decay=0.99, momentum_end=0.95, momentum_epochs=20, max_norm=4.0,
    snapshots=[1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 150], inputs=10, samples=2000, pairs=2000,
    sampling_repeats=2000, sampling_sizes=[10, 30, 100, 300, 1000], coadapt_epochs=30,
)

PRESETS: dict[str, dict[str, Any]] = {
    "quick": _STUDY_QUICK,
    # the paper's setting (Section 9): 784-1200-1200-1200-1200-10 logistic, 10 inputs x 10,000 samples
    "paper": {**_STUDY_QUICK, "dataset": "mnist", "hidden": [1200] * 4, "epochs": 100, "batch_size": 100,
              "lr": 1.0, "lr_decay": 0.98, "momentum_end": 0.99, "momentum_epochs": 50, "max_norm": 15.0,
              "snapshots": [1, 2, 5, 10, 20, 40, 60, 80, 100], "samples": 10_000, "pairs": 100_000,
              "sampling_repeats": 10_000, "sampling_sizes": [10, 30, 100, 300, 1000, 3000]},
    # a tiny setting for tests: every section, in seconds
    "tiny": {**_STUDY_QUICK, "hidden": [12, 12], "epochs": 2, "batch_size": 128, "snapshots": [1, 2], "inputs": 3,
             "samples": 200,
             "pairs": 50, "sampling_repeats": 200, "sampling_sizes": [10, 100], "coadapt_epochs": 3},
}

__all__ = ["EXPERIMENTS", "PRESETS", "Context", "Experiment", "Verdict"]
