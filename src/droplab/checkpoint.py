"""Checkpoints: one safetensors file holding tensors (model, optimizer, random generators) and, in its
metadata, the JSON that describes them. One file per checkpoint, written to a temporary name and renamed
into place (``os.replace`` is atomic on POSIX), so an interrupted write never leaves a half checkpoint.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

__all__ = ["FORMAT", "atomic_save_figure", "atomic_write_text", "load_checkpoint_file", "save_checkpoint_file"]

FORMAT = "droplab-checkpoint/1"


def _file_mode() -> int:
    """The mode an ordinary new file gets here (0o666 less the umask, 0644 usually); mkstemp's is 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_TMP = ".droplab-tmp"  # temporary files are ".<name>.<pid>.<random>.droplab-tmp": the writer's pid is in the name


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; when the block ends it is made readable like any output, synced to
    disk and renamed over ``path``, and when the block fails it is removed: a reader sees the old file or the new
    one, never part of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=_TMP, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())  # mkstemp's and safetensors' files are 0600: results are for others to read too
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that a killed droplab process left in ``folder`` (and below): those whose
    writer (the pid in the name) is no longer running. A temporary file of a run still writing is left alone, so
    two runs into one folder are safe. Returns what was removed."""
    removed = []
    for tmp in Path(folder).rglob(f".*{_TMP}"):
        parts = tmp.name.split(".")  # ["", name..., pid, random, "droplab-tmp"]
        pid = int(parts[-3]) if len(parts) >= 5 and parts[-3].isdigit() else None
        if pid is not None and pid != os.getpid() and not _alive(pid):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text to ``path`` atomically: a temporary file in the same folder, fsync, rename.

    Args:
        path: The file's path.
        text: Its contents.

    Returns:
        None
    """
    with _replacing(Path(path)) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_save_figure(fig: Any, path: str | os.PathLike[str], **savefig: Any) -> None:
    """Write a matplotlib figure as a PNG to ``path`` atomically (readable by others, like every droplab output);
    ``savefig`` options (``dpi``, ``bbox_inches``) go to ``fig.savefig``.

    Args:
        fig: A matplotlib figure.
        path: The PNG's path.
        **savefig: Options of ``fig.savefig``.

    Returns:
        None
    """
    with _replacing(Path(path)) as tmp:
        fig.savefig(tmp, format="png", **savefig)


def save_checkpoint_file(path: str | os.PathLike[str], tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Save tensors with ``meta`` (JSON-serializable) as one safetensors file, atomically.

    Args:
        path: The file's path.
        tensors: The tensors by name.
        meta: JSON-serializable metadata.

    Returns:
        None
    """
    path = Path(path)
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with _replacing(path) as tmp:
        try:
            save_file(flat, str(tmp), metadata={"format": FORMAT, "droplab": json.dumps(meta)})
        except SafetensorError as exc:  # the library's own type for I/O failures (a full disk): an OSError here
            raise OSError(errno.EIO, f"could not write {path}: {exc}", str(path)) from None


def _metadata(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
    if metadata.get("format") != FORMAT or "droplab" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not a droplab checkpoint (format "
                         f"{metadata.get('format')!r}, expected {FORMAT!r})")
    try:
        meta = json.loads(metadata["droplab"])
    except json.JSONDecodeError:
        raise ValueError(f"{path}: its droplab metadata is not JSON; the file is damaged") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its droplab metadata is not a JSON object; the file is damaged")
    return meta


def read_checkpoint_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The meta of a checkpoint written by ``save_checkpoint_file``, without reading its tensors."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}; expected a .safetensors file written by droplab train")
    try:
        return _metadata(path)
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({exc})") from None


def load_checkpoint_file(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by ``save_checkpoint_file``: (tensors on CPU, meta).

    Args:
        path: A safetensors file written by ``save_checkpoint_file``.

    Returns:
        tuple[dict, dict]: The tensors (on the CPU) by name, and the meta.

    Raises:
        ValueError: A file that cannot be read as one (named, with what is wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}; expected a .safetensors file written by droplab train")
    try:
        meta = _metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({exc})") from None
    return tensors, meta
