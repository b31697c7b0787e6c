"""Datasets as in-memory tensors, with train / validation / test splits.

| name            | what                                                           | source                       |
|-----------------|----------------------------------------------------------------|------------------------------|
| digits          | 1,797 8x8 digits bundled with scikit-learn (the default)       | no download                  |
| mnist           | 60,000 + 10,000 28x28 digits                                   | IDX files                    |
| fashion-mnist   | 60,000 + 10,000 28x28 clothing images                          | IDX files                    |
| kmnist          | 60,000 + 10,000 28x28 Kuzushiji characters                     | IDX files                    |
| mnist-10k       | the 10,000-digit MNIST test set split 8,000 train / 2,000 test | MNIST's t10k IDX files       |
| synthetic-linear| y = x W* + noise, for linear networks                          | generated from the seed      |

IDX files are looked for in the ``root`` given (the folder itself or ``root/<name>``) and only there; without
a ``root``, in order, in ``$DROPLAB_DATA/<name>``, ``~/.cache/droplab/<name>``, ``/usr/share/datasets/<name>`` (Debian's
``dataset-fashion-mnist`` layout) and ``../shared/data/<name>`` (a team checkout's shared data folder beside
the working directory, e.g. ``../shared/data/mnist-t10k``). If none has them and ``download=True``, they are
downloaded into
``root`` (or ``$DROPLAB_DATA/<name>``, else the cache), each verified against its published MD5 and moved
into place atomically, so a broken download never leaves a partial file under the final name.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ._uci import UCI, UCISplit, download_uci, uci

__all__ = ["DATASETS", "SOURCES", "UCI", "Dataset", "IdxSource", "UCISplit", "download_idx", "download_uci",
           "find_idx_dir", "load", "read_idx", "uci"]

DATASETS = ("digits", "mnist", "fashion-mnist", "kmnist", "mnist-10k", "synthetic-linear")


@dataclass(frozen=True)
class IdxSource:
    """Where a dataset's IDX files come from: file names with their MD5 (of the .gz), mirrors, folder names.

    Attributes:
        files: Role (``train_x``...) -> (file name, MD5 of the .gz).
        mirrors: Base URLs to download from, in order.
        folders: Folder names the files are looked for in.
    """

    files: dict[str, tuple[str, str]]
    mirrors: tuple[str, ...]
    folders: tuple[str, ...]


SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        files={
            "train_images": ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        folders=("mnist",),
    ),
    "fashion-mnist": IdxSource(
        files={
            "train_images": ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        folders=("fashion-mnist",),
    ),
    "kmnist": IdxSource(
        files={
            "train_images": ("train-images-idx3-ubyte.gz", "bdb82020997e1d708af4cf47b453dcf7"),
            "train_labels": ("train-labels-idx1-ubyte.gz", "e144d726b3acfaa3e44228e80efcd344"),
            "test_images": ("t10k-images-idx3-ubyte.gz", "5c965bf0a639b31b8f53240b1b52f4d7"),
            "test_labels": ("t10k-labels-idx1-ubyte.gz", "7320c461ea6c1c855c0b718fb2a4b134"),
        },
        mirrors=("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        folders=("kmnist",),
    ),
}
# mnist-10k needs only MNIST's two t10k files; it also finds them in a folder named mnist-t10k
SOURCES["mnist-10k"] = IdxSource(
    files={k: v for k, v in SOURCES["mnist"].files.items() if k.startswith("test")},
    mirrors=SOURCES["mnist"].mirrors,
    folders=("mnist-10k", "mnist-t10k", "mnist"),
)


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test tensors. x: (N, d) float32; y: (N,) int64 labels (or (N, k) float targets).

    Attributes:
        name: The dataset's name.
        x_train: (N, d) float32 training inputs.
        y_train: (N,) int64 labels, or (N, k) float targets.
        x_val: Validation inputs (empty without a validation split).
        y_val: Their labels.
        x_test: Test inputs.
        y_test: Their labels.
        num_classes: The classes (0 for a regression).
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int  # 0 for regression

    @property
    def input_size(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def output_size(self) -> int:
        return self.num_classes if self.num_classes else int(self.y_train.shape[1])

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, **{f: getattr(self, f).to(device) for f in
                                ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")})

    def summary(self) -> str:
        return (f"{self.name}: {len(self.x_train)} train, {len(self.x_val)} validation, {len(self.x_test)} test, "
                f"{self.input_size} inputs, " + (f"{self.num_classes} classes" if self.num_classes else
                                                 f"{self.output_size} regression targets"))


# ----------------------------------------------------------------------------------------------------
# IDX files
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Parse an IDX file (gzip-compressed or not) into an array, checking its header against its length.

    A truncated, corrupt or mislabelled file raises ``ValueError`` naming the file and the fix.

    Args:
        path: An IDX file, gzip-compressed or not.

    Returns:
        np.ndarray: Its array, in the file's dtype and shape.

    Raises:
        ValueError: A truncated, corrupt or mislabelled file.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"{path} is not a readable gzip file ({exc}); delete it and download it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()!r}); expected 0000 08 0N")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated inside its header; delete it and download it again")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = math.prod(dims) * dtype.itemsize  # Python's integers: a huge header cannot overflow into a match
    if len(raw) - header != expected:
        raise ValueError(f"{path} is truncated or corrupt: its header promises {expected} bytes of data for shape "
                         f"{dims}, the file has {len(raw) - header}; delete it and download it again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def _idx_file(folder: Path, gz_name: str) -> Path | None:
    for candidate in (folder / gz_name, folder / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _cache_home() -> Path | None:
    """droplab's download cache, ~/.cache/droplab; None where there is no home directory (no HOME and a user id
    without a passwd entry, as in some containers): DROPLAB_DATA and the other places are still searched."""
    try:
        return Path.home() / ".cache" / "droplab"
    except RuntimeError:
        return None


def _search_folders(name: str, root: str | os.PathLike[str] | None) -> list[Path]:
    folders = SOURCES[name].folders
    out: list[Path] = []
    if root is not None:  # a folder the user named is the only place looked (and downloaded into)
        return [Path(root)] + [Path(root) / f for f in folders]
    if os.environ.get("DROPLAB_DATA"):
        out += [Path(os.environ["DROPLAB_DATA"]) / f for f in folders]
    cache = _cache_home()
    out += [cache / f for f in folders] if cache is not None else []
    out += [Path("/usr/share/datasets") / f for f in folders]
    out += [Path.cwd().parent / "shared" / "data" / f for f in folders]
    return out


def find_idx_dir(name: str, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The first folder that holds every IDX file of ``name``, or None.

    Args:
        name: A dataset with IDX files.
        root: A folder to look in first (or its parent).

    Returns:
        Path | None: The folder, or None.
    """
    files = SOURCES[name].files.values()
    for folder in _search_folders(name, root):
        if all(_idx_file(folder, f) is not None for f, _ in files):
            return folder
    return None


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)  # integrity against the published checksums, not security
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_idx(name: str, dest: str | os.PathLike[str], *, mirrors: Sequence[str] | None = None,
                 timeout: float = 60.0) -> Path:
    """Download the IDX files of ``name`` into ``dest``, each checked against its MD5 and renamed atomically.

    Args:
        name: A dataset with IDX files (``mnist``, ``fashion-mnist``, ``kmnist``).
        dest: The folder to write them into.
        mirrors: Base URLs to try, in order (None: the dataset's own).
        timeout: Seconds per request.

    Returns:
        Path: ``dest``.

    Raises:
        ValueError: A file whose MD5 does not match on every mirror, or no mirror reachable.
    """
    source = SOURCES[name]
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for filename, md5 in source.files.values():
        target = dest / filename
        if target.is_file() and _md5(target) == md5:
            continue
        errors = []
        for mirror in mirrors or source.mirrors:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=dest)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out, urllib.request.urlopen(mirror + filename, timeout=timeout) as resp:
                    while block := resp.read(1 << 20):
                        out.write(block)
                got = _md5(tmp)
                if got != md5:
                    raise ValueError(f"checksum mismatch: MD5 {got}, expected {md5}")
                os.replace(tmp, target)
                break
            except (OSError, ValueError) as exc:
                errors.append(f"{mirror}{filename}: {exc}")
            finally:
                tmp.unlink(missing_ok=True)
        else:
            raise ValueError(f"could not download {filename} for {name}: " + "; ".join(errors) +
                             f". Put the IDX files in {dest} by hand or set DROPLAB_DATA")
    return dest


