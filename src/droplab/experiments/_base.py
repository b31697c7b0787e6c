"""What every experiment is: a claim, a computation that returns plain data, a figure, and verdicts.

``compute(ctx)`` returns a JSON-serializable dict (lists and numbers only); ``plot(result)`` draws it from
that dict alone, so a cached result redraws without recomputing; ``verdicts(result)`` turns the measured
numbers into sentences that say whether the paper's claim holds here, never written by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["GROUPS", "Context", "Experiment", "Verdict", "binomial_se", "hist", "mc_precision", "to_json",
           "worst_ratio"]


GROUPS = {"paper": "Baldi & Sadowski (2014)", "other": "other papers (Hinton et al. 2012, Srivastava et al. 2014)",
          "lecture": "the lecture and the article"}


@dataclass(frozen=True)
class Verdict:
    """One claim, measured: what was found, the paper's words and number, the threshold and where it comes from.

    ``holds`` is the verdict; ``noise`` (the standard error of ``measured`` where one is known) lets the report
    say when a verdict sits within two standard errors of its threshold, i.e. at its noise: such a verdict may
    flip with the seed. ``group`` is ``paper`` (Baldi & Sadowski), ``other`` (claims of other papers) or
    ``lecture`` (the lecture's and the article's).
    """

    text: str
    holds: bool
    group: str = "paper"
    source: str = ""  # section, equation or figure
    words: str = ""  # the paper's words (or a close paraphrase, marked as such)
    paper: str = ""  # the paper's own number, where it gives one
    measured: float | None = None
    threshold: float | None = None
    basis: str = ""  # where the threshold comes from
    noise: float | None = None

    @property
    def at_noise(self) -> bool:
        if self.measured is None or self.threshold is None or not self.noise:
            return False
        return abs(self.measured - self.threshold) < 2 * self.noise

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "holds": bool(self.holds), "group": self.group, "source": self.source,
                "words": self.words, "paper": self.paper, "measured": self.measured, "threshold": self.threshold,
                "basis": self.basis, "noise": self.noise, "at_noise": self.at_noise}


def worst_ratio(errors: Any, scales: Any) -> float:
    """max_i errors_i / scales_i, the largest error measured in units of its scale (inf where a scale is 0 and
    its error is not): how verdicts against the dropout sd(O) or a spread read a list of layers."""
    e, s = np.asarray(errors, dtype=np.float64), np.asarray(scales, dtype=np.float64)
    if e.shape != s.shape or e.size == 0:
        raise ValueError(f"expected as many errors as scales (at least one), got {e.shape} and {s.shape}")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(s > 0, e / np.where(s > 0, s, 1.0), np.where(e > 0, np.inf, 0.0))
    return float(ratio.max())


def binomial_se(error_percent: float, n: int) -> float:
    """Standard error (in %) of a test error measured on n examples: 100 sqrt(p (1 - p) / n)."""
    p = min(max(error_percent / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(max(p * (1 - p), 1.0 / n) / n)  # at p = 0 or 1, one error's worth


@dataclass(frozen=True)
class Context:
    """What experiments share: the preset's sizes, the study network's snapshots, a seed and a device."""

    preset: str
    settings: dict[str, Any]
    study: Any  # droplab.experiments.study.Study, trained on first use
    seed: int
    device: str
    progress: bool = True
    cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)  # one run's shared results


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


def mc_precision(ctx: Context) -> str | None:
    """The Monte Carlo products' precision the run asked for (``reproduce --precision``); None: the inputs'."""
    return ctx.settings.get("precision")


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
