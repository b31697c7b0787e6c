"""The study network of Section 9: a logistic dropout network trained once, with weight snapshots.

Snapshots (epoch 0 = before training, then the listed epochs) let every experiment look at the network
"before and after training" and follow statistics over training, without training again. They are kept in
one safetensors file in the output folder, written atomically, and reused when the settings match.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .. import data as data_mod
from .. import train
from ..checkpoint import load_checkpoint_file, read_checkpoint_meta, save_checkpoint_file
from ..config import ModelConfig
from ..net import DropoutMLP
from ._settings import StudySettings

__all__ = ["Study"]


class Study:
    def __init__(self, out_dir: Path, settings: StudySettings, *, seed: int, device: str,
                 data_dir: str | None = None, progress: bool = False) -> None:
        if not isinstance(settings, StudySettings):
            raise TypeError(f"settings must be a StudySettings (droplab.experiments.STUDY_PRESETS[name].settings()), "
                            f"got {type(settings).__name__}")
        self.out_dir, self.settings, self.seed, self.device = Path(out_dir), settings, seed, device
        self.data_dir, self.progress = data_dir, progress
        self._snapshots: dict[int, dict[str, torch.Tensor]] | None = None
        self._data: data_mod.Dataset | None = None
        self.metrics: list[dict[str, Any]] = []
        self.best_epoch, self.test_error = 0, float("nan")
        self._variants: dict[str, dict[str, Any]] = {}

    @property
    def key(self) -> str:
        blob = json.dumps({"settings": self.settings.record(), "seed": self.seed}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def trained(self) -> bool:
        """Whether the study network was trained or loaded in this run."""
        return self._snapshots is not None

    @property
    def path(self) -> Path:
        return self.out_dir / "stages" / "study.safetensors"

    @property
    def data(self) -> data_mod.Dataset:
        if self._data is None:
            self._data = replace(self.settings.data, data_dir=self.data_dir).load(seed=self.seed)
        return self._data

    def model_config(self) -> ModelConfig:
        """The study network: the preset's, between the data's input and output sizes."""
        return self.settings.model.with_sizes(self.data.input_size, self.data.output_size)

    @property
    def snapshot_epochs(self) -> set[int]:
        """The epochs whose weights are kept: ``snapshots`` is a list, or ``"every"`` epoch."""
        snaps = self.settings.measurements.snapshots
        return set(range(1, self.settings.train.epochs + 1)) if snaps == "every" else set(snaps)

    def train_config(self) -> train.TrainConfig:
        """The study network's schedule: the preset's, with the run's seed, in float32."""
        return replace(self.settings.train, seed=self.seed, precision="float32")

    def train_variant(self, model_changes: dict[str, Any] | None = None, *, lr: float | None = None,
                      l2: float = 0.0, precision: str = "float32") -> dict[str, Any]:
        """A variant of the study network (its model config with ``model_changes``, the same schedule but for its
        learning rate ``lr`` and L2 coefficient ``l2``, products in ``precision``) trained from the same seed;
        the comparisons of Sections 10-11 and of generalization use it. Returns ``{"history", "test_error",
        "best_epoch", "model", "trained", "chance_error"}``; ``trained`` is False for a network whose test error
        ends within 5 points of chance (the error of always answering the commonest test class).

        The study network itself (no changes, its own learning rate, no L2) is not trained again: its own run
        is returned, so the dropout arm of every comparison is the one network the other sections measure.
        """
        job = self.variant(model_changes, lr=lr, l2=l2, precision=precision)
        if job is None:
            self.ensure()
            return self._judged({"history": self.metrics, "test_error": self.test_error,
                                 "best_epoch": self.best_epoch, "model": self.model("best")})
        key, config, schedule = job
        if key not in self._variants:  # a variant two sections compare (dropin) is trained once per run
            self.add_variant(key, fit_variant(config, schedule, self.data, seed=self.seed, device=self.device))
        return self._variants[key]

    def variant(self, model_changes: dict[str, Any] | None = None, *, lr: float | None = None, l2: float = 0.0,
                precision: str = "float32") -> tuple[str, ModelConfig, train.TrainConfig] | None:
        """(key, model config, schedule) of a variant ``train_variant`` would train, or None for the study network
        itself (its own run). The key names the variant in this run (as the caller asked for it: a precision of
        ``"auto"`` stays ``"auto"`` in the key)."""
        config = replace(self.model_config(), **(model_changes or {}))
        lr = self.settings.train.lr if lr is None else lr
        if config == self.model_config() and l2 == 0.0 and lr == self.settings.train.lr:
            return None
        key = json.dumps({"model": config.as_dict(), "l2": l2, "lr": lr, "precision": precision}, sort_keys=True,
                         default=str)
        return key, config, replace(self.train_config(), l2=l2, lr=lr, precision=precision)

    def add_variant(self, key: str, result: dict[str, Any]) -> None:
        """Keep a variant's training (``fit_variant``'s result, trained here or elsewhere) under ``key``."""
        if result.get("diverged"):  # reported as a network that did not train, at chance
            self._variants[key] = {**result, "test_error": self.chance_error, "chance_error": self.chance_error,
                                   "trained": False}
        else:
            self._variants[key] = self._judged(result)

    def has_variant(self, key: str) -> bool:
        return key in self._variants

    @property
    def chance_error(self) -> float:
        """The test error (%) of always answering the commonest test class."""
        counts = torch.bincount(self.data.y_test.cpu())
        return 100.0 * (1.0 - float(counts.max()) / len(self.data.y_test))

    def _judged(self, result: dict[str, Any]) -> dict[str, Any]:
        chance = self.chance_error
        return {**result, "chance_error": chance, "trained": bool(result["test_error"] < chance - 5.0)}

    def ensure(self) -> None:
        """Train (once per settings) and keep the snapshots."""
        if self._snapshots is not None:
            return
        if self.path.is_file():
            try:
                tensors, meta = load_checkpoint_file(self.path)
            except ValueError:  # a damaged or foreign file: train again and write over it (atomically)
                tensors, meta = {}, {}
            if meta.get("key") == self.key and "best_epoch" in meta:
                self._snapshots = {}
                for name, value in tensors.items():
                    epoch, key = name.split(".", 1)
                    self._snapshots.setdefault(int(epoch[5:]), {})[key] = value
                self.metrics = meta["metrics"]
                self.best_epoch, self.test_error = meta["best_epoch"], meta["test_error"]
                return
        model = train.build_model(self.model_config(), seed=self.seed)
        wanted = self.snapshot_epochs
        snaps = {0: {k: v.detach().clone() for k, v in model.state_dict().items()}}

        def keep(row: dict[str, Any]) -> None:
            if row["epoch"] in wanted:
                snaps[row["epoch"]] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}

        result = train.fit(model, self.data, self.train_config(), progress=self.progress, device=self.device,
                           on_epoch=keep)
        self.metrics = result.history
        self.best_epoch, self.test_error = result.best_epoch, result.test_error
        snaps[-1] = {k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()}  # best validation
        tensors = {f"epoch{e}.{k}": v for e, state in snaps.items() for k, v in state.items()}
        save_checkpoint_file(self.path, tensors, {"key": self.key, "metrics": self.metrics,
                                                  "model": self.model_config().as_dict(), "best_epoch": self.best_epoch,
                                                  "test_error": self.test_error})
        self._snapshots = snaps

    def recorded(self) -> dict[str, Any] | None:
        """The training record of this run's study network (``metrics``, ``best_epoch``, ``test_error``), read
        from memory or from the study file's metadata alone (no weights loaded); None when it was not trained."""
        if self._snapshots is not None:
            return {"metrics": self.metrics, "best_epoch": self.best_epoch, "test_error": self.test_error}
        try:
            meta = read_checkpoint_meta(self.path)
        except (OSError, ValueError):
            return None
        if meta.get("key") != self.key or "best_epoch" not in meta:
            return None
        return {k: meta[k] for k in ("metrics", "best_epoch", "test_error")}

    @property
    def epochs(self) -> list[int]:
        """Snapshot epochs, 0 (before training) first."""
        self.ensure()
        assert self._snapshots is not None
        return sorted(e for e in self._snapshots if e >= 0)

    def model(self, epoch: int | str = "last") -> DropoutMLP:
        """The network at a snapshot epoch (0 = before training; "last" = the final epoch; "best" = the weights
        of the best validation epoch, which the test errors refer to), in eval mode."""
        self.ensure()
        assert self._snapshots is not None
        e = max(self._snapshots) if epoch == "last" else -1 if epoch == "best" else int(epoch)
        net = DropoutMLP.from_config(self.model_config().as_dict())
        net.load_state_dict(self._snapshots[e])
        return net.to(self.device).eval()

    def inputs(self, n: int | None = None) -> torch.Tensor:
        """``n`` fixed test inputs (a seeded choice), as the paper's "10 random inputs"."""
        n = n or self.settings.measurements.inputs
        x = self.data.x_test
        idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))[:n]
        return x[idx].to(self.device)


def fit_variant(config: ModelConfig, schedule: train.TrainConfig, data: data_mod.Dataset, *, seed: int,
                device: str) -> dict[str, Any]:
    """Train one variant of the study network: ``{"history", "test_error", "best_epoch", "model"}``, with
    ``"diverged": True`` (and the untrained model) where training diverged. A pure function of its arguments, so it
    runs the same in this process or in a Ray worker (``droplab reproduce --ray``)."""
    model = train.build_model(config, seed=seed)
    try:
        result = train.fit(model, data, schedule, progress=False, device=device, monitor=False)
    except train.Diverged:
        return {"history": [], "test_error": float("nan"), "best_epoch": 0, "model": model.eval(), "diverged": True}
    return {"history": result.history, "test_error": result.test_error, "best_epoch": result.best_epoch,
            "model": result.model.eval()}
