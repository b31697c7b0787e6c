"""What a sweep computes and writes without Ray: the linear-network penalty against its closed form, the plots,
results.csv, and the settings each grid point resolves to."""

import csv

import pytest

from droplab import data, sweep, train
from droplab.sweep import _driver as sweep_driver
from droplab.sweep import _spec as sweep_spec
from droplab.sweep import _trial as sweep_trial


def test_linear_penalty_is_the_articles_closed_form_for_a_single_layer():
    # one linear layer, paper scaling: E_masks(E_D) - E_ENS = 1/2 sum_i sum_j p(1 - p) w_ij^2 I_j^2 (the article)
    settings = sweep.trial_settings(sweep.load_sweep("linear-keep"), {"model.keep": 0.3})
    import dataclasses

    one_layer = dataclasses.replace(settings.model, sizes=(20, 5), keep=0.3)
    model = train.build_model(one_layer, seed=0).double()
    dataset = data.load("synthetic-linear", normalize="none")
    dataset = dataclasses.replace(dataset, x_train=dataset.x_train.double())
    measured = sweep_trial._linear_penalty(model, dataset, settings)
    w, x = model.linears[0].weight.detach(), dataset.x_train[:2000]
    closed = 0.5 * (0.3 * 0.7 * (x.square() @ w.square().T)).sum(1).mean()
    assert measured == pytest.approx(float(closed), rel=1e-10)


def test_grid_points_resolve_to_the_settings_they_name():
    spec = sweep.load_sweep("smoke")
    s = sweep.trial_settings(spec, {"model.keep_input": 1.0, "model.keep_hidden": 0.5})
    assert s.model.keeps == (1.0, 0.5) and s.model.sizes == (64, 64, 10) and s.train.epochs == 5
    s = sweep.trial_settings(sweep.load_sweep("data-size"), {"data.limit": 500, "model.dropout": "off"})
    assert s.data.limit == 500 and set(s.model.keeps) == {1.0}
    assert sweep.load_sweep("keep-grid").trials() == 25


def test_outputs_written_from_rows(tmp_path):
    spec = sweep.load_sweep("linear-keep")
    rows = [{"trial": f"t{i}", "model.keep": p, "best_val_error": 0.1, "test_error": 0.1, "task": "regression (MSE)",
             "dropout_penalty": 2.0 * p * (1 - p), "epochs": 20, "seconds": 1.0, "status": "done", "error": "",
             "checkpoint": ""} for i, p in enumerate([0.2, 0.5, 0.8, 1.0])]
    rows.append({**rows[0], "trial": "t9", "status": "error", "error": "boom", "test_error": None})
    sweep.write_outputs(spec, rows, tmp_path)
    with open(tmp_path / "results.csv", newline="") as fh:
        written = list(csv.DictReader(fh))
    assert [r["status"] for r in written] == ["done"] * 4 + ["error"] and written[-1]["error"] == "boom"
    assert (tmp_path / "linear-penalty.png").stat().st_size > 10_000
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_resources_are_checked():
    assert sweep.load_sweep({"name": "x", "preset": "quick", "resources": {"cpus_per_trial": 2}}).cpus_per_trial == 2
    with pytest.raises(ValueError, match="cpus_per_trial must be > 0"):
        sweep.load_sweep({"name": "x", "preset": "quick", "resources": {"cpus_per_trial": 0}})
    with pytest.raises(ValueError, match="unknown \\[resources\\] key"):
        sweep.load_sweep({"name": "x", "preset": "quick", "resources": {"cpu": 2}})


def test_an_interrupted_sweep_says_so_and_marks_no_unfinished_trial_done(tmp_path, monkeypatch, capsys):
    from types import SimpleNamespace

    from droplab.cli import main

    spec = sweep.load_sweep("smoke")  # 4 trials of 5 epochs
    (tmp_path / "finished").mkdir()
    (tmp_path / "finished" / "t1.json").write_text("{}")

    def result(name, point, epoch, trial_id, error=None):
        metrics = {"epoch": epoch, "trial_id": trial_id, "best_val_error": 5.0, "test_error": 6.0} if epoch else {}
        return SimpleNamespace(config=point, metrics=metrics, error=error, path=str(tmp_path / "ray" / name))

    points = sweep_spec._grid_points(spec)
    results = [result("a", points[0], 5, "t0"),  # every epoch: done
               result("b", points[1], 3, "t1"),  # its training returned early (patience): done
               result("c", points[2], 2, "t2"),  # Ctrl-C in its third epoch: interrupted
               result("d", points[3], 0, "t3")]  # never started
    rows = sweep_driver._rows(spec, results, tmp_path)
    assert [r["status"] for r in rows] == ["done", "done", "interrupted", "not run"]
    asha = sweep.Sweep(**{**spec.__dict__, "asha": {"grace_period": 1}})
    assert sweep_driver._rows(asha, results, tmp_path)[2]["status"] == "stopped"
    monkeypatch.setattr(sweep, "run_sweep", lambda *a, **k: rows)
    assert main(["sweep", "--preset", "smoke", "--out", str(tmp_path / "out")]) == 130
    captured = capsys.readouterr()
    assert "2 unfinished" in captured.out
    assert "--resume` finishes them" in captured.err


def test_a_second_driver_on_a_running_sweep_is_refused_and_a_dead_ones_lock_is_taken_over(tmp_path):
    import os
    import subprocess
    import sys

    with sweep_driver._driver_lock(tmp_path):
        assert (tmp_path / ".driver.pid").read_text().strip() == str(os.getpid())
    assert not (tmp_path / ".driver.pid").exists()  # released
    (tmp_path / ".driver.pid").write_text(f"{os.getppid()}\n")  # a running driver (our parent process)
    with pytest.raises(ValueError, match=r"a sweep driver, process \d+, is running in .*before --resume"):
        with sweep_driver._driver_lock(tmp_path):
            pass
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".driver.pid").write_text(gone.stdout)  # its driver has exited: taken over
    with sweep_driver._driver_lock(tmp_path):
        assert (tmp_path / ".driver.pid").read_text().strip() == str(os.getpid())
