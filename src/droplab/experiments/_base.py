"""What every experiment is: a claim, a computation that returns plain data, a figure, and verdicts.

``compute(ctx)`` returns a JSON-serializable dict (lists and numbers only) whose ``"numbers"`` are the records of
a ``Numbers`` table; ``plot(result)`` draws it from that dict alone, so a cached result redraws without
recomputing; ``verdicts(result)`` reads the numbers by identifier and coordinates (never by the report's words)
and turns them into sentences that say whether the paper's claim holds here, never written by hand.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._settings import StudySettings

__all__ = ["GROUPS", "Context", "Experiment", "Numbers", "Verdict", "binomial_se", "hist", "mc_precision",
           "to_json", "worst_ratio"]


GROUPS = {"paper": "Baldi & Sadowski (2014)",
          "other": "other papers (Hinton et al. 2012, Srivastava et al. 2014, Wan et al. 2013)",
          "lecture": "the lecture and the article",
          "regime": "the study network's training (the paper's regime: learning from the start, converged)"}


@dataclass(frozen=True)
class Verdict:
    """One claim, measured: what was found, the paper's words and number, the threshold and where it comes from.

    ``holds`` is the verdict; ``noise`` (the standard error of ``measured`` where one is known) lets the report
    say when a verdict sits within two standard errors of its threshold, i.e. at its noise: such a verdict may
    flip with the seed. ``group`` is ``paper`` (Baldi & Sadowski), ``other`` (claims of other papers) or
    ``lecture`` (the lecture's and the article's).

    Attributes:
        text: What was found, in a sentence.
        holds: The verdict.
        group: ``"paper"``, ``"other"`` or ``"lecture"``.
        source: The section, equation or figure.
        words: The paper's words (or a close paraphrase, marked as such).
        paper: The paper's own number, where it gives one.
        measured: The measured number.
        threshold: The number it is held against.
        basis: Where the threshold comes from.
        noise: The standard error of ``measured``, where one is known.
        measurable: False where what the claim needs could not be measured.
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
    # False where what the claim needs could not be measured (a comparison arm that did not train): the report
    # says "not measured", never "holds", and such a verdict counts neither as held nor as failed
    measurable: bool = True

    def __post_init__(self) -> None:
        if not self.measurable:
            object.__setattr__(self, "holds", False)

    @property
    def at_noise(self) -> bool:
        if not self.measurable:
            return False
        if self.measured is None or self.threshold is None or not self.noise:
            return False
        return abs(self.measured - self.threshold) < 2 * self.noise

    def as_dict(self) -> dict[str, Any]:
        return {"text": self.text, "holds": bool(self.holds), "group": self.group, "source": self.source,
                "words": self.words, "paper": self.paper, "measured": self.measured, "threshold": self.threshold,
                "basis": self.basis, "noise": self.noise, "at_noise": self.at_noise,
                "not_measured": not self.measurable}


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


_IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*\Z")


