"""Figs. 8.1-8.2: the two curves bounding |E - NWGM| (Eq. 87) and where their maxima are."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import means
from ._base import Context, Experiment, Verdict


def compute(ctx: Context) -> dict[str, Any]:
    e = np.linspace(0, 1, 100_001)
    b2, b3 = means.bound_mean_only(e), means.bound_simple(e)
    half = e <= 0.5
    arg2, arg3 = float(e[half][np.argmax(b2[half])]), float(e[half][np.argmax(b3[half])])
    stride = 500
    return {"E": e[::stride].tolist(), "bound_mean_only": b2[::stride].tolist(), "bound_simple": b3[::stride].tolist(),
            "numbers": {"argmax bound (Fig. 8.1)": arg2, "paper: 0.5 - sqrt(sqrt(5) - 2) / 2": 0.5 - math.sqrt(
                math.sqrt(5) - 2) / 2, "max bound (Fig. 8.1)": float(b2.max()),
                "argmax 2E(1-E)|1-2E| (Fig. 8.2)": arg3, "paper: 0.5 - sqrt(3) / 6": 0.5 - math.sqrt(3) / 6,
                "max 2E(1-E)|1-2E| (Fig. 8.2)": float(b3.max())}}


def plot(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, title in zip(axes, ("bound_mean_only", "bound_simple"),
                              ("Fig. 8.1: E(1-E)|1-2E| / (1-2E(1-E))", "Fig. 8.2: 2E(1-E)|1-2E|"), strict=True):
        ax.plot(r["E"], r[key])
        ax.set_xlabel("E")
        ax.set_ylabel("bound on |E - NWGM|")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = r["numbers"]
    d2 = abs(n["argmax bound (Fig. 8.1)"] - n["paper: 0.5 - sqrt(sqrt(5) - 2) / 2"])
    d3 = abs(n["argmax 2E(1-E)|1-2E| (Fig. 8.2)"] - n["paper: 0.5 - sqrt(3) / 6"])
    grid = 1e-5  # the spacing of the grid the maximum is searched on
    return [Verdict(f"the bound of Fig. 8.1 peaks at E = {n['argmax bound (Fig. 8.1)']:.4f}, the paper's "
                    f"0.5 - sqrt(sqrt 5 - 2)/2 = {n['paper: 0.5 - sqrt(sqrt(5) - 2) / 2']:.4f}", d2 <= grid,
                    source="Eq. 87, Fig. 8.1", words="its maximum over the interval [0, 0.5] is achieved for "
                                                     "E = 0.5 - sqrt(sqrt 5 - 2)/2", paper="0.2571",
                    measured=d2, threshold=grid, basis="the spacing of the search grid"),
            Verdict(f"the bound of Fig. 8.2 peaks at E = {n['argmax 2E(1-E)|1-2E| (Fig. 8.2)']:.4f}, the paper's "
                    f"0.5 - sqrt(3)/6 = {n['paper: 0.5 - sqrt(3) / 6']:.4f}", d3 <= grid, source="Eq. 87, Fig. 8.2",
                    words="its maximum over the interval [0, 0.5] is achieved for E = 0.5 - sqrt(3)/6",
                    paper="0.2113", measured=d3, threshold=grid, basis="the spacing of the search grid")]


EXPERIMENT = Experiment("bounds", "Figs. 8.1-8.2", "Bounds on |E - NWGM|",
                        "|E - NWGM| is bounded by curves of E alone that vanish at 0, 0.5 and 1 and peak at "
                        "E = 0.5 - sqrt(sqrt 5 - 2)/2 and E = 0.5 - sqrt 3 / 6.", compute, plot, verdicts)
