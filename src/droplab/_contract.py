"""Arguments checked by their annotations, before a public function runs (issue 35's contract).

``checked(fn)`` reads ``fn``'s annotations (``Array``, ``Tensor``, ``float``, ``int``, ``str``, ``bool`` and their
unions with ``None``) and refuses, with a ValueError or TypeError that names the argument, what does not fit:
a tensor that is empty or holds NaN or inf, a number that is a bool, text or NaN, an integer that is a float,
text that is not text. A few names carry their range everywhere in droplab (``lam``, ``tau`` positive; the
variances ``v``, ``var_s``, ``var_alpha`` non-negative; ``keep`` in (0, 1]). Arguments of other annotations (models,
generators, ``Any``) are the function's own to check. A ``RuntimeError`` that torch raises on arguments that passed
these checks (shapes that do not broadcast) becomes a ValueError naming the array arguments.

The tests' contract harness (tests/test_contract.py) calls every public function with generated bad arguments
and holds each to this.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch

from .statistics import EnsembleStatistics, PredictiveStatistics

F = TypeVar("F", bound=Callable[..., Any])

POSITIVE = {"lam", "tau"}
NON_NEGATIVE = {"v", "var_s", "var_alpha", "mse"}
UNIT = {"keep"}
VOCABULARY = {"Array", "Tensor", "float", "int", "str", "bool", "None"}
INDICES = {"y", "labels", "correct", "x"}  # class indices, 0/1 flags, token ids (a model's x): integers welcome


def _tokens(annotation: Any) -> frozenset[str]:
    if annotation is inspect.Parameter.empty:
        return frozenset()
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return frozenset(t.strip() for t in text.split("|"))


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"


def _finite(t: torch.Tensor) -> bool:
    """Whether every value is finite, in one read: a NaN or an infinity makes the sum NaN or infinite. A sum of
    finite values can overflow too (values near the dtype's range end, float16's at 65,504); then each value is
    checked (``torch.isfinite`` reads the tensor four times over, 26x the sum's time on 2000 x 256 float32)."""
    if math.isfinite(float(t.sum())):
        return True
    return bool(torch.isfinite(t).all())


def _check_values(fn: str, name: str, t: torch.Tensor) -> None:
    if t.device.type == "meta":
        return  # shapes without values: the function says what it makes of them
    if t.numel() == 0:
        raise ValueError(f"{fn}: {name} is empty (shape {tuple(t.shape)}); give at least one value")
    if t.is_floating_point() and not _finite(t):
        raise ValueError(f"{fn}: {name} holds NaN or inf; give finite values")
    if name not in POSITIVE and name not in NON_NEGATIVE and name not in UNIT:
        return
    low = float(t.min())
    if name in POSITIVE and low <= 0:
        raise ValueError(f"{fn}: {name} must be positive, got values down to {low:g}")
    if name in NON_NEGATIVE and low < 0:
        raise ValueError(f"{fn}: {name} (a variance) must be non-negative, got values down to {low:g}")
    if name in UNIT and (low <= 0 or float(t.max()) > 1):
        raise ValueError(f"{fn}: {name} (keep probabilities) must lie in (0, 1], got values in [{low:g}, "
                         f"{float(t.max()):g}]")


# the classes an annotation may name, by the name it is written with
_CLASSES: dict[str, tuple[type, ...]] = {
    "nn.Module": (torch.nn.Module,), "torch.nn.Module": (torch.nn.Module,), "torch.Generator": (torch.Generator,),
    "torch.dtype": (torch.dtype,), "torch.device": (torch.device,),
    "EnsembleStatistics": (EnsembleStatistics, PredictiveStatistics),
}


def register_class(name: str, *classes: type) -> None:
    """Let annotations that say ``name`` be checked against ``classes``: a module above this one (``droplab.net``
    registers ``DropoutMLP``) registers its own, so that this module imports nothing of droplab's but the
    statistics' types."""
    _CLASSES[name] = classes


def _check_class(fn: str, name: str, value: Any, kinds: frozenset[str]) -> bool:
    """Whether ``kinds`` name classes only; ``value``, not an instance of them (``_check`` looked), must be None
    where allowed."""
    known = _CLASSES
    named = [k for k in kinds if k in known]
    if not named or kinds - set(named) - {"None"}:
        return False
    if value is None and "None" in kinds:
        return True
    raise TypeError(f"{fn}: {name} must be a {' or '.join(sorted(named))}, got {_describe(value)}")


def _check(fn: str, name: str, value: Any, kinds: frozenset[str]) -> None:
    known = _CLASSES
    if any(isinstance(value, cls) for k in kinds if k in known for cls in known[k]):
        return  # an instance of a class the annotation names (torch.device | str: a device)
    if _check_class(fn, name, value, kinds):
        return
    if not kinds & {"Array", "Tensor", "float", "int", "str", "bool"} or kinds - VOCABULARY - set(known):
        return  # sequences, paths, Any, unions with kinds not known here: the function's own to check
    if value is None:
        if "None" in kinds:
            return
        raise TypeError(f"{fn}: {name} must not be None")
    arrays = kinds & {"Array", "Tensor"}
    numeric = kinds & {"float", "int"}
    if isinstance(value, torch.Tensor):
        if not arrays:
            raise TypeError(f"{fn}: {name} must be {' or '.join(sorted(kinds - {'None'}))}, got {_describe(value)}")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{fn}: {name} must hold real numbers, got {_describe(value)}")
        if not value.is_floating_point() and "int" not in kinds and name not in INDICES:
            raise TypeError(f"{fn}: {name} must hold floating-point numbers, got {_describe(value)}; use "
                            f"{name}.float()")
        _check_values(fn, name, value)
        return
    if isinstance(value, bool) or isinstance(value, np.bool_):
        if "bool" in kinds:
            return
        raise TypeError(f"{fn}: {name} must be {' or '.join(sorted(kinds - {'None'}))}, got the bool {value}")
    if "bool" in kinds:
        raise TypeError(f"{fn}: {name} must be True or False, got {_describe(value)}")
    if "str" in kinds:
        if not isinstance(value, str):
            raise TypeError(f"{fn}: {name} must be text, got {_describe(value)}")
        return
    if "Array" in kinds and isinstance(value, (np.ndarray, list, tuple)):
        try:
            as_array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{fn}: {name} must be numbers (a tensor, an array or a list of numbers), got "
                            f"{_describe(value)}") from None
        _check_values(fn, name, torch.from_numpy(np.array(as_array)))
        return
    if "Tensor" in kinds and not numeric:
        hint = f"; convert it, e.g. torch.from_numpy({name}).float()" if isinstance(value, np.ndarray) else ""
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(value).__module__}.{type(value).__name__}"
                        f"{hint}")
    if isinstance(value, numbers.Real) and (numeric or "Array" in kinds):
        if "float" not in kinds and "Array" not in kinds and not isinstance(value, numbers.Integral):
            raise TypeError(f"{fn}: {name} must be an integer, got {_describe(value)}")
        if not math.isfinite(float(value)):
            raise ValueError(f"{fn}: {name} must be a finite number, got {value}")
        if name in POSITIVE | NON_NEGATIVE | UNIT:
            _check_values(fn, name, torch.tensor(float(value)))
        return
    raise TypeError(f"{fn}: {name} must be {' or '.join(sorted(kinds - {'None'}))}, got {_describe(value)}")


