"""Estimators of the dropout ensemble. Every one returns ``EnsembleStatistics``, so they compare line by line;
``predictive`` (Monte Carlo on a model droplab did not build, which ``monte_carlo`` calls for such a model)
returns ``PredictiveStatistics``, the statistics of the model's output.

| estimator              | how                                                        | exact for                |
|------------------------|------------------------------------------------------------|--------------------------|
| weight_scaled          | one pass with every gate at its mean: W (Eq. 98)           | linear networks (means)  |
| monte_carlo            | K sampled subnetworks, batched, statistics streamed        | K -> infinity            |
| exact                  | every gate configuration with its probability              | small networks           |
| linear_moments         | Section 3 recursions for means, variances, covariances     | linear networks          |
| gaussian_moments       | Gaussian S propagated layer by layer, Eq. 242 / quadrature | (an approximation)       |
| dropconnect_inference  | Wan et al. (2013): Gaussian S per layer, sampled           | (an approximation)       |

``ESTIMATORS`` holds them with one call signature, ``(net, x, *, samples=None, generator=None, **options)``,
and what each can do (``Estimator``); ``estimate(name, net, x, ...)`` runs one by name.
"""

from ._moments import dropconnect_inference, gaussian_moments, linear_moments
from ._predict import mutual_information, pair_approximations, predict, predictive_entropy, variance_approximations
from ._predictive import PredictiveStatistics, predictive
from ._registry import ESTIMATORS, Estimator, estimate, estimator
from ._sampling import PRECISIONS, exact, monte_carlo, weight_scaled
from ._stats import STATISTICS, EnsembleStatistics, LayerStatistics, Pair

__all__ = [
    "PRECISIONS",
    "ESTIMATORS",
    "STATISTICS",
    "EnsembleStatistics",
    "Estimator",
    "LayerStatistics",
    "Pair",
    "PredictiveStatistics",
    "dropconnect_inference",
    "estimate",
    "estimator",
    "exact",
    "gaussian_moments",
    "linear_moments",
    "monte_carlo",
    "mutual_information",
    "pair_approximations",
    "predict",
    "predictive",
    "predictive_entropy",
    "variance_approximations",
    "weight_scaled",
]
