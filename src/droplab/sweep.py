"""Dropout studies over many trainings on Ray Tune: keep rates, sizes, data, seeds; one machine or a cluster.

A sweep is a training preset, fixed overrides (``[base]``), and the settings that vary: a grid (``[grid]``,
every combination) and/or random draws (``[random]``, ``samples`` draws). Each trial is the ordinary
``train.fit`` and reports every epoch to Ray Tune; ASHA may stop poor trials early (``[asha]``). What a sweep
leaves in its folder: ``results.csv`` (one row per trial), plots, ``sweep.json`` (the resolved sweep, for
``--resume``), ``trials.jsonl`` (when each trial started and ended), each trial's run (``trials/<trial>/``:
``best.safetensors``, ``last.safetensors``, ``metrics.jsonl``) and Ray's own state under ``ray/``.

A sweep file::

    name = "keep-grid"
    preset = "standard"                 # the training preset every trial starts from
    [base.train]                        # fixed overrides, tables as droplab train's TOML
    epochs = 10
    [grid]                              # keys: "table.field"; keep_input / keep_hidden set keep[0] / keep[1:]
    "model.keep_input" = [0.5, 0.6, 0.7, 0.8, 1.0]
    "model.keep_hidden" = [0.3, 0.5, 0.7, 0.9, 1.0]
    [random]                            # optional: samples draws of these
    samples = 4
    "train.lr" = { loguniform = [0.05, 1.0] }
    [resources]
    cpus_per_trial = 1                  # torch's thread count in the trial follows it
    gpus_per_trial = 0
    [asha]                              # optional early stopping
    grace_period = 3
    reduction_factor = 3

Ray is an optional dependency (``pip install droplab[sweep]``); nothing else in droplab imports it.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import atomic_save_figure, atomic_write_text, remove_stale_temporaries

__all__ = ["PRESETS", "Sweep", "load_sweep", "run_sweep", "write_outputs"]

INSTALL = "droplab sweep needs Ray Tune: pip install 'droplab[sweep]' (or pip install 'ray[tune]')"

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
    from .presets import ARMS

    return {arm.sweep()["name"]: arm.sweep() for arm in ARMS.values()}


PRESETS.update(_arm_sweeps())

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
    """A resolved sweep: what varies and what does not."""

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
    here, so a bad key or value is refused before Ray starts."""
    if isinstance(source, dict):
        raw, where = source, "the sweep"
    elif str(source) in PRESETS:
        raw, where = PRESETS[str(source)], f"sweep preset {source}"
    else:
        raw, where = _read_toml(Path(source)), str(source)
    known = {"name", "preset", "base", "grid", "random", "resources", "asha", "metric", "about"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; expected some of {sorted(known)}")
    from .presets import PRESETS as TRAINING

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
    random = dict(raw.get("random", {}))
    samples = random.pop("samples", 1 if not random else 4)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"{where}: [random] samples must be a positive integer, got {samples!r}")
    for key, spec in random.items():
        if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in DISTRIBUTIONS):
            raise ValueError(f"{where}: [random] {key} must be one of {{ uniform = [lo, hi] }}, {{ loguniform = "
                             f"[lo, hi] }}, {{ choice = [...] }}, {{ randint = [lo, hi] }}; got {spec!r}")
        _check_distribution(where, key, spec)
    resources = dict(raw.get("resources", {}))
    bad = sorted(set(resources) - {"cpus_per_trial", "gpus_per_trial"})
    if bad:
        raise ValueError(f"{where}: unknown [resources] key(s) {bad}; expected cpus_per_trial, gpus_per_trial")
    cpus, gpus = resources.get("cpus_per_trial", 1), resources.get("gpus_per_trial", 0)
    if not (isinstance(cpus, (int, float)) and cpus > 0) or not (isinstance(gpus, (int, float)) and gpus >= 0):
        raise ValueError(f"{where}: cpus_per_trial must be > 0 and gpus_per_trial >= 0, got {cpus!r}, {gpus!r}")
    asha = raw.get("asha")
    if asha is not None:
        bad = sorted(set(asha) - {"grace_period", "reduction_factor", "max_t"})
        if bad:
            raise ValueError(f"{where}: unknown [asha] key(s) {bad}; expected grace_period, reduction_factor, max_t")
        for key, value in asha.items():
            low = 2 if key == "reduction_factor" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{where}: [asha] {key} must be an integer >= {low}, got {value!r}")
    sweep = Sweep(str(raw.get("name", Path(str(source)).stem if not isinstance(source, dict) else "sweep")),
                  preset, {k: dict(v) for k, v in raw.get("base", {}).items()}, grid, random, samples, cpus, gpus,
                  dict(asha) if asha is not None else None, str(metric))
    if sweep.trials() > MAX_TRIALS:
        raise ValueError(f"{where} has {sweep.trials():,} trials, more than droplab runs in one sweep "
                         f"({MAX_TRIALS:,}); split it, or draw [random] samples instead of a full grid")
    for point in _grid_points(sweep):  # every grid point must give valid settings (random ones at their low ends)
        trial_settings(sweep, {**point, **{k: _example(v) for k, v in random.items()}})
    return sweep


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    if not path.is_file():
        raise ValueError(f"sweep file {path} does not exist; give a TOML file or a preset ({', '.join(PRESETS)})")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"sweep file {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"sweep file {path} is not valid TOML: {exc}") from None