def checked(fn: F) -> F:
    """``fn`` with its arguments checked by their annotations first (see the module's doc); anything but a function
    (a constant, a class) comes back as it is."""
    if not inspect.isfunction(fn) or getattr(fn, "_droplab_checked", False):
        return fn
    sig = inspect.signature(fn)
    kinds = {name: _tokens(p.annotation) for name, p in sig.parameters.items()}
    arrays = [name for name, k in kinds.items() if k & {"Array", "Tensor"}]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{fn.__name__}: {exc}") from None
        for name, value in bound.arguments.items():
            if sig.parameters[name].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                _check(fn.__name__, name, value, kinds[name])
                if kinds[name] & {"float", "int"} and isinstance(value, (numbers.Real, np.generic)) and \
                        not isinstance(value, (bool, np.bool_)):  # NumPy scalars and huge ints as Python numbers
                    if "float" in kinds[name] and (not isinstance(value, numbers.Integral) or abs(int(value)) > 2**53):
                        bound.arguments[name] = float(value)
                    elif isinstance(value, np.integer):
                        bound.arguments[name] = int(value)
        try:
            return fn(*bound.args, **bound.kwargs)
        except RuntimeError as exc:  # torch on arguments that passed the checks: shapes that do not fit
            if "out of memory" in str(exc) or not arrays:
                raise
            raise ValueError(f"{fn.__name__}: the arguments {', '.join(arrays)} do not fit together: "
                             f"{str(exc).splitlines()[0]}") from None

    wrapper._droplab_checked = True  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]
