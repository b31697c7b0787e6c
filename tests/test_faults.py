"""Fault injection (slow): a reproduction and a sweep killed at random moments (SIGKILL or SIGINT, chosen by a
seeded generator), then rerun or resumed, end with exactly what an uninterrupted run gives, and leave no
half-written file behind."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow

# a fixed thread count: droplab adapts it to the machine's load (threads.enable), and float32 sums over more threads
# round differently; the comparison is bit for bit
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "DROPLAB_ADAPT_THREADS": "0"}


def _run(command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, env=ENV, timeout=600, **kwargs)


def _kill_at(command, delay, sig):
    """Starts ``command`` in its own process group, waits ``delay`` seconds, sends ``sig`` to the group; returns
    (exit status, stderr, the time.time() the signal was sent at, or None where the command ended before)."""
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    try:
        proc.wait(timeout=delay)
        return proc.returncode, proc.stderr.read(), None
    except subprocess.TimeoutExpired:
        pass
    sent = time.time()
    if sig == signal.SIGINT:
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends the foreground process
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            pytest.fail(f"{command[3]} did not stop within 2 minutes of SIGINT")
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode, proc.stderr.read(), sent


def _last_write(folder):
    return max((os.path.getmtime(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files), default=0.0)


def _leftovers(folder):
    return [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
            if ".droplab-tmp" in f or f.endswith(".tmp")]


def _results(folder):
    saved = json.loads((folder / "results.json").read_text())
    for section in saved["sections"]:
        section.pop("seconds"), section.pop("reused")
    return saved


def test_a_reproduction_killed_at_random_moments_ends_as_an_uninterrupted_one(tmp_path):
    command = [sys.executable, "-m", "droplab.cli", "reproduce", "--preset", "tiny", "--no-progress"]
    t0 = time.perf_counter()
    reference = _run(command + ["--out", str(tmp_path / "reference")])
    took = time.perf_counter() - t0
    assert reference.returncode == 0, reference.stderr[-2000:]
    rng = random.Random(23)
    out = tmp_path / "killed"
    kills = 0
    for _ in range(6):
        sig = rng.choice([signal.SIGKILL, signal.SIGINT])
        # each attempt resumes from the stages the ones before it finished, so the kills land further along; not
        # before 5 s, while Python itself is still importing torch (a Ctrl-C there is Python's traceback)
        code, err, sent = _kill_at(command + ["--out", str(out)], rng.uniform(5.0, max(6.0, took / 3)), sig)
        if sent is not None and sig == signal.SIGINT and code in (0, -signal.SIGINT) and "Traceback" not in err:
            # the Ctrl-C came as the process was ending, after its last line of Python (interpreter shutdown
            # takes ~0.5 s here): the interpreter then drops it (exit 0) or has given SIGINT its default action
            # back (killed by it, silently). Allowed only if every file was written before it: a file written
            # after it means the interrupt was swallowed and the run went on (file times are coarse, up to a
            # tick behind the clock: hence the 10 ms)
            assert _last_write(out) < sent - 0.01, (f"exit {code} after a Ctrl-C, with files written after it "
                                                    f"({_last_write(out) - sent:.2f} s); stderr: {err[-1500:]}")
            continue
        kills += sent is not None
        if sent is not None and sig == signal.SIGINT:  # Ctrl-C: one line, exit 130, what is kept and how to go on
            assert code == 130, err[-2000:]
            assert "interrupted" in err and "Traceback" not in err, err[-2000:]
    assert kills >= 3
    final = _run(command + ["--out", str(out)])
    assert final.returncode == 0, final.stderr[-2000:]
    assert _results(out) == _results(tmp_path / "reference")
    assert not _leftovers(out)
    figures = sorted(p.name for p in out.glob("*.png"))
    assert figures == sorted(p.name for p in (tmp_path / "reference").glob("*.png"))
    for name in figures:  # every figure whole: a PNG's last chunk is IEND
        assert (out / name).read_bytes()[-8:-4] == b"IEND", name


def _rows(path):
    with open(path, newline="") as fh:
        return {r["train.seed"]: r for r in csv.DictReader(fh)}


def test_a_sweep_interrupted_by_ctrl_c_says_resume_and_resumes_to_the_same_results(tmp_path):
    config = tmp_path / "faults.toml"
    config.write_text('name = "faults"\npreset = "quick"\n[base.model]\nsizes = [64, 64, 10]\n[base.train]\n'
                      'epochs = 12\n[grid]\n"train.seed" = [0, 1, 2, 3]\n[resources]\ncpus_per_trial = 1\n')
    base = [sys.executable, "-m", "droplab.cli", "sweep", "--config", str(config), "--cpus", "1"]
    reference = _run(base + ["--out", str(tmp_path / "reference")])
    assert reference.returncode == 0, reference.stderr[-2000:]
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(base + ["--out", str(out)], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.time() + 300
    while time.time() < deadline:  # Ctrl-C once the first trial has ended
        log = out / "trials.jsonl"
        if log.is_file() and any(json.loads(line)["event"] == "end" for line in log.read_text().splitlines()):
            break
        assert proc.poll() is None, "the sweep ended before it could be interrupted"
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the sweep did not stop within 3 minutes of Ctrl-C")
    said = stdout + stderr
    assert proc.returncode == 130, said[-3000:]
    assert "--resume" in said and "Tuner.restore" not in said, said[-3000:]
    rows = _rows(out / "results.csv")
    assert any(r["status"] == "done" for r in rows.values())
    assert all(r["status"] in ("done", "interrupted", "not run") for r in rows.values())
    for r in rows.values():  # an unfinished trial is never written up as finished
        if r["status"] != "done":
            assert r["test_error"] == "" and r["checkpoint"] == ""
    resumed = _run(base + ["--out", str(out), "--resume"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    got, want = _rows(out / "results.csv"), _rows(tmp_path / "reference" / "results.csv")
    assert sorted(got) == sorted(want) == ["0", "1", "2", "3"]
    for seed in want:  # each trial trains the same weights however often it was started
        assert got[seed]["status"] == "done"
        for key in ("test_error", "best_val_error", "epochs"):
            assert got[seed][key] == want[seed][key], (seed, key)
    assert not _leftovers(out)