def _download_dest(name: str, root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(root)
    if os.environ.get("DROPLAB_DATA"):
        return Path(os.environ["DROPLAB_DATA"]) / name
    cache = _cache_home()
    if cache is None:
        raise ValueError(f"nowhere to download {name}: there is no home directory (HOME unset and no passwd entry) "
                         "and DROPLAB_DATA is not set; set DROPLAB_DATA to a writable folder "
                         "or pass a data folder (--data-dir)")
    return cache / name


def _load_idx_arrays(name: str, root: str | os.PathLike[str] | None, download: bool) -> dict[str, np.ndarray]:
    folder = find_idx_dir(name, root)
    if folder is None:
        if not download:
            looked = ", ".join(str(p) for p in _search_folders(name, root))
            raise ValueError(f"no IDX files for {name} found (looked in {looked}); pass --data-dir, set "
                             "DROPLAB_DATA, or allow the download")
        folder = download_idx(name, _download_dest(name, root))
    arrays = {}
    for key, (filename, _) in SOURCES[name].files.items():
        path = _idx_file(folder, filename)
        assert path is not None  # find_idx_dir or download_idx guaranteed it
        arrays[key] = read_idx(path)
    for key, array in arrays.items():
        filename = SOURCES[name].files[key][0]
        if array.dtype != np.uint8:  # every IDX set droplab reads stores unsigned bytes (type 0x08)
            raise ValueError(f"{filename} in {folder} holds {array.dtype.name} values; {name} stores unsigned bytes "
                             "(IDX type 0x08). Is it the right file?")
        want = 3 if key.endswith("images") else 1
        if array.size == 0:
            raise ValueError(f"{filename} in {folder} holds no {'images' if want == 3 else 'labels'} (shape "
                             f"{array.shape}); delete it and download it again")
        if array.ndim != want:
            raise ValueError(f"{filename} in {folder} has {array.ndim} dimension(s), expected {want} "
                             f"({'images N x rows x columns' if want == 3 else 'one label per image'}); "
                             "are the images and labels files swapped?")
        if key.endswith("labels") and array.size and int(array.max()) > 9:
            raise ValueError(f"{filename} in {folder} has a label {int(array.max())}; {name} labels are 0-9")
    for split in ("train", "test"):
        if f"{split}_images" in arrays and len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            images, labels = (SOURCES[name].files[f"{split}_{k}"][0] for k in ("images", "labels"))
            raise ValueError(f"{name} in {folder}: {images} holds {len(arrays[f'{split}_images'])} images but "
                             f"{labels} {len(arrays[f'{split}_labels'])} labels; the files do not belong together")
    return arrays


# ----------------------------------------------------------------------------------------------------
def _images(a: np.ndarray, scale: float) -> Tensor:
    return torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / scale)


