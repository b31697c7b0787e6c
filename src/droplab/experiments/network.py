"""Figs. 9.3-9.15 and Section 9.5: the dropout approximations measured unit by unit in the trained study network.

Every statistic comes from ``ensemble.monte_carlo`` (the truth, up to its standard error) and
``ensemble.weight_scaled`` (W) on the study's fixed inputs, before training (epoch 0) and after (the last
epoch). The curves over training (Figs. 9.10-9.11) use ``trajectory_samples`` per input at every snapshot.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import ensemble, means
from ._base import Context, Experiment, Numbers, Verdict, draw_hist, hist, mc_precision, worst_ratio

WHEN = (("before", 0), ("after", "last"))
# George & Mallery (2010): skewness and excess kurtosis within +-2 are read as acceptably close to Gaussian
GAUSSIAN_LIMIT = 2.0
GAUSSIAN_BASIS = "George & Mallery (2010): |skewness| and |excess kurtosis| up to 2 read as near-Gaussian"
WITHIN_SD = ("the paper's V-against-sqrt(V) argument (Section 8): an approximation error of order V is small when "
             "it is below the dropout standard deviation sd(O) ~ sqrt(V) of the unit itself")
COHEN_SMALL = 0.1  # Cohen (1988): |r| < 0.1 is below a small correlation


def mc_stats(ctx: Context, epoch: int | str, pairs: tuple = (), samples: int | None = None) -> tuple[Any, Any]:
    """(Monte Carlo statistics, weight-scaled statistics) of the study network at a snapshot; kept in ``ctx``."""
    samples = samples or ctx.settings.measurements.samples
    key = ("mc", epoch, pairs, samples)
    if key not in ctx.cache:
        net = ctx.study.model(epoch)
        x = ctx.study.inputs()
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        mc = ensemble.monte_carlo(net, x, samples=samples, generator=gen, pairs=list(pairs),
                                  precision=mc_precision(ctx))
        ctx.cache[key] = (mc, ensemble.weight_scaled(net, x))
    return ctx.cache[key]


def flat(t: torch.Tensor) -> np.ndarray:
    """A tensor as a flat float64 NumPy array."""
    return t.detach().double().cpu().numpy().ravel()


def _sub(a: np.ndarray, n: int = 3000) -> list[float]:
    return a[:: max(1, len(a) // n)].tolist()


def shape_moments(x: np.ndarray) -> list[float]:
    """[mean, sd, skewness, excess kurtosis] of a sample."""
    m, sd = float(x.mean()), float(x.std())
    if sd == 0:
        return [m, 0.0, 0.0, 0.0]
    z = (x - m) / sd
    return [m, sd, float((z**3).mean()), float((z**4).mean() - 3)]


def _logistic_second_derivative(e_s: np.ndarray) -> np.ndarray:
    o = 1 / (1 + np.exp(-e_s))
    return o * (1 - o) * (1 - 2 * o)  # sigma'' = sigma (1 - sigma)(1 - 2 sigma)


# ------------------------------------------------------------------------------------------- Figs. 9.3-9.7, 9.15
def correlation_interval(r: float, count: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% confidence interval of a Pearson correlation r over count pairs (Fisher's z transform)."""
    if count <= 3:
        return -1.0, 1.0
    centre, half = np.arctanh(np.clip(r, -0.999999, 0.999999)), z / np.sqrt(count - 3)
    return float(np.tanh(centre - half)), float(np.tanh(centre + half))


