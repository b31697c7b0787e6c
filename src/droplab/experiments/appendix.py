"""Appendices D and F, and Section 11's fast-dropout view: other estimates of E(O) and E(sigma'(S)), measured
unit by unit against Monte Carlo in the trained study network.

* Eq. 242 (Appendix F): S Gaussian, E(O) ~ sigma(E(S) / sqrt(1 + 0.368 Var(S))), from the measured E(S), Var(S);
* ``ensemble.gaussian_moments``: E(S) and Var(S) propagated layer by layer (fast dropout), E(O) by quadrature;
* Eq. 223 (Appendix D): E(sigma'(S)) ~ 1 / (4 + Var(S) + E(S)^2), against Eq. 220's sigma'(E(S)).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import ensemble, means
from ._base import Context, Experiment, Verdict, hist, worst_ratio
from .network import WHEN, WITHIN_SD, flat, mc_stats, per_layer


def compute(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"numbers": {}, "hist": {}}
    for when, epoch in WHEN:
        mc, ws = mc_stats(ctx, epoch)
        gm = ensemble.gaussian_moments(ctx.study.model(epoch), ctx.study.inputs())
        for h in range(1, len(mc.layers) - 1):
            e, sd = flat(mc.layers[h].E), np.sqrt(flat(mc.layers[h].Var))
            e_s, var_s = flat(mc.layers[h].E_S), flat(mc.layers[h].Var_S)
            eq242 = flat(means.gaussian_expected_logistic(mc.layers[h].E_S, mc.layers[h].Var_S))
            nwgm = 1 / (1 + np.exp(-e_s))  # NWGM of a logistic unit = sigma(E(S)) (Eq. 39)
            d_true = flat(mc.layers[h].E_derivative)
            d220 = means.expected_derivative_mean_field(e_s)
            d223 = means.expected_derivative_second_order(e_s, var_s)
            n = out["numbers"]
            tag = f"layer {h} {when}"
            n[f"{tag}: mean |E - Eq. 242|, mean |E - NWGM|"] = [float(np.abs(e - eq242).mean()),
                                                                float(np.abs(e - nwgm).mean())]
            n[f"{tag}: mean |E - gaussian_moments|, mean |E - W|"] = [float(np.abs(e - flat(gm.layers[h].E)).mean()),
                                                                      float(np.abs(e - flat(ws.layers[h].E)).mean())]
            n[f"{tag}: mean sd(O)"] = float(sd.mean())
            n[f"{tag}: mean |E(f'(S)) - Eq. 223|, mean |E(f'(S)) - Eq. 220|"] = [
                float(np.abs(d_true - d223).mean()), float(np.abs(d_true - d220).mean())]
            if when == "after":
                out["hist"][f"layer {h}"] = {"eq242": hist(eq242 - e), "nwgm": hist(nwgm - e),
                                             "gm": hist(flat(gm.layers[h].E) - e)}
    return out


def plot(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from ._base import draw_hist

    layers = list(r["hist"])
    fig, axes = plt.subplots(1, len(layers), figsize=(4.4 * len(layers), 4), squeeze=False)
    for ax, name in zip(axes[0], layers, strict=True):
        d = r["hist"][name]
        draw_hist(ax, d["nwgm"], label="NWGM = sigma(E(S))")
        draw_hist(ax, d["eq242"], label="Eq. 242 (Gaussian S)", linestyle="--")
        draw_hist(ax, d["gm"], label="gaussian_moments", linestyle=":")
        ax.set_yscale("log")
        ax.set(title=f"{name}, after training", xlabel="estimate - E (Monte Carlo)", ylabel="density")
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = r["numbers"]
    sd = per_layer(n, "after", "mean sd(O)")
    e242 = per_layer(n, "after", "mean |E - Eq. 242|, mean |E - NWGM|")
    gm = per_layer(n, "after", "mean |E - gaussian_moments|, mean |E - W|")
    worst242 = worst_ratio([a for a, _ in e242], sd)
    better242 = sum(a < b for a, b in e242)
    worst_gm = worst_ratio([a for a, _ in gm], sd)
    return [
        Verdict(f"Eq. 242 (Gaussian S) estimates E within {worst242:.3f} of the mean sd(O) in every hidden layer, and "
                f"more accurately than NWGM in {better242} of {len(e242)} layers", worst242 < 1.0,
                source="Appendix F, Eq. 242",
                words="In some cases this approximation to E(O) may be more accurate than the NWGM approximation",
                measured=worst242, threshold=1.0, basis=WITHIN_SD),
        Verdict(f"mean and variance of S propagated as Gaussians (gaussian_moments, fast dropout) estimate E within "
                f"{worst_gm:.3f} of the mean sd(O) in every hidden layer", worst_gm < 1.0,
                source="Appendix F, Eqs. 237-242 used layer by layer",
                words="a reasonable assumption in the case of dropout applied to large networks", measured=worst_gm,
                threshold=1.0, basis=WITHIN_SD),
    ]


EXPERIMENT = Experiment(
    "appendix", "Appendices D and F (Eqs. 223, 242)", "Gaussian estimates of E(O) and E(f'(S))",
    "Taking S as Gaussian gives closed-form estimates of E(O) (Eq. 242, and fast dropout layer by layer) close to "
    "the true mean. (Eq. 223, E(sigma'(S)) from Var(S) as well as E(S), is measured against Eq. 220 in the numbers; "
    "the paper offers both without ranking them.)", compute, plot, verdicts,
    needs_study=True)
