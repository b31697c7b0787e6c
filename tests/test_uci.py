"""The UCI regression sets with Gal & Ghahramani's splits: reading them, and the download path on files the test
makes (served over HTTP, checked against their SHA-256)."""

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from droplab import data
from droplab._uci import _files, _tree_hash

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "uci-gal2016"


@pytest.mark.skipif(not (SHARED / "bostonHousing").is_dir(), reason="needs ../shared/data/uci-gal2016")
def test_a_split_is_the_repositorys_rows_on_the_original_scale():
    s = data.uci("boston", split=7, root=SHARED)
    table = np.loadtxt(SHARED / "bostonHousing" / "data.txt")
    train = np.loadtxt(SHARED / "bostonHousing" / "index_train_7.txt").astype(int)
    assert s.x_train.shape == (455, 13) and s.x_test.shape == (51, 13) and table.shape == (506, 14)
    assert torch.equal(s.y_train, torch.from_numpy(table[train, 13]))
    assert (s.n_splits, s.n_hidden, s.n_epochs) == (20, 50, 40) and s.tau_values == (0.1, 0.15, 0.2)
    x, y, xt, y_mean, y_sd = s.standardize()
    assert torch.allclose(x.mean(0), torch.zeros(13, dtype=torch.float64), atol=1e-12)
    assert float(y.std(correction=0)) == pytest.approx(1.0) and y_sd == pytest.approx(float(np.std(table[train, 13])))
    assert y_mean == pytest.approx(float(s.y_train.mean()))
    assert _tree_hash(SHARED / "bostonHousing", _files(SHARED / "bostonHousing")) == \
        data.UCI["boston"][1]  # the checksum droplab downloads against is that of these files


def _fake_set(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savetxt(folder / "data.txt", rng.normal(size=(10, 4)))
    (folder / "index_features.txt").write_text("0\n1\n2\n")
    (folder / "index_target.txt").write_text("3\n")
    (folder / "n_splits.txt").write_text("2\n")
    (folder / "n_hidden.txt").write_text("50\n")
    (folder / "n_epochs.txt").write_text("40\n")
    (folder / "dropout_rates.txt").write_text("0.005\n0.05\n")
    (folder / "tau_values.txt").write_text("0.25\n0.5\n")
    for k in range(2):
        (folder / f"index_train_{k}.txt").write_text("\n".join(str(i) for i in range(k, 8)) + "\n")
        (folder / f"index_test_{k}.txt").write_text("8\n9\n")


@pytest.fixture
def mirror(tmp_path):
    served = tmp_path / "served"
    _fake_set(served / "yacht" / "data")
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served / "yacht" / "data", f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_download_is_checked_and_appears_whole(mirror, tmp_path):
    files, url = mirror
    checksum = _tree_hash(files, _files(files))
    root = tmp_path / "data"
    s = data.uci("yacht", split=1, root=root, base_url=url, checksum=checksum)
    assert s.x_train.shape == (7, 3) and s.x_test.shape == (2, 3) and s.dropout_rates == (0.005, 0.05)
    assert sorted(p.name for p in root.iterdir()) == ["yacht"]  # no temporary folder left
    again = data.uci("yacht", split=1, root=root, download=False)  # found where it was put
    assert torch.equal(again.x_train, s.x_train)


def test_a_wrong_checksum_leaves_nothing(mirror, tmp_path):
    files, url = mirror
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="checksum mismatch for yacht"):
        data.uci("yacht", root=root, base_url=url, checksum=hashlib.sha256(b"other").hexdigest())
    assert not root.exists() or list(root.iterdir()) == []


def test_uci_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown UCI set 'housing'"):
        data.uci("housing")
    with pytest.raises(ValueError, match="no files for UCI set yacht"):
        data.uci("yacht", root=tmp_path, download=False)
    if (SHARED / "yacht").is_dir():
        with pytest.raises(ValueError, match=r"splits 0..19, got split=20"):
            data.uci("yacht", split=20, root=SHARED)
    with pytest.raises(ValueError, match="non-negative integer"):
        data.uci("yacht", split=-1)


@pytest.mark.skipif(not (SHARED / "yacht").is_dir(), reason="needs ../shared/data/uci-gal2016")
def test_the_benchmark_runs_the_protocol_end_to_end_on_a_small_budget():
    # the script's grid search, retraining and scoring, 2 splits of yacht, 1x the base epochs, 200 samples: the
    # last line counts the sets within 2 SE (at this budget yacht is far from the published numbers: 0 of 1)
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "uci.py"
    proc = subprocess.run([sys.executable, str(script), "--datasets", "yacht", "--splits", "2", "--samples", "200",
                           "--epochs-factor", "1", "--speed-epochs", "0"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.strip().splitlines() if not line.startswith("host")]  # the host first
    assert proc.stdout.startswith("host: ") and "host peaks" in proc.stdout
    assert lines[1].startswith("yacht") and "0.67 +- 0.05" in lines[1]
    assert lines[-1].startswith("uci: 0 of 1 datasets within 2 SE on both RMSE and LL")
