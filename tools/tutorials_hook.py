"""MkDocs hook: every tutorial has a page before the site is built (a code-only page where ``make docs`` has not
executed it yet; ``make docs`` runs ``tools/tutorials.py`` first, so its site shows what each one prints and draws)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


def on_pre_build(config: Any, **kwargs: Any) -> None:
    path = Path(__file__).with_name("tutorials.py")
    spec = importlib.util.spec_from_file_location("droplab_tutorials", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(execute=False)
