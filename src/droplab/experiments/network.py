"""Figs. 9.3-9.15: the dropout approximations measured unit by unit in the trained study network.

Every statistic comes from ``ensemble.monte_carlo`` (the truth, up to its standard error) and
``ensemble.weight_scaled`` (W) on the study's fixed inputs, before training (epoch 0) and after.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import ensemble, means
from ._base import Context, Experiment, Verdict, draw_hist, hist

_CACHE: dict[tuple[Any, ...], Any] = {}


def mc_stats(ctx: Context, epoch: int | str, pairs: tuple = ()) -> tuple[Any, Any]:
    """(Monte Carlo statistics, weight-scaled statistics) of the study network at a snapshot; memoized."""
    key = (ctx.study.key, epoch, pairs, ctx.settings["samples"])
    if key not in _CACHE:
        net = ctx.study.model(epoch)
        x = ctx.study.inputs()
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        mc = ensemble.monte_carlo(net, x, samples=ctx.settings["samples"], generator=gen, pairs=list(pairs))
        _CACHE[key] = (mc, ensemble.weight_scaled(net, x))
    return _CACHE[key]


def flat(t: torch.Tensor) -> np.ndarray:
    """A tensor as a flat float64 NumPy array."""
    return t.detach().double().cpu().numpy().ravel()



def _sub(a: np.ndarray, n: int = 3000) -> list[float]:
    return a[:: max(1, len(a) // n)].tolist()


# ------------------------------------------------------------------------------------------- Figs. 9.3-9.7, 9.15
def compute_approximations(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"layers": {}, "numbers": {}}
    for when, epoch in (("before", 0), ("after", "last")):
        mc, ws = mc_stats(ctx, epoch)
        for h in range(1, len(mc.layers) - 1):  # hidden layers
            e, v, nwgm = (flat(getattr(mc.layers[h], k)) for k in ("E", "Var", "NWGM"))
            w = flat(ws.layers[h].E)
            err = np.abs(e - nwgm)
            approx1 = means.nwgm_error_around_half(e, v)  # Eq. 87
            approx2 = means.nwgm_around_mean(e, v)  # Eq. 202
            b1, b2 = means.bound_variance(e, v), means.bound_mean_only(e)
            d_true = flat(mc.layers[h].E_derivative)
            d_mean_field = means.expected_derivative_mean_field(flat(mc.layers[h].E_S))  # Eq. 220
            tag = f"layer {h} {when}"
            out["layers"][tag] = {
                "E": _sub(e), "NWGM": _sub(nwgm), "W": _sub(w), "err": _sub(err), "approx1": _sub(approx1),
                "bound1": _sub(b1), "bound2": _sub(b2),
                "hist_nwgm_e": hist(nwgm - e), "hist_w_e": hist(w - e),
                "hist_approx": hist(np.abs(approx1 - err)), "hist_approx2": hist(np.abs(approx2 - nwgm)),
                "hist_deriv": hist(d_true - d_mean_field),
            }
            n = out["numbers"]
            n[f"{tag}: mean |E - NWGM|"] = float(err.mean())
            n[f"{tag}: mean |E - W|"] = float(np.abs(e - w).mean())
            n[f"{tag}: mean, sd of NWGM - E"] = [float((nwgm - e).mean()), float((nwgm - e).std())]
            n[f"{tag}: mean, sd of W - E"] = [float((w - e).mean()), float((w - e).std())]
            n[f"{tag}: fraction |E - NWGM| <= bound 1"] = float(np.mean(err <= b1 + 1e-12))
            n[f"{tag}: fraction |E - NWGM| <= bound 2"] = float(np.mean(err <= b2 + 1e-12))
            n[f"{tag}: mean error of Eq. 87 approximation"] = float(np.abs(approx1 - err).mean())
            n[f"{tag}: mean error of Eq. 202 approximation"] = float(np.abs(approx2 - nwgm).mean())
            n[f"{tag}: mean |E(f'(S)) - f'(E(S))|"] = float(np.abs(d_true - d_mean_field).mean())
    return out


def plot_approximations(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    tags = [t for t in r["layers"] if t.endswith("after")]
    fig, axes = plt.subplots(len(tags), 5, figsize=(17, 3 * len(tags)), squeeze=False)
    for row, tag in zip(axes, tags, strict=True):
        d, before = r["layers"][tag], r["layers"][tag.replace("after", "before")]
        row[0].scatter(d["E"], d["NWGM"], s=2, label="NWGM")
        row[0].scatter(d["E"], d["W"], s=2, label="W")
        row[0].plot([0, 1], [0, 1], "k", lw=0.5)
        row[0].set_title(f"{tag}: NWGM and W against E (Fig. 9.3)", fontsize=8)
        row[0].legend(fontsize=6)
        row[1].scatter(d["E"], d["err"], s=2, label="|E - NWGM|")
        row[1].scatter(d["E"], d["approx1"], s=2, label="Eq. 87 approximation")
        row[1].scatter(d["E"], d["bound1"], s=2, label="bound 1")
        row[1].scatter(d["E"], d["bound2"], s=2, label="bound 2")
        row[1].set_title("approximations and bounds (Figs. 9.3-9.5)", fontsize=8)
        row[1].legend(fontsize=6)
        draw_hist(row[2], before["hist_nwgm_e"], label="before")
        draw_hist(row[2], d["hist_nwgm_e"], label="after")
        row[2].set_title("NWGM - E (Fig. 9.6)", fontsize=8)
        row[2].legend(fontsize=6)
        draw_hist(row[3], before["hist_w_e"], label="before")
        draw_hist(row[3], d["hist_w_e"], label="after")
        row[3].set_title("W - E (Fig. 9.7)", fontsize=8)
        draw_hist(row[4], before["hist_deriv"], label="before")
        draw_hist(row[4], d["hist_deriv"], label="after")
        row[4].set_title("E(f'(S)) - f'(E(S)) (Fig. 9.15)", fontsize=8)
    fig.tight_layout()
    return fig


def verdicts_approximations(r: dict[str, Any]) -> list[Verdict]:
    n = r["numbers"]
    after = sorted({k.split(":")[0] for k in n if "after" in k})
    out = []
    frac2 = min(n[f"{t}: fraction |E - NWGM| <= bound 2"] for t in after)
    out.append(Verdict(f"|E - NWGM| is under bound 2 (Eq. 87) for at least {100 * frac2:.1f}% of the units of every "
                       "hidden layer after training", frac2 >= 0.95))
    worst_w = max(n[f"{t}: mean |E - W|"] for t in after)
    out.append(Verdict(f"W approximates E: mean |E - W| per hidden layer at most {worst_w:.4f} after training",
                       worst_w < 0.02))
    sds = [n[f"{t}: mean, sd of NWGM - E"][1] for t in after]
    out.append(Verdict(f"NWGM - E is concentrated near 0: standard deviation per layer at most {max(sds):.4f}",
                       max(sds) < 0.02))
    better = sum(n[f"{t}: mean error of Eq. 202 approximation"] <= n[f"{t}: mean error of Eq. 87 approximation"]
                 for t in after)
    out.append(Verdict(f"the expansion around the mean (Eq. 202) is the sharper approximation in {better} of "
                       f"{len(after)} hidden layers (Fig. 9.5)", better * 2 >= len(after)))
    worst_d = max(n[f"{t}: mean |E(f'(S)) - f'(E(S))|"] for t in after)
    out.append(Verdict(f"E(f'(S)) ~ f'(E(S)) (Eq. 220): mean difference at most {worst_d:.4f} per layer",
                       worst_d < 0.02))
    return out


APPROXIMATIONS = Experiment(
    "approximations", "Figs. 9.3-9.7, 9.15", "NWGM, W and their approximations, unit by unit",
    "In a trained network, NWGM and the deterministic W are close to the true ensemble mean E for every unit, "
    "|E - NWGM| stays under the bounds of Eq. 87, and E(f'(S)) is close to f'(E(S)).",
    compute_approximations, plot_approximations, verdicts_approximations, needs_study=True)


# ------------------------------------------------------------------------------------------- Figs. 9.8-9.11
def compute_variance(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"epochs": [], "mean_var": [], "mean_gap": [], "hist": {}, "numbers": {}}
    for epoch in ctx.study.epochs:
        mc, ws = mc_stats(ctx, epoch)
        v = np.concatenate([flat(layer.Var) for layer in mc.layers[1:-1]])
        w = np.concatenate([flat(layer.E) for layer in ws.layers[1:-1]])
        e2 = v + np.concatenate([flat(layer.E) for layer in mc.layers[1:-1]]) ** 2  # E(O O)
        out["epochs"].append(epoch)
        out["mean_var"].append(float(v.mean()))
        out["mean_gap"].append(float((w * (1 - w) - v).mean()))
        if epoch in (0, ctx.study.epochs[-1]):
            when = "before" if epoch == 0 else "after"
            out["hist"][when] = {"e2_minus_w": hist(e2 - w), "e2_minus_w2": hist(e2 - w * w),
                                 "var_minus_bound": hist(v - w * (1 - w))}
            out["numbers"][f"{when}: mean |E(OO) - W|"] = float(np.abs(e2 - w).mean())
            out["numbers"][f"{when}: mean |E(OO) - W W|"] = float(np.abs(e2 - w * w).mean())
            out["numbers"][f"{when}: fraction Var <= W(1 - W)"] = float(np.mean(v <= w * (1 - w) + 1e-9))
            out["numbers"][f"{when}: mean Var"] = float(v.mean())
    return out


def plot_variance(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.2))
    for when in ("before", "after"):
        draw_hist(axes[0], r["hist"][when]["e2_minus_w"], label=f"E(OO) - W, {when}")
        draw_hist(axes[0], r["hist"][when]["e2_minus_w2"], label=f"E(OO) - WW, {when}", linestyle="--")
        draw_hist(axes[1], r["hist"][when]["var_minus_bound"], label=when)
    axes[0].set_title("Fig. 9.8: E(OO) against W and WW", fontsize=9)
    axes[0].legend(fontsize=6)
    axes[1].set_title("Fig. 9.9: Var(O) - W(1 - W)", fontsize=9)
    axes[1].legend(fontsize=6)
    axes[2].plot(r["epochs"], r["mean_var"], marker="o")
    axes[2].set_title("Fig. 9.10: mean Var(O) over training", fontsize=9)
    axes[3].plot(r["epochs"], r["mean_gap"], marker="o")
    axes[3].set_title("Fig. 9.11: mean W(1 - W) - Var(O)", fontsize=9)
    for ax in axes[2:]:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def verdicts_variance(r: dict[str, Any]) -> list[Verdict]:
    n = r["numbers"]
    return [
        Verdict(f"W(1 - W) bounds the dropout variance for {100 * n['after: fraction Var <= W(1 - W)']:.1f}% of hidden "
                "units after training", n["after: fraction Var <= W(1 - W)"] >= 0.95),
        Verdict(f"E(OO) is closer to W W (Var ~ 0, Eq. 118) than to W (Eq. 117): mean error "
                f"{n['after: mean |E(OO) - W W|']:.4f} against {n['after: mean |E(OO) - W|']:.4f} after training",
                n["after: mean |E(OO) - W W|"] < n["after: mean |E(OO) - W|"]),
        Verdict(f"the dropout variance grows from near 0 as the weights grow: mean Var {n['before: mean Var']:.2e} "
                f"before training, {n['after: mean Var']:.2e} after", n["after: mean Var"] > n["before: mean Var"]),
    ]


VARIANCE = Experiment(
    "variance", "Figs. 9.8-9.11", "Dropout variance against W(1 - W) and 0",
    "The dropout variance of a unit is small, under its upper bound W(1 - W), so E(OO) is approximated better by "
    "W W than by W; it starts near 0 and grows during training.",
    compute_variance, plot_variance, verdicts_variance, needs_study=True)


# ------------------------------------------------------------------------------------------- Figs. 9.12-9.14
def _pairs(sizes: list[int], count: int, seed: int) -> tuple[tuple, tuple]:
    rng = np.random.default_rng(seed)
    hidden = list(range(1, len(sizes)))  # non-input layers
    unconnected, connected = [], []
    while len(unconnected) < count:
        h, l = sorted(rng.choice(hidden, 2, replace=True))
        i, j = int(rng.integers(sizes[h])), int(rng.integers(sizes[l]))
        if abs(h - l) != 1 and (h, i) != (l, j):
            unconnected.append((int(l), j, int(h), i))
    while len(connected) < count:
        l = int(rng.integers(2, len(sizes)))
        connected.append((l, int(rng.integers(sizes[l])), l - 1, int(rng.integers(sizes[l - 1]))))
    return tuple(unconnected), tuple(connected)


def compute_pairs(ctx: Context) -> dict[str, Any]:
    sizes = ctx.study.model_config()["sizes"]
    unconnected, connected = _pairs(sizes, ctx.settings["pairs"], ctx.seed)
    out: dict[str, Any] = {"hist": {}, "numbers": {}}
    for when, epoch in (("before", 0), ("after", "last")):
        mc, _ = mc_stats(ctx, epoch, unconnected + connected)
        approx = ensemble.pair_approximations(ctx.study.model(epoch), ctx.study.inputs(), unconnected + connected)
        true_u = np.concatenate([flat(mc.pairs[p]) for p in unconnected])
        ww_u = np.concatenate([flat(approx["W W"][p]) for p in unconnected])
        true_c = np.concatenate([flat(mc.pairs[p]) for p in connected])
        ww_c = np.concatenate([flat(approx["W W"][p]) for p in connected])
        wij_c = np.concatenate([flat(approx["W_ij W_j"][p]) for p in connected])
        out["hist"][when] = {"u_ww": hist(true_u - ww_u), "u_0": hist(true_u), "c_ww": hist(true_c - ww_c),
                             "c_wij": hist(true_c - wij_c)}
        n = out["numbers"]
        n[f"{when}: unconnected, mean |E(OO) - W W|"] = float(np.abs(true_u - ww_u).mean())
        n[f"{when}: unconnected, mean |E(OO) - 0|"] = float(np.abs(true_u).mean())
        n[f"{when}: connected, mean |E(OO) - W W|"] = float(np.abs(true_c - ww_c).mean())
        n[f"{when}: connected, mean |E(OO) - W_ij W_j|"] = float(np.abs(true_c - wij_c).mean())
    return out


def plot_pairs(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.2))
    for when in ("before", "after"):
        draw_hist(axes[0], r["hist"][when]["u_ww"], label=when)
        draw_hist(axes[1], r["hist"][when]["u_0"], label=when)
        draw_hist(axes[2], r["hist"][when]["c_ww"], label=f"W W, {when}")
        draw_hist(axes[2], r["hist"][when]["c_wij"], label=f"W_ij W_j, {when}", linestyle="--")
    axes[0].set_title("Fig. 9.12: unconnected, E(OO) - W W", fontsize=9)
    axes[1].set_title("Fig. 9.13: unconnected, E(OO) - 0", fontsize=9)
    axes[2].set_title("Fig. 9.14: connected pairs", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def verdicts_pairs(r: dict[str, Any]) -> list[Verdict]:
    n = r["numbers"]
    return [
        Verdict(f"for unconnected pairs W W approximates E(O_i O_j) far better than 0: mean error "
                f"{n['after: unconnected, mean |E(OO) - W W|']:.4f} against "
                f"{n['after: unconnected, mean |E(OO) - 0|']:.4f}",
                n["after: unconnected, mean |E(OO) - W W|"] < n["after: unconnected, mean |E(OO) - 0|"]),
        Verdict(f"for connected pairs the corrected W_ij W_j (Eq. 124) is at least as good as W W: mean error "
                f"{n['after: connected, mean |E(OO) - W_ij W_j|']:.4f} against "
                f"{n['after: connected, mean |E(OO) - W W|']:.4f}",
                n["after: connected, mean |E(OO) - W_ij W_j|"] <= n["after: connected, mean |E(OO) - W W|"] * 1.05),
    ]


PAIRS = Experiment(
    "pairs", "Figs. 9.12-9.14", "Pair moments E(O_i O_j)",
    "E(O_i O_j) is approximated by W_i W_j for unconnected units (much better than by 0), and for connected units "
    "by the corrected W_ij W_j of Eq. 124.", compute_pairs, plot_pairs, verdicts_pairs, needs_study=True)