def _labels(a: np.ndarray) -> Tensor:
    return torch.from_numpy(a.astype(np.int64))


def _permutation(n: int, seed: int) -> Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def _raw_splits(name: str, root: str | os.PathLike[str] | None, download: bool,
                seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x, y = _images(bunch.data, 16.0), _labels(bunch.target)
        perm = _permutation(len(x), 12345)  # a fixed test split, independent of the training seed
        test, train = perm[:360], perm[360:]
        return x[train], y[train], x[test], y[test], 10
    if name == "mnist-10k":
        a = _load_idx_arrays(name, root, download)
        x, y = _images(a["test_images"], 255.0), _labels(a["test_labels"])
        perm = _permutation(len(x), 12345)
        test, train = perm[:2000], perm[2000:]
        return x[train], y[train], x[test], y[test], 10
    if name == "synthetic-linear":
        g = torch.Generator().manual_seed(seed)
        d_in, d_out, n = 20, 5, 1200
        w = torch.randn(d_in, d_out, generator=g) / d_in ** 0.5
        x = torch.randn(n, d_in, generator=g)
        y = x @ w + 0.1 * torch.randn(n, d_out, generator=g)
        return x[:1000], y[:1000], x[1000:], y[1000:], 0
    a = _load_idx_arrays(name, root, download)
    return (_images(a["train_images"], 255.0), _labels(a["train_labels"]),
            _images(a["test_images"], 255.0), _labels(a["test_labels"]), 10)


NORMALIZATIONS = ("unit", "standard", "none")  # pixels in [0, 1]; zero mean and unit variance; as stored


def load(name: str = "digits", *, root: str | os.PathLike[str] | None = None, download: bool = True,
         validation: float = 0.1, seed: int = 0, normalize: str = "unit",
         limit: int | None = None) -> Dataset:
    """Load a dataset into memory with a validation split drawn (by ``seed``) from the training part.

    Args:
        name: one of ``DATASETS``.
        root: a folder with the IDX files (or their parent); see the module docstring for the search order.
        download: fetch missing IDX files (verified) into ``root`` or the cache.
        validation: fraction of the training part held out for validation, in [0, 1).
        seed: seed of the validation split (and of the synthetic data).
        normalize: ``unit`` (pixels in [0, 1]), ``standard`` (zero mean, unit variance per feature, from the
            training part only) or ``none``.
        limit: keep at most this many training examples (for quick runs).

    >>> load("digits").summary()
    'digits: 1293 train, 144 validation, 360 test, 64 inputs, 10 classes'

    Returns:
        Dataset: The training, validation and test tensors.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    if not (isinstance(validation, (int, float)) and 0.0 <= validation < 1.0):
        raise ValueError(f"validation must be a fraction in [0, 1), got {validation!r}")
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be 'unit', 'standard' or 'none', got {normalize!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    x, y, x_test, y_test, classes = _raw_splits(name, root, download, seed)
    perm = _permutation(len(x), seed)
    n_val = int(round(validation * len(x)))
    val, train = perm[:n_val], perm[n_val:]
    if limit is not None:
        train = train[:limit]
    x_train, y_train, x_val, y_val = x[train], y[train], x[val], y[val]
    if normalize == "standard":
        mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-6)
        x_train, x_val, x_test = ((t - mean) / std for t in (x_train, x_val, x_test))
    return Dataset(name, x_train, y_train, x_val, y_val, x_test, y_test, classes)
