"""One module per paper figure or claim; each exports an ``Experiment`` (see ``_base``).

The library never imports this package; ``droplab.report`` and the command line use it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from . import (
    appendix,
    bounds,
    distributions,
    dynamics,
    exact,
    generalization,
    gradients,
    lecture,
    meanlaws,
    network,
    sampling,
    spiking,
    training,
    transfer,
)
from ._base import Context, Experiment, Verdict
from ._settings import Measurements, StudyPreset, StudySettings

EXPERIMENTS: list[Experiment] = [
    exact.EXPERIMENT,
    bounds.EXPERIMENT,
    meanlaws.EXPERIMENT,
    sampling.EXPERIMENT,
    training.EXPERIMENT,
    network.APPROXIMATIONS,
    network.VARIANCE,
    network.PAIRS,
    appendix.EXPERIMENT,
    distributions.EXPERIMENT,
    transfer.EXPERIMENT,
    dynamics.EXPERIMENT,
    spiking.THREE_NETWORKS,
    spiking.BACKPERCOLATION,
    gradients.EXPERIMENT,
    gradients.DROPIN,
    generalization.EXPERIMENT,
    lecture.EXPERIMENT,
]

# the paper's measurement sizes (Section 9): 10 inputs x 10,000 dropout samples (Figs. 9.3-9.15), 1,000 samples
# per epoch for the curves over training (Figs. 11.2-11.3), 5,000-10,000 repeats (Figs. 9.1-9.2)
PAPER_SIZES = Measurements(
    snapshots="every", inputs=10, samples=10_000, trajectory_samples=1000, pairs=100_000, sampling_repeats=10_000,
    sampling_sizes=(10, 30, 100, 300, 1000, 3000), coadapt_epochs=30, gradient_samples=200,
    transfer_hidden=(512, 512), transfer_epochs=10)
QUICK_SIZES = Measurements(
    snapshots=(1, 2, 5, 10, 20, 30, 45, 60, 90, 120, 150), inputs=10, samples=2000, trajectory_samples=1000,
    pairs=2000, sampling_repeats=2000, sampling_sizes=(10, 30, 100, 300, 1000), coadapt_epochs=30,
    gradient_samples=200, transfer_hidden=(128, 128), transfer_epochs=20)

STUDY_PRESETS: dict[str, StudyPreset] = {
    # the default: the paper's network and keep rates on 10,000 real MNIST digits, from small weights
    "standard": StudyPreset("standard", PAPER_SIZES),
    # the same on full MNIST (60,000 + 10,000): a GPU, or a long CPU run
    "paper": StudyPreset("paper", PAPER_SIZES),
    # a substitute, no download
    "quick": StudyPreset("digits-deep", QUICK_SIZES, substitute=(
        "This is the quick substitute, not the paper's setting: scikit-learn's 1,797 8x8 digits instead of MNIST, a "
        "64-128-128-128-128-10 network instead of 784-1200-1200-1200-1200-10, Glorot x4 weights instead of small "
        "random ones (the small network does not train from small weights), so dropout variances are large from "
        "the first epoch and the paper's regime does not appear; 2,000 dropout samples instead of 10,000. Run the "
        "standard preset for the paper's setting.")),
    # every section, in seconds: for tests
    "tiny": StudyPreset("tiny", replace(
        QUICK_SIZES, snapshots=(1, 2), inputs=3, samples=200, trajectory_samples=100, pairs=50, sampling_repeats=200,
        sampling_sizes=(10, 100), coadapt_epochs=3, gradient_samples=20, transfer_hidden=(12, 12), transfer_epochs=2),
        substitute="This is the tiny test preset: a 2-epoch, 12-unit network. Its numbers test the code, not the "
                   "paper."),
}
# each preset's record (``StudySettings.record``: what results.json keeps), and what the report says at the top
PRESETS: dict[str, dict[str, Any]] = {name: p.settings().record() for name, p in STUDY_PRESETS.items()}
SUBSTITUTES = {name: p.substitute for name, p in STUDY_PRESETS.items() if p.substitute}

__all__ = ["EXPERIMENTS", "PRESETS", "STUDY_PRESETS", "SUBSTITUTES", "Context", "Experiment", "Measurements",
           "StudyPreset", "StudySettings", "Verdict"]