def _example(spec: dict[str, Any]) -> Any:
    kind, args = next(iter(spec.items()))
    return args[0]


def _grid_points(sweep: Sweep) -> list[dict[str, Any]]:
    keys = list(sweep.grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*sweep.grid.values())] or [{}]


def trial_settings(sweep: Sweep, point: dict[str, Any]) -> Any:
    """The ``presets.Settings`` of one trial: the preset, the base overrides, then the point's values."""
    from .presets import preset, resolve

    tables = {t: dict(v) for t, v in sweep.base.items()}
    base_model = {**preset(sweep.preset).model.as_dict(), **tables.get("model", {})}
    keep = base_model["keep"]
    n_gates = len(base_model["sizes"]) - 1
    keep = list(keep) if isinstance(keep, list) else [keep] * n_gates
    if len(keep) != n_gates:
        keep = [keep[0]] + [keep[-1]] * (n_gates - 1)
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


def _trial(config: dict[str, Any]) -> None:
    """One Ray Tune trial: ``train.fit`` on the trial's settings, reporting every epoch."""
    import torch
    from ray import tune

    from . import data, train

    fields_ = dict(config["__sweep__"])
    log = Path(fields_.pop("_log")) if "_log" in fields_ else None
    data_dirs = fields_.pop("_data_dirs", {})
    sweep = Sweep(**fields_)
    point = {k: v for k, v in config.items() if k != "__sweep__"}
    context = tune.get_context()
    trial_dir = Path(context.get_trial_dir())
    name = trial_dir.name
    # a trial's final metrics, in the sweep's folder (Ray may restart a trial in a fresh working folder)
    finished = (log.parent if log is not None else trial_dir) / "finished" / f"{context.get_trial_id()}.json"
    if finished.is_file():  # it ended before the driver was killed (Ray's own state may not say so yet)
        last = json.loads(finished.read_text())
        _log(log, {"trial": name, "event": "reused", "time": time.time()})
        tune.report(last)
        return
    _log(log, {"trial": name, "event": "start", "point": point, "time": time.time()})
    from . import threads

    threads.reproducible_products()  # a trial's bits do not depend on its thread count (a Ray worker's first product)
    torch.set_num_threads(max(1, int(sweep.cpus_per_trial)))
    threads.enable(max_threads=max(1, int(sweep.cpus_per_trial)))  # never more than the trial was given
    settings = trial_settings(sweep, point)
    d = settings.data
    root = d.data_dir
    if root is None and data_dirs.get(d.dataset) and Path(data_dirs[d.dataset]).is_dir():
        root = data_dirs[d.dataset]  # found by the driver (Ray runs trials in other working folders)
    dataset = data.load(d.dataset, root=root, download=d.download, validation=d.validation,
                        seed=settings.train.seed, normalize=d.normalize, limit=d.limit)
    model = train.build_model(settings.model.with_sizes(dataset.input_size, dataset.output_size),
                              seed=settings.train.seed)
    device = "cuda" if sweep.gpus_per_trial > 0 and torch.cuda.is_available() else "cpu"
    best = {"val": math.inf, "test": math.nan, "epoch": 0}
    t0 = time.perf_counter()
    last: dict[str, Any] = {}

    def on_epoch(row: dict[str, Any]) -> None:
        val = row["val_error"] if row["val_error"] is not None else row["test_error"]
        if val < best["val"] or row["val_error"] is None:
            best.update(val=val, test=row["test_error"], epoch=row["epoch"])
        last.clear()
        last.update({"task": "classification" if dataset.num_classes else "regression (MSE)",
                     "val_error": val, "best_val_error": best["val"], "test_error": best["test"],
                     "best_epoch": best["epoch"], "epoch": row["epoch"], "train_loss": row["train_loss"],
                     "threads": torch.get_num_threads(),
                     "seconds": time.perf_counter() - t0})
        tune.report(dict(last))

    # checkpoints straight into the sweep's folder (not Ray's working folder, which Ray copies while files are
    # being replaced atomically)
    run_dir = (log.parent / "trials" / name) if log is not None else trial_dir / "run"
    train.fit(model, dataset, settings.train, out_dir=run_dir, progress=False, device=device,
              meta={"preset": settings.preset, "data": d.as_dict(), "sweep": sweep.name, "point": point},
              on_epoch=on_epoch)
    penalty = _linear_penalty(model, dataset, settings)
    if penalty is not None:
        last["dropout_penalty"] = penalty
        tune.report(dict(last))
    finished.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(finished, json.dumps(last) + "\n")
    _log(log, {"trial": name, "event": "end", "time": time.time()})


