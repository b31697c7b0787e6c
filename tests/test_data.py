"""Data: IDX parsing, corrupt files, search paths, verified atomic downloads (from a local server)."""

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from droplab import data, presets

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist-t10k"


def _idx_bytes(array: np.ndarray) -> bytes:
    code = {np.uint8: 0x08}[array.dtype.type]
    return bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def _write_fake_mnist(folder: Path, n_train=30, n_test=20, gz=True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        raw = _idx_bytes(arr)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx_round_trip(tmp_path, gz):
    arrays = _write_fake_mnist(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    got = data.read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert np.array_equal(got, arrays["train-images-idx3-ubyte"])


def test_truncated_file_is_a_clear_error(tmp_path):
    raw = _idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8))
    (tmp_path / "t.idx").write_bytes(raw[:-100])
    with pytest.raises(ValueError, match="truncated or corrupt.*download it again"):
        data.read_idx(tmp_path / "t.idx")
    (tmp_path / "t.gz").write_bytes(gzip.compress(raw)[:-20])
    with pytest.raises(ValueError, match="not a readable gzip file"):
        data.read_idx(tmp_path / "t.gz")


def test_bad_magic_is_a_clear_error(tmp_path):
    (tmp_path / "x").write_bytes(b"PK\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "x")


def test_load_from_explicit_folder_and_env(tmp_path, monkeypatch):
    arrays = _write_fake_mnist(tmp_path / "mnist")
    d = data.load("mnist", root=tmp_path, download=False, validation=0.2)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (24, 6, 20)
    assert d.x_test.shape == (20, 784) and d.x_test.dtype == torch.float32
    assert torch.allclose(d.x_test, torch.from_numpy(arrays["t10k-images-idx3-ubyte"].reshape(20, -1) / 255.0).float())
    monkeypatch.setenv("DROPLAB_DATA", str(tmp_path))
    assert data.load("mnist", download=False).x_train.shape[1] == 784


def test_missing_files_without_download_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ValueError, match="no IDX files for kmnist found.*DROPLAB_DATA"):
        data.load("kmnist", root=tmp_path / "nothing", download=False)


def test_a_named_folder_is_the_only_place_looked(tmp_path, monkeypatch):
    """Issue 19: a --data-dir that did not exist was passed over and other data used without a word."""
    _write_fake_mnist(tmp_path / "elsewhere" / "mnist")
    monkeypatch.setenv("DROPLAB_DATA", str(tmp_path / "elsewhere"))
    assert data.load("mnist", download=False).x_train.shape[1] == 784  # found there without a root
    with pytest.raises(ValueError, match=f"looked in {tmp_path / 'typo'}, {tmp_path / 'typo' / 'mnist'}\\)"):
        data.load("mnist", root=tmp_path / "typo", download=False)


def test_mismatched_images_and_labels(tmp_path):
    _write_fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(5, dtype=np.uint8))))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz holds 20 images but t10k-labels-idx1-ubyte.gz 5"):
        data.load("mnist", root=tmp_path, download=False)


def test_wrong_files_are_named(tmp_path):
    arrays = _write_fake_mnist(tmp_path)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    images = tmp_path / "t10k-images-idx3-ubyte.gz"
    # the images file where the labels file belongs
    labels.write_bytes(images.read_bytes())
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.* has 3 dimension.*swapped"):
        data.load("mnist", root=tmp_path, download=False)
    # a label out of range
    bad = arrays["t10k-labels-idx1-ubyte"].copy()
    bad[3] = 12
    labels.write_bytes(gzip.compress(_idx_bytes(bad)))
    with pytest.raises(ValueError, match="has a label 12; mnist labels are 0-9"):
        data.load("mnist", root=tmp_path, download=False)
    # a type byte other than unsigned bytes (0x0D: big-endian float32)
    floats = arrays["t10k-labels-idx1-ubyte"].astype(">f4")
    raw = bytes([0, 0, 0x0D, 1]) + struct.pack(">I", len(floats)) + floats.tobytes()
    labels.write_bytes(gzip.compress(raw))
    with pytest.raises(ValueError, match="holds float32 values; mnist stores unsigned bytes"):
        data.load("mnist", root=tmp_path, download=False)


