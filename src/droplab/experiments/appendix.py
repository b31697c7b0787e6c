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
from ._base import Context, Experiment, Numbers, Verdict, hist, worst_ratio
from .network import WHEN, WITHIN_SD, flat, mc_stats


def compute(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"hist": {}}
    n = Numbers()
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
            at = {"layer": h, "when": when}
            n.add("mean_abs_e_minus_eq242", float(np.abs(e - eq242).mean()), "mean |E - Eq. 242|", **at)
            n.add("mean_abs_e_minus_nwgm", float(np.abs(e - nwgm).mean()), "mean |E - NWGM|", **at)
            n.add("mean_abs_e_minus_gaussian_moments", float(np.abs(e - flat(gm.layers[h].E)).mean()),
                  "mean |E - gaussian_moments|", **at)
            n.add("mean_abs_e_minus_w", float(np.abs(e - flat(ws.layers[h].E)).mean()), "mean |E - W|", **at)
            n.add("mean_sd", float(sd.mean()), "mean sd(O)", **at)
            n.add("mean_derivative_error_eq223", float(np.abs(d_true - d223).mean()), "mean |E(f'(S)) - Eq. 223|",
                  **at)
            n.add("mean_derivative_error_eq220", float(np.abs(d_true - d220).mean()), "mean |E(f'(S)) - Eq. 220|",
                  **at)
            if when == "after":
                out["hist"][f"layer {h}"] = {"eq242": hist(eq242 - e), "nwgm": hist(nwgm - e),
                                             "gm": hist(flat(gm.layers[h].E) - e)}
    out["numbers"] = n.records()
    return out


def plot(r: dict[str, Any]) -> Any:
    from matplotlib.ticker import MaxNLocator

    from .._figures import subplots
    from ._base import draw_hist

    layers = list(r["hist"])
    fig, axes = subplots(1, len(layers), figsize=(4.4 * len(layers), 4), squeeze=False)
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
    n = Numbers.of(r)
    sd = n.series("mean_sd", when="after")
    e242 = n.series("mean_abs_e_minus_eq242", when="after")
    worst242 = worst_ratio(e242, sd)
    better242 = sum(a < b for a, b in zip(e242, n.series("mean_abs_e_minus_nwgm", when="after"), strict=True))
    worst_gm = worst_ratio(n.series("mean_abs_e_minus_gaussian_moments", when="after"), sd)
    d223 = {w: n.series("mean_derivative_error_eq223", when=w) for w in ("before", "after")}
    d220 = n.series("mean_derivative_error_eq220", when="after")
    grew = sum(a > b for b, a in zip(d223["before"], d223["after"], strict=True))
    return [
        Verdict(f"Eq. 223, a truncation for small S, loses accuracy as the weights grow: its mean error rises from "
                f"before to after training in {grew} of {len(d220)} hidden layers ("
                + ", ".join(f"{b:.1e} -> {a:.1e}" for b, a in zip(d223["before"], d223["after"], strict=True))
                + "); after training it is " + ", ".join(f"{a / c:.1f}x" for a, c in zip(d223["after"], d220,
                                                                                       strict=True))
                + " Eq. 220's error", grew == len(d220), source="Appendix D, Eqs. 220-223",
                words="by retaining only the term corresponding to n = 1 in the sum and using (1 + x)^alpha ~ 1 + "
                      "alpha x for x small", measured=float(grew), threshold=float(len(d220)),
                basis="every hidden layer; the sizes of S grow with the weights during training (Section 11.7)"),
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
