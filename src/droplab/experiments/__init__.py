"""One module per paper figure or claim; each exports an ``Experiment`` (see ``_base``).

The library never imports this package; ``droplab.report`` and the command line use it.
"""

from __future__ import annotations

from typing import Any

from ..presets import preset as training_preset
from . import (
    appendix,
    bounds,
    dynamics,
    generalization,
    gradients,
    lecture,
    meanlaws,
    network,
    sampling,
    spiking,
    transfer,
)
from ._base import Context, Experiment, Verdict

EXPERIMENTS: list[Experiment] = [
    bounds.EXPERIMENT,
    meanlaws.EXPERIMENT,
    sampling.EXPERIMENT,
    network.APPROXIMATIONS,
    network.VARIANCE,
    network.PAIRS,
    appendix.EXPERIMENT,
    transfer.EXPERIMENT,
    dynamics.EXPERIMENT,
    spiking.THREE_NETWORKS,
    spiking.BACKPERCOLATION,
    gradients.EXPERIMENT,
    gradients.DROPIN,
    generalization.EXPERIMENT,
    lecture.EXPERIMENT,
]

def _from_training_preset(name: str) -> dict[str, Any]:
    """The study network and its schedule, taken from a training preset (one place for the paper's recipe)."""
    p = training_preset(name)
    t = p.train
    return dict(dataset=p.dataset, hidden=list(p.model.sizes[1:-1]), keep_input=p.model.keeps[0],
                keep_hidden=p.model.keeps[1], init_gain=p.model.init_gain, epochs=t.epochs,
                batch_size=t.batch_size, lr=t.lr, lr_decay=t.lr_decay, momentum_end=t.momentum_end,
                momentum_epochs=t.momentum_epochs, max_norm=t.max_norm)


# the paper's measurement sizes (Section 9): 10 inputs x 10,000 dropout samples (Figs. 9.3-9.15), 1,000 samples
# per epoch for the curves over training (Figs. 11.2-11.3), 5,000-10,000 repeats (Figs. 9.1-9.2)
_PAPER_SIZES: dict[str, Any] = dict(
    snapshots="every", inputs=10, samples=10_000, trajectory_samples=1000, pairs=100_000, sampling_repeats=10_000,
    sampling_sizes=[10, 30, 100, 300, 1000, 3000], coadapt_epochs=30, gradient_samples=200,
    transfer_hidden=[512, 512], transfer_epochs=10,
)

PRESETS: dict[str, dict[str, Any]] = {
    # the default: the paper's network and keep rates on 10,000 real MNIST digits, from small weights
    "standard": {**_from_training_preset("standard"), **_PAPER_SIZES},
    # the same on full MNIST (60,000 + 10,000): a GPU, or a long CPU run
    "paper": {**_from_training_preset("paper"), **_PAPER_SIZES},
    # a substitute, no download: scikit-learn's 8x8 digits and a small network that only trains from Glorot x4
    # weights, so its dropout variances are large from the first epoch (not the paper's regime)
    "quick": dict(dataset="digits", hidden=[128, 128, 128, 128], keep_input=0.8, keep_hidden=0.5, init_gain=None,
                  epochs=150, batch_size=32, lr=1.0, lr_decay=0.99, momentum_end=0.95, momentum_epochs=20,
                  max_norm=4.0, snapshots=[1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 150], inputs=10, samples=2000,
                  trajectory_samples=1000, pairs=2000, sampling_repeats=2000, sampling_sizes=[10, 30, 100, 300, 1000],
                  coadapt_epochs=30, gradient_samples=200, transfer_hidden=[128, 128], transfer_epochs=20),
}
# a tiny setting for tests: every section, in seconds
PRESETS["tiny"] = {**PRESETS["quick"], "hidden": [12, 12], "epochs": 2, "batch_size": 128, "snapshots": [1, 2],
                   "inputs": 3, "samples": 200, "trajectory_samples": 100, "pairs": 50, "sampling_repeats": 200,
                   "sampling_sizes": [10, 100], "coadapt_epochs": 3, "gradient_samples": 20,
                   "transfer_hidden": [12, 12], "transfer_epochs": 2}

# what the report says at the top of a substitute preset
SUBSTITUTES = {
    "quick": "This is the quick substitute, not the paper's setting: scikit-learn's 1,797 8x8 digits instead of "
             "MNIST, a 64-128-128-128-128-10 network instead of 784-1200-1200-1200-1200-10, Glorot x4 weights "
             "instead of small random ones (the small network does not train from small weights), so dropout "
             "variances are large from the first epoch and the paper's regime does not appear; 2,000 dropout samples "
             "instead of 10,000. Run the standard preset for the paper's setting.",
    "tiny": "This is the tiny test preset: a 2-epoch, 12-unit network. Its numbers test the code, not the paper.",
}

__all__ = ["EXPERIMENTS", "PRESETS", "SUBSTITUTES", "Context", "Experiment", "Verdict"]
