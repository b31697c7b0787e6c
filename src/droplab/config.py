"""Typed, frozen settings: the network (``ModelConfig``), the data (``DataConfig``); ``TrainConfig`` is in
``droplab.train``. Each is validated once, on construction, and is the one source of its keys: the command
line's flags, the TOML file's keys and a preset's contents are all derived from the fields and their help.

>>> ModelConfig(sizes=(64, 32, 10), keep=(0.8, 0.5)).keeps
(0.8, 0.5)
>>> ModelConfig(sizes=(64, 32, 10), keep=0.5).keeps
(0.5, 0.5)
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import torch

from .data import DATASETS
from .gates import GATES, SCALINGS
from .nn._connection import MASK_SHARING
from .transfer import TRANSFER_KINDS

__all__ = ["DataConfig", "ModelConfig", "config_fields", "from_dict", "to_toml"]

HIDDEN_TRANSFERS = tuple(name for name, kind in TRANSFER_KINDS.items() if kind.elementwise)  # softmax couples units
OUTPUTS = ("softmax", "linear", "logistic")


def _opt(help: str, *, kind: str | None = None, choices: tuple[Any, ...] | None = None) -> dict[str, Any]:
    """Field metadata: the help text, how the command line parses it (``kind``), and its choices."""
    return {"help": help, "kind": kind, "choices": choices}


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class ModelConfig:
    """A ``DropoutMLP``: what ``DropoutMLP(**config.as_dict())`` builds. Lists become tuples."""

    sizes: tuple[int, ...] = field(default=(64, 256, 256, 10), metadata=_opt(
        "layer sizes, inputs ... outputs, e.g. 784,1200,1200,10 (the first and last follow the data)", kind="ints"))
    transfer: str | tuple[str, ...] = field(default="logistic", metadata=_opt(
        "hidden transfer function", choices=HIDDEN_TRANSFERS))
    output: str = field(default="softmax", metadata=_opt("output transfer function", choices=OUTPUTS))
    c: float = field(default=1.0, metadata=_opt("the logistic's c (Eq. 27)", kind="float"))
    lam: float = field(default=1.0, metadata=_opt("the logistic's lambda, the slope of the other transfers",
                                                  kind="float"))
    keep: Any = field(default=1.0, metadata=_opt(
        "keep rate(s): one for every gated layer, or one per gated layer (input, hidden...)", kind="floats"))
    gate: str | tuple[str, ...] = field(default="bernoulli", metadata=_opt("unit gate kind", choices=tuple(GATES)))
    connection_keep: Any = field(default=None, metadata=_opt(
        "connection dropout keep rate(s), one or one per weight layer (none: plain weights)", kind="floats"))
    connection_kind: str = field(default="bernoulli", metadata=_opt("gate kind on connections",
                                                                    choices=tuple(GATES)))
    mask_sharing: str = field(default="example", metadata=_opt(
        "connection masks: one per example, or one per batch", choices=MASK_SHARING))
    scaling: str = field(default="paper", metadata=_opt(
        "dropout scaling: paper (train with delta O, predict with p O) or inverted (torch's)", choices=SCALINGS))
    backward: str | float | None = field(default=None, metadata=_opt(
        "backpercolation: 'derivative' or a fixed probability (none: ordinary backpropagation)", kind="backward"))
    init: str = field(default="default", metadata=_opt("weight initialisation", choices=("default", "glorot")))
    init_gain: float | None = field(default=None, metadata=_opt(
        "Glorot gain (none: 4 for logistic layers, else 1)", kind="float"))

    def __post_init__(self) -> None:
        for name in ("sizes", "transfer", "keep", "gate", "connection_keep"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        sizes = self.sizes
        if not isinstance(sizes, tuple) or len(sizes) < 2 or not all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes):
            raise ValueError(f"sizes must be at least two positive integers (inputs ... outputs) like "
                             f"(784, 1200, 10), got {sizes!r}")
        from .net import DropoutMLP

        with torch.device("meta"):  # every other check is the network's own: no second copy of the rules
            DropoutMLP.from_config(self.as_dict())

    @property
    def gated_layers(self) -> int:
        return len(self.sizes) - 1

    def _expand(self, value: Any) -> tuple[Any, ...]:
        return tuple(value) if isinstance(value, tuple) else (value,) * self.gated_layers

    @property
    def keeps(self) -> tuple[Any, ...]:
        """The keep rate of each gated layer (input, hidden...)."""
        return self._expand(self.keep)

    @property
    def gates(self) -> tuple[str, ...]:
        return self._expand(self.gate)

    @property
    def connection_keeps(self) -> tuple[Any, ...]:
        return self._expand(self.connection_keep)

    @property
    def transfers(self) -> tuple[str, ...]:
        return tuple(self.transfer) if isinstance(self.transfer, tuple) else (self.transfer,) * (len(self.sizes) - 2)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (tuples as lists), as JSON and TOML hold them."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def with_sizes(self, n_in: int, n_out: int) -> ModelConfig:
        """The same hidden layers between ``n_in`` inputs and ``n_out`` outputs (the data's)."""
        from dataclasses import replace

        return replace(self, sizes=(n_in, *self.sizes[1:-1], n_out))


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they are split and scaled (``droplab.data.load``)."""

    dataset: str = field(default="digits", metadata=_opt("dataset", choices=DATASETS))
    data_dir: str | None = field(default=None, metadata=_opt(
        "folder holding the IDX files (else $DROPLAB_DATA, the cache, ../shared/data, /usr/share/datasets)",
        kind="str"))
    validation: float = field(default=0.1, metadata=_opt(
        "validation fraction of the training part (0: none; every epoch then counts as the best)", kind="float"))
    limit: int | None = field(default=None, metadata=_opt("use at most this many training examples", kind="int"))
    normalize: str = field(default="unit", metadata=_opt(
        "pixel scaling: unit ([0, 1]), standard (zero mean, unit variance) or none",
        choices=("unit", "standard", "none")))
    download: bool = field(default=True, metadata={**_opt("download missing files (with checksums)", kind="bool"),
                                                   "off_help": "fail instead of downloading missing files"})

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {DATASETS}, got {self.dataset!r}")
        if not (isinstance(self.validation, (int, float)) and not isinstance(self.validation, bool)
                and 0 <= self.validation < 1):
            raise ValueError(f"validation must be a fraction in [0, 1), got {self.validation!r}")
        if self.limit is not None and not (isinstance(self.limit, int) and not isinstance(self.limit, bool)
                                           and self.limit > 0):
            raise ValueError(f"limit must be a positive integer or None, got {self.limit!r}")
        if self.normalize not in ("unit", "standard", "none"):
            raise ValueError(f"normalize must be 'unit', 'standard' or 'none', got {self.normalize!r}")
        if not isinstance(self.download, bool):
            raise ValueError(f"download must be true or false, got {self.download!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def config_fields(cls: type) -> list[Any]:
    """The dataclass fields of a config class (what flags and TOML keys are made from)."""
    return list(fields(cls))


def from_dict(cls: type, values: dict[str, Any], *, where: str) -> Any:
    """``cls(**values)`` with an error that names ``where`` and the known keys for an unknown key."""
    known = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {where}; expected some of {sorted(known)}")
    return cls(**values)


def default_of(f: Any) -> Any:
    return f.default if f.default is not MISSING else f.default_factory()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(tables: dict[str, Any]) -> str:
    """A TOML text of top-level keys and tables; None values are written as comments (TOML has no null)."""
    lines = []
    for key, value in tables.items():
        if not isinstance(value, dict):
            lines.append(f"{key} = {_toml_value(value)}" if value is not None else f"# {key}: none")
    for name, table in tables.items():
        if isinstance(table, dict):
            lines.append(f"\n[{name}]")
            for key, value in table.items():
                lines.append(f"{key} = {_toml_value(value)}" if value is not None else f"# {key} = (none)")
    return "\n".join(lines).lstrip("\n") + "\n"
