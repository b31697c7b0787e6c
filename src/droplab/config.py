"""Typed, frozen settings: the network (``ModelConfig``), the data (``DataConfig``); ``TrainConfig`` is in
``droplab.train``. Each is validated once, on construction, and is the one source of its keys: the command
line's flags, the TOML file's keys and a preset's contents are all derived from the fields and their help.

>>> ModelConfig(sizes=(64, 32, 10), keep=(0.8, 0.5)).keeps
(0.8, 0.5)
>>> ModelConfig(sizes=(64, 32, 10), keep=0.5).keeps
(0.5, 0.5)
"""

from __future__ import annotations

import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

import torch

from .data import DATASETS, NORMALIZATIONS
from .gates import GATES, SCALINGS, check_keep, check_scaling
from .nn._activation import check_backward
from .nn._connection import MASK_SHARING
from .transfer import TRANSFER_KINDS, make_transfer

__all__ = ["DataConfig", "ModelConfig", "config_fields", "fit_keep", "from_dict", "to_toml"]

HIDDEN_TRANSFERS = tuple(name for name, kind in TRANSFER_KINDS.items() if kind.elementwise)  # softmax couples units
OUTPUTS = ("softmax", "linear", "logistic")
INITS = ("default", "glorot")


def _opt(help: str, *, kind: str | None = None, choices: tuple[Any, ...] | None = None) -> dict[str, Any]:
    """Field metadata: the help text, how the command line parses it (``kind``), and its choices."""
    return {"help": help, "kind": kind, "choices": choices}


def _tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def fit_keep(keep: Any, gated_layers: int) -> list[Any]:
    """Keep rates for ``gated_layers`` gates (input, hidden...): one value for every gate; a list of another
    length keeps its input rate and repeats its last (hidden) rate, e.g. ``[0.8, 0.5]`` -> ``[0.8, 0.5, 0.5]``.

    >>> fit_keep([0.8, 0.5], 4)
    [0.8, 0.5, 0.5, 0.5]

    Args:
        keep: One keep rate, or a list (input, hidden...).
        gated_layers: How many gates the network has.

    Returns:
        list: ``gated_layers`` keep rates.
    """
    if not isinstance(keep, (list, tuple)):
        return [keep] * gated_layers
    keep = list(keep)
    if len(keep) == gated_layers or not keep:
        return keep
    return [keep[0]] + [keep[-1]] * (gated_layers - 1)


