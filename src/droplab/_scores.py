"""What uncertainty is used for: out-of-distribution detection, selective prediction, post-hoc calibration and
regression scores (re-exported by ``droplab.metrics``).

Conventions, stated once:

* an *uncertainty score* is larger for inputs the model should not be trusted on (predictive entropy, mutual
  information, variation ratio, 1 - max probability); ``ood_scores`` treats out-of-distribution inputs as the
  positive class, as torch-uncertainty's AUROC, AUPR and FPR95 do;
* a *confidence* is larger for inputs the model should be trusted on (max class probability); ``risk_coverage``
  keeps the most confident inputs first;
* regression scores are in the targets' units, on the scale the targets are given in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .statistics import PredictiveStatistics

__all__ = ["OODScores", "RiskCoverage", "TemperatureScaling", "ood_scores", "regression_scores", "risk_coverage",
           "temperature_scale"]


def _vector(values: Any, name: str) -> Tensor:
    """A 1-D float64 tensor of finite numbers, or a ValueError/TypeError that says what came."""
    if isinstance(values, Tensor):
        t = values.detach().to("cpu", torch.float64)
    else:
        try:
            t = torch.as_tensor(values, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a tensor or array of numbers, got {type(values).__name__}") from None
    t = t.reshape(-1) if t.dim() == 2 and 1 in t.shape else t
    if t.dim() != 1:
        raise ValueError(f"{name} must be one number per input (shape (B,)), got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty; give at least one input")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} holds NaN or inf; score only finite values")
    return t


# ------------------------------------------------------------------------------------ out-of-distribution
@dataclass(frozen=True)
class OODScores:
    """Out-of-distribution detection from an uncertainty score, out-of-distribution inputs the positives.

    Attributes:
        auroc: Area under the ROC curve (0.5: no better than chance).
        aupr_in: Average precision with the in-distribution inputs positive (scored by -score).
        aupr_out: Average precision with the out-of-distribution inputs positive.
        fpr_at_95_tpr: Share of in-distribution inputs flagged at the threshold that catches 95% of the others.
    """

    auroc: float  # area under the ROC curve (0.5: no better than chance)
    aupr_in: float  # average precision with in-distribution inputs positive (scored by -score)
    aupr_out: float  # average precision with out-of-distribution inputs positive
    fpr_at_95_tpr: float  # share of in-distribution inputs flagged at the threshold that catches 95% of the others


def _roc(scores: Tensor, positive: Tensor) -> tuple[Tensor, Tensor]:
    """(FPR, TPR) at every distinct threshold, from the largest score down (ties cut together)."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], positive[order]
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last input of each group of equal scores
    tp, fp = torch.cumsum(y, 0)[last], torch.cumsum(1 - y, 0)[last]
    return fp / (1 - y).sum(), tp / y.sum()


def _average_precision(scores: Tensor, positive: Tensor) -> float:
    """sum_n (R_n - R_{n-1}) P_n over distinct thresholds (scikit-learn's average_precision_score)."""
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], positive[order]
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    tp = torch.cumsum(y, 0)[last]
    seen = torch.arange(1, len(s) + 1, dtype=torch.float64)[last]
    precision, recall = tp / seen, tp / y.sum()
    steps = torch.diff(recall, prepend=torch.zeros(1, dtype=torch.float64))
    return float((steps * precision).sum())


def ood_scores(in_scores: Any, out_scores: Any) -> OODScores:
    """AUROC, AUPR (in- and out-of-distribution positive) and FPR at 95% TPR of an uncertainty score that should
    be larger on out-of-distribution inputs (``out_scores``) than on the in-distribution ones (``in_scores``):
    e.g. ``stats.predictive_entropy`` or ``stats.mutual_information`` of ``monte_carlo`` on each set.

    >>> round(ood_scores([0.1, 0.2, 0.3], [0.25, 0.9]).auroc, 4)
    0.8333

    Args:
        in_scores: The score of each in-distribution input (1-D).
        out_scores: The score of each out-of-distribution input (1-D).

    Returns:
        OODScores: ``auroc``, ``aupr_in``, ``aupr_out``, ``fpr_at_95_tpr``.
    """
    a, b = _vector(in_scores, "in_scores"), _vector(out_scores, "out_scores")
    scores = torch.cat([a, b])
    out = torch.cat([torch.zeros_like(a), torch.ones_like(b)])
    # AUROC as the Mann-Whitney statistic, ties counted half
    ranks = _average_ranks(scores)
    auroc = float((ranks[len(a):].sum() - len(b) * (len(b) + 1) / 2) / (len(a) * len(b)))
    fpr, tpr = _roc(scores, out)
    fpr95 = float(fpr[torch.nonzero(tpr >= 0.95)[0, 0]])
    return OODScores(auroc, _average_precision(-scores, 1 - out), _average_precision(scores, out), fpr95)


