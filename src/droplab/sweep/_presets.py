"""The sweep presets: ``smoke`` (the test sweep) and the sweeps that chose each compared arm's learning rate."""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # 4 trials on scikit-learn's digits: the test sweep, well under 2 minutes on 2 cores
    "smoke": {"name": "smoke", "preset": "quick", "about": "4 trials on digits, for tests",
              "base": {"model": {"sizes": [64, 64, 10]}, "train": {"epochs": 5}},
              "grid": {"model.keep_input": [0.8, 1.0], "model.keep_hidden": [0.5, 1.0]},
              "resources": {"cpus_per_trial": 1}},
    # Section 1's question, how crucial the keep rates are: input x hidden keep on 10,000 MNIST digits
    # (the standard schedule, 30 epochs, on two of the paper's 1200-unit layers: about 30 minutes on 2 cores)
    "keep-grid": {"name": "keep-grid", "preset": "standard", "about": "input x hidden keep, 5 x 5, on mnist-10k",
                  "base": {"model": {"sizes": [784, 1200, 1200, 10]}},
                  "grid": {"model.keep_input": [0.5, 0.65, 0.8, 0.9, 1.0],
                           "model.keep_hidden": [0.3, 0.5, 0.7, 0.85, 1.0]},
                  "resources": {"cpus_per_trial": 1}},
    # Srivastava et al. (2014, Fig. 10): test error against the training-set size, with and without dropout
    "data-size": {"name": "data-size", "preset": "standard",
                  "about": "training-set size, with and without dropout",
                  "base": {"model": {"sizes": [784, 256, 256, 10]}, "train": {"epochs": 20}},
                  "grid": {"data.limit": [250, 500, 1000, 2000, 4000, 7200],
                           "model.dropout": ["on", "off"]},
                  "resources": {"cpus_per_trial": 1}},
    # the article: p = 0.5 regularizes a linear unit most (the penalty p(1 - p) w^2 I^2); a linear network with
    # the squared error on synthetic linear data, one keep rate for every layer
    "linear-keep": {"name": "linear-keep", "preset": "quick",
                    "about": "keep rate of a linear network against the article's p(1 - p) penalty",
                    "base": {"data": {"dataset": "synthetic-linear", "normalize": "none"},
                             "model": {"sizes": [20, 32, 5], "transfer": "linear", "output": "linear",
                                       "init": "default"},
                             "train": {"loss": "squared", "lr": 0.05, "max_norm": 100.0, "epochs": 20}},
                    "grid": {"model.keep": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]},
                    "resources": {"cpus_per_trial": 1}},
}


# the sweeps that chose each compared regularizer's learning rate (presets.ARMS): arm-none, arm-l2, arm-dropout, ...
def _arm_sweeps() -> dict[str, dict[str, Any]]:
    from ..presets import ARMS

    return {arm.sweep()["name"]: arm.sweep() for arm in ARMS.values()}


PRESETS.update(_arm_sweeps())
