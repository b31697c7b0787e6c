"""How gates behave, chosen explicitly and always restored.

Four modes:

* ``sample``: draw fresh noise (random masks) from an optional ``torch.Generator``;
* ``expect``: replace every gate by its mean, i.e. the weight-scaled network W of Eq. 98;
* ``off``: no gate at all (the plain network, no scaling);
* ``replay``: use given noise, so that the same masks serve twice or a set of masks can be enumerated.

With no mode set, a gate follows ``module.training`` as PyTorch users expect: ``sample`` in training,
``expect`` in evaluation. The modes also cover torch's own dropout inside any model (``nn.Dropout`` and its
variants, ``F.dropout`` calls, attention dropout), with the model left in eval mode so that BatchNorm keeps
its inference behaviour; see ``droplab._torch_dropout`` for what is covered and how masks are named.

Each context manager sets the mode of every droplab gate inside a model and
restores what was there before on exit, even after an exception::

    with droplab.modes.sample(model, generator=torch.Generator().manual_seed(0)):
        y = model(x)
    with droplab.modes.record(model, generator=g) as noise:   # sample, and keep the noise drawn
        y1 = model(x)
    with droplab.modes.replay(model, noise):                   # the same subnetwork again
        y2 = model(x)                                          # y2 == y1
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from ._torch_dropout import intercept, torch_dropout_modules

__all__ = ["MODES", "Stochastic", "expect", "gates_of", "off", "record", "replay", "sample"]

MODES = ("sample", "expect", "off", "replay")


class Stochastic:
    """Mixin for every droplab module that draws noise. Holds the mode state the context managers set."""

    _droplab_mode: str | None = None
    _droplab_generator: torch.Generator | None = None
    _droplab_replay: Tensor | None = None
    _droplab_sink: tuple[dict[str, Tensor], str] | None = None

    @property
    def gate_mode(self) -> str:
        """The mode in force: the one set by a context manager, else ``sample``/``expect`` by ``training``."""
        if self._droplab_mode is not None:
            return self._droplab_mode
        return "sample" if getattr(self, "training", True) else "expect"

    def draw_noise(self, draw: Callable[[torch.Generator | None], Tensor], shape: torch.Size | tuple[int, ...], *,
                   binary: bool = False) -> Tensor:
        """The noise for this call: replayed if a replay is in force, else drawn; recorded on request.

        ``binary``: the noise is a mask of 0s and 1s; replayed noise holding another value is refused."""
        if self.gate_mode == "replay":
            noise = self._droplab_replay
            if noise is None:
                raise ValueError(f"replay mode has no noise for this gate ({type(self).__name__}); pass it in "
                                 "the mapping given to droplab.modes.replay, keyed by the module's name")
            if noise.shape != shape:
                raise ValueError(f"replayed noise has shape {tuple(noise.shape)}, this gate needs {tuple(shape)}")
            if binary and not bool(((noise == 0) | (noise == 1)).all()):
                bad = noise[(noise != 0) & (noise != 1)].flatten()[0].item()
                raise ValueError(f"replayed noise for {type(self).__name__} holds {bad:g}; a Bernoulli mask holds "
                                 "only 0 (dropped) and 1 (kept)")
        else:
            noise = draw(self._droplab_generator)
        if self._droplab_sink is not None:
            sink, name = self._droplab_sink
            sink[name] = noise
        return noise


def gates_of(model: nn.Module) -> dict[str, Stochastic]:
    """Every droplab gate inside ``model`` (itself included), by qualified module name.

    Args:
        model: Any torch module.

    Returns:
        dict: Qualified module name -> gate.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    model = compiled_original(model) or model  # a compiled model's gates, named as in its eager module
    return {name: m for name, m in model.named_modules() if isinstance(m, Stochastic)}


_FIELDS = ("_droplab_mode", "_droplab_generator", "_droplab_replay", "_droplab_sink")


def compiled_original(model: nn.Module) -> nn.Module | None:
    """The eager module inside a ``torch.compile``d one (an ``OptimizedModule``), else None. (By name, so that
    droplab does not import torch's compiler where nothing was compiled.)"""
    if type(model).__name__ == "OptimizedModule" and isinstance(getattr(model, "_orig_mod", None), nn.Module):
        return model._orig_mod
    return None


@contextmanager
def _eager(compiled: nn.Module, original: nn.Module) -> Iterator[None]:
    """While open, calls of the compiled module run its original module eagerly (its compiled graphs were traced
    with torch's dropout, in eval mode: deterministic). Nothing else is changed; the compiled forward is back on
    exit, so no graph ever samples."""
    own = compiled.__dict__.get("forward", _MISSING)
    compiled.forward = original.__call__
    try:
        yield
    finally:
        if own is _MISSING:
            compiled.__dict__.pop("forward", None)
        else:
            compiled.forward = own


