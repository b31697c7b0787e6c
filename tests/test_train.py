"""Training: learning happens, same seed same result, resume reaches the same weights, checkpoints."""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from droplab import ModelConfig, data, presets, train

SMALL = train.TrainConfig(epochs=4, batch_size=64, lr=0.5, momentum_start=0.5, momentum_end=0.9,
                          momentum_epochs=3, max_norm=3.0, l2=1e-4, seed=3)


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def _model(seed=3):
    cfg = dataclasses.replace(presets.preset("quick").model, sizes=(64, 64, 10), keep=(0.8, 0.5))
    return train.build_model(cfg, seed=seed)


def test_training_learns_digits(digits):
    result = train.fit(_model(), digits, dataclasses.replace(SMALL, epochs=15), progress=False)
    assert result.test_error < 10.0  # chance is 90%
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_same_seed_same_result(digits):
    a = train.fit(_model(), digits, SMALL, progress=False)
    b = train.fit(_model(), digits, SMALL, progress=False)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = train.fit(_model(), digits, dataclasses.replace(SMALL, seed=4), progress=False)
    assert not torch.equal(next(a.model.parameters()), next(c.model.parameters()))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_reaches_the_same_weights_and_extends_a_finished_run(digits, tmp_path, optimizer):
    config = SMALL if optimizer == "sgd" else dataclasses.replace(SMALL, optimizer="adam", lr=2e-3)
    full = train.fit(_model(), digits, config, out_dir=tmp_path / "full", progress=False)
    half = dataclasses.replace(config, epochs=2)
    train.fit(_model(), digits, half, out_dir=tmp_path / "split", progress=False)  # a finished 2-epoch run
    resumed = train.fit(_model(seed=99), digits, config, out_dir=tmp_path / "split", resume=True, progress=False)
    for pa, pb in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(pa, pb)
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert full.history[-1]["val_error"] == resumed.history[-1]["val_error"]
    with pytest.raises(ValueError, match="already trained 4 epochs; give --epochs 5 or more"):
        train.fit(_model(), digits, half, out_dir=tmp_path / "split", resume=True, progress=False)


def test_adam_learns_from_small_weights_where_sgd_sits_at_chance():
    """Issue 23's finding on the standard preset's network (784-1200x4-10 logistic, Glorot gain 2, real MNIST digits):
    after one epoch momentum SGD is still at chance, the standard preset's Adam schedule is not (about 15 s)."""
    mnist = data.load("mnist-10k", seed=0)
    standard = presets.preset("standard")
    one = {"sgd": dataclasses.replace(presets.preset("standard-sgd").train, epochs=1),
           "adam": dataclasses.replace(standard.train, epochs=1)}
    error = {k: train.fit(train.build_model(standard.model, seed=0), mnist, c, progress=False).history[0]["test_error"]
             for k, c in one.items()}
    assert error["sgd"] > 80.0 and error["adam"] < 50.0, error


def test_resume_names_the_setting_that_differs(digits, tmp_path):
    train.fit(_model(), digits, dataclasses.replace(SMALL, epochs=1), out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"train lr = 0.5 \(now 0.1\)"):
        train.fit(_model(), digits, dataclasses.replace(SMALL, epochs=1, lr=0.1), out_dir=tmp_path, resume=True,
                  progress=False)
    other = train.build_model(dataclasses.replace(presets.preset("quick").model, sizes=(64, 32, 10), keep=(0.8, 0.5)),
                              seed=3)
    with pytest.raises(ValueError, match=r"model sizes = \[64, 64, 10\] \(now \[64, 32, 10\]\)"):
        train.fit(other, digits, dataclasses.replace(SMALL, epochs=1), out_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="none found"):
        train.fit(_model(), digits, SMALL, out_dir=tmp_path / "empty", resume=True, progress=False)


