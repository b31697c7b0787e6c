"""droplab.threads: torch's thread count follows the cores other processes leave free."""

import os
import subprocess
import sys
import time

import pytest
import torch

from droplab import threads


def test_others_load_from_two_readings():
    cores = os.cpu_count()
    # one second of wall time; the machine was busy half the time; this process used 0.25 core
    before = (0.0, 0.0, 10.0, 100.0)
    after = (50.0 * cores, 100.0 * cores, 10.25, 101.0)
    assert threads.others_load(before, after) == pytest.approx(cores * 0.5 - 0.25)
    assert threads.others_load(after, after) == 0.0


@pytest.mark.skipif(not os.path.exists("/proc/stat") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs /proc/stat and at least 2 cores")
def test_a_busy_process_takes_a_thread_away_and_gives_it_back():
    original = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    spinner = subprocess.Popen([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 4: pass"])
    try:
        time.sleep(0.3)
        threads.enable()
        seen = []
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            torch.randn(200, 200) @ torch.randn(200, 200)
            got = threads.maybe_adapt()
            if got is not None:
                seen.append(got)
        assert seen and min(seen) < cores, seen  # another process held a core: fewer threads
        spinner.wait()
        time.sleep(1.1)
        threads.maybe_adapt()
        time.sleep(1.1)
        assert threads.maybe_adapt() >= cores - 1  # it ended: the cores come back (noise aside)
    finally:
        spinner.kill()
        threads.disable()
        torch.set_num_threads(original)


def test_disabled_by_default_and_bad_cap():
    assert not threads.enabled() and threads.maybe_adapt() is None
    with pytest.raises(ValueError, match="max_threads must be a positive integer"):
        threads.enable(0)


def test_the_command_line_turns_it_on_and_off_again(monkeypatch, tmp_path):
    from droplab.cli import main

    calls = []
    monkeypatch.setattr(threads, "enable", lambda *a, **k: calls.append("on"))
    before = torch.get_num_threads()
    main(["evaluate", str(tmp_path / "none.safetensors")])
    assert calls == ["on"] and not threads.enabled() and torch.get_num_threads() == before
    monkeypatch.setenv("DROPLAB_ADAPT_THREADS", "0")
    main(["evaluate", str(tmp_path / "none.safetensors")])
    assert calls == ["on"]  # not again: the variable keeps torch's own count


@pytest.mark.parametrize("precision", ["float32", "auto"])
def test_the_command_line_products_do_not_depend_on_the_thread_count(tmp_path, precision):
    # droplab train sets MKL's strict reproducible mode before the first product: here 1 thread and 2 threads
    # train the same network bit for bit (without it the products' sums split by thread and the weights differ).
    # With "auto" both runs share one probe cache, as two runs on one machine do, and choose alike (CI found 1 thread
    # training in float32 and 2 in bfloat16 when the probe ran at the process's thread count)
    from droplab.train import load_model

    weights = []
    for n in (1, 2):
        env = {**os.environ, "OMP_NUM_THREADS": str(n), "DROPLAB_ADAPT_THREADS": "0",
               "DROPLAB_CACHE_DIR": str(tmp_path / "cache")}
        env.pop("MKL_CBWR", None)
        out = tmp_path / f"threads{n}"
        argv = ["train", "--preset", "quick", "--epochs", "2", "--seed", "1", "--sizes", "64,300,300,10", "--out",
                str(out), "--no-progress", "--precision", precision]
        subprocess.run([sys.executable, "-c", f"from droplab.cli import main; raise SystemExit(main({argv!r}))"],
                       env=env, check=True, capture_output=True)
        model, _ = load_model(out / "last.safetensors")
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
