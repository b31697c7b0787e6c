r"""Scores of class predictions from any estimator: accuracy, negative log-likelihood, Brier score, calibration.

Every function takes ``predictions``, either a tensor of class probabilities (B, C) or the
``EnsembleStatistics`` an estimator returns (its output layer's mean probabilities are used), and integer
``labels`` (B,). Definitions:

* ``negative_log_likelihood``: mean over inputs of \(-\log p_y\) (probabilities clipped to
  \([\epsilon, 1 - \epsilon]\), \(\epsilon\) the dtype's machine epsilon, as scikit-learn's ``log_loss``);
* ``brier_score``: mean over inputs of \(\sum_c (p_c - [y = c])^2\) (Brier, 1950; 0 is perfect, 2 the worst);
* ``expected_calibration_error``: sum over confidence bins \(B_m\) of \(\frac{|B_m|}{B}\,
  |\mathrm{acc}(B_m) - \mathrm{conf}(B_m)|\), with the confidence \(\max_c p_c\) in ``bins`` equal-width bins
  on [0, 1] (Guo et al., 2017, Eq. 3);
* ``reliability``: the per-bin counts, accuracies and confidences behind the ECE; ``reliability_diagram``
  draws them.

What the uncertainty is for (``droplab._scores``, each tested against an independent reference):
``ood_scores`` (AUROC, AUPR in and out, FPR at 95% TPR of an uncertainty score, out-of-distribution inputs
positive), ``risk_coverage`` (selective prediction: the risk-coverage curve and its area, AURC),
``temperature_scale`` (one temperature fitted on validation logits of the Monte Carlo members) and
``regression_scores`` (RMSE, Gal & Ghahramani's Monte Carlo log-likelihood, Gaussian NLL, interval coverage,
CRPS). ``entropy`` and ``mutual_information`` are the one place droplab computes those.

>>> p = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
>>> round(brier_score(p, torch.tensor([0, 1])), 4)
0.05
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._scores import (
    OODScores,
    RiskCoverage,
    TemperatureScaling,
    ood_scores,
    regression_scores,
    risk_coverage,
    temperature_scale,
)
from .checkpoint import atomic_save_figure
from .statistics import EnsembleStatistics, PredictiveStatistics

__all__ = ["OODScores", "Reliability", "RiskCoverage", "TemperatureScaling", "accuracy", "brier_score", "entropy",
           "expected_calibration_error", "mutual_information", "negative_log_likelihood", "ood_scores",
           "regression_scores", "reliability", "reliability_diagram", "risk_coverage", "risk_coverage_plot", "scores",
           "temperature_scale"]


def entropy(p: Tensor, *, log_p: Tensor | None = None) -> Tensor:
    r"""The entropy of each row of probabilities (the last dimension), in nats, with 0 log 0 = 0. ``log_p``, when
    the caller has it (``log_softmax`` of logits), is used instead of log p: exact where p underflows. The one
    place droplab computes an entropy: the predictive and expected entropies of every estimator come from here.

    $$
    H(p) = -\sum_c p_c \log p_c
    $$

    Args:
        p: Probabilities, classes along the last dimension.
        log_p: log p, where the caller has it exactly.

    Returns:
        Tensor: The entropy of each row (p's shape without its last dimension), in nats.
    """
    if log_p is None:
        log_p = torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))
    return -torch.where(p > 0, p * log_p, torch.zeros_like(p)).sum(-1)


def mutual_information(predictions: EnsembleStatistics | Tensor, expected_entropy: Tensor | None = None) -> Tensor:
    r"""The mutual information between the label and the dropout mask per input (nats), the BALD score: the
    disagreement between the members, the entropy of their mean less their mean entropy; clamped at 0 (a negative
    value is rounding). The one mutual information of droplab (``droplab.ensemble.mutual_information`` is this
    function).

    $$
    I(y; \delta) = H\big(E_\delta(p)\big) - E_\delta\big(H(p)\big)
    $$

    Args:
        predictions:
            The statistics of an estimator that computed the members' mean entropy (``monte_carlo`` or ``exact`` on a
            softmax ``DropoutMLP``, ``predictive``, ``moments(..., output="logits")``), or the mean class probabilities
            E(p), shape (B, C).
        expected_entropy:
            E(H(p)) per input, shape (B,): given with probabilities, left out with statistics (which hold it).

    Returns:
        Tensor: Shape (B,), in nats.
    """
    if isinstance(predictions, (EnsembleStatistics, PredictiveStatistics)):
        if expected_entropy is not None:
            raise ValueError("expected_entropy comes from the statistics; pass statistics alone, or probabilities "
                             "with their expected entropy")
        if predictions.output_kind == "values" or predictions.expected_entropy is None:
            raise ValueError(f"mutual information needs E(H(p)) over the ensemble, which these {predictions.estimator} "
                             "statistics do not hold; use monte_carlo or exact on a softmax network, or predictive / "
                             "moments with output='logits' or 'probabilities'")
        return (entropy(predictions.output.E) - predictions.expected_entropy).clamp_min(0)
    if expected_entropy is None:
        raise ValueError("predictions are mean class probabilities here, so pass expected_entropy (E(H(p)) per "
                         "input) too, or pass the statistics instead")
    if predictions.dim() < 1 or tuple(expected_entropy.shape) != tuple(predictions.shape[:-1]):
        raise ValueError(f"expected_entropy must have the shape of predictions without its class dimension "
                         f"{tuple(predictions.shape[:-1])}, got {tuple(expected_entropy.shape)}")
    return (entropy(predictions) - expected_entropy).clamp_min(0)


def _probabilities(predictions: Any, labels: Any) -> tuple[Tensor, Tensor]:
    if isinstance(predictions, (EnsembleStatistics, PredictiveStatistics)):
        if predictions.output_kind == "values":
            raise ValueError("these statistics are of output='values'; class scores need output='logits' or "
                             "'probabilities' (or a softmax DropoutMLP)")
        predictions = predictions.output.E
    if not isinstance(predictions, Tensor) or predictions.dim() != 2 or predictions.shape[0] == 0:
        raise ValueError(f"predictions must be class probabilities of shape (B, C) with B >= 1, or EnsembleStatistics; "
                         f"got {getattr(predictions, 'shape', type(predictions).__name__)}")
    if not predictions.is_floating_point():
        raise TypeError(f"predictions must be floating-point probabilities, got dtype {predictions.dtype}")
    p = predictions.detach().to(torch.float64)
    if not bool(torch.isfinite(p).all()) or float(p.min()) < 0 or float(p.max()) > 1 or \
            float((p.sum(1) - 1).abs().max()) > 1e-3:
        raise ValueError("predictions must be probabilities: finite, in [0, 1], each row summing to 1 "
                         f"(rows sum to {float(p.sum(1).min()):.4g}..{float(p.sum(1).max()):.4g}); apply softmax "
                         "to logits first")
    try:
        labels = torch.as_tensor(labels, device=p.device)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise TypeError(f"labels must be integer class indices (a tensor, an array or a list of ints), got "
                        f"{type(labels).__name__}") from None
    if labels.dim() != 1 or labels.shape[0] != p.shape[0]:
        raise ValueError(f"labels must have shape ({p.shape[0]},), one class index per prediction, got "
                         f"{tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer class indices, got dtype {labels.dtype}")
    if int(labels.min()) < 0 or int(labels.max()) >= p.shape[1]:
        raise ValueError(f"labels must lie in [0, {p.shape[1] - 1}] for {p.shape[1]} classes, got "
                         f"{int(labels.min())}..{int(labels.max())}")
    return p, labels.long()


def accuracy(predictions: Any, labels: Any) -> float:
    """Fraction of inputs whose most probable class is the label.

    Args:
        predictions: Class probabilities (B, C), or the statistics of an estimator (their output layer's mean).
        labels: The true classes, (B,) integers.

    Returns:
        float: In [0, 1].
    """
    p, y = _probabilities(predictions, labels)
    return float((p.argmax(1) == y).double().mean())


def negative_log_likelihood(predictions: Any, labels: Any) -> float:
    r"""The mean negative log-likelihood of the labels y_b of the B inputs, in nats (scikit-learn's ``log_loss``).

    $$
    \mathrm{NLL} = -\frac{1}{B} \sum_{b=1}^{B} \log p_{b, y_b}
    $$

    Args:
        predictions: Class probabilities (B, C), or the statistics of an estimator (their output layer's mean).
        labels: The true classes, (B,) integers.

    Returns:
        float: In nats.
    """
    p, y = _probabilities(predictions, labels)
    eps = torch.finfo(predictions.dtype if isinstance(predictions, Tensor) else torch.float64).eps
    return float(-torch.log(p.gather(1, y[:, None]).clamp(eps, 1 - eps)).mean())


def brier_score(predictions: Any, labels: Any) -> float:
    r"""The Brier score over all classes (Brier, 1950): 0 is perfect, 2 the worst.

    $$
    \mathrm{Brier} = \frac{1}{B} \sum_{b=1}^{B} \sum_{c} \big(p_{b,c} - [y_b = c]\big)^2
    $$

    Args:
        predictions: Class probabilities (B, C), or the statistics of an estimator (their output layer's mean).
        labels: The true classes, (B,) integers.

    Returns:
        float: In [0, 2].
    """
    p, y = _probabilities(predictions, labels)
    target = torch.nn.functional.one_hot(y, p.shape[1]).to(p.dtype)
    return float((p - target).square().sum(1).mean())


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: its edges, how many inputs fell in it, their accuracy and mean confidence.

    Attributes:
        edges: (bins + 1,) the bins' edges.
        counts: (bins,) inputs per bin.
        accuracy: (bins,) their accuracy, NaN for an empty bin.
        confidence: (bins,) their mean confidence, NaN for an empty bin.
    """

    edges: Tensor  # (bins + 1,)
    counts: Tensor  # (bins,)
    accuracy: Tensor  # (bins,), NaN for an empty bin
    confidence: Tensor  # (bins,), NaN for an empty bin

    @property
    def ece(self) -> float:
        n = float(self.counts.sum())
        full = self.counts > 0
        return float((self.counts[full] / n * (self.accuracy[full] - self.confidence[full]).abs()).sum())


def reliability(predictions: Any, labels: Any, *, bins: int = 15) -> Reliability:
    """Bin inputs by confidence max_c p_c into ``bins`` equal bins ((lo, hi], the first [0, hi]).

    Args:
        predictions: Class probabilities (B, C), or the statistics of an estimator (their output layer's mean).
        labels: The true classes, (B,) integers.
        bins: Equal-width confidence bins.

    Returns:
        Reliability: Per bin: confidence, accuracy and count.
    """
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    p, y = _probabilities(predictions, labels)
    confidence, guess = p.max(1)
    correct = (guess == y).to(torch.float64)
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64, device=p.device)
    index = (torch.bucketize(confidence, edges[1:-1], right=False)).clamp(0, bins - 1)  # (lo, hi]
    counts = torch.zeros(bins, dtype=torch.float64, device=p.device).index_add_(0, index, torch.ones_like(correct))
    hits = torch.zeros_like(counts).index_add_(0, index, correct)
    conf = torch.zeros_like(counts).index_add_(0, index, confidence)
    nan = torch.full_like(counts, float("nan"))
    return Reliability(edges.cpu(), counts.cpu(), torch.where(counts > 0, hits / counts, nan).cpu(),
                       torch.where(counts > 0, conf / counts, nan).cpu())


def expected_calibration_error(predictions: Any, labels: Any, *, bins: int = 15) -> float:
    r"""ECE over ``bins`` equal-width confidence bins B_m (Guo et al., 2017): the gap between accuracy and mean
    confidence max_c p_c in each bin, weighted by the share of the n inputs that fall in it.

    $$
    \mathrm{ECE} = \sum_{m} \frac{|B_m|}{n} \big|\mathrm{acc}(B_m) - \mathrm{conf}(B_m)\big|
    $$

    Args:
        predictions: Class probabilities (B, C), or the statistics of an estimator (their output layer's mean).
        labels: The true classes, (B,) integers.
        bins: Equal-width confidence bins.

    Returns:
        float: In [0, 1].
    """
    return reliability(predictions, labels, bins=bins).ece


def scores(predictions: Any, labels: Any, *, bins: int = 15) -> dict[str, float]:
    """All four scores: ``accuracy``, ``nll``, ``brier``, ``ece``.

    Args:
        predictions: Class probabilities (B, C), or the statistics of an estimator (their output layer's mean).
        labels: The true classes, (B,) integers.
        bins: Equal-width confidence bins of the ECE.

    Returns:
        dict: ``accuracy``, ``nll``, ``brier``, ``ece``.
    """
    return {"accuracy": accuracy(predictions, labels), "nll": negative_log_likelihood(predictions, labels),
            "brier": brier_score(predictions, labels),
            "ece": expected_calibration_error(predictions, labels, bins=bins)}


def reliability_diagram(predictions: Any, labels: Any, path: str | os.PathLike[str] | None = None, *,
                        bins: int = 15, title: str | None = None, ax: Any = None) -> Any:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration and, below, the share of
    inputs per bin.

    Draws into ``ax`` if given (without the share panel), else a new figure; writes a PNG to ``path``
    (atomically) if given. Returns the matplotlib figure.

    Args:
        predictions: Class probabilities (B, C), or the statistics of an estimator (their output layer's mean).
        labels: The true classes, (B,) integers.
        path: A PNG to write (atomically), or None.
        bins: Equal-width confidence bins.
        title: The figure's title.
        ax: A matplotlib axes to draw into, or None for a new figure.

    Returns:
        matplotlib.figure.Figure: The figure.
    """
    from ._figures import subplots

    rel = reliability(predictions, labels, bins=bins)
    share = None
    if ax is None:
        fig, (ax, share) = subplots(2, 1, figsize=(5.4, 6.2), dpi=110, sharex=True,
                                        gridspec_kw={"height_ratios": (3, 1), "hspace": 0.08})
    else:
        fig = ax.figure
    centers = ((rel.edges[:-1] + rel.edges[1:]) / 2).numpy()
    width = 1.0 / bins
    full = (rel.counts > 0).numpy()
    acc, conf = rel.accuracy.numpy()[full], rel.confidence.numpy()[full]
    ax.bar(centers[full], acc, width=width * 0.92, color="#4c72b0", label="accuracy in bin")
    ax.bar(centers[full], conf - acc, bottom=acc, width=width * 0.92, fill=False, hatch="//", edgecolor="#c44e52",
           linewidth=1.0, label="gap to the bin's mean confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy", fontsize=11)
    ax.set_title(title or f"reliability diagram (ECE {rel.ece:.3f})", fontsize=12, pad=36)
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=9, frameon=False)  # above the bars
    if share is None:
        ax.set_xlabel("confidence (max class probability)", fontsize=11)
    else:
        share.bar(centers, (rel.counts / rel.counts.sum()).numpy(), width=width * 0.92, color="#888888")
        share.set_xlabel("confidence (max class probability)", fontsize=11)
        share.set_ylabel("share of inputs", fontsize=10)
        share.set_xlim(0, 1)
    if path is not None:
        atomic_save_figure(fig, path, bbox_inches="tight")
    return fig


def risk_coverage_plot(curve: RiskCoverage, path: str | os.PathLike[str] | None = None, *,
                       title: str | None = None) -> Any:
    """The risk-coverage curve of ``risk_coverage``: the error rate of the kept inputs against the share kept (the
    most confident first), with the error rate of all inputs; writes a PNG to ``path`` (atomically) if given.

    Args:
        curve: What ``risk_coverage`` returned.
        path: A PNG to write (atomically), or None.
        title: The figure's title.

    Returns:
        matplotlib.figure.Figure: The figure.
    """
    from ._figures import subplots

    fig, ax = subplots(figsize=(5.4, 4.2), dpi=110)
    ax.plot(curve.coverage.numpy(), 100 * curve.risk.numpy(), color="#4C72B0",
            label=f"kept inputs, most confident first (AURC {curve.aurc:.4f})")
    ax.axhline(100 * float(curve.risk[-1]), color="k", ls="--", lw=1, label="all inputs")
    ax.set_xlabel("coverage (share of inputs kept)")
    ax.set_ylabel("risk (error rate of the kept inputs, %)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.set_title(title or "risk-coverage curve")
    ax.legend(fontsize=9)
    fig.tight_layout()
    if path is not None:
        atomic_save_figure(fig, path, bbox_inches="tight")
    return fig


from ._contract import checked as _checked  # noqa: E402  (every public function checks its arguments first)

for _name in __all__:
    if _name[0].islower():
        globals()[_name] = _checked(globals()[_name])
