"""The host as droplab sees it, and the precision ``"auto"`` chooses on it.

Which precision is fast depends on the CPU, not on the code. The same torch build runs bfloat16 products about 4x
float32's, and int8 products (``torch._int_mm``) twice bfloat16's, on a CPU with avx512_bf16 and VNNI, but
25-40x *slower* than float32 on one with AVX2 only, where torch falls back to reference loops. So no low
precision is a default by itself: ``precision="auto"`` (Monte Carlo, training, ``droplab reproduce``, the sweeps,
the UCI benchmark) asks ``choose`` for the fastest mode whose accuracy contract holds, at the products' own
shapes:

- Monte Carlo (``monte_carlo``): float32, ``bfloat16c`` or ``int8c`` (both unbiased, within 0.5 standard errors
  of float64 where measured; plain bfloat16's bias is not a candidate);
- training (``TrainConfig.precision``): float32 or bfloat16 (the report's arms give float32's verdicts in it).

The choice has two steps. The CPU's flags first: on an x86 CPU, bfloat16 needs avx512_bf16 or AMX and int8 needs
VNNI (avx512_vnni, avx_vnni) or AMX, or the mode is not tried. Then a short probe: the products at the shapes at
hand, timed in each candidate precision (a slice of the rows first, so that a slow kernel costs a few
milliseconds, not seconds). A mode is chosen only if its products run ``MARGIN`` times faster than float32's,
which covers the rounding and correction passes it adds; **by construction "auto" is never a mode that the probe
found slower than float32**. Products under ``MIN_WORK`` multiply-adds take float32 without a probe (the casts
cost more than they save there).

The probe's timings are cached per process and on disk (``cache_dir()``, one JSON file per CPU model, torch
version, capability and device, written atomically; a damaged file is ignored and rewritten), keyed by precision,
shape and thread count. A choice is probed at the host's core count whatever the process's thread count, so that
one command gives the same bits at 1 thread and at 2. ``DROPLAB_PROBE_CACHE=0`` turns the disk cache off (each
process then probes again, and a mode within the probe's noise of its margin may come out either way: name the
precision where bits must match across processes or hosts).

A user who names a precision gets it; ``check_named`` warns once (``SlowPrecisionWarning``) where the probe finds
it slower than float32 on this host.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .threads import _available

__all__ = ["MARGIN", "MIN_WORK", "Choice", "SlowPrecisionWarning", "cache_dir", "capability", "check_named",
           "choose", "cpu_flags", "cpu_model", "describe", "peaks", "product_seconds", "supported"]

MC_CANDIDATES = ("float32", "bfloat16c", "int8c")
TRAIN_CANDIDATES = ("float32", "bfloat16")
# how much faster than float32's the products must run before a low precision is chosen: the rounding, scaling and
# correction passes that bfloat16c and int8c add cost 0.3-0.5x the float32 products' time at the paper network's
# shapes (benchmarks/mc_throughput.py), the weight casts and the float32 elementwise work of bfloat16 training less
MARGIN = {"bfloat16c": 1.6, "int8c": 1.6, "bfloat16": 1.25}
MIN_WORK = 2**22  # multiply-adds of a step's or a chunk's products below which "auto" is float32 without a probe
_KIND = {"bfloat16": "bfloat16", "bfloat16c": "bfloat16", "int8c": "int8", "int8": "int8", "float32": "float32"}
_FLAGS = {"bfloat16": ("avx512_bf16", "amx_bf16"), "int8": ("avx512_vnni", "avx_vnni", "amx_int8")}


class SlowPrecisionWarning(UserWarning):
    """A named precision runs slower than float32 on this host."""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; elsewhere ``platform.processor()``).

    Returns:
        str: The model name.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "Model", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``'s ``flags``; empty where unknown).

    Returns:
        frozenset[str]: The flags, e.g. ``avx2``, ``avx512_bf16``, ``avx512_vnni``.
    """
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _shown_flags() -> list[str]:
    """The CPU flags that decide the products' speed, as ``droplab info`` and the benchmarks show them."""
    return sorted(cpu_flags() & {"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_tile",
                                 "amx_bf16", "amx_int8"})


def capability() -> str:
    """torch's vector capability on this CPU (``torch.backends.cpu.get_cpu_capability()``: AVX2, AVX512, ...);
    ``ATEN_CPU_CAPABILITY`` lowers it.

    Returns:
        str: ``"AVX2"``, ``"AVX512"``, ``"DEFAULT"``...
    """
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # pragma: no cover - very old torch
        return "unknown"