@contextmanager
def _using(model: nn.Module, values: Callable[[str], dict[str, Any]], mode: str, *,
           generator: torch.Generator | None = None, replay: Mapping[str, Tensor] | None = None,
           sink: dict[str, Tensor] | None = None) -> Iterator[Any]:
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError("droplab's modes cannot reach a TorchScript model: they answer torch's dropout calls and "
                        "module hooks in Python, which scripted code does not make; use the eager module (before "
                        "torch.jit.script)")
    original = compiled_original(model)
    if original is not None:  # a torch.compile'd model: sampled through its eager module, with the same names
        with _eager(model, original), _using(original, values, mode, generator=generator, replay=replay,
                                             sink=sink) as session:
            yield session
        return
    gates = gates_of(model)
    saved = {name: {f: g.__dict__.get(f, _MISSING) for f in _FIELDS} for name, g in gates.items()}
    try:
        for name, gate in gates.items():
            for field, value in values(name).items():
                setattr(gate, field, value)
        if getattr(model, "_droplab_only", False):  # droplab's own networks: no torch dropout to intercept
            yield None
        else:
            with intercept(model, mode, generator=generator, replay=replay, sink=sink) as session:
                yield session
    finally:
        for name, gate in gates.items():
            for field, value in saved[name].items():
                if value is _MISSING:
                    gate.__dict__.pop(field, None)
                else:
                    setattr(gate, field, value)


_MISSING = object()


def _check_generator(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


@contextmanager
def sample(model: nn.Module, *, generator: torch.Generator | None = None) -> Iterator[None]:
    """Gates draw fresh noise from ``generator`` (the global generator when None).

    Args:
        model: Any torch module.
        generator: The noise's generator (None: torch's global one).

    Returns:
        Iterator[None]: A context manager.
    """
    with sampling(model, generator=generator):
        yield


@contextmanager
def sampling(model: nn.Module, *, generator: torch.Generator | None = None) -> Iterator[Any]:
    """``sample``, yielding the record of the torch dropout calls (None for a ``DropoutMLP``): for estimators."""
    _check_generator(generator)
    with _using(model, lambda _: {"_droplab_mode": "sample", "_droplab_generator": generator}, "sample",
                generator=generator) as session:
        yield session


@contextmanager
def expect(model: nn.Module) -> Iterator[None]:
    """Every gate replaced by its mean: the deterministic weight-scaled network (Eq. 98).

    Args:
        model: Any torch module.

    Returns:
        Iterator[None]: A context manager; the gates are back as they were when it closes.
    """
    with _using(model, lambda _: {"_droplab_mode": "expect"}, "expect"):
        yield


@contextmanager
def off(model: nn.Module) -> Iterator[None]:
    """No gate at all: the plain network without noise or scaling.

    Args:
        model: Any torch module.

    Returns:
        Iterator[None]: A context manager; the gates are back as they were when it closes.
    """
    with _using(model, lambda _: {"_droplab_mode": "off"}, "off"):
        yield


@contextmanager
def record(model: nn.Module, *, generator: torch.Generator | None = None) -> Iterator[dict[str, Tensor]]:
    """Sample, and collect the noise each gate drew (last call wins) into the yielded dict.

    Args:
        model: Any torch module.
        generator: The noise's generator (None: torch's global one).

    Returns:
        Iterator[dict[str, Tensor]]: A context manager yielding the dict the noise is collected into.
    """
    _check_generator(generator)
    sink: dict[str, Tensor] = {}
    with _using(model, lambda name: {"_droplab_mode": "sample", "_droplab_generator": generator,
                                     "_droplab_sink": (sink, name)}, "sample", generator=generator, sink=sink):
        yield sink


@contextmanager
def replay(model: nn.Module, noise: Mapping[str, Tensor]) -> Iterator[None]:
    """Gates use the given noise (keyed by module name, as ``record`` yields it) instead of drawing.

    Each gate's noise must have the shape that gate draws for this input; e.g. to run K masks over B
    inputs, repeat the inputs K times and give noise shaped (K * B, ...).

    Args:
        model: Any torch module.
        noise: Module name -> noise, as ``record`` yields it.

    Returns:
        Iterator[None]: A context manager.
    """
    if not isinstance(noise, Mapping):
        raise TypeError(f"noise must be a mapping from gate name to tensor, got {type(noise).__name__}")
    gates = gates_of(model)
    known = set(gates) | set(torch_dropout_modules(compiled_original(model) or model))
    unknown = sorted(k for k in noise if str(k).rsplit("#", 1)[0] not in known and ":" not in str(k))
    if unknown:
        raise ValueError(f"replay noise names {unknown}, which are not gates of this model; "
                         f"its gates are {sorted(known)}")
    for name, value in noise.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"replay noise for {name!r} must be a tensor, got {type(value).__name__}")
    with _using(model, lambda name: {"_droplab_mode": "replay", "_droplab_replay": noise.get(name)}, "replay",
                replay=noise):
        yield