def _layer_numbers(n: Numbers, mc: Any, ws: Any, h: int, when: str) -> dict[str, Any]:
    """Record hidden layer h's numbers in ``n``; return its plotted arrays."""
    e, v, nwgm = (flat(getattr(mc.layers[h], k)) for k in ("E", "Var", "NWGM"))
    w, se, sd = flat(ws.layers[h].E), flat(mc.layers[h].se_E), np.sqrt(flat(mc.layers[h].Var))
    err = e - nwgm  # alpha of Section 9.5
    approx87 = v * (1 - 2 * e) / (1 - 2 * v)  # Eq. 85: E - NWGM to second order around 0.5
    approx202 = e - means.nwgm_around_mean(e, v)  # Eq. 202: E - NWGM to second order around E
    b1, b2 = means.bound_variance(e, v), means.bound_mean_only(e)
    e_s, sd_s = flat(mc.layers[h].E_S), np.sqrt(flat(mc.layers[h].Var_S))
    d_true, d_mean_field = flat(mc.layers[h].E_derivative), means.expected_derivative_mean_field(e_s)  # Eq. 220
    beta = nwgm - w
    at = {"layer": h, "when": when}
    for key, value, label in (
        ("mean_abs_e_minus_w", np.abs(e - w).mean(), "mean |E - W|"),
        ("mean_abs_e_minus_nwgm", np.abs(err).mean(), "mean |E - NWGM|"),
        ("mean_sd", sd.mean(), "mean sd(O)"), ("mean_se_e", se.mean(), "mean SE of E"),
        ("fraction_within_bound_1", np.mean(np.abs(err) <= b1 + 5 * se), "fraction |E - NWGM| <= bound 1 + 5 SE"),
        ("fraction_within_bound_2", np.mean(np.abs(err) <= b2 + 5 * se), "fraction |E - NWGM| <= bound 2 + 5 SE"),
        ("mean_error_eq87", np.abs(err - approx87).mean(), "mean error of Eq. 87 (E - NWGM)"),
        ("mean_error_eq202", np.abs(err - approx202).mean(), "mean error of Eq. 202 (E - NWGM)"),
        ("mean_derivative_gap", np.abs(d_true - d_mean_field).mean(), "mean |E(f'(S)) - f'(E(S))|"),
        ("mean_derivative_spread", (np.abs(_logistic_second_derivative(e_s)) * sd_s).mean(),
         "mean first-order spread of f'(S), |f''(E(S))| sd(S)"),
        ("shape_nwgm_minus_e", shape_moments(nwgm - e), "NWGM - E: mean, sd, skewness, excess kurtosis"),
        ("shape_w_minus_e", shape_moments(w - e), "W - E: mean, sd, skewness, excess kurtosis"),
        ("correlation_alpha_beta", np.corrcoef(err, beta)[0, 1] if err.std() and beta.std() else 0.0,
         "correlation(alpha, beta)"),
        ("correlation_alpha_beta_count", err.size, "unit responses in the correlation"),
        ("sd_alpha", err.std(), "sd(alpha), alpha = E - NWGM"), ("sd_beta", beta.std(), "sd(beta), beta = NWGM - W"),
        ("sd_e_minus_w", (e - w).std(), "sd(E - W)"),
    ):
        n.add(key, value if isinstance(value, list) else float(value), label, **at)
    # the shapes again on the units that are neither silent nor saturated (0.1 < E < 0.9): pooled, the many units
    # near 0 or 1 (where W - E and NWGM - E are ~0) give heavy tails by themselves
    mid = (e > 0.1) & (e < 0.9)
    n.add("mid_units", int(mid.sum()), "unit responses with 0.1 < E < 0.9", **at)
    if mid.sum() >= 20:
        n.add("shape_nwgm_minus_e_mid", shape_moments(nwgm[mid] - e[mid]), "NWGM - E where 0.1 < E < 0.9: mean, sd, "
              "skewness, excess kurtosis", **at)
        n.add("shape_w_minus_e_mid", shape_moments(w[mid] - e[mid]), "W - E where 0.1 < E < 0.9: mean, sd, skewness, "
              "excess kurtosis", **at)
    return {"E": _sub(e), "NWGM": _sub(nwgm), "W": _sub(w), "err": _sub(np.abs(err)),
            "approx1": _sub(np.abs(approx87)), "bound1": _sub(b1), "bound2": _sub(b2),
            "hist_nwgm_e": hist(nwgm - e), "hist_w_e": hist(w - e), "hist_approx": hist(np.abs(err - approx87)),
            "hist_approx2": hist(np.abs(err - approx202)), "hist_deriv": hist(d_true - d_mean_field)}


def compute_approximations(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"layers": {}, "hidden": 0}
    n = Numbers()
    for when, epoch in WHEN:
        mc, ws = mc_stats(ctx, epoch)
        out["hidden"] = len(mc.layers) - 2
        for h in range(1, len(mc.layers) - 1):  # hidden layers
            out["layers"][f"layer {h} {when}"] = _layer_numbers(n, mc, ws, h, when)
        # Section 9.5: how the error of W at the top hidden layer compares with every layer's own NWGM error
        top = len(mc.layers) - 2
        n.add("accumulated_sd_alpha", float(np.sqrt(np.sum(np.square(n.series("sd_alpha", when=when))))),
              "sqrt(sum of Var(alpha) over layers), to compare with sd(E - W) at the top hidden layer", when=when,
              top_layer=top)
    out["numbers"] = n.records()
    return out