class Numbers:
    """An experiment's measured numbers as a table: each value under an identifier (``key``), at coordinates
    (``layer=1, when="after"``), with the words the report shows (``label``).

    Verdicts and plots read values by key and coordinates (``get``, ``series``), so the report's wording can change
    without touching a verdict. A result stores ``records()``, plain dicts ``{"key", "value", "label", "where"}``,
    so a cached result reads back the same (``Numbers.of(result)``).
    """

    def __init__(self, records: Iterable[Mapping[str, Any]] = ()) -> None:
        self._records: list[dict[str, Any]] = []
        for rec in records:
            if not isinstance(rec, Mapping) or "key" not in rec or "value" not in rec:
                raise ValueError(f"expected number records {{'key', 'value', 'label', 'where'}}, got {rec!r}")
            self.add(rec["key"], rec["value"], rec.get("label", ""), **dict(rec.get("where") or {}))

    @classmethod
    def of(cls, result: Mapping[str, Any]) -> Numbers:
        """The numbers of a computed (or cached) result."""
        numbers = result.get("numbers", [])
        if not isinstance(numbers, list):
            raise ValueError(f"expected the result's numbers as a list of records, got {type(numbers).__name__}; "
                             "a result from an older droplab is recomputed by droplab reproduce")
        return cls(numbers)

    def add(self, key: str, value: Any, label: str, **where: str | int | float) -> Numbers:
        """Record ``value`` under ``key`` at coordinates ``where``; ``label`` is what the report prints."""
        if not isinstance(key, str) or not _IDENTIFIER.match(key):
            raise ValueError(f"a number's key must be a lower-case identifier like 'mean_abs_e_minus_w', got {key!r}")
        for name, coordinate in where.items():
            if not isinstance(coordinate, (str, int, float)) or isinstance(coordinate, bool):
                raise TypeError(f"coordinate {name} must be a string or a number, got {coordinate!r}")
        if self._find(key, where, exact=True):
            raise ValueError(f"number {key!r} at {where} recorded twice")
        self._records.append({"key": key, "value": to_json(value), "label": str(label), "where": dict(where)})
        return self

    def _find(self, key: str, where: Mapping[str, Any], *, exact: bool = False) -> list[dict[str, Any]]:
        return [r for r in self._records if r["key"] == key and (
            r["where"] == dict(where) if exact else all(r["where"].get(k) == v for k, v in where.items()))]

    def _missing(self, key: str, where: Mapping[str, Any], found: int) -> KeyError:
        have = sorted({r["key"] for r in self._records})
        return KeyError(f"expected one number {key!r} at {dict(where)}, found {found}"
                        + ("" if key in have else f"; recorded keys: {', '.join(have)}"))

    def get(self, key: str, **where: Any) -> Any:
        """The one value under ``key`` whose coordinates include ``where``."""
        found = self._find(key, where)
        if len(found) != 1:
            raise self._missing(key, where, len(found))
        return found[0]["value"]

    def series(self, key: str, by: str = "layer", **where: Any) -> list[Any]:
        """Every value under ``key`` at ``where``, ordered by coordinate ``by`` (e.g. one per layer)."""
        found = [r for r in self._find(key, where) if by in r["where"]]
        if not found:
            raise self._missing(key, {**where, by: "any"}, 0)
        return [r["value"] for r in sorted(found, key=lambda r: r["where"][by])]

    def values(self, key: str, **where: Any) -> list[Any]:
        """Every value under ``key`` whose coordinates include ``where``, in the order recorded."""
        found = self._find(key, where)
        if not found:
            raise self._missing(key, where, 0)
        return [r["value"] for r in found]

    def coordinates(self, by: str, key: str, **where: Any) -> list[Any]:
        """The distinct values of coordinate ``by`` among the numbers under ``key`` at ``where``, sorted."""
        return sorted({r["where"][by] for r in self._find(key, where) if by in r["where"]})

    def set(self, key: str, value: Any, **where: Any) -> Numbers:
        """Replace the values under ``key`` at ``where`` (at least one must exist)."""
        found = self._find(key, where)
        if not found:
            raise self._missing(key, where, 0)
        for r in found:
            r["value"] = to_json(value)
        return self

    def records(self) -> list[dict[str, Any]]:
        """Plain JSON records, for a result."""
        return copy.deepcopy(self._records)

    def labelled(self) -> dict[str, Any]:
        """``{"layer 1, after: mean |E - W|": value, ...}``, what the report's table of numbers shows."""
        out = {}
        for r in self._records:
            place = ", ".join(f"{k} {v}" if isinstance(v, (int, float)) else str(v) for k, v in r["where"].items())
            out[f"{place}: {r['label']}" if place else r["label"]] = r["value"]
        return out

    def __len__(self) -> int:
        return len(self._records)


@dataclass(frozen=True)
class Context:
    """What experiments share: the preset's sizes, the study network's snapshots, a seed and a device.

    Attributes:
        preset: The study preset's name.
        settings: The run's typed settings (the study network's configs, the measurement sizes, the precision).
        study: The study network, trained on first use.
        seed: The run's seed.
        device: Where it runs.
        progress: Show progress bars.
        cache: Results the run's experiments share.
        ray: A Ray cluster's address, where the arms train as tasks.
    """

    preset: str
    settings: StudySettings
    study: Any  # droplab.experiments.study.Study, trained on first use
    seed: int
    device: str
    progress: bool = True
    cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)  # one run's shared results
    ray: str | None = None  # a Ray cluster's address: the independent trainings (the arms) run there as tasks


@dataclass(frozen=True)
class Experiment:
    """One simulation of the paper or the lecture: what it computes, draws and claims.

    Attributes:
        name: Its name (``droplab reproduce --only NAME``).
        section: The paper's figure or section numbers, e.g. "Figs. 8.1-8.2".
        title: Its heading in the report.
        claim: The paper's (or the lecture's) claim in one sentence.
        compute: Context -> its results (JSON-plain, cached as a stage).
        plot: Results -> its figure.
        verdicts: Results -> its ``Verdict`` list.
        needs_study: Whether it reads the study network.
        numbers: Results -> the measured numbers the report tabulates.
    """

    name: str
    section: str  # the paper's figure or section numbers, e.g. "Figs. 8.1-8.2"
    title: str
    claim: str  # the paper's (or lecture's) claim in one sentence
    compute: Callable[[Context], dict[str, Any]]
    plot: Callable[[dict[str, Any]], Any]
    verdicts: Callable[[dict[str, Any]], list[Verdict]]
    needs_study: bool = False
    numbers: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda r: Numbers.of(r).labelled())


def mc_precision(ctx: Context) -> str | None:
    """The Monte Carlo products' precision the run asked for (``reproduce --precision``); None: the inputs'."""
    return None if ctx.settings.precision == "float32" else ctx.settings.precision


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