@pytest.fixture
def local_mirror(tmp_path):
    served = tmp_path / "served"
    _write_fake_mnist(served)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(served), **k)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_verifies_checksums_and_is_atomic(local_mirror, tmp_path, monkeypatch):
    served, url = local_mirror
    files = {k: (f, _md5(served / f)) for k, (f, _) in data.SOURCES["mnist"].files.items()}
    monkeypatch.setitem(data.SOURCES, "mnist", data.IdxSource(files, (url,), ("mnist",)))
    dest = tmp_path / "dest"
    d = data.load("mnist", root=dest, validation=0.0)
    assert len(d.x_train) == 30
    assert sorted(p.name for p in dest.iterdir()) == sorted(f for f, _ in files.values())  # no temp files left


def test_download_with_wrong_checksum_leaves_nothing(local_mirror, tmp_path, monkeypatch):
    served, url = local_mirror
    files = {k: (f, "0" * 32) for k, (f, _) in data.SOURCES["mnist"].files.items()}
    monkeypatch.setitem(data.SOURCES, "mnist", data.IdxSource(files, (url,), ("mnist",)))
    dest = tmp_path / "dest"
    with pytest.raises(ValueError, match="checksum mismatch"):
        data.download_idx("mnist", dest)
    assert list(dest.iterdir()) == []


def test_digits_default_is_real_and_split_is_seeded():
    a, b, c = data.load("digits", seed=0), data.load("digits", seed=0), data.load("digits", seed=1)
    assert a.summary() == "digits: 1293 train, 144 validation, 360 test, 64 inputs, 10 classes"
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.x_test, c.x_test)  # the test split does not move with the seed
    assert float(a.x_train.max()) == 1.0 and float(a.x_train.min()) == 0.0


def test_standard_normalization_uses_train_statistics():
    d = data.load("digits", normalize="standard")
    assert torch.allclose(d.x_train.mean(0), torch.zeros(64), atol=1e-5)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist-t10k not present")
def test_mnist_10k_from_the_shared_files_matches_the_published_counts():
    # label counts of the MNIST test set, from shared/data/README.md
    labels = data.read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    images = data.read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    assert hashlib.md5(images.tobytes()).hexdigest() != ""  # content parsed
    d = data.load("mnist-10k", root=SHARED_MNIST, download=False, validation=0.1)
    assert (len(d.x_train) + len(d.x_val), len(d.x_test)) == (8000, 2000)


@pytest.mark.parametrize("kwargs,error", [
    (dict(name="cifar"), "unknown dataset 'cifar'"),
    (dict(validation=1.0), "validation must be a fraction"),
    (dict(normalize="zscore"), "normalize must be"),
    (dict(limit=0), "limit must be a positive integer"),
])
def test_bad_load_arguments(kwargs, error):
    with pytest.raises(ValueError, match=error):
        data.load(**kwargs)


def test_no_home_directory_is_not_a_traceback(monkeypatch, tmp_path):
    def no_home():
        raise RuntimeError("Could not determine home directory")

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    monkeypatch.delenv("DROPLAB_DATA", raising=False)
    assert data._cache_home() is None
    with pytest.raises(ValueError, match="no home directory.*set DROPLAB_DATA"):
        data._download_dest("mnist", None)
    monkeypatch.setenv("DROPLAB_DATA", str(tmp_path))  # the folder named is used, no home needed
    assert data._download_dest("mnist", None) == tmp_path / "mnist"
    assert data._search_folders("mnist", None)[0].parent == tmp_path


SHARED_FULL_MNIST = SHARED_MNIST.parent / "mnist"


def test_the_paper_preset_holds_out_10000_of_the_60000_training_digits():
    """Issue 34: the paper preset trains on 50,000 of MNIST's 60,000 training digits, validates on the other 10,000
    (the usual split, Srivastava et al. 2014) and tests on the 10,000 test digits; the study reads the same split."""
    from droplab.experiments import STUDY_PRESETS
    settings = presets.resolve("paper")
    assert settings.data.dataset == "mnist"
    assert round(settings.data.validation * 60_000) == 10_000
    assert STUDY_PRESETS["paper"].settings().data.validation == settings.data.validation
    assert presets.resolve("standard").data.validation == 0.1  # the standard preset's split is unchanged


@pytest.mark.skipif(not SHARED_FULL_MNIST.is_dir(), reason="../shared/data/mnist not present")
def test_the_paper_preset_split_on_the_real_files():
    settings = presets.resolve("paper", {"data": {"data_dir": str(SHARED_FULL_MNIST), "download": False}})
    d = settings.data.load(seed=0)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == (50_000, 10_000, 10_000)
    # the split draws no digit twice: every training digit is in exactly one part
    assert torch.bincount(torch.cat([d.y_train, d.y_val])).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918,
                                                                        6265, 5851, 5949]
