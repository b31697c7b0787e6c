"""Figures without pyplot: droplab never switches pyplot's backend or adds to its figure registry, so a
notebook's or an application's matplotlib state is left as it was (and nothing needs closing)."""

from __future__ import annotations

from typing import Any


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, dpi: float | None = None,
             layout: str | None = None, **kwargs: Any) -> tuple[Any, Any]:
    """``(figure, axes)`` as ``pyplot.subplots`` gives them, on a ``matplotlib.figure.Figure`` of its own (saved
    with the Agg renderer by ``savefig``; shown by Jupyter like any figure)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)