def supported(precision: str, device: torch.device | str = "cpu") -> bool:
    """Whether the CPU's flags admit ``precision``'s products (always True off x86 and on CUDA, where only the
    probe decides).

    Args:
        precision: A precision's name.
        device: Where it would run.

    Returns:
        bool: Whether the flags admit it.
    """
    if precision not in _KIND:
        raise ValueError(f"precision must be one of {sorted(_KIND)}, got {precision!r}")
    kind = _KIND[precision]
    if kind == "float32" or torch.device(device).type != "cpu":
        return True
    flags = cpu_flags()
    if not flags or "sse2" not in flags:  # not x86 (or unknown): the probe decides
        return True
    return any(f in flags for f in _FLAGS[kind])


# ---- the probe ---------------------------------------------------------------------------------------------------

_CACHE_VERSION = 2  # 1 kept slices' scaled-up times as whole products' (see product_seconds): not read again
_MEMO: dict[str, float] = {}  # key -> seconds of one product, this process
_DISK: dict[str, dict[str, float]] = {}  # cache file -> its entries, as read once


def cache_dir() -> Path | None:
    """Where the probe's timings are kept: ``$DROPLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/droplab``, else
    ``~/.cache/droplab``; None when ``DROPLAB_PROBE_CACHE=0`` or no home is known.

    Returns:
        Path | None: The folder, or None when the disk cache is off.
    """
    if os.environ.get("DROPLAB_PROBE_CACHE", "1") == "0":
        return None
    if os.environ.get("DROPLAB_CACHE_DIR"):
        return Path(os.environ["DROPLAB_CACHE_DIR"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "droplab"
    try:
        return Path.home() / ".cache" / "droplab"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry
        return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def _cache_file(device: torch.device) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    ident = json.dumps([_CACHE_VERSION, _device_name(device), device.type, torch.__version__, capability(),
                        os.environ.get("ONEDNN_MAX_CPU_ISA", "")])
    return folder / f"probe-{hashlib.sha256(ident.encode()).hexdigest()[:16]}.json"


def _disk_entries(path: Path) -> dict[str, float]:
    if str(path) not in _DISK:
        entries: dict[str, float] = {}
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(raw, dict) and isinstance(raw.get("seconds"), dict):
                entries = {k: float(v) for k, v in raw["seconds"].items()
                           if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1e6}
        except (OSError, ValueError, TypeError):  # missing or damaged: probe again, rewrite it
            entries = {}
        _DISK[str(path)] = entries
    return _DISK[str(path)]


def _store(path: Path | None, device: torch.device, new: dict[str, float]) -> None:
    if path is None or not new:
        return
    entries = _disk_entries(path)
    entries.update(new)
    from .checkpoint import atomic_write_text

    record = {"cpu": cpu_model(), "device": _device_name(device), "torch": torch.__version__,
              "capability": capability(), "seconds": entries}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
    except OSError:  # a read-only or full cache folder: the process cache still holds them
        pass


def _operands(precision: str, m: int, k: int, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(0)
    if _KIND[precision] == "int8":
        a = torch.randint(-127, 128, (m, k), generator=g, dtype=torch.int8)
        b = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8).t()  # droplab's weight layout
        return a.to(device), b.to(device)
    dtype = torch.bfloat16 if _KIND[precision] == "bfloat16" else torch.float32
    a, b = torch.rand(m, k, generator=g), torch.rand(n, k, generator=g).t()
    return a.to(device, dtype), b.to(device, dtype)


def _time(precision: str, a: torch.Tensor, b: torch.Tensor, budget: float) -> float:
    """The fastest of a few runs of ``a @ b`` (``torch._int_mm`` in int8), seconds; at least one timed run."""
    run = torch._int_mm if _KIND[precision] == "int8" else torch.mm
    sync = torch.cuda.synchronize if a.device.type == "cuda" else (lambda: None)
    run(a, b)
    sync()
    best, start = float("inf"), time.perf_counter()
    for _ in range(20):
        t0 = time.perf_counter()
        run(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return best


def product_seconds(precision: str, shape: tuple[int, int, int], device: torch.device | str = "cpu",
                    bail: float | None = None, cached: bool = True) -> float:
    """Seconds of one (m, k) x (k, n) product in ``precision`` (float32, bfloat16 or int8; bfloat16c and int8c
    name their products' kinds) at this thread count, measured once and cached. ``bail``: when a slice of the rows
    shows the product will take over ``bail`` seconds, that estimate is returned without the full product.
    ``cached=False`` measures now and stores nothing (a benchmark's peaks).

    Args:
        precision: ``"float32"``, ``"bfloat16"``, ``"int8"`` (or ``"bfloat16c"``, ``"int8c"``).
        shape: (m, k, n).
        device: Where it runs.
        bail: Seconds beyond which an estimate from a slice is returned, or None.
        cached: Read it from the cache where it is there.

    Returns:
        float: Seconds of one product.
    """
    device = torch.device(device)
    kind = _KIND[precision]
    m, k, n = (int(v) for v in shape)
    if not cached:
        return _time(kind, *_operands(kind, m, k, n, device), 0.2)
    key = f"{kind}:{m}x{k}x{n}:t{torch.get_num_threads()}"
    if key in _MEMO:
        return _MEMO[key]
    path = _cache_file(device)
    if path is not None and key in _disk_entries(path):
        _MEMO[key] = _disk_entries(path)[key]
        return _MEMO[key]
    rows = max(32, m // 16)
    if bail is not None and rows < m:  # a slice first: a reference loop costs milliseconds here, not seconds
        a, b = _operands(kind, rows, k, n, device)
        part = _time(kind, a, b, 0.0)
        # only the slice's own time decides: the whole product takes at least as long as a slice of its rows, while
        # a slice's time scaled up to all rows overstates a fast kernel (its fixed costs, such as packing the
        # weights, do not shrink with the rows: int8 at 54 of 870 rows looked 4.6x slower than float32, not 4x faster)
        if part > bail:
            estimate = part * m / rows  # the order of its time, for display: it is over ``bail`` either way
            _MEMO[key] = estimate
            _store(path, device, {key: estimate})
            return estimate
    a, b = _operands(kind, m, k, n, device)
    seconds = _time(kind, a, b, 0.05)
    _MEMO[key] = seconds
    _store(path, device, {key: seconds})
    return seconds


# ---- the choice --------------------------------------------------------------------------------------------------

@dataclass
class Choice:
    """What ``choose`` found: the mode, the estimated seconds of the products per candidate, and why.

    Attributes:
        precision: The mode chosen.
        seconds: Each candidate's estimated seconds of the products.
        reason: Why, in a sentence.
    """

    precision: str
    seconds: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def _layer_shapes(sizes: Sequence[int], rows: int, training: bool) -> list[list[tuple[int, int, int]]]:
    """Per layer, the products of a Monte Carlo chunk (``rows`` = members x inputs) or of a training step (forward,
    the inputs' gradient but in the first layer, the weights' gradient) as (m, k, n)."""
    out = []
    for h, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        if not training:
            out.append([(rows, n_in, n_out)])
        elif h == 0:  # the inputs need no gradient: the step computes none for the first layer
            out.append([(rows, n_in, n_out), (n_out, rows, n_in)])
        else:
            out.append([(rows, n_in, n_out), (rows, n_out, n_in), (n_out, rows, n_in)])
    return out


@contextlib.contextmanager
def _host_threads(device: torch.device) -> Iterator[None]:
    """The probe behind a choice runs at the host's core count, whatever this process's thread count is: the
    choice is the host's, so one command run with 1 thread or with 2 (``OMP_NUM_THREADS``) trains in the same
    precision and gets the same bits (CI found ``auto`` picking bfloat16 at 2 threads and float32 at 1)."""
    before = torch.get_num_threads()
    if device.type != "cpu" or before == _available():
        yield
        return
    torch.set_num_threads(_available())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _estimates(task: str, sizes: Sequence[int], rows: int, modes: Sequence[str], low_layers: Sequence[bool] | None,
               int8_layers: Sequence[bool] | None, device: torch.device) -> tuple[dict[str, float], list[str]]:
    """Seconds of ``task``'s products per mode (float32 first, then each of ``modes`` the CPU's flags admit; a
    layer a mode keeps in float32 counts at float32's time), and why the others were not timed; measured at the
    host's core count (``_host_threads``)."""
    with _host_threads(device):
        return _estimates_now(task, sizes, rows, modes, low_layers, int8_layers, device)


def _estimates_now(task: str, sizes: Sequence[int], rows: int, modes: Sequence[str],
                   low_layers: Sequence[bool] | None, int8_layers: Sequence[bool] | None,
                   device: torch.device) -> tuple[dict[str, float], list[str]]:
    layers = _layer_shapes(sizes, rows, task == "training")
    low = list(low_layers) if low_layers is not None else [True] * len(layers)
    int8 = (list(int8_layers) if int8_layers is not None
            else [a % 8 == 0 and b % 8 == 0 for a, b in zip(sizes[:-1], sizes[1:], strict=True)])
    f32 = [sum(product_seconds("float32", s, device) for s in shapes) for shapes in layers]
    seconds, skipped = {"float32": sum(f32)}, []
    for mode in modes:
        if not supported(mode, device):
            skipped.append(f"{mode}: the CPU has none of {', '.join(_FLAGS[_KIND[mode]])}")
            continue
        runs_low = [lo and (i8 if mode == "int8c" else True) for lo, i8 in zip(low, int8, strict=True)]
        seconds[mode] = sum(sum(product_seconds(mode, s, device, bail=2 * t32 / len(shapes)) for s in shapes)
                            if lo else t32 for shapes, t32, lo in zip(layers, f32, runs_low, strict=True))
    return seconds, skipped


def _work(task: str, sizes: Sequence[int], rows: int) -> int:
    return sum(m * k * n for shapes in _layer_shapes(sizes, rows, task == "training") for (m, k, n) in shapes)


def choose(task: str, sizes: Sequence[int], rows: int, *, low_layers: Sequence[bool] | None = None,
           int8_layers: Sequence[bool] | None = None, device: torch.device | str = "cpu") -> Choice:
    """The precision ``"auto"`` runs ``task`` in (``"monte_carlo"`` or ``"training"``) for a layered network of
    ``sizes`` whose products have ``rows`` rows (a chunk's members x inputs, or a training batch).

    ``low_layers`` marks the layers a low precision runs in it (default all; connection dropout stays float32),
    ``int8_layers`` those int8c runs in int8 (default: sizes in multiples of 8). The chosen mode's products run at
    least ``MARGIN`` times faster than float32's on this host, or float32 is chosen.

    Args:
        task: ``"monte_carlo"`` or ``"training"``.
        sizes: The network's layer sizes.
        rows: The products' rows.
        low_layers: The layers a low precision runs (None: all).
        int8_layers: The layers int8c runs in int8 (None: all).
        device: Where the products run.

    Returns:
        Choice: The mode, the candidates' estimated seconds and why.
    """
    if task not in ("monte_carlo", "training"):
        raise ValueError(f"task must be 'monte_carlo' or 'training', got {task!r}")
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) < 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
        raise ValueError(f"sizes must be the network's layer sizes, two or more positive ints, got {sizes!r}")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise ValueError(f"rows must be a positive int (a chunk's or a batch's rows), got {rows!r}")
    candidates = (TRAIN_CANDIDATES if task == "training" else MC_CANDIDATES)[1:]
    work = _work(task, sizes, rows)
    if work < MIN_WORK:
        return Choice("float32", {}, f"{work:,} multiply-adds: too few for a low precision to pay")
    seconds, reasons = _estimates(task, sizes, rows, candidates, low_layers, int8_layers, torch.device(device))
    total32 = seconds["float32"]
    reasons += [f"{m}: products {total32 / seconds[m]:.2f}x float32's (needs {MARGIN[m]}x)"
                for m in candidates if m in seconds and seconds[m] * MARGIN[m] > total32]
    fast = [m for m in candidates if m in seconds and seconds[m] * MARGIN[m] <= total32]
    best = min(fast, key=lambda m: seconds[m]) if fast else "float32"
    why = (f"{best}: products {total32 / seconds[best]:.2f}x float32's" if best != "float32"
           else "float32: " + ("; ".join(reasons) or "no faster mode"))
    return Choice(best, seconds, why)


_WARNED: set[tuple[str, str]] = set()


def check_named(precision: str, choice_args: dict[str, Any]) -> None:
    """Warn once (``SlowPrecisionWarning``) where a named low precision's products run slower than float32's on
    this host for these shapes (``choice_args``: ``choose``'s keyword arguments with ``sizes`` and ``rows``).

    Args:
        precision: The named precision.
        choice_args: ``choose``'s keyword arguments for the shapes at hand.

    Returns:
        None
    """
    if _KIND.get(precision, "float32") == "float32":
        return
    task = "training" if precision == "bfloat16" else "monte_carlo"
    key = (precision, json.dumps(choice_args, sort_keys=True, default=str))
    if key in _WARNED or _work(task, choice_args["sizes"], choice_args["rows"]) < MIN_WORK:
        return
    _WARNED.add(key)
    seconds, _ = _estimates(task, choice_args["sizes"], choice_args["rows"], [precision],
                            choice_args.get("low_layers"), choice_args.get("int8_layers"),
                            torch.device(choice_args.get("device", "cpu")))
    t, t32 = seconds.get(precision), seconds["float32"]
    if t is not None and t > t32:
        warnings.warn(f"precision={precision!r} runs its products {t / t32:.1f}x slower than float32 on this host "
                      f"({cpu_model()}, {capability()}); precision='auto' or 'float32' is faster here",
                      SlowPrecisionWarning, stacklevel=3)


# ---- what the host can do ----------------------------------------------------------------------------------------

def peaks(size: int = 1024, device: torch.device | str = "cpu", cached: bool = True) -> dict[str, float]:
    """The products' rates at ``size`` x ``size`` x ``size`` in GFLOP/s (int8: GOP/s), at this thread count;
    ``cached=False`` measures them now.

    Args:
        size: The products' size.
        device: Where they run.
        cached: Read them from the cache where they are there.

    Returns:
        dict[str, float]: ``float32``, ``bfloat16`` (GFLOP/s) and ``int8`` (GOP/s).
    """
    out = {}
    for kind in ("float32", "bfloat16", "int8"):
        t = product_seconds(kind, (size, size, size), device, cached=cached)
        out[kind] = 2 * size**3 / t / 1e9
    return out


def describe(sizes: Sequence[int] = (784, 1200, 1200, 1200, 1200, 10), batch: int = 100,
             mc_rows: int = 870) -> dict[str, Any]:
    """The host as droplab sees it (``droplab info``): CPU, capability, cores, threads, peaks, and what "auto"
    chooses for Monte Carlo (a chunk of ``mc_rows`` rows) and for training (batch ``batch``) on ``sizes``.

    Args:
        sizes: The network whose products the choices are made for.
        batch: The training batch.
        mc_rows: The rows of a Monte Carlo chunk.

    Returns:
        dict: What ``droplab info --json`` prints.
    """
    rates = peaks()
    mc, tr = choose("monte_carlo", sizes, mc_rows), choose("training", sizes, batch)
    return {"cpu": cpu_model(), "capability": capability(), "machine": platform.machine(),
            "flags": _shown_flags(), "cores": _available(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "peaks_gflops": {k: round(v, 1) for k, v in rates.items()},
            "network": list(sizes), "batch": batch, "mc_rows": mc_rows,
            "monte_carlo_precision": mc.precision, "monte_carlo_reason": mc.reason,
            "training_precision": tr.precision, "training_reason": tr.reason,
            "cache": str(_cache_file(torch.device("cpu")) or "off"),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def host_line() -> str:
    """One line naming the host, for benchmarks and reports."""
    return f"{cpu_model()}, {capability()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def describe_briefly(device: str | torch.device = "cpu") -> dict[str, Any]:
    """The host in a report's few words: CPU, capability, cores, torch threads and version (no probe)."""
    device = torch.device(device)
    return {"cpu": cpu_model(), "capability": capability(), "cores": _available(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "device": _device_name(device) if device.type == "cuda" else "cpu"}


def benchmark_header(device: torch.device | str = "cpu", size: int = 1024) -> str:
    """The lines every benchmark prints first: the host, and the products' peaks measured now, in this run (not
    from the cache: a speed figure is read beside the peaks of the same run)."""
    device = torch.device(device)
    rates = peaks(size, device, cached=False)
    flags = _shown_flags()
    where = _device_name(device) if device.type == "cuda" else host_line()
    return (f"host: {where}; flags: {' '.join(flags) or 'none read'}\n"
            f"host peaks ({size}^3 products, this run): float32 {rates['float32']:.1f} GFLOP/s, bfloat16 "
            f"{rates['bfloat16']:.1f} GFLOP/s, int8 {rates['int8']:.1f} GOP/s")


from ._contract import checked as _checked  # noqa: E402  (every public function checks its arguments first)

for _name in __all__:
    globals()[_name] = _checked(globals()[_name])