def _linear_penalty(model: Any, dataset: Any, settings: Any) -> float | None:
    """For a linear network trained with the squared error, the regularization dropout adds, exactly:
    E_masks(E_D) - E_ENS = 1/2 sum_i Var(O_i), averaged over training inputs (``linear_moments``, Section 3).
    For a single linear unit the article gives it as 1/2 sum_j p(1 - p) w_j^2 I_j^2, largest at p = 0.5."""
    from . import ensemble

    if settings.train.loss != "squared" or any(not t.kind.linear for t in model.transfers):
        return None
    x = dataset.x_train[:2000].to(next(model.parameters()).device)
    stats = ensemble.linear_moments(model, x)
    return float(0.5 * stats.output.Var.sum(1).mean())


def _log(path: Path | None, row: dict[str, Any]) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


def run_sweep(sweep: Sweep | str | Path | dict[str, Any], out: str | Path, *, resume: bool = False,
              address: str | None = None, cpus: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Run (or, with ``resume``, finish) a sweep into ``out``; returns the rows of ``results.csv``."""
    if not progress:  # Ray's own tables and hints, unless asked for
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray  # noqa: F401  (installed: checked before anything is written)
    except ImportError:
        raise ImportError(INSTALL) from None
    out = Path(out).resolve()
    state = out / "sweep.json"
    if resume:
        if not state.is_file():
            raise ValueError(f"--resume needs an earlier sweep in {out}; none found (no sweep.json), drop --resume")
        try:
            saved = json.loads(state.read_text(encoding="utf-8"))["sweep"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{state} is damaged ({type(exc).__name__}: {exc}), so the sweep cannot be resumed; "
                             "start it again in another --out (its finished trials are in trials/)") from None
        sweep = load_sweep(saved)
    else:
        if state.exists():
            raise ValueError(f"{out} holds an earlier sweep; add --resume to finish it, or give another --out")
        sweep = sweep if isinstance(sweep, Sweep) else load_sweep(sweep)
        _check_resources(sweep, cpus if not address else None)  # before anything is written
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(state, json.dumps({"sweep": sweep.as_dict()}, indent=2) + "\n")
    _check_resources(sweep, cpus if not address else None)
    with _driver_lock(out):
        remove_stale_temporaries(out)  # what a killed driver left half-written (its trials' folders included)
        return _drive(sweep, out, resume, address, cpus, progress)


def _drive(sweep: Sweep, out: Path, resume: bool, address: str | None, cpus: int | None,
           progress: bool) -> list[dict[str, Any]]:
    import ray
    from ray import tune

    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        else:
            ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    fields_ = {k: v for k, v in sweep.__dict__.items()}
    fields_["_log"] = str(out / "trials.jsonl")
    fields_["_data_dirs"] = _data_dirs(sweep)
    trainable = tune.with_resources(_trial_entry, {"cpu": sweep.cpus_per_trial, "gpu": sweep.gpus_per_trial})
    storage = out / "ray"
    if resume and tune.Tuner.can_restore(str(storage / sweep.name)):
        tuner = tune.Tuner.restore(str(storage / sweep.name), trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        scheduler = None
        if sweep.asha is not None:
            from ray.tune.schedulers import ASHAScheduler

            epochs = trial_settings(sweep, _grid_points(sweep)[0]).train.epochs
            scheduler = ASHAScheduler(time_attr="epoch", max_t=sweep.asha.get("max_t", epochs),
                                      grace_period=sweep.asha.get("grace_period", 1),
                                      reduction_factor=sweep.asha.get("reduction_factor", 3))
        tuner = tune.Tuner(
            trainable, param_space={**_search_space(sweep), "__sweep__": fields_},
            tune_config=tune.TuneConfig(metric=sweep.metric, mode="min", scheduler=scheduler,
                                        num_samples=sweep.samples if sweep.random else 1),
            run_config=tune.RunConfig(name=sweep.name, storage_path=str(storage), verbose=1 if progress else 0,
                                      failure_config=tune.FailureConfig(max_failures=0)))
    hint = _RayRestoreHint()
    loggers = [logging.getLogger(name) for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis")]
    for logger in loggers:
        logger.addFilter(hint)
    try:
        results = tuner.fit()
    finally:
        for logger in loggers:
            logger.removeFilter(hint)
        if started:
            ray.shutdown()
    rows = _rows(sweep, results, out)
    write_outputs(sweep, rows, out)
    return rows


class _RayRestoreHint(logging.Filter):
    """Drops what Ray logs about an interrupted sweep: "Resume experiment with: Tuner.restore(...)" (Ray's restore
    does not know droplab's trainable; the command line prints droplab's own ``--resume``), "Trials did not
    complete" and "Failed to fetch metrics" for the trials that had not reported (``results.csv`` marks them
    ``interrupted`` or ``not run``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("Tuner.restore" in message or message.startswith(("Trials did not complete",
                                                                       "Failed to fetch metrics")))


@contextmanager
def _driver_lock(out: Path) -> Iterator[None]:
    """One driver per sweep folder: ``.driver.pid`` holds the running driver's process id; a second driver
    (``--resume`` while the sweep still runs) is refused, a lock whose process is gone is taken over."""
    from .checkpoint import _alive

    lock = out / ".driver.pid"
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            text = lock.read_text(encoding="utf-8").strip() if lock.is_file() else ""
            if text.isdigit() and int(text) != os.getpid() and _alive(int(text)):
                raise ValueError(f"a sweep driver (process {text}) is running in {out}; wait for it, or stop it "
                                 "before --resume (two drivers would train the same trials twice)") from None
            lock.unlink(missing_ok=True)  # its driver is gone: take the folder over
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _check_resources(sweep: Sweep, cpus: int | None) -> None:
    """Refuse, before Ray starts, a trial this machine can never run: Ray would wait for it forever. (On a
    cluster, ``--address``, the cluster's resources are Ray's to judge: not checked here.)"""
    import torch

    have = cpus or os.cpu_count() or 1
    if sweep.cpus_per_trial > have:
        raise ValueError(f"each trial asks for {sweep.cpus_per_trial:g} CPUs, and this machine gives Ray {have}; "
                         "lower cpus_per_trial in [resources]")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if sweep.gpus_per_trial > gpus:
        raise ValueError(f"each trial asks for {sweep.gpus_per_trial:g} GPUs, and this machine has {gpus}; set "
                         "gpus_per_trial = 0 in [resources] (trials then train on the CPU)")


def _data_dirs(sweep: Sweep) -> dict[str, str]:
    """Where the driver finds each IDX dataset the trials use (absolute; its working folder's ../shared/data
    among the places searched), so trials running in Ray's folders find the same files."""
    from . import data

    names = set()
    for point in _grid_points(sweep):
        try:
            names.add(trial_settings(sweep, point).data.dataset)
        except ValueError:
            continue
    out = {}
    for name in sorted(names):
        if name in data.SOURCES:
            folder = data.find_idx_dir(name)
            if folder is not None:
                out[name] = str(folder.resolve())
    return out


def _trial_entry(config: dict[str, Any]) -> None:  # a module-level name Ray can pickle by reference
    _trial(config)


def _checkpoint(out: Path, path: str | None) -> str:
    if not path:
        return ""
    best = out / "trials" / Path(path).name / "best.safetensors"
    return str(best) if best.is_file() else ""


def _rows(sweep: Sweep, results: Any, out: Path) -> list[dict[str, Any]]:
    rows = []
    for result in results:
        point = {k: v for k, v in (result.config or {}).items() if k != "__sweep__"}  # None: its worker never started
        metrics = result.metrics or {}
        error = result.error
        finished = bool(metrics.get("trial_id")) and (out / "finished" / f"{metrics['trial_id']}.json").is_file()
        status = _status(sweep, point, metrics, error, finished)
        rows.append({"trial": Path(result.path).name if result.path else "", **{k: point.get(k) for k in sweep.varying},
                     "best_val_error": metrics.get("best_val_error"), "test_error": metrics.get("test_error"),
                     "task": metrics.get("task"), "dropout_penalty": metrics.get("dropout_penalty"),
                     "epochs": metrics.get("epoch", 0), "seconds": metrics.get("seconds"),
                     "threads": metrics.get("threads"), "status": status,
                     "error": "" if error is None else _one_line(error),
                     "checkpoint": _checkpoint(out, result.path)})
    rows.sort(key=lambda r: r["trial"])
    return rows


def _status(sweep: Sweep, point: dict[str, Any], metrics: dict[str, Any], error: Any, finished: bool) -> str:
    """``error``; ``done`` (its training returned: every epoch, or early stopping's patience ran out; it left
    ``finished/<trial id>.json``); ``stopped`` (ASHA ended it early); ``interrupted`` (it started, but the sweep
    was stopped, e.g. Ctrl-C: ``--resume`` finishes it); ``not run``."""
    if error is not None:
        return "error"
    epoch = metrics.get("epoch") or 0
    if finished or (epoch and epoch >= _epochs(sweep, point)):
        return "done"
    if epoch == 0:
        return "not run"
    return "stopped" if sweep.asha is not None else "interrupted"


def _epochs(sweep: Sweep, point: dict[str, Any]) -> int:
    try:
        return trial_settings(sweep, point).train.epochs
    except ValueError:
        return 0


def _one_line(error: BaseException) -> str:
    cause = error
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause
    text = str(cause).strip().splitlines()
    last = [line for line in text if line.strip()]
    return (last[-1] if last else type(cause).__name__)[:300]


def write_outputs(sweep: Sweep, rows: list[dict[str, Any]], out: Path) -> None:
    """``results.csv`` and the plots that the swept settings allow."""
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else ["trial"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    atomic_write_text(out / "results.csv", buffer.getvalue())
    done = [r for r in rows if r["status"] != "error" and r["test_error"] is not None]
    if "model.keep_input" in sweep.grid and "model.keep_hidden" in sweep.grid and done:
        _heat_map(sweep, done, out / "keep-grid.png")
    if "data.limit" in sweep.grid and done:
        _data_size(sweep, done, out / "data-size.png")
    keys = [k for k in ("model.keep", "model.keep_input") if k in sweep.grid]
    penalized = [r for r in done if r.get("dropout_penalty") is not None]
    if keys and penalized:
        _penalty_plot(sweep, penalized, keys[0], out / "linear-penalty.png")


def _mean_by(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple[Any, ...], float]:
    groups: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(float(r["test_error"]))
    return {k: sum(v) / len(v) for k, v in groups.items()}


def _save(fig: Any, path: Path) -> None:
    atomic_save_figure(fig, path, bbox_inches="tight")


def _heat_map(sweep: Sweep, rows: list[dict[str, Any]], path: Path) -> None:
    import numpy as np

    from ._figures import subplots

    mean = _mean_by(rows, ("model.keep_input", "model.keep_hidden"))
    inputs, hidden = sorted(sweep.grid["model.keep_input"]), sorted(sweep.grid["model.keep_hidden"])
    grid = np.full((len(inputs), len(hidden)), np.nan)
    for (pi, ph), value in mean.items():
        grid[inputs.index(pi), hidden.index(ph)] = value
    fig, ax = subplots(figsize=(6.4, 5.2), dpi=110)
    image = ax.imshow(grid, origin="lower", cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(hidden)), [f"{p:g}" for p in hidden])
    ax.set_yticks(range(len(inputs)), [f"{p:g}" for p in inputs])
    ax.set_xlabel("hidden keep rate p", fontsize=11)
    ax.set_ylabel("input keep rate p", fontsize=11)
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(len(inputs)):
        for j in range(len(hidden)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if grid[i, j] > mid else "black")
    fig.colorbar(image, ax=ax, label="test error (%)")
    per_cell = max(1, round(len(rows) / max(1, len(mean))))
    ax.set_title(f"{sweep.name}: test error by keep rates ({sweep.preset} preset"
                 + (f", mean of {per_cell} trials per cell)" if per_cell > 1 else ")"), fontsize=11)
    _save(fig, path)


def _data_size(sweep: Sweep, rows: list[dict[str, Any]], path: Path) -> None:
    from ._figures import subplots

    others = tuple(k for k in sweep.grid if k != "data.limit" and k != "train.seed")
    mean = _mean_by(rows, (*others, "data.limit"))
    fig, ax = subplots(figsize=(6.4, 4.4), dpi=110)
    lines: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
    for key, value in mean.items():
        lines.setdefault(key[:-1], []).append((key[-1], value))
    for key, points in sorted(lines.items(), key=lambda kv: str(kv[0])):
        points.sort()
        label = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in zip(others, key, strict=True)) or "test error"
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training examples", fontsize=11)
    ax.set_ylabel("test error (%)", fontsize=11)
    ax.set_title(f"{sweep.name}: test error against training-set size", fontsize=11)
    ax.legend(fontsize=8.5, loc="upper left")
    ax.grid(alpha=0.3)
    _save(fig, path)


