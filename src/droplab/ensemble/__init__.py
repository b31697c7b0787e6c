"""Estimators of the dropout ensemble. On a ``DropoutMLP`` every one returns ``EnsembleStatistics`` (every layer's
per-unit statistics), so they compare line by line; on any other model ``predictive`` (Monte Carlo) and
``moments`` (one pass) return ``PredictiveStatistics``, the statistics of the model's output. Both types live in
``droplab.statistics``. ``monte_carlo`` is the per-unit estimator of a ``DropoutMLP``; called on another model it
hands the call to ``predictive`` (kept so that code written for droplab 0.4's ``monte_carlo`` on any model runs; the
registry's ``monte_carlo`` takes a ``DropoutMLP`` only and names ``predictive`` for the rest).

| estimator              | how                                                        | exact for                |
|------------------------|------------------------------------------------------------|--------------------------|
| weight_scaled          | one pass with every gate at its mean: W (Eq. 98)           | linear networks (means)  |
| monte_carlo            | K sampled subnetworks, batched, statistics streamed        | K -> infinity            |
| predictive             | Monte Carlo on any model: K members of its output          | K -> infinity            |
| exact                  | every gate configuration with its probability              | small networks           |
| linear_moments         | Section 3 recursions for means, variances, covariances     | linear networks          |
| gaussian_moments       | Gaussian S propagated layer by layer, Eq. 242 / quadrature | (an approximation)       |
| dropconnect_inference  | Wan et al. (2013): Gaussian S per layer, sampled           | (an approximation)       |

``moments(model, x)`` is the one-pass estimator for any model ``torch.fx`` can trace: the mean and the (diagonal)
variance of every value carried through the model's graph, exact through linear maps and by the paper's
approximations through nonlinearities (``droplab.ensemble._onepass``); it returns ``PredictiveStatistics``.

``ESTIMATORS`` holds them with one call signature, ``(net, x, *, samples=None, generator=None, **options)``,
and what each can do (``Estimator``); ``estimate(name, net, x, ...)`` runs one by name.

Monte Carlo options (``monte_carlo`` on a ``DropoutMLP``):

``precision`` (a ``DropoutMLP``; None: the inputs' dtype): ``"float32"``; ``"bfloat16"``, one product
per layer on the matrix engine with the weights cast to bfloat16 once per call (``low_precision_weights``);
``"bfloat16x3"``, three bfloat16 products that carry the low parts of the weights and of the gated outputs
(about float32's accuracy); or ``"bfloat16c"``, one bfloat16 product per layer whose rounding cannot bias the
estimate: the weights and the inputs rounded stochastically (expectation exact; redrawn every few chunks from a
generator of their own) and each chunk's mean product made exact (``MeanCorrected``). Masks, transfer functions
and statistics stay in float32, and the masks are the float32 run's for the same generator. Measured against
float64 with the same masks on the paper network, 10 inputs x 10,000 samples (``benchmarks/mc_throughput.py``
prints it): ``bfloat16`` puts the largest |E - E_f64| at 1.67 Monte Carlo standard errors, a bias that does not
average out, so use it where that error is acceptable (predictions, uncertainty scores); ``bfloat16x3`` at 0.03,
``bfloat16c`` at 0.025 for 1.2x bfloat16's time. ``"int8c"`` is bfloat16c's estimator with the products in
int8 (``Int8Corrected``: each weight row and each input's gated outputs scaled to 127 levels, the weights and the
inputs rounded stochastically, the hidden outputs to nearest, each chunk's mean product made exact; the int32
sums are exact): on the 2-core benchmark CPU the int8 product runs at 2x the bfloat16 rate, and int8c puts the
largest |E - E_f64| at 0.006 standard errors at 10,000 samples (0.018 at 100,000). Layers whose sizes are not
multiples of 8 (the paper network's 10 outputs) and connection-dropout layers run in float32 under it
(``droplab reproduce``'s default). On a ReLU network a unit that fires in one sample of thousands has E = SE,
and whether that sample's S rounds above 0 moves E by a whole SE (up to 2.24 SE under int8c, 2.14 under
bfloat16c, on a 64-128-128-10 network at 4,000 samples); the units that fire in 10 samples or more stayed
within 0.3 SE.
``statistics`` restricts the per-unit statistics to those named (E is always computed), to save time.
``fused=True`` (a ``DropoutMLP``) runs two kernels compiled by ``torch.compile``: each scalar-keep Bernoulli
gate (mask, multiply and, in bfloat16, the cast, in one pass; the same masks as unfused) and each logistic
layer's per-member statistics (one read of S and O instead of a pass per statistic). The first call in a
process compiles them (seconds); later calls of any size reuse them; where compiling fails (no C++ compiler) it
warns once and runs the same functions eagerly (``droplab._compile``), and so it does where a kernel's first call
disagrees with the eager function (checked on every kernel: torch 2.13's inductor generated wrong gates with AVX2
vectors). Under ``bfloat16c`` the gate also rounds
and sums the chunk, and the weights' stochastic rounding is one pass; under ``int8c`` the gate also scales,
rounds to int8 and sums the chunk (where the gated values have a bound known in advance), and the dequantization
is one pass. The statistics' sums are taken in another order, so results match the unfused path to float32
rounding, not bit for bit (under int8c, to a level's rounding where float32 rounding moves a value across a
rounding boundary: within 0.05 SE, tested).
Memory does not grow with K: members run in chunks, one layer at a time, sized to ``memory`` bytes (and,
on a CPU, to about ``tile`` bytes per layer tensor, 4 MiB by default, so that the elementwise work runs from
cache; the chunk size changes how the masks are drawn, so keep it fixed to compare runs). ``timings``, a dict,
gets the seconds spent in the per-unit statistics added under ``"statistics"`` (for profiling).
"""

from ..statistics import STATISTICS, EnsembleStatistics, LayerStatistics, Pair, PredictiveStatistics
from ._common import chunk_size
from ._moments import dropconnect_inference, gaussian_moments, linear_moments
from ._onepass import MomentsCheck, check_moments, moments
from ._precision import PRECISIONS
from ._predict import mutual_information, pair_approximations, predict, predictive_entropy, variance_approximations
from ._predictive import predictive
from ._registry import ESTIMATORS, Estimator, estimate, estimator
from ._sampling import exact, monte_carlo, weight_scaled

__all__ = [
    "PRECISIONS",
    "ESTIMATORS",
    "STATISTICS",
    "EnsembleStatistics",
    "Estimator",
    "LayerStatistics",
    "MomentsCheck",
    "Pair",
    "PredictiveStatistics",
    "check_moments",
    "chunk_size",
    "dropconnect_inference",
    "estimate",
    "estimator",
    "exact",
    "gaussian_moments",
    "linear_moments",
    "moments",
    "monte_carlo",
    "mutual_information",
    "pair_approximations",
    "predict",
    "predictive",
    "predictive_entropy",
    "variance_approximations",
    "weight_scaled",
]

from .._contract import checked as _checked  # noqa: E402  (every public function checks its arguments first)

for _name in __all__:
    if _name[0].islower():
        globals()[_name] = _checked(globals()[_name])
