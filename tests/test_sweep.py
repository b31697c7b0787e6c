"""droplab sweep on a local Ray with the machine's CPUs: end to end, a failing trial, a killed driver resumed."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from droplab import sweep
from droplab.cli import main

ray = pytest.importorskip("ray", reason="the sweep extra (pip install 'droplab[sweep]') is not installed")


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _events(out):
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def test_smoke_preset_end_to_end(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert main(["sweep", "--preset", "smoke", "--out", str(out)]) == 0  # (its time is no test: machines are shared)
    rows = _rows(out / "results.csv")
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    assert {(r["model.keep_input"], r["model.keep_hidden"]) for r in rows} == \
        {("0.8", "0.5"), ("0.8", "1.0"), ("1.0", "0.5"), ("1.0", "1.0")}
    for r in rows:
        assert 0 <= float(r["test_error"]) < 50 and r["epochs"] == "5"
        assert r["threads"] == "1"  # torch's thread count follows cpus_per_trial
        assert r["checkpoint"].endswith("best.safetensors") and os.path.isfile(r["checkpoint"])
    assert (out / "keep-grid.png").stat().st_size > 10_000
    assert "4 trials, 4 finished" in capsys.readouterr().out
    # the same --out again is refused: an earlier sweep is never replaced silently
    assert main(["sweep", "--preset", "smoke", "--out", str(out)]) == 2


def test_a_failing_trial_is_reported_and_the_others_finish(tmp_path, capsys):
    config = tmp_path / "fail.toml"
    config.write_text('name = "fail"\npreset = "quick"\n[base.model]\nsizes = [64, 16, 10]\n[base.train]\n'
                      'epochs = 2\n[grid]\n"train.lr" = [0.5, 3e38, 0.2]\n')  # lr 3e38 diverges
    out = tmp_path / "fail"
    assert main(["sweep", "--config", str(config), "--out", str(out)]) == 0
    rows = sorted(_rows(out / "results.csv"), key=lambda r: float(r["train.lr"]))
    assert [r["status"] for r in rows] == ["done", "done", "error"]
    assert "diverged" in rows[2]["error"]
    assert "failed:" in capsys.readouterr().out


def test_killed_driver_resumes_only_the_unfinished_trials(tmp_path):
    config = tmp_path / "slow.toml"
    config.write_text('name = "slow"\npreset = "quick"\n[base.model]\nsizes = [64, 128, 10]\n[base.train]\n'
                      'epochs = 25\n[grid]\n"train.seed" = [0, 1, 2, 3]\n[resources]\ncpus_per_trial = 1\n')
    out = tmp_path / "slow"
    command = [sys.executable, "-m", "droplab.cli", "sweep", "--config", str(config), "--out", str(out), "--cpus", "1"]
    driver = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    try:
        while time.time() < deadline:  # wait for the first trial to end, then kill the driver and its Ray
            if (out / "trials.jsonl").is_file() and any(e["event"] == "end" for e in _events(out)):
                break
            assert driver.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no trial ended within 3 minutes")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    ended_before = {e["trial"] for e in _events(out) if e["event"] == "end"}
    assert 1 <= len(ended_before) < 4
    resumed = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = _rows(out / "results.csv")
    assert len(rows) == 4 and all(r["status"] == "done" for r in rows)
    events = _events(out)
    for trial in ended_before:  # a finished trial did not run again
        assert sum(e["trial"] == trial and e["event"] == "start" for e in events) == 1
    assert {e["trial"] for e in events if e["event"] == "end"} == {r["trial"] for r in rows}


def test_bad_sweeps_are_refused_before_ray_starts(tmp_path, capsys):
    cases = [
        ({"name": "x", "preset": "quick", "grid": {"model.kep": [0.5]}}, "unknown key(s) ['kep']"),
        ({"name": "x", "preset": "quick", "grid": {"keep": [0.5]}}, "must be 'table.field'"),
        ({"name": "x", "preset": "quick", "grid": {"model.keep_hidden": [1.5]}}, "must be in (0, 1]"),
        ({"name": "x", "preset": "huge"}, "preset must be one of"),
        ({"name": "x", "preset": "quick", "random": {"train.lr": [0.1, 1]}}, "loguniform"),
        ({"name": "x", "preset": "quick", "grid": {"model.dropout": ["maybe"]}}, "'on' or 'off'"),
        ({"name": "x", "preset": "quick", "speed": 3}, "unknown key(s) ['speed']"),
        ({"name": "x", "preset": "quick", "grid": [1, 2]}, "grid must be a table"),
        ({"name": "x", "preset": "quick", "metric": "accuracy"}, "metric must be one of ('val_error'"),
        ({"name": "x", "preset": "quick", "random": {"train.lr": {"loguniform": [0, 1]}}}, "needs low > 0"),
        ({"name": "x", "preset": "quick", "random": {"train.lr": {"uniform": [1, 0.1]}}}, "low < high"),
        ({"name": "x", "preset": "quick", "random": {"train.seed": {"randint": [0.5, 3]}}}, "needs integers"),
        ({"name": "x", "preset": "quick", "random": {"train.lr": {"choice": []}}}, "non-empty list"),
        ({"name": "x", "preset": "quick", "asha": {"grace_period": 0}}, "grace_period must be an integer >= 1"),
        ({"name": "x", "preset": "quick", "asha": {"reduction_factor": 1.5}}, "reduction_factor must be an integer"),
        ({"name": "x", "preset": "quick", "grid": {"train.seed": list(range(200)), "train.lr": [0.1] * 60}},
         "has 12,000 trials, more than droplab runs in one sweep (10,000)"),
    ]
    for raw, message in cases:
        with pytest.raises(ValueError) as info:
            sweep.load_sweep(raw)
        assert message in str(info.value), (raw, str(info.value))
    assert main(["sweep", "--preset", "bogus", "--out", str(tmp_path / "b")]) == 2
    assert "unknown sweep preset 'bogus'" in capsys.readouterr().err
    assert main(["sweep", "--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "none found" in capsys.readouterr().err
    for text in ("{}", '{"sweep": {"name": "x", "pre'):  # damaged sweep.json: one line, what to do
        folder = tmp_path / f"damaged{len(text)}"
        folder.mkdir()
        (folder / "sweep.json").write_text(text)
        assert main(["sweep", "--out", str(folder), "--resume"]) == 2
        err = capsys.readouterr().err
        assert "is damaged" in err and "another --out" in err and len(err.strip().splitlines()) == 1
    # resources this machine cannot give: refused before Ray starts, and nothing written
    for resources, message in (({"cpus_per_trial": 64}, "asks for 64 CPUs"), ({"gpus_per_trial": 1}, "GPUs")):
        if "GPUs" in message and torch.cuda.is_available():
            continue
        folder = tmp_path / f"res{len(message)}"
        spec = {"name": "r", "preset": "quick", "base": {"model": {"sizes": [64, 8, 10]}, "train": {"epochs": 1}},
                "resources": resources}
        with pytest.raises(ValueError, match=message):
            sweep.run_sweep(spec, folder, cpus=2)
        assert not folder.exists()


def test_without_ray_the_command_says_how_to_install_it(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    assert main(["sweep", "--preset", "smoke"]) == 2
    assert "pip install 'droplab[sweep]'" in capsys.readouterr().err


def test_nothing_outside_the_sweep_module_imports_ray():
    code = ("import sys, droplab, droplab.cli, droplab.report, droplab.ensemble, droplab.experiments, "
            "droplab.metrics, droplab.train; print('ray' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_asha_stops_poor_trials_early(tmp_path):
    config = tmp_path / "asha.toml"
    config.write_text('name = "asha"\npreset = "quick"\n[base.model]\nsizes = [64, 16, 10]\n[base.train]\n'
                      'epochs = 8\n[grid]\n"train.lr" = [1.0, 0.3, 3e-4, 1e-4]\n'  # good first: ASHA compares
                      '[asha]\ngrace_period = 1\nreduction_factor = 2\n')
    out = tmp_path / "asha"
    assert main(["sweep", "--config", str(config), "--out", str(out), "--cpus", "1"]) == 0
    rows = _rows(out / "results.csv")
    assert len(rows) == 4 and all(r["status"] in ("done", "stopped") for r in rows)
    stopped = [r for r in rows if r["status"] == "stopped"]
    assert stopped and all(int(r["epochs"]) < 8 for r in stopped)  # ASHA ended them before their last epoch
    best = min(rows, key=lambda r: float(r["best_val_error"]))
    assert best["status"] == "done" and float(best["train.lr"]) >= 0.3
