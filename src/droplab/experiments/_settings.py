"""What a reproduction studies and measures, typed: the study network's ``DataConfig``, ``ModelConfig`` and
``TrainConfig`` (those of a training preset, so ``droplab train --preset NAME`` trains the same network) and the
``Measurements``; variants are ``dataclasses.replace`` of them.

``StudySettings.record()`` is the flat record ``results.json`` keeps and every stage cache is keyed on. It is the
record droplab 0.5-0.6 wrote (so their reports compare with and resume into this version's) plus, under
``model.NAME`` / ``train.NAME`` / ``data.NAME``, every field that differs from what those versions fixed in code:
a change to any typed field changes the record, and with it the cache keys.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..config import DataConfig, ModelConfig
from ..presets import preset as training_preset
from ..train import TrainConfig

__all__ = ["Measurements", "StudyPreset", "StudySettings"]


@dataclass(frozen=True)
class Measurements:
    """How much a reproduction measures: the study network's snapshots and the sizes of every experiment.

    Attributes:
        snapshots: ``"every"`` epoch, or the epochs whose weights are kept.
        inputs: Fixed inputs every unit is measured on (Section 9: 10).
        samples: Dropout samples per input (Figs. 9.3-9.15: 10,000).
        trajectory_samples: Per input and snapshot, for the curves over training (Figs. 9.10-9.11, 11.2-11.3).
        pairs: Unit pairs for E(O_i O_j) (Figs. 9.12-9.14).
        sampling_repeats: Samples of m values (Figs. 9.1-9.2).
        sampling_sizes: The m of Fig. 9.2.
        coadapt_epochs: The lecture's co-adaptation example's epochs.
        gradient_samples: Sampled backward passes (Section 10.2).
        transfer_hidden: The tanh / rectified linear networks of Section 7.2.
        transfer_epochs: Their training epochs.
    """

    snapshots: str | tuple[int, ...]
    inputs: int
    samples: int
    trajectory_samples: int
    pairs: int
    sampling_repeats: int
    sampling_sizes: tuple[int, ...]
    coadapt_epochs: int
    gradient_samples: int
    transfer_hidden: tuple[int, ...]
    transfer_epochs: int


# what droplab 0.5-0.6 fixed in code for every study network; a typed field that differs from these is recorded
_FIXED_MODEL = ModelConfig(transfer="logistic", output="softmax", scaling="paper", init="glorot")
_FIXED_TRAIN = TrainConfig()
_FIXED_DATA = DataConfig()
_RECORDED_MODEL = {"sizes", "keep", "init_gain"}  # as hidden, keep_input / keep_hidden, init_gain
_RECORDED_TRAIN = {"epochs", "batch_size", "lr", "lr_decay", "lr_schedule", "momentum_start", "momentum_end",
                   "momentum_epochs", "max_norm", "optimizer"}
_RUN_TRAIN = {"seed", "precision"}  # the run's: its seed; the study trains in float32, each variant in its own
_RECORDED_DATA = {"dataset", "validation"}
_RUN_DATA = {"data_dir", "download"}  # where the files are: not what is studied


@dataclass(frozen=True)
class StudySettings:
    """One reproduction's settings: the study network's data, model and schedule, the measurement sizes and the
    Monte Carlo products' precision.

    Attributes:
        data: The study network's data (the preset's dataset and validation split).
        model: The study network (its input and output sizes are the data's, set when the data is loaded).
        train: Its schedule (the seed and precision are the run's).
        measurements: The sizes of every experiment.
        precision: The Monte Carlo products' precision (``reproduce --precision``).
    """

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    measurements: Measurements
    precision: str = "float32"

    @property
    def hidden(self) -> tuple[int, ...]:
        """The hidden layers' widths."""
        return tuple(self.model.sizes[1:-1])

    def record(self) -> dict[str, Any]:
        """The flat record ``results.json`` keeps and the stage caches are keyed on (see the module's text).

        Returns:
            dict: JSON-plain values by name.
        """
        keeps = self.model.keeps
        if len(set(keeps[1:])) > 1:
            raise ValueError(f"a study network keeps every hidden layer at one rate; got keep={list(keeps)}")
        t = self.train
        out: dict[str, Any] = {"dataset": self.data.dataset, "validation": self.data.validation,
                               "hidden": list(self.hidden), "keep_input": keeps[0], "keep_hidden": keeps[1],
                               "init_gain": self.model.init_gain, **{k: getattr(t, k) for k in sorted(_RECORDED_TRAIN)}}
        out.update({k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.measurements).items()})
        for table, config, fixed, skip in (
                ("model", self.model, _FIXED_MODEL, _RECORDED_MODEL), ("train", t, _FIXED_TRAIN,
                                                                       _RECORDED_TRAIN | _RUN_TRAIN),
                ("data", self.data, _FIXED_DATA, _RECORDED_DATA | _RUN_DATA)):
            for f in fields(config):
                value = getattr(config, f.name)
                if f.name not in skip and value != getattr(fixed, f.name):
                    out[f"{table}.{f.name}"] = list(value) if isinstance(value, tuple) else value
        if self.precision != "float32":
            out["precision"] = self.precision  # (absent at the default, so float32 caches stay valid)
        return out


@dataclass(frozen=True)
class StudyPreset:
    """A ``droplab reproduce`` preset: the training preset whose network and schedule are studied (one source for
    both commands: ``droplab train --preset <training>`` trains the same network) and the measurement sizes.

    Attributes:
        training: The training preset studied.
        measurements: The measurement sizes.
        substitute: What the report says at the top of a preset that is not the paper's setting (empty for one that is).
    """

    training: str
    measurements: Measurements
    substitute: str = ""

    def settings(self) -> StudySettings:
        """The typed settings of a reproduction of this preset (float32 Monte Carlo).

        Returns:
            StudySettings: The training preset's configs and this preset's measurements.
        """
        p = training_preset(self.training)
        data = DataConfig(dataset=p.dataset, validation=p.validation, normalize=p.normalize)
        return StudySettings(data, p.model, replace(p.train, precision="float32"), self.measurements)
