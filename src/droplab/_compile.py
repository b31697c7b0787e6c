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
    first = name not in _compiled
    if first:
        _compiled[name] = torch.compile(fn, dynamic=True, fullgraph=True)
    try:
        out = _compiled[name](*args)
    # any failure of the compiler: the eager function is the same function
    except Exception as error:  # noqa: BLE001
        if _interrupted(error):  # a Ctrl-C the compiler wrapped in its own error: it stops the command, not eager
            raise KeyboardInterrupt from error
        _compiled["failed"] = True
        warnings.warn(f"droplab: torch.compile failed ({type(error).__name__}: {str(error)[:200]}); running "
                      "eagerly (slower, the same result)", RuntimeWarning, stacklevel=3)
        return fn(*args)
    if first and not _compiled.get(f"{name}:checked"):
        # the first call of each kernel is checked against the eager function: a compiler that generates wrong code
        # for this CPU (measured: torch 2.13's inductor with AVX2 vectors turned a quarter of a Bernoulli gate's kept
        # units into zeros, and the fused statistics into NaN) must not give a silent wrong answer
        eager = fn(*args)
        problem = _disagreement(out, eager)
        _compiled[f"{name}:checked"] = True
        if problem:
            _compiled["failed"] = True
            warnings.warn(f"droplab: torch.compile's {name} kernel disagrees with the eager function on this host "
                          f"({problem}); running eagerly from now on (slower, the right result)", RuntimeWarning,
                          stacklevel=3)
            return eager
    return out


def _disagreement(compiled: Any, eager: Any) -> str | None:
    """Why a compiled function's outputs are not the eager function's, or None where they agree: the same structure,
    shapes and dtypes, NaN in the same places, floats within float32 summation-order rounding (1e-3 relative to the
    output's scale), integers (rounded levels) apart by at most 1 in at most 1% of entries."""
    if isinstance(eager, (tuple, list)):
        if not isinstance(compiled, (tuple, list)) or len(compiled) != len(eager):
            return "another number of outputs"
        for c, e in zip(compiled, eager, strict=True):
            problem = _disagreement(c, e)
            if problem:
                return problem
        return None
    if not isinstance(eager, torch.Tensor):
        return None if compiled == eager else f"{compiled!r} against {eager!r}"
    if not isinstance(compiled, torch.Tensor) or compiled.shape != eager.shape or compiled.dtype != eager.dtype:
        return "outputs of another shape or dtype"
    if eager.numel() == 0:
        return None
    if eager.is_floating_point():
        c, e = compiled.double(), eager.double()
        if not torch.equal(torch.isnan(c), torch.isnan(e)):
            return f"NaN in {int((torch.isnan(c) != torch.isnan(e)).sum())} entries where the other has none"
        finite = torch.isfinite(e) & torch.isfinite(c)
        if not torch.equal(c[~finite], e[~finite]):
            return "infinities in other places"
        if finite.any():
            scale = float(e[finite].abs().max()) or 1.0
            worst = float((c[finite] - e[finite]).abs().max())
            if worst > 1e-3 * scale:
                return f"largest difference {worst:.3g} on outputs of size {scale:.3g}"
        return None
    if eager.dtype == torch.bool:
        return None if torch.equal(compiled, eager) else "other boolean values"
    diff = (compiled.long() - eager.long()).abs()
    if int(diff.max()) > 1 or float((diff > 0).double().mean()) > 0.01:
        return f"integer outputs apart by up to {int(diff.max())} in {float((diff > 0).double().mean()):.1%} of entries"
    return None


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
