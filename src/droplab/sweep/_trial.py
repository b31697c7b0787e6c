"""One trial, run by Ray Tune in a worker: ``train.fit`` on the trial's settings, reporting every epoch."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_write_text
from ._spec import Sweep, trial_settings


def _trial(config: dict[str, Any]) -> None:
    """One Ray Tune trial: ``train.fit`` on the trial's settings, reporting every epoch."""
    import torch
    from ray import tune

    from .. import train

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
    from .. import threads

    threads.reproducible_products()  # a trial's bits do not depend on its thread count (a Ray worker's first product)
    torch.set_num_threads(max(1, int(sweep.cpus_per_trial)))
    threads.enable(max_threads=max(1, int(sweep.cpus_per_trial)))  # never more than the trial was given
    settings = trial_settings(sweep, point)
    d = settings.data
    root = d.data_dir
    if root is None and data_dirs.get(d.dataset) and Path(data_dirs[d.dataset]).is_dir():
        root = data_dirs[d.dataset]  # found by the driver (Ray runs trials in other working folders)
    dataset = replace(d, data_dir=root).load(seed=settings.train.seed)
    device = "cuda" if sweep.gpus_per_trial > 0 and torch.cuda.is_available() else "cpu"
    reporter = _Reporter(dataset, tune.report)
    # checkpoints straight into the sweep's folder (not Ray's working folder, which Ray copies while files are
    # being replaced atomically)
    run_dir = (log.parent / "trials" / name) if log is not None else trial_dir / "run"
    model = train.run(settings, run_dir, data=dataset, progress=False, device=device,
                      meta={"sweep": sweep.name, "point": point}, on_epoch=reporter).model
    penalty = _linear_penalty(model, dataset, settings)
    if penalty is not None:
        reporter.last["dropout_penalty"] = penalty
        tune.report(dict(reporter.last))
    finished.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(finished, json.dumps(reporter.last) + "\n")
    _log(log, {"trial": name, "event": "end", "time": time.time()})


class _Reporter:
    """``fit``'s ``on_epoch``: reports each epoch's metrics to Ray Tune, with the best validation error so far and
    the test error at that epoch (the test error of a run without validation set: every epoch counts)."""

    def __init__(self, dataset: Any, report: Any) -> None:
        import torch

        self.task = "classification" if dataset.num_classes else "regression (MSE)"
        self.report, self.threads = report, torch.get_num_threads
        self.best = {"val": math.inf, "test": math.nan, "epoch": 0}
        self.t0 = time.perf_counter()
        self.last: dict[str, Any] = {}

    def __call__(self, row: dict[str, Any]) -> None:
        best = self.best
        val = row["val_error"] if row["val_error"] is not None else row["test_error"]
        if val < best["val"] or row["val_error"] is None:
            best.update(val=val, test=row["test_error"], epoch=row["epoch"])
        self.last = {"task": self.task, "val_error": val, "best_val_error": best["val"], "test_error": best["test"],
                     "best_epoch": best["epoch"], "epoch": row["epoch"], "train_loss": row["train_loss"],
                     "threads": self.threads(), "seconds": time.perf_counter() - self.t0}
        self.report(dict(self.last))


def _linear_penalty(model: Any, dataset: Any, settings: Any) -> float | None:
    """For a linear network trained with the squared error, the regularization dropout adds, exactly:
    E_masks(E_D) - E_ENS = 1/2 sum_i Var(O_i), averaged over training inputs (``linear_moments``, Section 3).
    For a single linear unit the article gives it as 1/2 sum_j p(1 - p) w_j^2 I_j^2, largest at p = 0.5."""
    from .. import ensemble

    if settings.train.loss != "squared" or any(not t.kind.linear for t in model.transfers):
        return None
    x = dataset.x_train[:2000].to(next(model.parameters()).device)
    stats = ensemble.linear_moments(model, x)
    return float(0.5 * stats.output.Var.sum(1).mean())


def _log(path: Path | None, row: dict[str, Any]) -> None:
    if path is not None:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


def _trial_entry(config: dict[str, Any]) -> None:  # a module-level name Ray can pickle by reference
    _trial(config)
