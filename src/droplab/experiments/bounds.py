"""Figs. 8.1-8.2: the two curves bounding |E - NWGM| (Eq. 87) and where their maxima are."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import means
from ._base import Context, Experiment, Numbers, Verdict


def compute(ctx: Context) -> dict[str, Any]:
    e = np.linspace(0, 1, 100_001)
    b2, b3 = means.bound_mean_only(e), means.bound_simple(e)
    half = e <= 0.5
    n = Numbers()
    for fig, b, paper, formula in (("8.1", b2, 0.5 - math.sqrt(math.sqrt(5) - 2) / 2, "0.5 - sqrt(sqrt(5) - 2) / 2"),
                                   ("8.2", b3, 0.5 - math.sqrt(3) / 6, "0.5 - sqrt(3) / 6")):
        what = "E(1-E)|1-2E| / (1-2E(1-E))" if fig == "8.1" else "2E(1-E)|1-2E|"
        n.add("argmax", float(e[half][np.argmax(b[half])]), f"argmax of {what} on [0, 0.5]", figure=f"Fig. {fig}")
        n.add("argmax_paper", paper, f"the paper's argmax, {formula}", figure=f"Fig. {fig}")
        n.add("max", float(b.max()), f"max of {what}", figure=f"Fig. {fig}")
    stride = 500
    return {"E": e[::stride].tolist(), "bound_mean_only": b2[::stride].tolist(), "bound_simple": b3[::stride].tolist(),
            "numbers": n.records()}


def plot(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    fig, axes = subplots(1, 2, figsize=(9, 3.2))
    for ax, key, title in zip(axes, ("bound_mean_only", "bound_simple"),
                              ("Fig. 8.1: E(1-E)|1-2E| / (1-2E(1-E))", "Fig. 8.2: 2E(1-E)|1-2E|"), strict=True):
        ax.plot(r["E"], r[key])
        ax.set_xlabel("E")
        ax.set_ylabel("bound on |E - NWGM|")
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    grid = 1e-5  # the spacing of the grid the maximum is searched on
    out = []
    for fig, formula, paper in (("8.1", "0.5 - sqrt(sqrt 5 - 2)/2", "0.2571"), ("8.2", "0.5 - sqrt(3)/6", "0.2113")):
        found, expected = n.get("argmax", figure=f"Fig. {fig}"), n.get("argmax_paper", figure=f"Fig. {fig}")
        d = abs(found - expected)
        out.append(Verdict(f"the bound of Fig. {fig} peaks at E = {found:.4f}, the paper's {formula} = {expected:.4f}",
                           d <= grid, source=f"Eq. 87, Fig. {fig}",
                           words=f"its maximum over the interval [0, 0.5] is achieved for E = {formula}", paper=paper,
                           measured=d, threshold=grid, basis="the spacing of the search grid"))
    return out


EXPERIMENT = Experiment("bounds", "Figs. 8.1-8.2", "Bounds on |E - NWGM|",
                        "|E - NWGM| is bounded by curves of E alone that vanish at 0, 0.5 and 1 and peak at "
                        "E = 0.5 - sqrt(sqrt 5 - 2)/2 and E = 0.5 - sqrt 3 / 6.", compute, plot, verdicts)
