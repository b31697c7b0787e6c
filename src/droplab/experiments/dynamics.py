"""Figs. 11.1-11.3: sparsity of trained activations, the three learning phases, consistency per layer."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import modes
from ._base import Context, Experiment, Numbers, Verdict, draw_hist, hist
from .network import mc_stats


@torch.no_grad()
def _samples(net: Any, x: torch.Tensor, layer: int, units: list[int], k: int, seed: int) -> np.ndarray:
    """k dropout samples of the given units' outputs for one input: (k, len(units))."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    with modes.sample(net, generator=gen):
        trace = net.trace(x.expand(k, -1))
    return trace.O[layer][:, units].double().cpu().numpy()


def trend_t(y: list[float]) -> float:
    """t statistic of the least-squares slope of y against its index (0 for fewer than 3 points)."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 3:
        return 0.0
    x = np.arange(len(y), dtype=np.float64) - (len(y) - 1) / 2
    slope = float((x * (y - y.mean())).sum() / (x * x).sum())
    resid = y - y.mean() - slope * x
    se = float(np.sqrt((resid**2).sum() / (len(y) - 2) / (x * x).sum()))
    return slope / se if se > 0 else (0.0 if slope == 0 else float(np.sign(slope)) * np.inf)


def compute(ctx: Context) -> dict[str, Any]:
    study = ctx.study
    final = study.model("last")
    data_x = study.data.x_test[:1000].to(ctx.device)
    with modes.expect(final), torch.no_grad():
        trace = final.trace(data_x)
    n_hidden = len(trace.O) - 2
    out: dict[str, Any] = {"sparsity": {}, "phases": {}, "consistency": {}}
    n = Numbers()
    for h in range(1, n_hidden + 1):
        o = trace.O[h].double().cpu().numpy()
        out["sparsity"][f"layer {h}"] = hist(o, 40, (0, 1))
        n.add("fraction_below_0_1", float(np.mean(o < 0.1)), "fraction of activations below 0.1", layer=h)
        n.add("median_activation", float(np.median(o)), "median activation", layer=h)
    # Fig. 11.2: one input, an active and an inactive unit of the last hidden layer, over training
    x = study.inputs(1)
    with modes.expect(final), torch.no_grad():
        w_final = final.trace(x).O[n_hidden][0].cpu().numpy()
    active, inactive = int(np.argmax(w_final)), int(np.argmin(w_final))
    k = ctx.settings["trajectory_samples"]
    for name, unit in (("active", active), ("inactive", inactive)):
        curves: dict[str, list[float]] = {"mean": [], "p5": [], "p95": [], "sd": []}
        for epoch in study.epochs:
            s = _samples(study.model(epoch), x, n_hidden, [unit], k, ctx.seed)[:, 0]
            curves["mean"].append(float(s.mean()))
            curves["p5"].append(float(np.percentile(s, 5)))
            curves["p95"].append(float(np.percentile(s, 95)))
            curves["sd"].append(float(s.std()))
        out["phases"][name] = curves
    out["epochs"] = study.epochs
    sd = out["phases"]["active"]["sd"]
    last_quarter = sd[-max(3, len(sd) // 4):]
    n.add("sd_start", sd[0], "dropout sd at the start", unit="active unit")
    n.add("sd_peak", max(sd), "peak dropout sd", unit="active unit")
    n.add("sd_end", sd[-1], "dropout sd at the end", unit="active unit")
    n.add("sd_trend_t", trend_t(last_quarter), "t of the sd trend over the last quarter of epochs", unit="active unit")
    n.add("sd_peak", max(out["phases"]["inactive"]["sd"]), "peak dropout sd", unit="inactive unit")
    n.add("mean_end", out["phases"]["inactive"]["mean"][-1], "mean output at the end", unit="inactive unit")
    # Fig. 11.3: dropout sd of active units (W > 0.1 at the end) per layer over training
    _, ws_final = mc_stats(ctx, "last", samples=k)
    for h in range(1, n_hidden + 1):
        mask = (ws_final.layers[h].E > 0.1).cpu()
        series = []
        for epoch in study.epochs:
            mc, _ = mc_stats(ctx, epoch, samples=k)
            sd_h = mc.layers[h].Var.sqrt().cpu()[mask].double().numpy()
            series.append([float(sd_h.mean()), float(np.percentile(sd_h, 5)), float(np.percentile(sd_h, 95))]
                          if sd_h.size else [None] * 3)  # no active unit in this layer
        out["consistency"][f"layer {h}"] = series
        sd_end = mc_stats(ctx, "last", samples=k)[0].layers[h].Var.sqrt().cpu()[mask].double().numpy()
        n.add("active_units", int(sd_end.size), "active units (W > 0.1 at the end)", layer=h)
        if sd_end.size:
            n.add("active_mean_sd_end", series[-1][0], "active units: mean dropout sd at the end", layer=h)
            n.add("active_mean_sd_end_se", float(sd_end.std() / np.sqrt(sd_end.size)),
                  "active units: SE of the mean dropout sd at the end", layer=h)
    out["numbers"] = n.records()
    return out


def plot(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.4))
    for name, h in r["sparsity"].items():
        draw_hist(axes[0], h, label=name)
    axes[0].set_yscale("log")
    axes[0].set(title="Fig. 11.1: trained activations per layer", xlabel="activation W (1,000 test inputs)",
                ylabel="density")
    axes[0].legend(fontsize=8)
    for name, color in (("active", "tab:red"), ("inactive", "tab:blue")):
        c = r["phases"][name]
        axes[1].plot(r["epochs"], c["mean"], color=color, label=f"{name} unit: mean")
        axes[1].fill_between(r["epochs"], c["p5"], c["p95"], color=color, alpha=0.2, label=f"{name} unit: 5-95%")
    axes[1].set(title="Fig. 11.2: learning phases, one input", xlabel="epoch", ylabel="dropout output O", ylim=(0, 1))
    axes[1].legend(fontsize=8)
    for name, series in r["consistency"].items():
        axes[2].plot(r["epochs"], [np.nan if s[0] is None else s[0] for s in series], marker="o", ms=3, label=name)
    axes[2].set(title="Fig. 11.3: consistency of active units", xlabel="epoch", ylabel="mean dropout sd(O)")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    sparse = n.series("fraction_below_0_1")
    start, peak, end, t = (n.get(k, unit="active unit") for k in ("sd_start", "sd_peak", "sd_end", "sd_trend_t"))
    layers = n.coordinates("layer", "active_units")
    if all(n.get("active_units", layer=h) > 0 for h in (layers[0], layers[-1])):
        first, se_first, top, se_top = (n.get(k, layer=h) for h in (layers[0], layers[-1])
                                        for k in ("active_mean_sd_end", "active_mean_sd_end_se"))
    else:  # a layer without active units: nothing to compare
        first, se_first, top, se_top = 0.0, 0.0, np.inf, 0.0
    inactive_peak, inactive_mean = n.get("sd_peak", unit="inactive unit"), n.get("mean_end", unit="inactive unit")
    noise = float(np.hypot(se_first, se_top))
    return [
        Verdict(f"trained representations are sparse: {100 * min(sparse):.0f}-{100 * max(sparse):.0f}% of hidden "
                "activations are below 0.1", min(sparse) > 0.5, source="Section 11.7, Fig. 11.1",
                words="sparse representations tend to emerge", measured=min(sparse), threshold=0.5,
                basis="most activations below 0.1, the paper's own cut between active and inactive (Fig. 11.3)"),
        Verdict(f"an active unit starts with low dropout variance and rises: sd {start:.3f} at the start, "
                f"peak {peak:.3f}",
                start < 0.1 * peak, source="Section 11.7, Fig. 11.2",
                words="a typical active neuron starts out with low dropout variance, experiences an increase in "
                      "variance "
                      "during learning", measured=start / peak if peak else None, threshold=0.1,
                basis="low: under a tenth of its peak"),
        Verdict(f"and settles: over the last quarter of epochs its sd (now {end:.3f}) shows no significant trend "
                f"(t = {t:.2f})", abs(t) < 2.0, source="Section 11.7, Fig. 11.2",
                words="eventually settles to some steady constant consistency value", measured=abs(t), threshold=2.0,
                basis="a least-squares slope within two standard errors of 0 (5% two-sided)"),
        Verdict(f"an inactive unit quickly falls silent with little variance: mean output {inactive_mean:.3f} at the "
                f"end, "
                f"peak sd {inactive_peak:.3f} against {peak:.3f} for the active unit",
                inactive_mean < 0.1 and inactive_peak < peak, source="Fig. 11.2",
                words="A typical inactive neuron quickly learns to stay silent. Its dropout variance grows only "
                      "minimally",
                measured=inactive_mean, threshold=0.1, basis="silent: below 0.1, the paper's cut (Fig. 11.3)"),
        Verdict(f"the consistency of active units does not decline in higher layers: mean sd {top:.3f} in the top "
                f"layer, {first:.3f} in the first", top <= first + 2 * noise, source="Fig. 11.3",
                words="Consistency of active neurons does not noticeably decline in the upper layers",
                measured=top - first, threshold=0.0, noise=noise,
                basis="the difference of the two layer means, against twice its standard error"),
    ]

EXPERIMENT = Experiment(
    "dynamics", "Figs. 11.1-11.3", "Sparsity, learning phases and consistency",
    "Dropout training produces sparse activations; an active unit's dropout variance starts low, rises, then "
    "settles while an inactive unit quickly falls silent; and active units stay as consistent in higher layers as in "
    "lower ones.",
    compute, plot, verdicts, needs_study=True)