def _average_ranks(values: Tensor) -> Tensor:
    order = torch.argsort(values, stable=True)
    s = values[order]
    ranks = torch.empty_like(values)
    start = 0
    boundaries = torch.nonzero(s[1:] != s[:-1]).flatten().tolist() + [len(s) - 1]
    for end in boundaries:  # one pass over groups of equal values: their ranks averaged
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


# ------------------------------------------------------------------------------------ selective prediction
@dataclass(frozen=True)
class RiskCoverage:
    """The risk-coverage curve: keeping the ``k`` most confident inputs (coverage k / n), the error rate among
    them (risk), for k = 1..n; ``aurc`` is the mean risk over k (the area under the curve, Geifman et al., 2019).

    Attributes:
        coverage: (n,) k / n for k = 1..n.
        risk: (n,) the error rate among the k most confident inputs.
        aurc: The mean of ``risk``.
    """

    coverage: Tensor  # (n,)
    risk: Tensor  # (n,)
    aurc: float

    def risk_at(self, coverage: float) -> float:
        """The risk when the most confident ``coverage`` share of the inputs is kept (at least one input)."""
        if not 0 < coverage <= 1:
            raise ValueError(f"coverage must be in (0, 1], got {coverage!r}")
        k = max(1, math.ceil(coverage * len(self.coverage) - 1e-9))
        return float(self.risk[k - 1])

    def coverage_at(self, risk: float) -> float:
        """The largest coverage whose risk is at most ``risk`` (0 if none)."""
        ok = torch.nonzero(self.risk <= risk + 1e-12).flatten()
        return float(self.coverage[ok[-1]]) if len(ok) else 0.0


def risk_coverage(confidence: Any, correct: Any) -> RiskCoverage:
    """Selective prediction: inputs sorted by ``confidence`` (largest first; ties keep the given order), the
    error rate of the kept inputs at every coverage, and its mean (AURC). ``correct`` holds 1 (or True) for a
    right prediction, 0 for a wrong one.

    >>> round(risk_coverage([0.9, 0.8, 0.6], [1, 0, 1]).aurc, 4)
    0.2778

    Args:
        confidence: The confidence of each prediction (1-D).
        correct: 1 or True where the prediction is right (1-D).

    Returns:
        RiskCoverage: The coverages, the risks at each and ``aurc``.
    """
    c = _vector(confidence, "confidence")
    ok = _vector(correct, "correct")
    if len(ok) != len(c):
        raise ValueError(f"confidence has {len(c)} inputs and correct has {len(ok)}; give one of each per input")
    if not bool(((ok == 0) | (ok == 1)).all()):
        raise ValueError("correct must hold 0 (wrong) or 1 (right) per input")
    order = torch.argsort(c, descending=True, stable=True)
    errors = torch.cumsum(1 - ok[order], 0)
    k = torch.arange(1, len(c) + 1, dtype=torch.float64)
    risk = errors / k
    return RiskCoverage(k / len(c), risk, float(risk.mean()))


# ------------------------------------------------------------------------------------ temperature scaling
@dataclass(frozen=True)
class TemperatureScaling:
    """A fitted temperature T: ``apply(logits)`` gives the ensemble's mean of softmax(logits / T) over members.

    Attributes:
        temperature: The fitted T.
        nll_before: The validation NLL at T = 1.
        nll_after: The validation NLL at the fitted T.
    """

    temperature: float
    nll_before: float  # validation NLL at T = 1
    nll_after: float  # at the fitted T

    def apply(self, logits: Tensor) -> Tensor:
        """Mean class probabilities of member logits (K, B, C) (or one set, (B, C)) at this temperature."""
        z = logits if logits.dim() == 3 else logits.unsqueeze(0)
        return torch.softmax(z.double() / self.temperature, -1).mean(0)


