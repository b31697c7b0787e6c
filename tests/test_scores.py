"""Uncertainty scores against independent references: scikit-learn's ROC AUC and average precision, NumPy loops
for FPR95 and AURC, SciPy's bounded minimizer for the temperature, numerical integration for the Gaussian CRPS
and the log-likelihood from stored samples for the streamed one."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

import droplab
from droplab import metrics
from droplab.ensemble import predictive


def _scores(seed, n_in=300, n_out=200, ties=False):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0, 1, n_in), rng.normal(0.8, 1.2, n_out)
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return a, b


def _fpr95_loop(a, b):
    # out-of-distribution inputs positive: lower the threshold until 95% of them are at or above it
    for t in sorted(set(np.concatenate([a, b])), reverse=True):
        if np.mean(b >= t) >= 0.95:
            return np.mean(a >= t)
    raise AssertionError


@pytest.mark.parametrize(("seed", "ties"), [(0, False), (1, True), (2, True)])
def test_ood_scores_against_scikit_learn_and_a_loop(seed, ties):
    a, b = _scores(seed, ties=ties)
    got = metrics.ood_scores(torch.tensor(a), b.tolist())
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    s = np.r_[a, b]
    assert got.auroc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert got.aupr_out == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert got.aupr_in == pytest.approx(average_precision_score(1 - y, -s), abs=1e-12)
    assert got.fpr_at_95_tpr == pytest.approx(_fpr95_loop(a, b), abs=1e-12)


def test_ood_scores_refuse_bad_input():
    with pytest.raises(ValueError, match="in_scores is empty"):
        metrics.ood_scores([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        metrics.ood_scores([0.1, float("nan")], [1.0])
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        metrics.ood_scores(torch.ones(2, 3), [1.0])


def test_risk_coverage_against_a_loop():
    rng = np.random.default_rng(3)
    conf = rng.random(500)
    correct = (rng.random(500) < conf).astype(float)  # confident inputs are right more often
    rc = metrics.risk_coverage(conf, correct)
    order = np.argsort(-conf, kind="stable")
    risks = [1 - correct[order[:k]].mean() for k in range(1, 501)]
    assert np.allclose(rc.risk.numpy(), risks) and rc.aurc == pytest.approx(np.mean(risks))
    assert rc.aurc < 1 - correct.mean()  # ranking by confidence helps: below the risk at full coverage
    assert rc.risk_at(1.0) == pytest.approx(1 - correct.mean())
    assert rc.risk_at(0.1) == pytest.approx(risks[49])
    target = risks[199]
    assert rc.coverage_at(target) >= 0.4
    with pytest.raises(ValueError, match="0 \\(wrong\\) or 1"):
        metrics.risk_coverage([0.5, 0.6], [0, 2])
    with pytest.raises(ValueError, match="one of each per input"):
        metrics.risk_coverage([0.5, 0.6], [0])


def test_temperature_is_scipys_optimum_and_lowers_the_nll():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (400,), generator=g)
    # overconfident members: logits too large by 3x, with member noise
    base = torch.randn(400, 4, generator=g) + 2.0 * nn.functional.one_hot(y, 4)
    members = 3.0 * (base + 0.5 * torch.randn(8, 400, 4, generator=g))
    fit = metrics.temperature_scale(members, y)

    def nll(log_t):
        p = torch.softmax(members.double() / math.exp(log_t), -1).mean(0)
        return float(-torch.log(p.gather(1, y[:, None])).mean())

    ref = optimize.minimize_scalar(nll, bounds=(math.log(0.05), math.log(20)), method="bounded",
                                   options={"xatol": 1e-8})
    assert fit.temperature == pytest.approx(math.exp(ref.x), rel=1e-4)
    assert fit.temperature > 1.0 and fit.nll_after < fit.nll_before  # overconfident members: T > 1 helps
    assert torch.allclose(fit.apply(members), torch.softmax(members.double() / fit.temperature, -1).mean(0))
    with pytest.raises(ValueError, match="class indices"):
        metrics.temperature_scale(members, y[:10])
    with pytest.raises(ValueError, match="NaN"):
        metrics.temperature_scale(members * float("nan"), y)


def test_gaussian_regression_scores_against_integration_and_scipy():
    rng = np.random.default_rng(4)
    mean, var, y = rng.normal(size=50), rng.random(50) * 0.5, rng.normal(size=50)
    tau = 4.0
    got = metrics.regression_scores(torch.tensor(mean), y, tau=tau, variance=var, levels=(0.5, 0.95))
    sd = np.sqrt(var + 1 / tau)

    def crps(m, s, t):  # the CRPS definition: integral of (F(x) - 1{x >= t})^2
        left = integrate.quad(lambda x: stats.norm.cdf(x, m, s) ** 2, -np.inf, t)[0]
        right = integrate.quad(lambda x: (1 - stats.norm.cdf(x, m, s)) ** 2, t, np.inf)[0]
        return left + right

    assert got["crps"] == pytest.approx(np.mean([crps(m, s, t) for m, s, t in zip(mean, sd, y, strict=True)]),
                                        rel=1e-6)
    assert got["rmse"] == pytest.approx(np.sqrt(np.mean((y - mean) ** 2)))
    assert got["gaussian_nll"] == pytest.approx(-np.mean(stats.norm.logpdf(y, mean, sd)))
    assert got["coverage"][0.95] == pytest.approx(np.mean(np.abs(y - mean) <= 1.959963984540054 * sd))
    assert "log_likelihood" not in got  # it needs the members
    with pytest.raises(ValueError, match="tau must be positive"):
        metrics.regression_scores(torch.tensor(mean), y, tau=0.0, variance=var)


def test_streamed_log_likelihood_equals_the_one_from_stored_samples():
    from droplab.ensemble._predictive import _OutputStatistics

    # the streaming itself, over chunks of several sizes, against the stored members
    g = torch.Generator().manual_seed(2)
    members = 3.0 * torch.randn(700, 6, 1, generator=g, dtype=torch.float64)
    y, tau = torch.randn(6, dtype=torch.float64), 2.5
    streamed = _OutputStatistics("values", y, tau)
    start = 0
    for size in (1, 5, 64, 630):
        streamed.add(members[start:start + size])
        start += size
    result = streamed.finalize(torch.zeros(6, 3, dtype=torch.float64), 700)
    ref = (torch.logsumexp(-0.5 * tau * (y - members[..., 0]) ** 2, 0) - math.log(700)
           - 0.5 * math.log(2 * math.pi) + 0.5 * math.log(tau))
    assert torch.allclose(result.log_likelihood, ref, atol=1e-12)
    # and through predictive on a torch model, one member per chunk, against the same members drawn by hand
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1)).double().eval()
    x = torch.randn(6, 3, dtype=torch.float64)
    stats_ = predictive(model, x, samples=300, generator=torch.Generator().manual_seed(1), targets=y, tau=tau,
                        memory=2**10)
    with torch.no_grad(), droplab.modes.sample(model, generator=torch.Generator().manual_seed(1)):
        stored = torch.stack([model(x).flatten() for _ in range(300)])
    ref = (torch.logsumexp(-0.5 * tau * (y - stored) ** 2, 0) - math.log(300)
           - 0.5 * math.log(2 * math.pi) + 0.5 * math.log(tau))
    assert torch.allclose(stats_.log_likelihood, ref, atol=1e-10)
    assert torch.allclose(stats_.mean.flatten(), stored.mean(0), atol=1e-12)
    scores = metrics.regression_scores(stats_, y, tau=tau)
    assert scores["log_likelihood"] == pytest.approx(float(ref.mean()))
    with pytest.raises(ValueError, match="streamed with tau=2.5"):
        metrics.regression_scores(stats_, y, tau=1.0)
    with pytest.raises(ValueError, match="needs both targets and tau"):
        predictive(model, x, samples=4, targets=y)
    with pytest.raises(ValueError, match="one target per input"):
        predictive(model, x, samples=4, targets=y[:3], tau=1.0)


def test_temperature_in_the_monte_carlo_ensemble():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.5), nn.Linear(8, 4)).double().eval()
    x = torch.randn(5, 3, dtype=torch.float64)
    hot = predictive(model, x, samples=200, generator=torch.Generator().manual_seed(3), output="logits",
                     temperature=2.0)
    with torch.no_grad(), droplab.modes.sample(model, generator=torch.Generator().manual_seed(3)):
        logits = torch.stack([model(x) for _ in range(200)])
    fit = metrics.TemperatureScaling(2.0, 0.0, 0.0)
    assert torch.allclose(hot.mean, fit.apply(logits), atol=1e-6)
    with pytest.raises(ValueError, match="temperature scales logits"):
        predictive(model, x, samples=4, temperature=2.0)
