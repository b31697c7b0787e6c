"""The estimators as one registry: one call signature, and what each can do stated next to it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..statistics import EnsembleStatistics, PredictiveStatistics
from ._moments import dropconnect_inference, gaussian_moments, linear_moments
from ._onepass import moments
from ._predictive import predictive
from ._sampling import exact, monte_carlo, weight_scaled

__all__ = ["ESTIMATORS", "Estimator", "estimate", "estimator"]


@dataclass(frozen=True)
class Estimator:
    """One way to average the dropout ensemble.

    Attributes:
        name: Its Python name (``"monte_carlo"``).
        function: The function that runs it.
        cli: Its name on the command line (``"monte-carlo"``).
        summary: How it averages, in a line.
        exact_for: Where its statistics are exact.
        random: Whether it draws (takes ``samples`` and ``generator``).
        models: ``"DropoutMLP"``, or ``"any"`` (any ``nn.Module`` with droplab gates or torch's dropout; these
            return ``PredictiveStatistics``, the statistics of the model's output, where a ``DropoutMLP``'s give
            every layer's).
        transfers: The transfer functions it handles (hidden and output).
        statistics: The per-unit fields it fills.
    """

    name: str
    function: Callable[..., EnsembleStatistics | PredictiveStatistics]
    cli: str
    summary: str
    exact_for: str
    random: bool
    models: str
    transfers: tuple[str, ...]
    statistics: tuple[str, ...]

    def __call__(self, net: nn.Module, x: Tensor, *, samples: int | None = None,
                 generator: torch.Generator | None = None, **options: Any) -> EnsembleStatistics | PredictiveStatistics:
        """Run on ``net`` and inputs ``x``; ``samples`` and ``generator`` only for random estimators (a
        deterministic one refuses them), other ``options`` go to the function."""
        if self.models == "DropoutMLP":
            from ..net import DropoutMLP

            if not isinstance(net, DropoutMLP):
                raise TypeError(f"{self.name} runs on a DropoutMLP, got {type(net).__name__}; use predictive "
                                "(Monte Carlo) or moments (one pass) for other models")
            bad = sorted({t.name for t in net.transfers} - set(self.transfers))
            if bad:
                raise ValueError(f"{self.name} handles {', '.join(self.transfers)} units, not {', '.join(bad)}; use "
                                 "monte_carlo")
        if not self.random:
            if samples is not None or generator is not None:
                raise ValueError(f"{self.name} is deterministic: it takes no samples or generator")
            return self.function(net, x, **options)
        if samples is not None:
            options["samples"] = samples
        return self.function(net, x, generator=generator, **options)


_ALL = ("logistic", "tanh", "relu", "linear", "softmax")
ESTIMATORS: dict[str, Estimator] = {e.name: e for e in (
    Estimator("weight_scaled", weight_scaled, "weight-scaled", "one pass with every gate at its mean: W (Eq. 98)",
              "the means of linear networks", False, "DropoutMLP", _ALL, ("E", "E_S", "NWGM")),
    Estimator("monte_carlo", monte_carlo, "monte-carlo", "K sampled subnetworks, batched, statistics streamed",
              "nothing (an unbiased estimate, standard errors given)", True, "DropoutMLP", _ALL,
              ("E", "Var", "NWGM", "WGM", "E_S", "Var_S", "E_derivative", "se_E")),
    Estimator("predictive", predictive, "predictive", "Monte Carlo on any model: K sampled members of its output",
              "nothing (an unbiased estimate, standard errors given)", True, "any", _ALL, ("E", "Var", "se_E")),
    Estimator("exact", exact, "exact", "every gate configuration with its probability",
              "every network small enough to enumerate", False, "DropoutMLP", _ALL,
              ("E", "Var", "NWGM", "WGM", "E_S", "Var_S", "E_derivative")),
    Estimator("linear_moments", linear_moments, "linear-moments", "Section 3 recursions, with covariances",
              "linear networks", False, "DropoutMLP", ("linear",), ("E", "Var", "E_S", "Var_S", "E_derivative")),
    Estimator("gaussian_moments", gaussian_moments, "gaussian", "Gaussian S propagated layer by layer",
              "linear networks (otherwise an approximation)", True, "DropoutMLP", _ALL, ("E", "Var", "E_S", "Var_S")),
    Estimator("moments", moments, "moments", "one pass of means and variances through any traceable model",
              "one linear map after each dropout site (otherwise an approximation)", False, "any", _ALL,
              ("E", "Var")),
    Estimator("dropconnect_inference", dropconnect_inference, "dropconnect-inference",
              "Wan et al. (2013): a Gaussian S per layer, sampled", "nothing (an approximation)", True, "DropoutMLP",
              _ALL, ("E", "Var", "E_S", "Var_S")),
)}


def estimator(name: str) -> Estimator:
    """The estimator called ``name`` (its Python or its command-line name).

    Args:
        name: Its Python name (``"monte_carlo"``) or its command-line name (``"monte-carlo"``).

    Returns:
        Estimator: The registry's entry: the function and what it can do.

    Raises:
        ValueError: A name no estimator has (the message lists them).
    """
    for e in ESTIMATORS.values():
        if name in (e.name, e.cli):
            return e
    raise ValueError(f"unknown estimator name={name!r}; expected one of {sorted(ESTIMATORS)}")


def estimate(name: str, net: nn.Module, x: Tensor, *, samples: int | None = None,
             generator: torch.Generator | None = None, **options: Any) -> EnsembleStatistics | PredictiveStatistics:
    """Run the estimator called ``name``: ``estimate("monte_carlo", net, x, samples=1000, generator=g)``.

    Args:
        name: An estimator's Python or command-line name (``ensemble.ESTIMATORS``).
        net: The model (a ``DropoutMLP``, or any model for the estimators whose ``models`` is ``"any"``).
        x: Its inputs.
        samples: Members per input, for random estimators only.
        generator: The draws' generator, for random estimators only.
        **options: Passed to the estimator's function.

    Returns:
        EnsembleStatistics | PredictiveStatistics: What the estimator returns.

    Raises:
        ValueError: An unknown name, or samples or a generator given to a deterministic estimator.
        TypeError: A model the estimator does not take.
    """
    return estimator(name)(net, x, samples=samples, generator=generator, **options)
