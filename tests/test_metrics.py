"""droplab.metrics against scikit-learn (log_loss, brier_score_loss, accuracy_score) and a NumPy ECE loop."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from droplab import DropoutMLP, ModelConfig, metrics
from droplab.ensemble import monte_carlo


def _predictions(seed=0, n=300, classes=4):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(n, classes, generator=g, dtype=torch.float64) * 2, 1)
    y = torch.randint(0, classes, (n,), generator=g)
    return p, y


def test_against_scikit_learn():
    p, y = _predictions()
    labels = list(range(4))
    assert metrics.negative_log_likelihood(p, y) == pytest.approx(log_loss(y.numpy(), p.numpy(), labels=labels),
                                                                   rel=1e-12)
    assert metrics.brier_score(p, y) == pytest.approx(
        brier_score_loss(y.numpy(), p.numpy(), labels=labels, scale_by_half=False), rel=1e-12)
    assert metrics.accuracy(p, y) == pytest.approx(accuracy_score(y.numpy(), p.argmax(1).numpy()), rel=1e-12)


def test_expected_calibration_error_against_a_numpy_loop():
    p, y = _predictions(1)
    conf, guess = p.max(1).values.numpy(), p.argmax(1).numpy()
    correct = (guess == y.numpy()).astype(float)
    bins = 10
    ece = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b > 0 else (conf >= lo) & (conf <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - conf[inside].mean())
    assert metrics.expected_calibration_error(p, y, bins=bins) == pytest.approx(ece, rel=1e-12)
    rel = metrics.reliability(p, y, bins=bins)
    assert float(rel.counts.sum()) == len(y)


def test_perfect_and_worst_predictions():
    y = torch.tensor([0, 1, 2])
    sure = torch.eye(3, dtype=torch.float64)
    assert metrics.brier_score(sure, y) == 0 and metrics.expected_calibration_error(sure, y) == 0
    assert metrics.brier_score(sure[[1, 2, 0]], y) == 2  # all mass on a wrong class
    assert metrics.accuracy(sure, y) == 1


def test_scores_of_estimator_statistics(tmp_path):
    net = DropoutMLP((4, 8, 3), keep=(0.8, 0.5)).double().eval()
    x = torch.rand(20, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (20,))
    stats = monte_carlo(net, x, samples=50, generator=torch.Generator().manual_seed(0))
    s = metrics.scores(stats, y)
    assert set(s) == {"accuracy", "nll", "brier", "ece"}
    assert s["nll"] == pytest.approx(metrics.negative_log_likelihood(stats.output.E, y))
    fig = metrics.reliability_diagram(stats, y, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 10_000
    assert fig.axes[-1].get_xlabel().startswith("confidence") and fig.axes[0].get_ylabel() == "accuracy"
    assert not list(tmp_path.glob(".r.png*"))  # the temporary file is gone


@pytest.mark.parametrize(("predictions", "labels", "error", "match"), [
    (torch.rand(3, 2), torch.tensor([0, 1, 0]), ValueError, "probabilities"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([2]), ValueError, r"labels must lie in \[0, 1\]"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([0, 1]), ValueError, "shape"),
    (torch.tensor([[0.5, 0.5]]), torch.tensor([0.0]), TypeError, "integer class indices"),
    (torch.tensor([0.5, 0.5]), torch.tensor([0]), ValueError, r"\(B, C\)"),
    (torch.tensor([[1, 0]]), torch.tensor([0]), TypeError, "floating-point"),
])
def test_bad_input(predictions, labels, error, match):
    with pytest.raises(error, match=match):
        metrics.scores(predictions, labels)


def test_values_statistics_are_refused():
    import torch.nn as nn

    import droplab
    model = nn.Sequential(nn.Linear(3, 2), droplab.nn.Dropout(keep=0.5))
    stats = monte_carlo(model, torch.ones(2, 3), samples=4)
    with pytest.raises(ValueError, match="output='values'"):
        metrics.accuracy(stats, torch.tensor([0, 1]))
    assert np.isfinite(float(stats.output.Var.sum()))


def test_figures_are_written_readable_by_others(tmp_path):
    import os
    import stat

    p, y = _predictions()
    metrics.reliability_diagram(p, y, tmp_path / "r.png")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "r.png").stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_library_calls_leave_the_process_state_alone(tmp_path):
    # a notebook user's matplotlib backend, pyplot's figure registry and torch's thread count are theirs
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # "the user's" backend (not Agg, which droplab once forced)
    import matplotlib.pyplot as plt

    try:
        _calls_and_checks(tmp_path, matplotlib, plt)
    finally:
        matplotlib.use(before)


def _calls_and_checks(tmp_path, matplotlib, plt):
    from droplab import data, ensemble, report, train

    threads, figures = torch.get_num_threads(), plt.get_fignums()
    p = torch.softmax(torch.randn(50, 3, generator=torch.Generator().manual_seed(0)), 1)
    metrics.reliability_diagram(p, torch.randint(0, 3, (50,)), tmp_path / "r.png")
    report.reproduce(tmp_path / "report", preset="tiny", only=["bounds", "means"], progress=False)
    assert (tmp_path / "report" / "bounds.png").is_file()
    digits = data.load("digits")
    net = train.build_model(ModelConfig(sizes=(64, 16, 10), keep=(0.8, 0.5)), seed=0)
    train.fit(net, digits, train.TrainConfig(epochs=1), progress=False)
    ensemble.monte_carlo(net, digits.x_test[:5], samples=20)
    assert matplotlib.get_backend() == "svg"
    assert plt.get_fignums() == figures
    assert torch.get_num_threads() == threads
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
