"""What a sweep leaves beside its trials: ``results.csv`` and the plots its swept settings allow."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from ..checkpoint import atomic_save_figure, atomic_write_text
from ._spec import Sweep


def write_outputs(sweep: Sweep, rows: list[dict[str, Any]], out: Path) -> None:
    """``results.csv`` and the plots that the swept settings allow.

    Args:
        sweep: The sweep.
        rows: Its trials' rows.
        out: The sweep's folder.

    Returns:
        None
    """
    buffer = io.StringIO()
    columns = list(rows[0]) if rows else ["trial"]
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in row.items()})
    atomic_write_text(out / "results.csv", buffer.getvalue())
    done = [r for r in rows if r["status"] != "error" and r["test_error"] is not None]
    if "model.keep_input" in sweep.grid and "model.keep_hidden" in sweep.grid and done:
        _heat_map(sweep, done, out / "keep-grid.png")
    if "data.limit" in sweep.grid and done:
        _data_size(sweep, done, out / "data-size.png")
    keys = [k for k in ("model.keep", "model.keep_input") if k in sweep.grid]
    penalized = [r for r in done if r.get("dropout_penalty") is not None]
    if keys and penalized:
        _penalty_plot(sweep, penalized, keys[0], out / "linear-penalty.png")


def _mean_by(rows: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[tuple[Any, ...], float]:
    groups: dict[tuple[Any, ...], list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(float(r["test_error"]))
    return {k: sum(v) / len(v) for k, v in groups.items()}


def _save(fig: Any, path: Path) -> None:
    atomic_save_figure(fig, path, bbox_inches="tight")


def _heat_map(sweep: Sweep, rows: list[dict[str, Any]], path: Path) -> None:
    import numpy as np

    from .._figures import subplots

    mean = _mean_by(rows, ("model.keep_input", "model.keep_hidden"))
    inputs, hidden = sorted(sweep.grid["model.keep_input"]), sorted(sweep.grid["model.keep_hidden"])
    grid = np.full((len(inputs), len(hidden)), np.nan)
    for (pi, ph), value in mean.items():
        grid[inputs.index(pi), hidden.index(ph)] = value
    fig, ax = subplots(figsize=(6.4, 5.2), dpi=110)
    image = ax.imshow(grid, origin="lower", cmap="viridis_r", aspect="auto")
    ax.set_xticks(range(len(hidden)), [f"{p:g}" for p in hidden])
    ax.set_yticks(range(len(inputs)), [f"{p:g}" for p in inputs])
    ax.set_xlabel("hidden keep rate p", fontsize=11)
    ax.set_ylabel("input keep rate p", fontsize=11)
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for i in range(len(inputs)):
        for j in range(len(hidden)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if grid[i, j] > mid else "black")
    fig.colorbar(image, ax=ax, label="test error (%)")
    per_cell = max(1, round(len(rows) / max(1, len(mean))))
    ax.set_title(f"{sweep.name}: test error by keep rates ({sweep.preset} preset"
                 + (f", mean of {per_cell} trials per cell)" if per_cell > 1 else ")"), fontsize=11)
    _save(fig, path)


def _data_size(sweep: Sweep, rows: list[dict[str, Any]], path: Path) -> None:
    from .._figures import subplots

    others = tuple(k for k in sweep.grid if k != "data.limit" and k != "train.seed")
    mean = _mean_by(rows, (*others, "data.limit"))
    fig, ax = subplots(figsize=(6.4, 4.4), dpi=110)
    lines: dict[tuple[Any, ...], list[tuple[float, float]]] = {}
    for key, value in mean.items():
        lines.setdefault(key[:-1], []).append((key[-1], value))
    for key, points in sorted(lines.items(), key=lambda kv: str(kv[0])):
        points.sort()
        label = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in zip(others, key, strict=True)) or "test error"
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("training examples", fontsize=11)
    ax.set_ylabel("test error (%)", fontsize=11)
    ax.set_title(f"{sweep.name}: test error against training-set size", fontsize=11)
    ax.legend(fontsize=8.5, loc="upper left")
    ax.grid(alpha=0.3)
    _save(fig, path)


def _penalty_plot(sweep: Sweep, rows: list[dict[str, Any]], key: str, path: Path) -> None:
    """The measured regularization of linear networks against p(1 - p) (the article), scaled by least squares."""
    import numpy as np

    from .._figures import subplots

    groups: dict[float, list[float]] = {}
    for r in rows:
        groups.setdefault(float(r[key]), []).append(float(r["dropout_penalty"]))
    p = np.array(sorted(groups))
    measured = np.array([np.mean(groups[v]) for v in p])
    shape = p * (1 - p)
    scale = float(shape @ measured / (shape @ shape)) if float(shape @ shape) > 0 else 0.0
    grid = np.linspace(0, 1, 101)
    fig, ax = subplots(figsize=(6.4, 4.4), dpi=110)
    ax.plot(p, measured, "o-", label="measured: E(E_D) - E_ENS (exact, linear_moments)")
    ax.plot(grid, scale * grid * (1 - grid), "--", label=f"the article: c p(1 - p), c = {scale:.3g} (least squares)")
    ax.axvline(float(p[np.argmax(measured)]), color="#888", lw=0.8, ls=":",
               label=f"largest measured at p = {float(p[np.argmax(measured)]):g}")
    ax.set_xlabel(f"keep rate p ({key})", fontsize=11)
    ax.set_ylabel("regularization (squared-error units)", fontsize=11)
    ax.set_title(f"{sweep.name}: dropout's regularization of a linear network", fontsize=11)
    ax.legend(fontsize=8.5, loc="upper left")
    ax.grid(alpha=0.3)
    _save(fig, path)