def _ensemble_nll(z: Tensor, y: Tensor, temperature: float) -> float:
    log_p = torch.logsumexp(torch.log_softmax(z / temperature, -1), 0) - math.log(z.shape[0])  # log mean_k p_k
    return float(-log_p.gather(1, y[:, None]).mean())


def temperature_scale(member_logits: Any, labels: Any, *, bounds: tuple[float, float] = (0.05, 20.0)) -> \
        TemperatureScaling:
    """Fit one temperature T > 0 on validation inputs: the T in ``bounds`` that minimizes the negative
    log-likelihood of the Monte Carlo ensemble's mean probability, mean_k softmax(z_k / T) (Guo et al., 2017,
    applied to the ensemble as torch-uncertainty's ``TemperatureScaler`` and lightning-uq-box's ``TempScaling``
    do to one network). ``member_logits`` is (K, B, C), the logits of K sampled members on B validation inputs
    (``droplab.record`` or a loop collects them), or (B, C) for a deterministic network; ``labels`` (B,). The NLL
    is minimized over log T by golden-section search to 1e-6 (it is unimodal in practice; the tests check the
    optimum against SciPy's bounded minimizer).

    Args:
        member_logits: (K, B, C) members' logits, or (B, C).
        labels: (B,) true classes.
        bounds: The interval T is searched in.

    Returns:
        TemperatureScaling: ``temperature``, and the NLL before and after.
    """
    z = member_logits.detach().to("cpu", torch.float64) if isinstance(member_logits, Tensor) else None
    if z is None or z.dim() not in (2, 3) or z.numel() == 0:
        raise ValueError("member_logits must be a tensor of logits (K, B, C) or (B, C), got "
                         f"{getattr(member_logits, 'shape', type(member_logits).__name__)}")
    z = z if z.dim() == 3 else z.unsqueeze(0)
    if not bool(torch.isfinite(z).all()):
        raise ValueError("member_logits holds NaN or inf")
    try:
        y = torch.as_tensor(labels).to("cpu")
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise TypeError(f"labels must be integer class indices, got {type(labels).__name__}") from None
    if y.dim() != 1 or len(y) != z.shape[1] or y.is_floating_point() or int(y.min()) < 0 or int(y.max()) >= z.shape[2]:
        raise ValueError(f"labels must be {z.shape[1]} class indices in [0, {z.shape[2] - 1}], one per input of "
                         f"member_logits (shape {tuple(z.shape)}: K members, B inputs, C classes)")
    if (not isinstance(bounds, (tuple, list)) or len(bounds) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bounds)):
        raise ValueError(f"bounds must be two numbers (low, high) with 0 < low < high, got {bounds!r}")
    lo, hi = (float(v) for v in bounds)
    if not (0 < lo < hi and math.isfinite(hi)):
        raise ValueError(f"bounds must be finite with 0 < low < high (the search is over log T between them), got "
                         f"{bounds!r}")
    y = y.long()
    a, b = math.log(lo), math.log(hi)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _ensemble_nll(z, y, math.exp(c)), _ensemble_nll(z, y, math.exp(d))
    while b - a > 1e-6:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _ensemble_nll(z, y, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _ensemble_nll(z, y, math.exp(d))
    t = math.exp((a + b) / 2)
    return TemperatureScaling(t, _ensemble_nll(z, y, 1.0), _ensemble_nll(z, y, t))


# ------------------------------------------------------------------------------------ regression
def regression_scores(predictions: Any, targets: Any, *, tau: float, variance: Any = None,
                      levels: tuple[float, ...] = (0.5, 0.9, 0.95)) -> dict[str, Any]:
    r"""Scores of a regression ensemble, in the targets' units.

    ``predictions`` is what ``monte_carlo`` (``predictive``) returned for a model with one output (its ``mean``
    and ``variance``, and the Monte Carlo log-likelihood when it was given ``targets`` and ``tau``), or the
    predictive means (B,) with ``variance`` beside. ``tau`` is the observation precision (Gal & Ghahramani,
    2016): the predictive distribution is taken as Gaussian with mean E(y) and variance Var(y) + 1 / tau.

    Returns ``rmse``; ``log_likelihood``, the mean over inputs of Gal & Ghahramani's Monte Carlo estimate over the
    K members' outputs \(\hat y_k\) (present when ``predictions`` carries it: it needs the members, streamed by
    ``monte_carlo(..., targets=y, tau=tau)``),

    $$
    \log p(y) \approx \operatorname{logsumexp}_k\Big(-\frac{\tau}{2} (y - \hat y_k)^2\Big) - \log K
        - \frac{1}{2} \log 2\pi + \frac{1}{2} \log \tau;
    $$

    ``gaussian_nll``, the mean negative log density of the Gaussian; ``coverage``, for each central interval level,
    the share of targets inside mean +- z sigma; ``crps``, the mean continuous ranked probability score of the
    Gaussian (closed form, Gneiting & Raftery 2007).

    Args:
        predictions: ``PredictiveStatistics`` of ``output="values"``, or the predictive means (B,).
        targets: The true values (B,).
        tau: The observation precision, > 0.
        variance: The predictive variances (B,), with means.
        levels: The central intervals' levels for ``coverage``.

    Returns:
        dict: ``rmse``, ``log_likelihood`` (where the statistics carry it), ``gaussian_nll``, ``coverage``, ``crps``.
    """
    from scipy.stats import norm

    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau (the observation precision) must be a positive number, got {tau!r}")
    ll = None
    if isinstance(predictions, PredictiveStatistics):
        if predictions.output_kind != "values":
            raise ValueError(f"regression scores need output='values' statistics, got {predictions.output_kind!r}")
        mean, var = predictions.mean, predictions.variance
        if predictions.log_likelihood is not None:
            if predictions.tau != tau:
                raise ValueError(f"the statistics' log-likelihood was streamed with tau={predictions.tau}, not {tau}")
            streamed = predictions.targets
            given = _vector(targets, "targets")
            if streamed is not None and (given.shape != streamed.flatten().shape
                                         or not torch.equal(given, streamed.detach().to("cpu").flatten())):
                raise ValueError("the statistics' log-likelihood was streamed with other targets than these; run "
                                 "monte_carlo(..., targets=these targets, tau=tau) again, or pass "
                                 "predictions.mean with variance=predictions.variance to score without it")
            ll = float(_vector(predictions.log_likelihood, "log_likelihood").mean())
    else:
        mean, var = predictions, variance
        if var is None:
            raise ValueError("give the predictive variance (variance=...) with means, or pass monte_carlo's result")
    m, v, y = _vector(mean, "predictions" if var is variance else "predictions.mean"), _vector(var, "variance"), \
        _vector(targets, "targets")
    if not (len(m) == len(v) == len(y)):
        raise ValueError(f"predictions, variance and targets must have one value per input, got {len(m)}, {len(v)}, "
                         f"{len(y)}")
    if float(v.min()) < 0:
        raise ValueError("variance must be non-negative")
    for level in levels:
        if not 0 < level < 1:
            raise ValueError(f"coverage levels must be in (0, 1), got {level!r}")
    s2 = v + 1.0 / tau
    sd = s2.sqrt()
    z = (y - m) / sd
    out: dict[str, Any] = {
        "rmse": float((y - m).square().mean().sqrt()),
        "gaussian_nll": float((0.5 * math.log(2 * math.pi) + 0.5 * s2.log() + 0.5 * z.square()).mean()),
        "coverage": {level: float((z.abs() <= norm.ppf(0.5 + level / 2)).double().mean()) for level in levels},
        "crps": float((sd * (z * (2 * torch.from_numpy(norm.cdf(z.numpy())) - 1)
                             + 2 * torch.from_numpy(norm.pdf(z.numpy())) - 1 / math.sqrt(math.pi))).mean()),
    }
    if ll is not None:
        out["log_likelihood"] = ll
    return out
