"""One way to run a function compiled by ``torch.compile`` with an eager fallback: ``droplab.stacked``'s training
and prediction, and the fused Monte Carlo kernels of ``droplab.ensemble`` (gates, statistics, weight rounding)."""

from __future__ import annotations

import warnings
from typing import Any

import torch

_compiled: dict[str, Any] = {}  # the compiled functions, made on first use (not a result cache)


def run(name: str, fn: Any, compiled: bool, *args: Any) -> Any:
    """``fn(*args)``, compiled by ``torch.compile`` when ``compiled`` (dynamic shapes: other sizes reuse it; pass
    numbers that change, such as a learning rate, as 0-d tensors, or each value compiles anew). Where compiling
    fails (no C++ compiler, say) it warns once and runs every function eagerly from then on: the same function,
    the same numbers to rounding."""
    if not compiled or _compiled.get("failed"):
        return fn(*args)
    if name not in _compiled:
        _compiled[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    try:
        return _compiled[name](*args)
    # any failure of the compiler: the eager function is the same function
    except Exception as error:  # noqa: BLE001
        if _interrupted(error):  # a Ctrl-C the compiler wrapped in its own error: it stops the command, not eager
            raise KeyboardInterrupt from error
        _compiled["failed"] = True
        warnings.warn(f"droplab: torch.compile failed ({type(error).__name__}: {str(error)[:200]}); running "
                      "eagerly (slower, the same result)", RuntimeWarning, stacklevel=3)
        return fn(*args)


def _interrupted(error: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the causes of ``error`` (a compiler that wraps what it catches)."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False
