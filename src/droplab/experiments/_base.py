"""What every experiment is: a claim, a computation that returns plain data, a figure, and verdicts.

``compute(ctx)`` returns a JSON-serializable dict (lists and numbers only); ``plot(result)`` draws it from
that dict alone, so a cached result redraws without recomputing; ``verdicts(result)`` turns the measured
numbers into sentences that say whether the paper's claim holds here, never written by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Context", "Experiment", "Verdict", "hist", "to_json"]


@dataclass(frozen=True)
class Verdict:
    text: str
    holds: bool


@dataclass(frozen=True)
class Context:
    """What experiments share: the preset's sizes, the study network's snapshots, a seed and a device."""

    preset: str
    settings: dict[str, Any]
    study: Any  # droplab.experiments.study.Study, trained on first use
    seed: int
    device: str
    progress: bool = True


@dataclass(frozen=True)
class Experiment:
    name: str
    section: str  # the paper's figure or section numbers, e.g. "Figs. 8.1-8.2"
    title: str
    claim: str  # the paper's (or lecture's) claim in one sentence
    compute: Callable[[Context], dict[str, Any]]
    plot: Callable[[dict[str, Any]], Any]
    verdicts: Callable[[dict[str, Any]], list[Verdict]]
    needs_study: bool = False
    numbers: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda r: r.get("numbers", {}))


def to_json(value: Any) -> Any:
    """Tensors and arrays to lists, numpy scalars to Python numbers, recursively."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def hist(values: Any, bins: int = 40, range_: tuple[float, float] | None = None) -> dict[str, list[float]]:
    """A histogram as plain lists: {"edges": [...], "counts": [...]} (counts normalized to a density)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    counts, edges = np.histogram(values, bins=bins, range=range_, density=True)
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def draw_hist(ax: Any, h: dict[str, list[float]], label: str | None = None, **kwargs: Any) -> None:
    edges = np.asarray(h["edges"])
    ax.stairs(np.asarray(h["counts"]), edges, label=label, **kwargs)