def _per_layer(value: Any, n: int, what: str) -> list[Any]:
    """One entry per layer: a list or tuple of ``n``, or one value for all."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{what} needs {n} entries (one per layer), got {len(value)}: {list(value)!r}")
        return list(value)
    return [value] * n


@dataclass(frozen=True)
class ModelConfig:
    """A ``DropoutMLP``: what ``DropoutMLP.build(config)`` builds, and the one place its settings are checked
    (``DropoutMLP(...)`` makes one of these from its arguments). Lists become tuples. ``keep`` and
    ``connection_keep`` may hold tensors (a rate per unit, per connection); ``as_dict`` writes those as
    ``"tensor"`` (their values travel as the network's state, in a checkpoint).

    Attributes:
        sizes: Layer sizes, inputs ... outputs, e.g. 784,1200,1200,10 (the first and last follow the data).
        transfer: Hidden transfer function.
        output: Output transfer function.
        c: The logistic's c (Eq. 27).
        lam: The logistic's lambda, the slope of the other transfers.
        keep: Keep rate(s): one for every gated layer, or one per gated layer (input, hidden...).
        gate: Unit gate kind.
        connection_keep: Connection dropout keep rate(s), one or one per weight layer (none: plain weights).
        connection_kind: Gate kind on connections.
        mask_sharing: Connection masks: one per example, or one per batch.
        scaling: Dropout scaling: paper (train with delta O, predict with p O) or inverted (torch's).
        backward: Backpercolation: 'derivative' or a fixed probability (none: ordinary backpropagation).
        init: Weight initialisation.
        init_gain: Glorot gain (none: 4 for logistic layers, else 1).
    """

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
    init: str = field(default="default", metadata=_opt("weight initialisation", choices=INITS))
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
        n = len(sizes) - 1
        transfers = _per_layer(self.transfer, n - 1, "transfer")
        hidden = [name for name, kind in TRANSFER_KINDS.items() if kind.elementwise]  # the registry as it is now
        for name in transfers:
            if name not in hidden:
                raise ValueError(f"hidden transfer must be one of {', '.join(hidden)}; got {name!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {self.output!r}")
        made = {name: make_transfer(name, c=self.c, lam=self.lam) for name in {*transfers, self.output}}
        check_scaling(self.scaling)
        if self.mask_sharing not in MASK_SHARING:
            raise ValueError(f"mask_sharing must be one of {MASK_SHARING}, got {self.mask_sharing!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        gain = self.init_gain
        if gain is not None and not (isinstance(gain, (int, float)) and not isinstance(gain, bool)
                                     and 0 < gain * 3**0.5 < torch.finfo(torch.float32).max):
            raise ValueError(f"init_gain must be a positive number whose Glorot bound float32 holds, or None (4 for "
                             f"logistic layers, else 1), got {gain!r}")
        if gain is not None and self.init != "glorot":
            raise ValueError(f"init_gain sets the Glorot gain; it needs init='glorot', got init={self.init!r}")
        for h, (keep, kind) in enumerate(zip(_per_layer(self.keep, n, "keep"), _per_layer(self.gate, n, "gate"),
                                             strict=True)):
            if kind not in GATES:
                raise ValueError(f"gate for layer {h} must be one of {sorted(GATES)}, got {kind!r}")
            if not self.gated(h, keep, kind):
                continue
            keep = check_keep(keep, where=f"keep for layer {h}")
            if isinstance(keep, torch.Tensor) and keep.shape != (sizes[h],):
                raise ValueError(f"per-unit keep for layer {h} must have shape ({sizes[h]},), got "
                                 f"{tuple(keep.shape)}")
            if kind == "spiking" and h > 0 and transfers[h - 1] != "logistic":
                raise ValueError(f"spiking units need outputs in [0, 1]; layer {h} uses {transfers[h - 1]}, "
                                 "use transfer='logistic'")
            GATES[kind].check_scaling(self.scaling)
        if self.connection_kind not in GATES:
            raise ValueError(f"connection_kind must be one of {sorted(GATES)}, got {self.connection_kind!r}")
        for h, keep in enumerate(_per_layer(self.connection_keep, n, "connection_keep")):
            if keep is not None:
                check_keep(keep, where=f"connection_keep for layer {h}")
        if self.backward is not None:
            for name in transfers:
                check_backward(self.backward, made[name])

    @staticmethod
    def gated(h: int, keep: Any, kind: str) -> bool:
        """Whether gated layer ``h`` has a gate (keep 1 is no gate, except for spiking units, whose spikes
        are noise at any r)."""
        return keep is not None and (isinstance(keep, torch.Tensor) or keep != 1.0 or kind == "spiking")

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
        """Plain values (tuples as lists, tensors as ``"tensor"``), as JSON and TOML hold them."""
        def plain(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return "tensor"
            return [plain(x) for x in v] if isinstance(v, tuple) else v

        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_network_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """The config a network's ``config()`` (or a checkpoint) describes: ``"tensor"`` rates become
        placeholders of their shape (ones), which the network's saved state then overwrites."""
        values = dict(values)
        sizes = values["sizes"]
        n = len(sizes) - 1
        if "keep" in values:
            values["keep"] = [torch.ones(sizes[h]) if k == "tensor" else k
                              for h, k in enumerate(_per_layer(values["keep"], n, "keep"))]
        if "connection_keep" in values:
            values["connection_keep"] = [torch.ones(sizes[h + 1], sizes[h]) if k == "tensor" else k
                                         for h, k in enumerate(_per_layer(values["connection_keep"], n,
                                                                          "connection_keep"))]
        return from_dict(cls, values, where="the network's config")

    def with_sizes(self, n_in: int, n_out: int) -> ModelConfig:
        """The same hidden layers between ``n_in`` inputs and ``n_out`` outputs (the data's)."""
        from dataclasses import replace

        return replace(self, sizes=(n_in, *self.sizes[1:-1], n_out))


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how they are split and scaled (``droplab.data.load``).

    Attributes:
        dataset: Dataset.
        data_dir: Folder holding the IDX files (else $DROPLAB_DATA, the cache, ../shared/data, /usr/share/datasets).
        validation: Validation fraction of the training part (0: none; every epoch then counts as the best).
        limit: Use at most this many training examples.
        normalize: Pixel scaling: unit ([0, 1]), standard (zero mean, unit variance) or none.
        download: Download missing files (with checksums).
    """

    dataset: str = field(default="digits", metadata=_opt("dataset", choices=DATASETS))
    data_dir: str | None = field(default=None, metadata=_opt(
        "folder holding the IDX files (else $DROPLAB_DATA, the cache, ../shared/data, /usr/share/datasets)",
        kind="str"))
    validation: float = field(default=0.1, metadata=_opt(
        "validation fraction of the training part (0: none; every epoch then counts as the best)", kind="float"))
    limit: int | None = field(default=None, metadata=_opt("use at most this many training examples", kind="int"))
    normalize: str = field(default="unit", metadata=_opt(
        "pixel scaling: unit ([0, 1]), standard (zero mean, unit variance) or none",
        choices=NORMALIZATIONS))
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
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {self.normalize!r}")
        if not isinstance(self.download, bool):
            raise ValueError(f"download must be true or false, got {self.download!r}")
        if self.data_dir is not None and not (isinstance(self.data_dir, (str, os.PathLike)) and str(self.data_dir)):
            raise ValueError(f"data_dir must be a folder (a path as text) or None, got {self.data_dir!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load(self, *, seed: int = 0) -> Any:
        """``droplab.data.load`` with these settings (the validation split drawn by ``seed``)."""
        from .data import load

        return load(self.dataset, root=self.data_dir, download=self.download, validation=self.validation,
                    seed=seed, normalize=self.normalize, limit=self.limit)

    @classmethod
    def from_run(cls, values: dict[str, Any]) -> DataConfig:
        """The data settings a run recorded (``config.json``'s ``data``; keys it did not record take the
        defaults here)."""
        known = {f.name for f in fields(cls)}
        return from_dict(cls, {k: v for k, v in values.items() if k in known}, where="the run's data settings")


def config_fields(cls: type) -> list[Any]:
    """The dataclass fields of a config class (what flags and TOML keys are made from).

    Args:
        cls: ``ModelConfig``, ``DataConfig`` or ``TrainConfig``.

    Returns:
        list: Its ``dataclasses.Field`` objects.
    """
    return list(fields(cls))


def from_dict(cls: type, values: dict[str, Any], *, where: str) -> Any:
    """``cls(**values)`` with an error that names ``where`` and the known keys for an unknown key.

    Args:
        cls: A config class.
        values: Its fields' values by name.
        where: Where the values come from, for the error message.

    Returns:
        Any: The config.

    Raises:
        ValueError: An unknown key (the known keys named) or a bad value.
    """
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
    """A TOML text of top-level keys and tables; None values are written as comments (TOML has no null).

    Args:
        tables: Top-level keys and tables (dicts).

    Returns:
        str: The TOML text.
    """
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


from ._contract import checked as _checked  # noqa: E402  (every public function checks its arguments first)

for _name in __all__:
    globals()[_name] = _checked(globals()[_name])