def plot_approximations(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    n = r["hidden"]
    fig, axes = subplots(n, 6, figsize=(25, 4.0 * n), squeeze=False, layout="constrained")
    for row, h in zip(axes, range(1, n + 1), strict=True):
        d, before = r["layers"][f"layer {h} after"], r["layers"][f"layer {h} before"]
        row[0].scatter(d["E"], d["NWGM"], s=3, label="NWGM")
        row[0].scatter(d["E"], d["W"], s=3, marker="x", label="W")
        row[0].plot([0, 1], [0, 1], "k", lw=0.5)
        row[0].set(xlabel="E (Monte Carlo)", ylabel="approximation", title=f"layer {h}, after: NWGM and W (Fig. 9.3)")
        row[1].scatter(d["E"], d["bound2"], s=2, color="tab:gray", label="bound 2 (Eq. 87)")
        row[1].scatter(d["E"], d["bound1"], s=2, color="tab:orange", label="bound 1 (Eq. 87)")
        row[1].scatter(d["E"], d["approx1"], s=2, color="tab:blue", label="Eq. 87 approximation")
        row[1].scatter(d["E"], d["err"], s=2, color="tab:red", label="|E - NWGM| measured")
        row[1].set_yscale("symlog", linthresh=1e-4)
        row[1].set(xlabel="E", ylabel="|E - NWGM|", title=f"layer {h}, after: bounds (Figs. 9.3-9.4)")
        for ax, key, title in ((row[2], "hist_nwgm_e", "NWGM - E (Fig. 9.6)"),
                               (row[3], "hist_w_e", "W - E (Fig. 9.7)")):
            draw_hist(ax, before[key], label="before training")
            draw_hist(ax, d[key], label="after training")
            ax.set(xlabel=title.split(" (")[0], ylabel="density", title=f"layer {h}: {title}")
        draw_hist(row[4], d["hist_approx"], label="Eq. 87 (around 0.5)")
        draw_hist(row[4], d["hist_approx2"], label="Eq. 202 (around E)")
        row[4].set_yscale("log")
        row[4].set(xlabel="|(E - NWGM) - approximation|", ylabel="density",
                   title=f"layer {h}, after: approximation errors (Figs. 9.4-9.5)")
        draw_hist(row[5], before["hist_deriv"], label="before training")
        draw_hist(row[5], d["hist_deriv"], label="after training")
        row[5].set(xlabel="E(f'(S)) - f'(E(S))", ylabel="density", title=f"layer {h}: Fig. 9.15")
        for ax in row[[0, 2, 3, 4, 5]]:
            ax.legend(fontsize=8, loc="upper left")
        # the bounds panel is covered with points everywhere: its legend goes beside it
        row[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=3)
    return fig


def _shape_verdicts(n: Numbers) -> list[Verdict]:
    """Figs. 9.6-9.7: NWGM - E and W - E centred near 0 and near-Gaussian, before and after training, on units with
    0.1 < E < 0.9 (the pooled numbers beside)."""
    out = []
    for what, key, fig in (("NWGM - E", "shape_nwgm_minus_e", "Fig. 9.6"), ("W - E", "shape_w_minus_e", "Fig. 9.7")):
        for when in ("before", "after"):
            pooled = n.series(key, when=when)
            layers = n.coordinates("layer", f"{key}_mid", when=when)
            moments = [n.get(f"{key}_mid", when=when, layer=h) for h in layers]
            if not moments:
                out.append(Verdict(f"{what} {when} training: not measured (fewer than 20 unit responses with "
                                   "0.1 < E < 0.9 in every layer)", False, source=fig, measurable=False))
                continue
            worst = float(max(max(abs(m[2]), abs(m[3])) for m in moments))
            worst_pooled = float(max(max(abs(m[2]), abs(m[3])) for m in pooled))
            centred = all(abs(m[0]) <= m[1] for m in moments)
            out.append(Verdict(
                f"{what} {when} training, on units with 0.1 < E < 0.9, is centred near 0 (|mean| <= sd in every "
                f"layer: {centred}) and near-Gaussian: largest |skewness| or |excess kurtosis| over layers {worst:.2f} "
                f"(pooled over all units: {worst_pooled:.2f})",
                centred and worst <= GAUSSIAN_LIMIT,
                source=fig, words=f"Empirical distribution of {what} is approximately Gaussian at each layer, both "
                                  "before and after training", measured=worst, threshold=GAUSSIAN_LIMIT,
                basis=GAUSSIAN_BASIS + "; units near 0 or 1, where the difference is ~0 whatever the approximation, "
                                       "are left out (the pooled number is shown beside)"))
    return out


def _alpha_beta_verdicts(n: Numbers) -> list[Verdict]:
    """Section 9.5, Eq. 116: alpha = E - NWGM and beta = NWGM - W uncorrelated above the first layer, before and after
    training (an equivalence test on each layer's 95% interval)."""
    out = []
    for when in ("before", "after"):
        corr = n.series("correlation_alpha_beta", when=when)[1:]
        counts = n.series("correlation_alpha_beta_count", when=when)[1:]
        intervals = [correlation_interval(c, k) for c, k in zip(corr, counts, strict=True)]
        worst_c = float(max(max(abs(lo), abs(hi)) for lo, hi in intervals)) if intervals else 0.0
        out.append(Verdict(
            f"alpha = E - NWGM and beta = NWGM - W are uncorrelated above the first layer {when} training: "
            "correlations (95% intervals) " + ", ".join(f"{c:+.2f} ({lo:+.2f}, {hi:+.2f})" for c, (lo, hi) in zip(
                corr, intervals, strict=True)), worst_c < COHEN_SMALL, source="Section 9.5, Eq. 116",
            words="the error is uncorrelated with the error alpha = E(O) - NWGM(O) for l > 1", measured=worst_c,
            threshold=COHEN_SMALL, basis="an equivalence test: every 95% interval (Fisher z) inside |r| < 0.1, "
                                         "under a small correlation (Cohen 1988)"))
    return out


def verdicts_approximations(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    out = []
    for name, key, fig in (("W", "mean_abs_e_minus_w", "Figs. 9.3, 9.7"),
                           ("NWGM", "mean_abs_e_minus_nwgm", "Figs. 9.3, 9.6")):
        worst = worst_ratio(n.series(key, when="after"), n.series("mean_sd", when="after"))
        out.append(Verdict(
            f"{name} approximates E: in every hidden layer after training, mean |E - {name}| is at most "
            f"{worst:.3f} of the mean dropout sd(O)", worst < 1.0, source=f"Section 9.5, {fig}",
            words="both W and NWGM(O) can be viewed as good approximations to E(O) with small deviations",
            measured=worst, threshold=1.0, basis=WITHIN_SD))
    frac = float(min(n.series("fraction_within_bound_2", when="after")))
    out.append(Verdict(
        f"|E - NWGM| is within bound 2 of Eq. 87 for {100 * frac:.2f}% of the hidden units of the worst layer after "
        "training", frac >= 1.0, source="Eq. 87, Figs. 9.3-9.4", words="well within the bounds derived in Section 8",
        measured=frac, threshold=1.0,
        basis="every unit, allowing 5 Monte Carlo standard errors of E (a false exceedance among ~50,000 units has "
              "probability about 1%)"))
    e87, e202 = n.series("mean_error_eq87", when="after"), n.series("mean_error_eq202", when="after")
    better = sum(b < a for a, b in zip(e87, e202, strict=True))
    out.append(Verdict(
        f"the expansion around the mean (Eq. 202) approximates E - NWGM better than Eq. 87 in {better} of "
        f"{len(e87)} hidden layers (mean errors {', '.join(f'{b:.1e}' for b in e202)} against "
        f"{', '.join(f'{a:.1e}' for a in e87)})", better == len(e87), source="Fig. 9.5, Eq. 202",
        words="the sharper but potentially more restricted second order approximation", measured=float(better),
        threshold=float(len(e87)), basis="the same error measure |(E - NWGM) - estimate| for both, in every layer"))
    d, spread = n.series("mean_derivative_gap", when="after"), n.series("mean_derivative_spread", when="after")
    ratio = worst_ratio(d, spread)
    out.append(Verdict(
        f"E(f'(S)) ~ f'(E(S)): the mean difference is at most {ratio:.2f} of the first-order dropout spread of "
        "f'(S) in every hidden layer", ratio < 1.0, source="Eq. 220, Fig. 9.15",
        words="E(sigma'(S)) is approximated by sigma'(E(S))", measured=ratio, threshold=1.0,
        basis="a second-order error against the first-order spread |f''(E(S))| sd(S) (delta method)"))
    out += _shape_verdicts(n)
    skew = [(abs(b[2]), abs(a[2])) for b, a in zip(
        n.series("shape_w_minus_e", when="before"), n.series("shape_w_minus_e", when="after"), strict=True)]
    more = sum(a > b for b, a in skew)
    out.append(Verdict(
        f"after training W - E is more asymmetric than before in {more} of {len(skew)} layers (|skewness| "
        + ", ".join(f"{b:.2f} -> {a:.2f}" for b, a in skew) + ")", 2 * more > len(skew), source="Figs. 9.6-9.7",
        words="After training, the distribution is slightly asymmetric", measured=float(more),
        threshold=len(skew) / 2, basis="a majority of layers"))
    out += _alpha_beta_verdicts(n)
    top, accumulated = n.series("sd_e_minus_w", when="after")[-1], n.get("accumulated_sd_alpha", when="after")
    out.append(Verdict(
        f"errors do not accumulate with depth: sd(E - W) at the top hidden layer is {top:.2e}, against "
        f"{accumulated:.2e}"
        " if every layer's NWGM error added up", top <= accumulated, source="Section 9.5",
        words="These deviations act like noise and cancel each other to some extent preventing the accumulation of "
              "errors across layers", measured=top, threshold=accumulated,
        basis="independent per-layer errors alpha that propagate undamped would add their variances"))
    return out


APPROXIMATIONS = Experiment(
    "approximations", "Figs. 9.3-9.7, 9.15; Section 9.5", "NWGM, W and their approximations, unit by unit",
    "In a trained network, NWGM and the deterministic W are close to the true ensemble mean E for every unit, "
    "|E - NWGM| stays under the bounds of Eq. 87, the deviations are small, near-Gaussian and do not accumulate "
    "with depth, and E(f'(S)) is close to f'(E(S)).",
    compute_approximations, plot_approximations, verdicts_approximations, needs_study=True)


# ------------------------------------------------------------------------------------------- Figs. 9.8-9.11
def compute_variance(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"epochs": [], "mean_var": [], "mean_gap": [], "hist": {}}
    n = Numbers()
    k = ctx.settings.measurements.trajectory_samples
    for epoch in ctx.study.epochs:
        mc, ws = mc_stats(ctx, epoch, samples=k)
        v = np.concatenate([flat(layer.Var) for layer in mc.layers[1:-1]])
        w = np.concatenate([flat(layer.E) for layer in ws.layers[1:-1]])
        out["epochs"].append(epoch)
        out["mean_var"].append(float(v.mean()))
        out["mean_gap"].append(float((w * (1 - w) - v).mean()))
    for when, epoch in WHEN:
        mc, ws = mc_stats(ctx, epoch)
        v = np.concatenate([flat(layer.Var) for layer in mc.layers[1:-1]])
        w = np.concatenate([flat(layer.E) for layer in ws.layers[1:-1]])
        e2 = v + np.concatenate([flat(layer.E) for layer in mc.layers[1:-1]]) ** 2  # E(O O)
        out["hist"][when] = {"e2_minus_w": hist(e2 - w), "e2_minus_w2": hist(e2 - w * w),
                             "var_minus_bound": hist(v - w * (1 - w))}
        n.add("mean_abs_e_oo_minus_w", float(np.abs(e2 - w).mean()), "mean |E(OO) - W|", when=when)
        n.add("mean_abs_e_oo_minus_ww", float(np.abs(e2 - w * w).mean()), "mean |E(OO) - W W|", when=when)
        # a unit's Var has standard error about Var sqrt(2 / K) (K samples): allow 5 of them
        slack = 5 * v * np.sqrt(2 / ctx.settings.measurements.samples)
        within = v <= w * (1 - w) + slack
        n.add("fraction_var_within_bound", float(np.mean(within)), "fraction Var <= W(1 - W) + 5 SE (all units)",
              when=when)
        # Var(O) <= E(1 - E) holds for any O in [0, 1] (Section 5): the bound says something only where
        # W(1 - W) < E(1 - E), i.e. where W lies farther from 1/2 than E
        e = np.concatenate([flat(layer.E) for layer in mc.layers[1:-1]])
        informative = w * (1 - w) < e * (1 - e)
        n.add("informative_units", int(informative.sum()), "units where W(1 - W) < E(1 - E) (the bound is not "
              "implied by Var(O) <= E(1 - E))", when=when)
        n.add("fraction_var_within_bound_informative", float(np.mean(within[informative])) if informative.any()
              else 0.0, "fraction Var <= W(1 - W) + 5 SE where W(1 - W) < E(1 - E)", when=when)
        n.add("mean_var", float(v.mean()), "mean Var", when=when)
    mv = out["mean_var"]
    n.add("curve_var_start", mv[0], "mean Var over training: at the start")
    n.add("curve_var_peak", max(mv), "mean Var over training: its peak")
    n.add("curve_var_peak_epoch", out["epochs"][int(np.argmax(mv))], "mean Var over training: the epoch of its peak")
    n.add("curve_var_end", mv[-1], "mean Var over training: at the end")
    out["numbers"] = n.records()
    return out


def plot_variance(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    fig, axes = subplots(2, 2, figsize=(12, 8))
    for when, style in (("before", "--"), ("after", "-")):
        draw_hist(axes[0, 0], r["hist"][when]["e2_minus_w"], label=f"E(OO) - W, {when}", linestyle=style)
        draw_hist(axes[0, 0], r["hist"][when]["e2_minus_w2"], label=f"E(OO) - W W, {when}", linestyle=style)
        draw_hist(axes[0, 1], r["hist"][when]["var_minus_bound"], label=f"{when} training", linestyle=style)
    axes[0, 0].set(title="Fig. 9.8: E(OO) against W (Eq. 117) and W W (Eq. 118)", xlabel="difference", ylabel="density")
    axes[0, 0].set_yscale("log")
    axes[0, 1].set(title="Fig. 9.9: Var(O) - W(1 - W)", xlabel="Var(O) - W(1 - W)", ylabel="density")
    axes[0, 1].set_yscale("log")
    axes[1, 0].plot(r["epochs"], r["mean_var"], marker="o", ms=3)
    axes[1, 0].set(title="Fig. 9.10: mean dropout variance over training", xlabel="epoch", ylabel="mean Var(O)")
    axes[1, 1].plot(r["epochs"], r["mean_gap"], marker="o", ms=3)
    axes[1, 1].set(title="Fig. 9.11: mean W(1 - W) - Var(O) over training", xlabel="epoch", ylabel="W(1 - W) - Var(O)")
    for ax in axes[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def verdicts_variance(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    start, peak, peak_epoch, end = (n.get(f"curve_var_{k}") for k in ("start", "peak", "peak_epoch", "end"))
    frac = n.get("fraction_var_within_bound_informative", when="after")
    count, everyone = n.get("informative_units", when="after"), n.get("fraction_var_within_bound", when="after")
    out = [Verdict(
        f"W(1 - W) bounds the dropout variance of {100 * frac:.1f}% of the {count} hidden-unit responses after "
        f"training where the bound is not a tautology (W(1 - W) < E(1 - E); over all units "
        f"{100 * everyone:.1f}%, which Var(O) <= E(1 - E) mostly implies)", frac >= 0.95, source="Eq. 117, Fig. 9.9",
        words="rough upperbounds", measured=frac, threshold=0.95, measurable=count >= 20,
        basis="a rough bound: 95% of the responses where W(1 - W) < E(1 - E) (at least 20 of them), each allowed 5 "
              "standard errors of its Var; where W(1 - W) >= E(1 - E) it follows from Var(O) <= E(1 - E)")]
    for when in ("before", "after"):
        ww, w = n.get("mean_abs_e_oo_minus_ww", when=when), n.get("mean_abs_e_oo_minus_w", when=when)
        out.append(Verdict(
            f"{when} training, E(OO) is closer to W W (Var ~ 0, Eq. 118) than to W (Eq. 117): mean error {ww:.2e} "
            f"against {w:.2e}", ww < w, source="Eqs. 117-118, Fig. 9.8",
            words="At the beginning and the end of learning, the variances are small and so \"0\" is the better "
                  "approximation", measured=ww, threshold=w, basis="the other approximation's error"))
    out.append(Verdict(
        f"the dropout variance starts near 0 ({start:.1e}), rises during learning to {peak:.1e} (epoch "
        f"{peak_epoch:.0f}) and is smaller at the end ({end:.1e})",
        start < 0.1 * peak and end < peak and 0 < peak_epoch < r["epochs"][-1], source="Section 9.6, Figs. 9.10-9.11",
        words="with very small weights ... Var(O) ~ 0 ... during learning, variances can be expected to be larger",
        measured=start / peak if peak else None, threshold=0.1,
        basis="near 0: under a tenth of its peak; the peak inside the run, the end below it"))
    return out


VARIANCE = Experiment(
    "variance", "Figs. 9.8-9.11", "Dropout variance against W(1 - W) and 0",
    "The dropout variance of a unit is small and under its rough upper bound W(1 - W), so E(OO) is approximated "
    "better by W W than by W at the beginning and the end of learning; the variance starts near 0, grows during "
    "learning and becomes smaller again.", compute_variance, plot_variance, verdicts_variance, needs_study=True)


# ------------------------------------------------------------------------------------------- Figs. 9.12-9.14
def _pairs(sizes: list[int], total: int, seed: int) -> tuple[tuple, tuple]:
    """``total`` random pairs, half unconnected (hidden layers 1..L-1 not adjacent, so no pair of softmax outputs,
    which the normalization couples) and half connected (adjacent hidden layers)."""
    rng = np.random.default_rng(seed)
    count = max(1, total // 2)
    hidden = list(range(1, len(sizes) - 1))
    unconnected: list[tuple[int, int, int, int]] = []
    connected: list[tuple[int, int, int, int]] = []
    while len(unconnected) < count:
        h, l = sorted(int(v) for v in rng.choice(hidden, 2, replace=True))
        i, j = int(rng.integers(sizes[h])), int(rng.integers(sizes[l]))
        if abs(h - l) != 1 and (h, i) != (l, j):
            unconnected.append((l, j, h, i))
    while len(connected) < count and len(hidden) > 1:
        l = int(rng.integers(2, len(sizes) - 1))
        connected.append((l, int(rng.integers(sizes[l])), l - 1, int(rng.integers(sizes[l - 1]))))
    return tuple(unconnected), tuple(connected)


def _paired(a: np.ndarray, b: np.ndarray) -> list[float]:
    """[mean of a - b, its standard error] over pairs."""
    d = a - b
    return [float(d.mean()), float(d.std() / np.sqrt(max(len(d), 1)))]


def compute_pairs(ctx: Context) -> dict[str, Any]:
    sizes = list(ctx.study.model_config().sizes)
    unconnected, connected = _pairs(sizes, ctx.settings.measurements.pairs, ctx.seed)
    out: dict[str, Any] = {"hist": {}}
    n = Numbers()
    for when, epoch in WHEN:
        mc, _ = mc_stats(ctx, epoch, unconnected + connected)
        approx = ensemble.pair_approximations(ctx.study.model(epoch), ctx.study.inputs(), unconnected + connected)

        def cat(table: dict, pairs: tuple) -> np.ndarray:
            return np.concatenate([flat(table[p]) for p in pairs]) if pairs else np.zeros(0)

        true_u, ww_u = cat(mc.pairs, unconnected), cat(approx["W W"], unconnected)
        true_c, ww_c = cat(mc.pairs, connected), cat(approx["W W"], connected)
        wij_c, taylor_c = cat(approx["W_ij W_j"], connected), cat(approx["taylor"], connected)
        out["hist"][when] = {"u_ww": hist(true_u - ww_u), "u_0": hist(true_u), "c_ww": hist(true_c - ww_c),
                             "c_wij": hist(true_c - wij_c),
                             # Fig. 9.14's "small improvement", pair by pair: |error of W W| - |error of W_ij W_j|
                             "c_paired": hist(np.abs(true_c - ww_c) - np.abs(true_c - wij_c))}
        for pairs, estimate, truth, approx, label in (
                ("unconnected", "ww", true_u, ww_u, "W W"), ("unconnected", "zero", true_u, 0.0, "0"),
                ("connected", "ww", true_c, ww_c, "W W"), ("connected", "wij_wj", true_c, wij_c, "W_ij W_j"),
                ("connected", "taylor", true_c, taylor_c, "Eq. 122 Taylor form")):
            n.add(f"mean_abs_error_{estimate}", float(np.abs(truth - approx).mean()), f"mean |E(OO) - {label}|",
                  when=when, pairs=pairs)
        gain, se = _paired(np.abs(true_c - ww_c), np.abs(true_c - wij_c))
        n.add("correction_gain", gain, "W W error minus W_ij W_j error, mean over pairs", when=when, pairs="connected")
        n.add("correction_gain_se", se, "W W error minus W_ij W_j error, its SE", when=when, pairs="connected")
    out["numbers"] = n.records()
    return out


def plot_pairs(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    fig, axes = subplots(1, 4, figsize=(21, 4.2))
    for when, style in (("before", "--"), ("after", "-")):
        draw_hist(axes[3], r["hist"][when]["c_paired"], label=f"{when} training", linestyle=style)
        draw_hist(axes[0], r["hist"][when]["u_ww"], label=f"{when} training", linestyle=style)
        draw_hist(axes[1], r["hist"][when]["u_0"], label=f"{when} training", linestyle=style)
        draw_hist(axes[2], r["hist"][when]["c_ww"], label=f"E(OO) - W W, {when}", linestyle=style)
        draw_hist(axes[2], r["hist"][when]["c_wij"], label=f"E(OO) - W_ij W_j, {when}", linestyle=style)
    axes[0].set(title="Fig. 9.12: unconnected pairs, E(OO) - W W", xlabel="E(O_i O_j) - W_i W_j")
    axes[1].set(title="Fig. 9.13: unconnected pairs, E(OO) - 0", xlabel="E(O_i O_j)")
    axes[2].set(title="Fig. 9.14: connected pairs (Eq. 124)", xlabel="E(O_i O_j) - estimate")
    for when in ("before", "after"):
        n = Numbers.of(r)
        gain, se = n.get("correction_gain", when=when), n.get("correction_gain_se", when=when)
        axes[3].axvline(gain, color="k", ls="--" if when == "before" else "-", lw=1,
                        label=f"mean {when}: {gain:+.1e} +- {se:.0e}")
    axes[3].set(title="Fig. 9.14, pair by pair: the correction's gain",
                xlabel="|E(OO) - W W| - |E(OO) - W_ij W_j| (> 0: the correction helps)")
    for ax in axes:
        ax.set_ylabel("density")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def verdicts_pairs(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    out = []
    for when in ("before", "after"):
        ww, zero = (n.get(f"mean_abs_error_{k}", when=when, pairs="unconnected") for k in ("ww", "zero"))
        out.append(Verdict(
            f"{when} training, for unconnected hidden pairs W W approximates E(O_i O_j) much better than 0: mean error "
            f"{ww:.2e} against {zero:.2e}", ww < 0.1 * zero, source="Eq. 119, Figs. 9.12-9.13",
            words="The approximation is much better than simply using 0", measured=ww, threshold=0.1 * zero,
            basis="much better: under a tenth of the error of 0"))
    for when in ("before", "after"):
        gain, se = n.get("correction_gain", when=when), n.get("correction_gain_se", when=when)
        expected = when == "after"
        holds = gain > 2 * se if expected else gain <= 2 * se
        out.append(Verdict(
            f"{when} training, the correction W_ij W_j (Eq. 124) changes the mean error on connected pairs by "
            f"{gain:+.2e} (SE {se:.1e}): {'an' if gain > 2 * se else 'no'} improvement", holds,
            source="Eq. 124, Fig. 9.14",
            words="The correction provides a small improvement at the end of learning but not at the beginning",
            measured=gain, threshold=0.0, noise=se,
            basis="a paired difference over pairs, against twice its standard error"))
    return out


PAIRS = Experiment(
    "pairs", "Figs. 9.12-9.14", "Pair moments E(O_i O_j)",
    "E(O_i O_j) is approximated by W_i W_j for unconnected units (much better than by 0), and for connected units "
    "the corrected W_ij W_j of Eq. 124 gives a small improvement at the end of learning but not at the beginning.",
    compute_pairs, plot_pairs, verdicts_pairs, needs_study=True)
