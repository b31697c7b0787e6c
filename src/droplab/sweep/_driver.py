"""The Ray Tune driver: runs or resumes a sweep into its folder, one driver at a time, and reads back each trial's
status."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write_text, remove_stale_temporaries
from ._outputs import write_outputs
from ._spec import Sweep, _grid_points, _search_space, load_sweep, trial_settings
from ._trial import _trial_entry

INSTALL = "droplab sweep needs Ray Tune: pip install 'droplab[sweep]' (or pip install 'ray[tune]')"


def run_sweep(sweep: Sweep | str | Path | dict[str, Any], out: str | Path, *, resume: bool = False,
              address: str | None = None, cpus: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Run (or, with ``resume``, finish) a sweep into ``out``; returns the rows of ``results.csv``.

    Args:
        sweep: A ``Sweep``, a preset's name, a TOML file or a dict.
        out: The sweep's folder.
        resume: Finish a sweep in ``out`` that was stopped.
        address: A Ray cluster's address (None: a local one).
        cpus: CPUs of the local cluster (None: all).
        progress: Show Ray Tune's progress.

    Returns:
        list[dict]: The rows of ``results.csv``.
    """
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
    from ..checkpoint import _alive

    lock = out / ".driver.pid"
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            text = lock.read_text(encoding="utf-8").strip() if lock.is_file() else ""
            if text.isdigit() and int(text) != os.getpid() and _alive(int(text)):
                raise ValueError(f"{lock} says a sweep driver, process {text}, is running in {out}; wait for it, or "
                                 f"stop it before --resume (two drivers would train the same trials twice). If "
                                 f"process {text} is not a droplab sweep (the id was reused after a crash), delete "
                                 f"{lock}") from None
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
    from .. import data

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