def _penalty_plot(sweep: Sweep, rows: list[dict[str, Any]], key: str, path: Path) -> None:
    """The measured regularization of linear networks against p(1 - p) (the article), scaled by least squares."""
    import numpy as np

    from ._figures import subplots

    groups: dict[float, list[float]] = {}
    for r in rows:
        groups.setdefault(float(r[key]), []).append(float(r["dropout_penalty"]))
    p = np.array(sorted(groups))
    measured = np.array([np.mean(groups[v]) for v in p])
    shape = p * (1 - p)
    scale = float(shape @ measured / (shape @ shape)) if float(shape @ shape) > 0 else 0.0
    grid = np.linspace(0, 1, 101)
    fig, ax = subplots(figsize=(6.4, 4.4), dpi=110)
    ax.plot(p, measured, "o-", label="measured: E(E_D) - E_ENS (exact, linear_moments)")
    ax.plot(grid, scale * grid * (1 - grid), "--", label=f"the article: c p(1 - p), c = {scale:.3g} (least squares)")
    ax.axvline(float(p[np.argmax(measured)]), color="#888", lw=0.8, ls=":",
               label=f"largest measured at p = {float(p[np.argmax(measured)]):g}")
    ax.set_xlabel(f"keep rate p ({key})", fontsize=11)
    ax.set_ylabel("regularization (squared-error units)", fontsize=11)
    ax.set_title(f"{sweep.name}: dropout's regularization of a linear network", fontsize=11)
    ax.legend(fontsize=8.5, loc="upper left")
    ax.grid(alpha=0.3)
    _save(fig, path)
