"""Named configurations: a dataset, a DropoutMLP and a TrainConfig.

| preset | dataset | network                              | gates (keep)                  |
|--------|---------|--------------------------------------|-------------------------------|
| quick  | digits  | 64-256-256-10 logistic, softmax      | 0.8 input, 0.5 hidden         |
| hinton | mnist   | 784-800-800-10 logistic, softmax     | 0.8 input, 0.5 hidden         |
| paper  | mnist   | 784-1200-1200-1200-1200-10 logistic  | 0.8 input, 0.5 hidden         |

``hinton`` follows Hinton et al. (2012): momentum 0.5 rising to 0.99, max-norm 15 on incoming weights,
decaying learning rate. ``paper`` is the network of Baldi & Sadowski's simulations (Section 9).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .train import TrainConfig

__all__ = ["PRESETS", "Preset", "preset"]


@dataclass(frozen=True)
class Preset:
    dataset: str
    model: dict[str, Any]
    train: TrainConfig
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def with_sizes(self, n_in: int, n_out: int) -> Preset:
        sizes = [n_in, *self.model["sizes"][1:-1], n_out]
        return replace(self, model={**self.model, "sizes": sizes})


def _mlp(sizes: list[int], keep_in: float, keep_hidden: float, init: str = "default") -> dict[str, Any]:
    n_gates = len(sizes) - 1
    return dict(sizes=sizes, transfer="logistic", output="softmax", c=1.0, lam=1.0,
                keep=[keep_in] + [keep_hidden] * (n_gates - 1), gate="bernoulli", connection_keep=None,
                connection_kind="bernoulli", mask_sharing="example", scaling="paper", backward=None, init=init)


PRESETS: dict[str, Preset] = {
    "quick": Preset("digits", _mlp([64, 256, 256, 10], 0.8, 0.5),
                    TrainConfig(epochs=100, batch_size=32, lr=1.0, lr_decay=0.99, momentum_start=0.5,
                                momentum_end=0.9, momentum_epochs=20, max_norm=4.0),
                    "small logistic net on scikit-learn's digits; seconds on a CPU"),
    "hinton": Preset("mnist", _mlp([784, 800, 800, 10], 0.8, 0.5, "glorot"),
                     TrainConfig(epochs=100, batch_size=100, lr=1.0, lr_decay=0.98, momentum_start=0.5,
                                 momentum_end=0.99, momentum_epochs=50, max_norm=15.0),
                     "Hinton et al. (2012) MNIST network"),
    "paper": Preset("mnist", _mlp([784, 1200, 1200, 1200, 1200, 10], 0.8, 0.5, "glorot"),
                    TrainConfig(epochs=100, batch_size=100, lr=1.0, lr_decay=0.98, momentum_start=0.5,
                                momentum_end=0.99, momentum_epochs=50, max_norm=15.0),
                    "Baldi & Sadowski (2014) Section 9 network; meant for a GPU"),
}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