def test_monitor_off_trains_the_same_weights_and_measures_the_test_error_once(digits):
    config = dataclasses.replace(SMALL, epochs=3)
    full = train.fit(_model(), digits, config, progress=False)
    lean = train.fit(_model(), digits, config, progress=False, monitor=False)
    assert [r["val_error"] for r in lean.history] == [r["val_error"] for r in full.history]
    assert all(r["test_error"] is None and r["train_error"] is None for r in lean.history)
    assert lean.best_epoch == full.best_epoch and lean.test_error == full.test_error
    for a, b in zip(full.model.parameters(), lean.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_resume_drops_a_torn_last_metrics_line_and_names_a_damaged_file(digits, tmp_path):
    config = dataclasses.replace(SMALL, epochs=2)
    train.fit(_model(), digits, config, out_dir=tmp_path, progress=False)
    log = tmp_path / "metrics.jsonl"
    lines = log.read_text().splitlines()
    log.write_text(lines[0] + "\n" + lines[1] + "\n" + lines[1][:17])  # a kill while a third row was written
    result = train.fit(_model(), digits, dataclasses.replace(SMALL, epochs=3), out_dir=tmp_path, resume=True,
                       progress=False)
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2, 3]
    log.write_text("{broken\n" + "\n".join(log.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(ValueError, match=f"{log} line 1 is damaged"):
        train.fit(_model(), digits, dataclasses.replace(SMALL, epochs=4), out_dir=tmp_path, resume=True,
                  progress=False)


def test_best_is_written_before_last(digits, tmp_path, monkeypatch):
    written = []
    original = train.save_checkpoint_file

    def spy(path, tensors, meta):
        written.append(path.name)
        original(path, tensors, meta)

    monkeypatch.setattr(train, "save_checkpoint_file", spy)
    train.fit(_model(), digits, dataclasses.replace(SMALL, epochs=1), out_dir=tmp_path, progress=False)
    assert written == ["best.safetensors", "last.safetensors"]  # a kill between them leaves last behind


def test_checkpoint_files_and_metrics_log(digits, tmp_path):
    result = train.fit(_model(), digits, SMALL, out_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.safetensors", "config.json", "last.safetensors",
                                                          "metrics.jsonl"]  # no temporary files left
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert set(rows[0]) == {"epoch", "train_loss", "val_loss", "train_error", "val_error", "test_error", "lr",
                            "momentum", "seconds"}
    assert rows[0]["momentum"] == 0.5 and rows[-1]["momentum"] == pytest.approx(0.9)
    model, meta = train.load_model(tmp_path / "best.safetensors")
    _, err = train.evaluate(model, digits.x_test, digits.y_test)
    assert err == pytest.approx(result.test_error)
    assert meta["counters"]["best_epoch"] == result.best_epoch


def test_max_norm_holds_after_training(digits):
    result = train.fit(_model(), digits, dataclasses.replace(SMALL, max_norm=0.5, lr=2.0), progress=False)
    for w in result.model.weights():
        assert torch.all(w.norm(dim=1) <= 0.5 + 1e-5)


def test_early_stopping_stops(digits):
    cfg = dataclasses.replace(SMALL, epochs=200, patience=2, lr=5.0, momentum_end=0.5)
    result = train.fit(_model(), digits, cfg, progress=False)
    assert len(result.history) < 200
    assert len(result.history) - result.best_epoch == 2


def test_squared_error_and_regression():
    d = data.load("synthetic-linear")
    model = train.build_model(ModelConfig(sizes=(20, 5), output="linear", keep=0.8), seed=0)
    result = train.fit(model, d, train.TrainConfig(epochs=30, batch_size=50, lr=0.05, loss="squared"),
                       progress=False)
    assert result.test_error < 0.1  # MSE; the data's noise variance is 0.01 and the target variance ~1


def test_schedules():
    cfg = train.TrainConfig(lr=1.0, lr_decay=0.5, momentum_start=0.5, momentum_end=0.9, momentum_epochs=4)
    assert [cfg.learning_rate(e) for e in range(3)] == [1.0, 0.5, 0.25]
    assert [round(cfg.momentum(e), 3) for e in (0, 2, 4, 10)] == [0.5, 0.7, 0.9, 0.9]


@pytest.mark.parametrize("kwargs,error", [
    (dict(epochs=0), "epochs must be a positive integer, got 0"),
    (dict(lr=-1.0), "lr must be a positive finite number"),
    (dict(momentum_end=1.0), "momentum_end must be in \\[0, 1\\)"),
    (dict(loss="hinge"), "loss must be one of"),
    (dict(max_norm=0), "max_norm must be a positive finite number"),
    (dict(lr_decay=1.5), "lr_decay must be in"),
])
def test_bad_training_configuration(kwargs, error):
    with pytest.raises(ValueError, match=error):
        train.TrainConfig(**kwargs)


def test_model_that_does_not_fit_the_data(digits):
    model = train.build_model(ModelConfig(sizes=(10, 5, 10)), seed=0)
    with pytest.raises(ValueError, match="64 inputs"):
        train.fit(model, digits, SMALL, progress=False)


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        train.resolve_device("cuda")


def test_a_killed_writers_temporary_file_is_removed_and_a_live_ones_is_kept(digits, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    code = ("import sys, time; from pathlib import Path; from droplab.checkpoint import _replacing\n"
            "with _replacing(Path(sys.argv[1]) / 'best.safetensors') as tmp:\n"
            "    print(tmp, flush=True); time.sleep(60)")
    writer = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    stale = Path(writer.stdout.readline().strip())
    os.kill(writer.pid, signal.SIGKILL)  # killed while writing: its temporary file stays behind
    writer.wait()
    live = tmp_path / f".metrics.jsonl.{os.getppid()}.abc12345.droplab-tmp"  # a running process's (our parent)
    live.write_text("being written")
    assert stale.is_file() and stale.name.endswith(".droplab-tmp") and f".{writer.pid}." in stale.name
    train.fit(_model(), digits, dataclasses.replace(SMALL, epochs=1), out_dir=tmp_path, progress=False)
    assert not stale.exists() and live.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".droplab-tmp") and p != live]


def test_a_dataset_without_validation_or_test_rows_trains_and_says_none(digits):
    # training alone (benchmarks/uci.py's one-by-one timing): every epoch is the best, no test error to report
    bare = dataclasses.replace(digits, x_val=digits.x_val[:0], y_val=digits.y_val[:0], x_test=digits.x_test[:0],
                               y_test=digits.y_test[:0])
    result = train.fit(_model(), bare, dataclasses.replace(SMALL, epochs=2), progress=False)
    assert result.test_error is None and [r["val_error"] for r in result.history] == [None, None]
    assert result.best_epoch == 2
    full = train.fit(_model(), digits, dataclasses.replace(SMALL, epochs=2), progress=False)
    assert result.history[-1]["train_loss"] == full.history[-1]["train_loss"]  # the same training
    with pytest.raises(ValueError, match="at least one example"):
        train.evaluate(result.model, bare.x_test, bare.y_test)


def test_run_is_load_size_build_fit_in_one_place(tmp_path):
    # train.run (droplab train's and every sweep trial's path) gives the weights of the chain written out by hand,
    # bit for bit for the same seed, and stores the preset and the data's settings in the checkpoint
    settings = presets.resolve("tiny", {"train": {"epochs": 1}})
    result = train.run(settings, tmp_path, progress=False, meta={"note": "x"})
    data = settings.data.load(seed=settings.train.seed)
    by_hand = train.fit(train.build_model(settings.model.with_sizes(data.input_size, data.output_size),
                                          seed=settings.train.seed), data, settings.train, progress=False)
    for a, b in zip(result.model.state_dict().values(), by_hand.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    model, meta = train.load_model(tmp_path / "best.safetensors")
    assert meta["preset"] == "tiny" and meta["data"] == settings.data.as_dict() and meta["note"] == "x"
    with pytest.raises(TypeError, match="settings must be a droplab.presets.Settings"):
        train.run({"preset": "tiny"}, None)


def test_evaluation_scores_agree_with_numpy_and_scikit_learn(tmp_path):
    # droplab.evaluation (what droplab evaluate prints) against independent references: the error counted with
    # NumPy from the weight-scaled network's own output, the NLL and Brier score from scikit-learn
    import numpy as np
    from sklearn.metrics import log_loss

    from droplab import evaluation

    settings = presets.resolve("tiny", {"train": {"epochs": 2}})
    result = train.run(settings, None, progress=False)
    data_ = settings.data.load(seed=settings.train.seed)
    model = result.model.eval()
    with torch.no_grad():
        p = model.output(data_.x_test).double().numpy()
    y = data_.y_test.numpy()
    row = evaluation.evaluate(model, data_, "weight-scaled", figures=tmp_path)
    assert row["test_error"] == pytest.approx(100 * np.mean(p.argmax(1) != y), abs=1e-6)
    assert row["nll"] == pytest.approx(log_loss(y, p, labels=range(10)), rel=1e-4)
    brier = np.mean(np.sum((p - np.eye(10)[y]) ** 2, axis=1))
    assert row["brier"] == pytest.approx(brier, rel=1e-4)  # sum over classes, mean over inputs
    assert Path(row["reliability"]).is_file() and Path(row["risk_coverage"]).is_file()
    mc = evaluation.evaluate(model, data_, "monte_carlo", samples=50, seed=1)
    assert mc == evaluation.evaluate(model, data_, "monte_carlo", samples=50, seed=1)  # same seed, same scores
    narrow = dataclasses.replace(data_, x_train=data_.x_train[:, :10], x_test=data_.x_test[:, :10])
    with pytest.raises(ValueError, match="takes 64 inputs and digits has 10"):
        evaluation.evaluate(model, narrow, "exact")


def test_the_trainer_takes_fits_steps(digits):
    # train.Trainer (the step without fit's loop, for benchmarks) gives fit's weights after one epoch, bit for bit
    config = dataclasses.replace(SMALL, epochs=1)
    trainer = train.Trainer(_model(), config)
    loss = trainer.epoch(digits)
    fitted = train.fit(_model(), digits, config, progress=False)
    assert trainer.epochs == 1 and math.isfinite(loss)
    for a, b in zip(trainer.model.state_dict().values(), fitted.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        train.Trainer(_model(), {"epochs": 1})


def test_build_model_takes_a_model_config_and_refuses_a_dict_with_the_fix():
    config = ModelConfig(sizes=(5, 4, 3), keep=(0.8, 0.5))
    a, b = train.build_model(config, seed=2), train.build_model(config, seed=2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert tuple(a.sizes) == (5, 4, 3)
    with pytest.raises(TypeError, match=r"build_model takes a ModelConfig, got a dict \(\['keep', 'sizes'\]\); "
                                        r"build one with droplab.ModelConfig\(\*\*fields\)"):
        train.build_model({"sizes": [5, 4, 3], "keep": [0.8, 0.5]}, seed=2)
    with pytest.raises(TypeError, match="model_config must be a droplab.ModelConfig, got str"):
        train.build_model("784-10", seed=2)
