"""A Ctrl-C that always stops droplab's command line.

Python delivers SIGINT as a ``KeyboardInterrupt`` raised in whatever code the main thread is running. When that code
is a finalizer (a weakref callback, a ``__del__``: tempfile, torch and tqdm run them at arbitrary moments), CPython
cannot raise it anywhere: it prints "Exception ignored in ..." with a traceback and carries on, and the command
runs on as if the key had never been pressed. :func:`install` (called by ``droplab.cli.main``) routes such a
swallowed interrupt to a flag instead of a traceback, and :func:`check`, called between the stages of a
reproduction, the epochs of training and once more when the command returns, raises it there, where the command
line turns it into its one-line message and exit status 130. Library users who never call :func:`install` are
unaffected: the flag is only ever set by the hook.
"""

from __future__ import annotations

import sys
from typing import Any

_state: dict[str, Any] = {"pending": False, "previous": None}


def _hook(unraisable: Any) -> None:
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        _state["pending"] = True
        return
    (_state["previous"] or sys.__unraisablehook__)(unraisable)


def install() -> None:
    """Route a ``KeyboardInterrupt`` that a finalizer swallowed to :func:`check` (idempotent)."""
    _state["pending"] = False
    if sys.unraisablehook is not _hook:
        _state["previous"] = sys.unraisablehook
        sys.unraisablehook = _hook


def uninstall() -> None:
    """Restore the hook that was there before :func:`install`."""
    if sys.unraisablehook is _hook:
        sys.unraisablehook = _state["previous"] or sys.__unraisablehook__
    _state["pending"] = False


def check() -> None:
    """Raise the ``KeyboardInterrupt`` a finalizer swallowed since the last check, if any."""
    if _state["pending"]:
        _state["pending"] = False
        raise KeyboardInterrupt
