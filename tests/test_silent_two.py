"""Issue 35, "no silent wrong answer, part two": each case the issue names, with a test that fails without its fix.
(The Monte Carlo cases on any model are in test_model_zoo.py.)"""

from __future__ import annotations

import os
import stat

import pytest
import torch
from torch import nn

from droplab import ensemble, metrics
from droplab.checkpoint import atomic_write_text, save_checkpoint_file
from droplab.sweep import load_sweep


def test_regression_scores_refuse_a_log_likelihood_streamed_with_other_targets():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.3), nn.Linear(8, 1)).eval()
    x, y, y_new = torch.randn(10, 3), torch.randn(10, 1), torch.randn(10, 1)
    stats = ensemble.predictive(model, x, samples=50, targets=y, tau=2.0)
    assert "log_likelihood" in metrics.regression_scores(stats, y, tau=2.0)
    assert "log_likelihood" in metrics.regression_scores(stats, y.numpy().ravel(), tau=2.0)  # the same, as NumPy
    with pytest.raises(ValueError, match="streamed with other targets"):
        metrics.regression_scores(stats, y_new, tau=2.0)
    scores = metrics.regression_scores(stats.mean, y_new, tau=2.0, variance=stats.variance)  # the fix it names
    assert scores.get("log_likelihood") is None


@pytest.mark.parametrize("bounds", [(1, float("inf")), (0.5, float("nan")), (1,), "ab", (True, 3)])
def test_temperature_bounds_that_cannot_be_searched_are_refused(bounds):
    z, y = torch.randn(4, 10, 3), torch.randint(0, 3, (10,))
    with pytest.raises(ValueError, match="bounds must be"):
        metrics.temperature_scale(z, y, bounds=bounds)
    assert metrics.temperature_scale(z, y, bounds=(1, 50)).temperature >= 1


def test_checkpoints_are_as_readable_as_every_other_output(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint_file(tmp_path / "a.safetensors", {"w": torch.ones(2)}, {})
        atomic_write_text(tmp_path / "b.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "a.safetensors").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "b.json").st_mode) == 0o644


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "~root", "", "  "])
def test_a_sweep_name_cannot_climb_out_of_sweeps(name):
    with pytest.raises(ValueError, match="plain folder name"):
        load_sweep({"name": name, "preset": "tiny", "grid": {"train.epochs": [1]}})


def test_random_ranges_are_checked_at_both_ends_and_every_choice():
    # issue 35: checked at their low ends / first values only, Ray started and the trials failed (exit 0)
    ok = {"name": "s", "preset": "tiny", "random": {"train.lr": {"loguniform": [1e-3, 1e-1]}}}
    load_sweep(ok)
    with pytest.raises(ValueError, match=r"\[random\] model.keep_hidden = 1.5"):
        load_sweep({"name": "s", "preset": "tiny", "random": {"model.keep_hidden": {"uniform": [0.5, 1.5]}}})
    with pytest.raises(ValueError, match=r"\[random\] train.batch_size = -4"):
        load_sweep({"name": "s", "preset": "tiny", "random": {"train.batch_size": {"choice": [16, -4]}}})


def test_an_asha_grace_period_beyond_the_epochs_is_refused_before_anything_is_written():
    with pytest.raises(ValueError, match=r"grace_period = 9 is more than the trials' 2 epochs"):
        load_sweep({"name": "s", "preset": "tiny", "grid": {"train.lr": [0.1, 0.2]}, "asha": {"grace_period": 9}})
    load_sweep({"name": "s", "preset": "tiny", "grid": {"train.lr": [0.1, 0.2]}, "asha": {"grace_period": 2}})


def test_low_precisions_refuse_inputs_beyond_the_range_they_were_checked_on(monkeypatch):
    # issue 35: a logistic network on 0-255 pixels was 6.5 SE (int8c) and 1.3 SE (bfloat16c) off float64, silently
    from droplab import DropoutMLP, host
    from droplab.ensemble import _precision

    torch.manual_seed(0)
    net = DropoutMLP([16, 32, 4], keep=[0.8, 0.5]).eval()
    pixels = torch.randint(0, 256, (8, 16)).float()
    pixels[0, 0] = 255.0
    for precision in ("int8c", "bfloat16c"):
        with pytest.raises(ValueError, match=r"within \+-16.*reach 255.*x / 255"):
            ensemble.monte_carlo(net, pixels, samples=10, precision=precision)
        ensemble.monte_carlo(net, pixels / 255, samples=10, precision=precision)  # in range: runs
    # auto never picks a low precision there, even where the host would run it fastest
    monkeypatch.setattr(host, "choose", lambda *a, **k: host.Choice("int8c", {}, "test"))
    assert _precision.auto_precision(net, pixels, 100) == "float32"
    assert _precision.auto_precision(net, pixels / 255, 100) == "int8c"


def test_a_lock_naming_a_live_unrelated_process_says_which_file_to_delete(tmp_path):
    from droplab.sweep._driver import _driver_lock

    (tmp_path / ".driver.pid").write_text("1\n")  # pid 1 is always alive: here, a reused id
    with pytest.raises(ValueError, match=r"\.driver\.pid says a sweep driver, process 1.*delete .*\.driver\.pid"):
        with _driver_lock(tmp_path):
            pass


@pytest.mark.parametrize("flag", ["--splits", "--samples", "--epochs-factor"])
def test_the_uci_benchmark_refuses_zero_counts_before_training(flag):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "uci.py"
    done = subprocess.run([sys.executable, str(script), flag, "0"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and f"{flag} must be an integer >= 1, got 0" in done.stderr
    assert "host:" not in done.stdout  # refused before anything ran


def test_the_keep_example_of_the_command_line_page_runs(capsys):
    import re
    from pathlib import Path

    from droplab.cli import main

    page = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    keep = re.search(r"\[--keep ([0-9.,]+)\]", page).group(1)
    assert main(["train", "--keep", keep, "--show"]) == 0  # the default preset takes it (issue 35: it did not)
