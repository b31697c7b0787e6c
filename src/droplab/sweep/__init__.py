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

Ray is an optional dependency (``pip install droplab[sweep]``); nothing else in droplab imports it. The package's
parts: ``_spec`` (the sweep file, checked before Ray starts, and each trial's settings), ``_presets``, ``_trial``
(what a Ray worker runs), ``_driver`` (Ray Tune, resuming, the driver lock) and ``_outputs`` (``results.csv``,
plots).
"""

from __future__ import annotations

from ._driver import INSTALL, run_sweep
from ._outputs import write_outputs
from ._presets import PRESETS
from ._spec import MAX_TRIALS, METRICS, PSEUDO, Sweep, load_sweep, trial_settings

__all__ = ["INSTALL", "MAX_TRIALS", "METRICS", "PRESETS", "PSEUDO", "Sweep", "load_sweep", "run_sweep",
           "trial_settings", "write_outputs"]
