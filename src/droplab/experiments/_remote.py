"""``droplab reproduce --ray ADDRESS``: the reproduction's independent trainings (the regularizer arms) as Ray tasks.

The arms are trained by the same function as in the local run (``study.fit_variant``), on the same data (sent once
through Ray's object store, so a worker needs no data files), with the same settings and seed, and with the
precision the driver resolved for them: a precision of ``"auto"`` is chosen once, here, by this host's probe, not
by each worker's (a worker on another CPU would otherwise choose another). Products do not depend on the thread
count (``MKL_CBWR=AUTO,STRICT``, set in the workers as on the command line), so a task on one CPU gives the local
run's test errors and curves exactly and its weights to float32 rounding (to the bit on a quiet machine):
``tests/test_reproduce.py`` compares a reproduction on a local Ray cluster with the local one.
Nothing else in droplab imports Ray.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from .. import train
from ..config import ModelConfig
from .study import Study, fit_variant

INSTALL = "droplab reproduce --ray needs Ray: pip install 'droplab[sweep]' (or pip install ray)"


def _task(config: ModelConfig, schedule: train.TrainConfig, data: Any, seed: int) -> dict[str, Any]:
    result = fit_variant(config, schedule, data, seed=seed, device="cpu")
    return {**result, "model": {k: v.detach().cpu().clone() for k, v in result["model"].state_dict().items()}}


def train_variants(study: Study, jobs: list[dict[str, Any]], address: str) -> None:
    """Train every variant of ``jobs`` (``train_variant``'s keywords: model_changes, lr, l2, precision) that the
    study does not hold yet, as Ray tasks of one CPU each on the cluster at ``address`` ("auto": the running one),
    and keep them in the study as if trained here."""
    try:
        import ray
    except ImportError:
        raise ValueError(INSTALL) from None
    if study.device != "cpu":
        raise ValueError(f"droplab reproduce --ray trains the arms on the workers' CPUs; --device {study.device} "
                         "would give the local run other bits. Run without --ray on a GPU")
    pending = []
    for job in jobs:
        found = study.variant(job.get("model_changes"), lr=job.get("lr"), l2=job.get("l2", 0.0),
                              precision=job.get("precision", "float32"))
        if found is None or study.has_variant(found[0]):
            continue
        key, config, schedule = found
        model = train.build_model(config, seed=study.seed)
        # "auto" resolved here, once: the workers train in the precision this run would have trained in
        schedule = dataclasses.replace(schedule, precision=train.resolve_precision(schedule, model,
                                                                                  study.device).precision)
        pending.append((key, config, schedule))
    if not pending:
        return
    started = not ray.is_initialized()
    if started:
        env = {"MKL_CBWR": os.environ.get("MKL_CBWR", "AUTO,STRICT")}
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": env})
        except ConnectionError as exc:
            raise ValueError(f"no Ray cluster at --ray {address!r} ({exc}); start one (ray start --head) or give its "
                             "address") from None
    try:
        task = ray.remote(num_cpus=1)(_task)
        data = ray.put(study.data)
        futures = [task.remote(config, schedule, data, study.seed) for _, config, schedule in pending]
        for (key, config, _), result in zip(pending, ray.get(futures), strict=True):
            model = train.build_model(config, seed=study.seed)
            model.load_state_dict(result["model"])
            study.add_variant(key, {**result, "model": model.eval()})
    finally:
        if started:
            ray.shutdown()
