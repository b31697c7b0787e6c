"""A sweep's specification: what it may say, how it is checked before Ray starts, and each trial's settings."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._toml import read_toml
from ..config import fit_keep
from ._presets import PRESETS

# pseudo-keys a grid may use besides "table.field"
PSEUDO = {"model.keep_input": "keep[0]", "model.keep_hidden": "keep[1:]", "model.dropout": "on: the preset's keep; "
          "off: keep 1"}


DISTRIBUTIONS = ("uniform", "loguniform", "choice", "randint")


METRICS = ("val_error", "best_val_error", "train_loss")  # what a trial reports that a sweep may minimize


MAX_TRIALS = 10_000  # a larger sweep is refused before anything runs (each grid point is validated first)


def _check_distribution(where: str, key: str, spec: dict[str, Any]) -> None:
    """A ``[random]`` entry checked before Ray starts (Ray would refuse it only after the sweep had begun)."""
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ValueError(f"{where}: [random] {key} choice needs a non-empty list, got {args!r}")
        return
    numbers = isinstance(args, list) and len(args) == 2 and all(
        isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) for a in args)
    if not numbers or not args[0] < args[1]:
        raise ValueError(f"{where}: [random] {key} {kind} needs [low, high] with low < high, got {args!r}")
    if kind == "loguniform" and args[0] <= 0:
        raise ValueError(f"{where}: [random] {key} loguniform needs low > 0, got {args!r}")
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise ValueError(f"{where}: [random] {key} randint needs integers, got {args!r}")


@dataclass(frozen=True)
class Sweep:
    """A resolved sweep: what varies and what does not.

    Attributes:
        name: Its name (its folder under ``sweeps/``).
        preset: The training preset every trial starts from.
        base: Overrides every trial shares: ``{"data": {...}, "model": {...}, "train": {...}}``.
        grid: ``"table.key"`` -> the values to try, every combination.
        random: ``"table.key"`` -> a distribution to sample.
        samples: Random points drawn (per grid point).
        cpus_per_trial: CPUs a trial holds.
        gpus_per_trial: GPUs a trial holds.
        asha: Early stopping of poor trials (ASHA's settings), or None.
        metric: What the trials are ranked by.
    """

    name: str
    preset: str
    base: dict[str, dict[str, Any]] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    random: dict[str, Any] = field(default_factory=dict)
    samples: int = 1
    cpus_per_trial: float = 1
    gpus_per_trial: float = 0
    asha: dict[str, Any] | None = None
    metric: str = "val_error"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "preset": self.preset, "base": self.base, "grid": self.grid,
                "random": {**self.random, "samples": self.samples} if self.random else {},
                "resources": {"cpus_per_trial": self.cpus_per_trial, "gpus_per_trial": self.gpus_per_trial},
                "asha": self.asha, "metric": self.metric}

    @property
    def varying(self) -> list[str]:
        return list(self.grid) + list(self.random)

    def trials(self) -> int:
        grid = math.prod(len(v) for v in self.grid.values()) if self.grid else 1
        return grid * (self.samples if self.random else 1)


def load_sweep(source: str | Path | dict[str, Any]) -> Sweep:
    """A sweep from a preset name, a TOML file or a dict, checked: every trial's settings are resolved once
    here, so a bad key or value is refused before Ray starts.

    Args:
        source: A sweep preset's name, a TOML file, or its dict.

    Returns:
        Sweep: It, every trial's settings checked.

    Raises:
        ValueError: An unknown key, a bad value, or a trial whose settings do not resolve.
    """
    if isinstance(source, dict):
        raw, where = source, "the sweep"
    elif str(source) in PRESETS:
        raw, where = PRESETS[str(source)], f"sweep preset {source}"
    else:
        hint = f"give a TOML file or a preset ({', '.join(PRESETS)})"
        raw, where = read_toml(source, "sweep file", hint=hint), str(source)
    known = {"name", "preset", "base", "grid", "random", "resources", "asha", "metric", "about"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; expected some of {sorted(known)}")
    from ..presets import PRESETS as TRAINING

    for table in ("base", "grid", "random", "resources", "asha"):
        if raw.get(table) is not None and not isinstance(raw[table], dict):
            raise ValueError(f"{where}: {table} must be a table ([{table}] with keys), got "
                             f"{type(raw[table]).__name__} {raw[table]!r}")
    metric = raw.get("metric", "val_error")
    if metric not in METRICS:
        raise ValueError(f"{where}: metric must be one of {METRICS} (what each trial reports; the sweep minimizes "
                         f"it), got {metric!r}")
    preset = raw.get("preset", "quick")
    if preset not in TRAINING:
        raise ValueError(f"{where}: preset must be one of {sorted(TRAINING)}, got {preset!r}")
    grid = {str(k): list(v) if isinstance(v, (list, tuple)) else [v] for k, v in raw.get("grid", {}).items()}
    for key, values in grid.items():
        if not values:
            raise ValueError(f"{where}: grid key {key!r} has no values; give a list of at least one")
    random, samples = _random_table(where, raw)
    cpus, gpus = _resources_table(where, raw)
    asha = _asha_table(where, raw)
    name = raw.get("name", Path(str(source)).stem if not isinstance(source, dict) else "sweep")
    if (not isinstance(name, str) or not name.strip() or name in (".", "..") or "/" in name or "\\" in name
            or name.startswith("~") or "\0" in name):
        raise ValueError(f"{where}: name must be a plain folder name (the sweep goes to sweeps/<name>), without "
                         f"'/', '..' or '~', got {name!r}")
    sweep = Sweep(name,
                  preset, {k: dict(v) for k, v in raw.get("base", {}).items()}, grid, random, samples, cpus, gpus,
                  asha, str(metric))
    if sweep.trials() > MAX_TRIALS:
        raise ValueError(f"{where} has {sweep.trials():,} trials, more than droplab runs in one sweep "
                         f"({MAX_TRIALS:,}); split it, or draw [random] samples instead of a full grid")
    low = {k: _examples(v)[0] for k, v in random.items()}
    for point in _grid_points(sweep):  # every grid point must give valid settings, with every random key at each
        for key, spec in random.items():  # of its ends (every value of a choice), the others at their low ends
            for value in _examples(spec):
                try:
                    settings = trial_settings(sweep, {**point, **low, key: value})
                except ValueError as exc:
                    raise ValueError(f"{where}: [random] {key} = {value!r} (one end of {spec!r}) gives invalid "
                                     f"settings: {exc}") from None
        settings = trial_settings(sweep, {**point, **low})
        if asha is not None and asha.get("grace_period", 1) > settings.train.epochs:
            raise ValueError(f"{where}: [asha] grace_period = {asha['grace_period']} is more than the trials' "
                             f"{settings.train.epochs} epochs (at {point or 'the base settings'}); ASHA could stop "
                             "no trial. Lower it or train more epochs")
    return sweep


def _random_table(where: str, raw: dict[str, Any]) -> tuple[dict[str, Any], int]:
    random = dict(raw.get("random", {}))
    samples = random.pop("samples", 1 if not random else 4)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"{where}: [random] samples must be a positive integer, got {samples!r}")
    for key, spec in random.items():
        if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS):
            raise ValueError(f"{where}: [random] {key} must be one of {{ uniform = [lo, hi] }}, {{ loguniform = "
                             f"[lo, hi] }}, {{ choice = [...] }}, {{ randint = [lo, hi] }}; got {spec!r}")
        _check_distribution(where, key, spec)
    return random, samples


def _resources_table(where: str, raw: dict[str, Any]) -> tuple[float, float]:
    resources = dict(raw.get("resources", {}))
    bad = sorted(set(resources) - {"cpus_per_trial", "gpus_per_trial"})
    if bad:
        raise ValueError(f"{where}: unknown [resources] key(s) {bad}; expected cpus_per_trial, gpus_per_trial")
    cpus, gpus = resources.get("cpus_per_trial", 1), resources.get("gpus_per_trial", 0)
    if not (isinstance(cpus, (int, float)) and cpus > 0) or not (isinstance(gpus, (int, float)) and gpus >= 0):
        raise ValueError(f"{where}: cpus_per_trial must be > 0 and gpus_per_trial >= 0, got {cpus!r}, {gpus!r}")
    return cpus, gpus


def _asha_table(where: str, raw: dict[str, Any]) -> dict[str, Any] | None:
    asha = raw.get("asha")
    if asha is None:
        return None
    bad = sorted(set(asha) - {"grace_period", "reduction_factor", "max_t"})
    if bad:
        raise ValueError(f"{where}: unknown [asha] key(s) {bad}; expected grace_period, reduction_factor, max_t")
    for key, value in asha.items():
        low = 2 if key == "reduction_factor" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{where}: [asha] {key} must be an integer >= {low}, got {value!r}")
    return dict(asha)


def _examples(spec: dict[str, Any]) -> list[Any]:
    """The values a [random] distribution can reach at its edges: both ends of a range (randint's high end is
    excluded, as Ray's is), every value of a choice."""
    kind, args = next(iter(spec.items()))
    if kind == "choice":
        return list(args)
    if kind == "randint":
        return [args[0], max(args[0], args[1] - 1)]
    return [args[0], args[1]]


def _grid_points(sweep: Sweep) -> list[dict[str, Any]]:
    keys = list(sweep.grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*sweep.grid.values())] or [{}]


def trial_settings(sweep: Sweep, point: dict[str, Any]) -> Any:
    """The ``presets.Settings`` of one trial: the preset, the base overrides, then the point's values.

    Args:
        sweep: The sweep.
        point: The trial's values by ``"table.key"``.

    Returns:
        Settings: The trial's ``presets.Settings``.
    """
    from ..presets import preset, resolve

    tables = {t: dict(v) for t, v in sweep.base.items()}
    base_model = {**preset(sweep.preset).model.as_dict(), **tables.get("model", {})}
    keep = base_model["keep"]
    n_gates = len(base_model["sizes"]) - 1
    keep = fit_keep(keep, n_gates)
    for key, value in point.items():
        table, _, name = key.partition(".")
        if table not in ("data", "model", "train") or not name:
            raise ValueError(f"sweep key {key!r} must be 'table.field' with table data, model or train "
                             f"(or one of {sorted(PSEUDO)})")
        if key == "model.keep_input":
            keep[0] = value
        elif key == "model.keep_hidden":
            keep[1:] = [value] * (n_gates - 1)
        elif key == "model.dropout":
            if value not in ("on", "off"):
                raise ValueError(f"model.dropout must be 'on' or 'off', got {value!r}")
            if value == "off":
                keep = [1.0] * n_gates
        else:
            tables.setdefault(table, {})[name] = value
            continue
        tables.setdefault("model", {})["keep"] = list(keep)
    return resolve(sweep.preset, tables, where=f"sweep {sweep.name}")


def _search_space(sweep: Sweep) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {k: tune.grid_search(v) for k, v in sweep.grid.items()}
    for key, spec in sweep.random.items():
        kind, args = next(iter(spec.items()))
        space[key] = tune.choice(args) if kind == "choice" else getattr(tune, kind)(*args)
    return space
