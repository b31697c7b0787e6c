"""torch's thread count chosen from what the machine has free, so that concurrent runs do not collapse.

On the 2-core machine droplab is developed on, two ``droplab reproduce --preset quick`` runs at once took over
7x the time of one alone (40 s alone; both still running after 5 minutes): each run's two OpenMP threads spin
at every parallel region's barrier while the other run holds a core. One thread each is nearly as fast as two
for this work (43 s alone), and ``OMP_WAIT_POLICY=PASSIVE`` is no answer (101 s alone).

``enable()`` turns on the adaptation: at safe points of the hot loops (every Monte Carlo chunk, every training
step), at most once a second, droplab reads the machine's busy time (``/proc/stat``) and its own CPU time, takes
the other processes' load in cores, and sets ``torch.set_num_threads`` to the cores they leave free (at least
1, at most the cores this process may use or the cap given). The command line enables it; the library leaves
the thread count alone unless asked. Where ``/proc/stat`` is missing (not Linux) nothing changes.

A seed gives the same masks whatever the thread count (``droplab.gates.random_words``). MKL by default splits a
product's sums by thread, so a run whose thread count changed differed in the last bits, and after a few hundred
training steps in its test error (a quick report beside a running standard one: 2.50% against 2.22%).
``reproducible_products`` sets ``MKL_CBWR=AUTO,STRICT`` (unless the user set ``MKL_CBWR``), MKL's strict
reproducible mode, in which the products' bits do not depend on the thread count; the command line calls it
before its first product (it has no effect after MKL's first product in the process). torch's own vectorized
elementwise functions (``torch.sigmoid`` measured) can still differ in the last bit between thread counts, so
bit-for-bit reruns keep the count fixed: ``DROPLAB_ADAPT_THREADS=0`` keeps the command line at torch's own count.
"""

from __future__ import annotations

import os
import time

import torch

__all__ = ["disable", "enable", "enabled", "maybe_adapt", "others_load", "reproducible_products"]

INTERVAL = 1.0  # seconds between two readings

_state: dict[str, object] = {"enabled": False, "cap": None, "last": None, "next": 0.0}


def reproducible_products() -> str:
    """Ask MKL for products whose bits do not depend on the thread count (``MKL_CBWR=AUTO,STRICT``) unless the
    user chose a ``MKL_CBWR`` already; returns the setting in force. Effective only before MKL's first product.

    Returns:
        str: The ``MKL_CBWR`` setting in force.
    """
    return os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def enable(max_threads: int | None = None) -> None:
    """Adapt torch's thread count from now on; ``max_threads`` caps it (default: the cores this process may use).

    Args:
        max_threads: The most threads it sets (None: the cores this process may use).

    Returns:
        None
    """
    if max_threads is not None and (not isinstance(max_threads, int) or max_threads < 1):
        raise ValueError(f"max_threads must be a positive integer or None, got {max_threads!r}")
    _state.update(enabled=True, cap=max_threads, last=_reading(), next=time.monotonic() + INTERVAL)


def disable() -> None:
    _state.update(enabled=False, last=None)


def enabled() -> bool:
    """Whether the thread adaptation is on (``enable`` turned it on).

    Returns:
        bool: True once ``enable`` was called.
    """
    return bool(_state["enabled"])


def _available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _reading() -> tuple[float, float, float, float] | None:
    """(machine busy jiffies, machine total jiffies, this process's CPU seconds, wall seconds), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = [float(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    return total - idle, total, time.process_time(), time.monotonic()


def others_load(before: tuple[float, float, float, float], after: tuple[float, float, float, float]) -> float:
    """Cores the other processes kept busy between two readings: the machine's busy cores less this process's.

    Args:
        before: A reading of the machine's and this process's CPU times.
        after: A later one.

    Returns:
        float: The cores kept busy by other processes.
    """
    busy, total = after[0] - before[0], after[1] - before[1]
    wall = after[3] - before[3]
    if total <= 0 or wall <= 0:
        return 0.0
    machine = (busy / total) * (os.cpu_count() or 1)
    ours = (after[2] - before[2]) / wall
    return max(0.0, machine - ours)


def maybe_adapt() -> int | None:
    """Set the thread count if the adaptation is on and a reading is due; returns the count set, else None.

    Returns:
        int | None: The thread count set, or None.
    """
    if not _state["enabled"]:
        return None
    now = time.monotonic()
    if now < float(_state["next"]):  # type: ignore[arg-type]
        return None
    _state["next"] = now + INTERVAL
    before, after = _state["last"], _reading()
    _state["last"] = after
    if before is None or after is None:
        return None
    cores = _available()
    cap = int(_state["cap"]) if _state["cap"] is not None else cores  # type: ignore[call-overload]
    threads = max(1, min(cap, round(cores - others_load(before, after))))  # type: ignore[arg-type]
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads
