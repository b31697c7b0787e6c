"""The one TOML reader: ``droplab train --config`` and sweep files both read through it, with the same messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def read_toml(path: str | Path, what: str, *, hint: str = "give a .toml file") -> dict[str, Any]:
    """The tables of the TOML file ``path``; a ``ValueError`` that names ``what`` it was meant to be (``"config
    file"``, ``"sweep file"``) when it is missing, a folder, not UTF-8 or not TOML."""
    import tomllib

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; {hint}")
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist; {hint}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{what} {path} is not UTF-8 text; save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid TOML: {exc}") from None
