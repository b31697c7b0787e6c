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


# Fig. 11.2's populations: active units end with W >= 0.5 for the input, inactive ones below the paper's 0.1
ACTIVE, INACTIVE = 0.5, 0.1
# "settles": over the last quarter of the epochs the fitted change of the mean sd, widened by 2 standard errors,
# stays within this fraction of its level (an equivalence test: noise cannot make it pass)
SETTLE_TOLERANCE = 0.1
# "starts out with low dropout variance": at most half its peak variance (Section 11.7's phases, as in training.py)
START_SD_FRACTION = 0.5**0.5


def trend_change(y: list[float]) -> tuple[float, float]:
    """(change, its standard error): the least-squares line's rise from the first to the last point of y."""
    y = np.asarray(y, dtype=np.float64)
    if len(y) < 3:
        raise ValueError(f"expected at least 3 points for a trend, got {len(y)}")
    x = np.arange(len(y), dtype=np.float64) - (len(y) - 1) / 2
    slope = float((x * (y - y.mean())).sum() / (x * x).sum())
    resid = y - y.mean() - slope * x
    se = float(np.sqrt((resid**2).sum() / (len(y) - 2) / (x * x).sum()))
    return slope * (len(y) - 1), se * (len(y) - 1)


def _consistency(ctx: Context, n_hidden: int, k: int, n: Numbers) -> dict[str, Any]:
    """Fig. 11.3: per hidden layer and snapshot epoch, the mean dropout sd of the units active at the end (W > 0.1)
    with its 5-95% band; the end's numbers go into ``n``."""
    study = ctx.study
    _, ws_final = mc_stats(ctx, "last", samples=k)
    consistency: dict[str, Any] = {}
    for h in range(1, n_hidden + 1):
        mask = (ws_final.layers[h].E > 0.1).cpu()
        series = []
        for epoch in study.epochs:
            mc, _ = mc_stats(ctx, epoch, samples=k)
            sd_h = mc.layers[h].Var.sqrt().cpu()[mask].double().numpy()
            series.append([float(sd_h.mean()), float(np.percentile(sd_h, 5)), float(np.percentile(sd_h, 95))]
                          if sd_h.size else [None] * 3)  # no active unit in this layer
        consistency[f"layer {h}"] = series
        sd_end = mc_stats(ctx, "last", samples=k)[0].layers[h].Var.sqrt().cpu()[mask].double().numpy()
        n.add("active_units", int(sd_end.size), "active units (W > 0.1 at the end)", layer=h)
        if sd_end.size:
            n.add("active_mean_sd_end", series[-1][0], "active units: mean dropout sd at the end", layer=h)
            n.add("active_mean_sd_end_se", float(sd_end.std() / np.sqrt(sd_end.size)),
                  "active units: SE of the mean dropout sd at the end", layer=h)
    return consistency


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
    # Fig. 11.2: one input, the populations of active (W >= 0.5 at the end) and inactive (W < 0.1) units of the last
    # hidden layer, over training: each unit's dropout mean and sd, summarized over the population
    x = study.inputs(1)
    with modes.expect(final), torch.no_grad():
        w_final = final.trace(x).O[n_hidden][0].cpu().numpy()
    populations = {"active": np.flatnonzero(w_final >= ACTIVE), "inactive": np.flatnonzero(w_final < INACTIVE)}
    k = ctx.settings.measurements.trajectory_samples
    curves = {name: {"mean": [], "mean_p5": [], "mean_p95": [], "sd": [], "sd_p5": [], "sd_p95": []}
              for name in populations}
    for epoch in study.epochs:
        s = _samples(study.model(epoch), x, n_hidden, list(range(len(w_final))), k, ctx.seed)
        for name, units in populations.items():
            means, sds = s[:, units].mean(0), s[:, units].std(0)
            c = curves[name]
            if not units.size:
                for key in c:
                    c[key].append(None)
                continue
            c["mean"].append(float(means.mean()))
            c["sd"].append(float(sds.mean()))
            for key, values in (("mean", means), ("sd", sds)):
                c[f"{key}_p5"].append(float(np.percentile(values, 5)))
                c[f"{key}_p95"].append(float(np.percentile(values, 95)))
    out["phases"] = curves
    out["epochs"] = study.epochs
    for name, units in populations.items():
        n.add("units", int(units.size), "units in the population", unit=f"{name} units")
        sd = curves[name]["sd"]
        if not units.size:
            continue
        n.add("sd_start", sd[0], "mean dropout sd at the start", unit=f"{name} units")
        n.add("sd_peak", max(sd), "peak of the mean dropout sd", unit=f"{name} units")
        n.add("sd_end", sd[-1], "mean dropout sd at the end", unit=f"{name} units")
        tail = sd[-max(3, len(sd) // 4):]
        change, change_se = trend_change(tail)
        n.add("sd_tail_change", change, "change of the mean sd over the last quarter of epochs (fitted line)",
              unit=f"{name} units")
        n.add("sd_tail_change_se", change_se, "its standard error", unit=f"{name} units")
        n.add("sd_tail_level", float(np.mean(tail)), "mean sd over the last quarter of epochs", unit=f"{name} units")
        quiet = [i for i, m in enumerate(curves[name]["mean"]) if m < INACTIVE]
        n.add("first_silent_epoch", study.epochs[quiet[0]] if quiet else -1,
              "first snapshot epoch whose population mean output is below 0.1 (-1: never)", unit=f"{name} units")
    out["consistency"] = _consistency(ctx, n_hidden, k, n)
    out["numbers"] = n.records()
    return out


def plot(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    fig, axes = subplots(1, 3, figsize=(17, 4.4))
    for name, h in r["sparsity"].items():
        draw_hist(axes[0], h, label=name)
    axes[0].set_yscale("log")
    axes[0].set(title="Fig. 11.1: trained activations per layer", xlabel="activation W (1,000 test inputs)",
                ylabel="density")
    axes[0].legend(fontsize=8)
    for name, color in (("active", "tab:red"), ("inactive", "tab:blue")):
        c = r["phases"][name]
        if not c["mean"] or c["mean"][0] is None:
            continue
        axes[1].plot(r["epochs"], c["sd"], color=color, label=f"{name} units: mean dropout sd")
        axes[1].fill_between(r["epochs"], c["sd_p5"], c["sd_p95"], color=color, alpha=0.2,
                             label=f"{name} units: 5-95% of units")
    axes[1].set(title="Fig. 11.2: learning phases, one input, populations of units", xlabel="epoch",
                ylabel="dropout sd of O")
    axes[1].legend(fontsize=8)
    for name, series in r["consistency"].items():
        line, = axes[2].plot(r["epochs"], [np.nan if s[0] is None else s[0] for s in series], marker="o", ms=3,
                             label=f"{name}: mean")
        axes[2].fill_between(r["epochs"], [np.nan if s[1] is None else s[1] for s in series],
                             [np.nan if s[2] is None else s[2] for s in series], color=line.get_color(), alpha=0.12)
    axes[2].set(title="Fig. 11.3: consistency of active units (bands: 5-95% of units)", xlabel="epoch",
                ylabel="dropout sd(O)")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    sparse = n.series("fraction_below_0_1")
    layers = n.coordinates("layer", "active_units")
    if all(n.get("active_units", layer=h) > 0 for h in (layers[0], layers[-1])):
        first, se_first, top, se_top = (n.get(k, layer=h) for h in (layers[0], layers[-1])
                                        for k in ("active_mean_sd_end", "active_mean_sd_end_se"))
    else:  # a layer without active units: nothing to compare
        first, se_first, top, se_top = 0.0, 0.0, np.inf, 0.0
    noise = float(np.hypot(se_first, se_top))
    out = [Verdict(f"trained representations are sparse: {100 * min(sparse):.0f}-{100 * max(sparse):.0f}% of hidden "
                   "activations are below 0.1", min(sparse) > 0.5, source="Section 11.7, Fig. 11.1",
                   words="sparse representations tend to emerge", measured=min(sparse), threshold=0.5,
                   basis="most activations below 0.1, the paper's own cut between active and inactive (Fig. 11.3)")]
    active, inactive = (n.get("units", unit=f"{p} units") for p in ("active", "inactive"))
    if active and inactive:
        start, peak, level, change, change_se = (n.get(k, unit="active units") for k in (
            "sd_start", "sd_peak", "sd_tail_level", "sd_tail_change", "sd_tail_change_se"))
        worst = (abs(change) + 2 * change_se) / level if level > 0 else np.inf
        quiet_peak, quiet_epoch = n.get("sd_peak", unit="inactive units"), n.get("first_silent_epoch",
                                                                               unit="inactive units")
        epochs = r["epochs"][-1]
        out += [
            Verdict(f"active units start with low dropout variance and it rises: the {active} active units' mean sd "
                    f"is {start:.3f} at the start, {peak:.3f} at its peak",
                    start <= START_SD_FRACTION * peak, source="Section 11.7, Fig. 11.2",
                    words="a typical active neuron starts out with low dropout variance, experiences an increase in "
                          "variance during learning", measured=start / peak if peak else None,
                    threshold=START_SD_FRACTION, basis="low: a variance at most half its peak (sd at most 0.71 of it)"),
            Verdict(f"and settles: over the last quarter of the epochs their mean sd ({level:.3f}) changes by "
                    f"{change:+.4f} +- {change_se:.4f}", worst <= SETTLE_TOLERANCE, source="Section 11.7, Fig. 11.2",
                    words="eventually settles to some steady constant consistency value", measured=worst,
                    threshold=SETTLE_TOLERANCE,
                    basis=f"an equivalence test: the fitted change plus two standard errors within "
                          f"{100 * SETTLE_TOLERANCE:g}% of the level"),
            Verdict(f"inactive units quickly fall silent with little variance: the {inactive} inactive units' mean "
                    f"output is below 0.1 from epoch {quiet_epoch} of {epochs}; their mean sd peaks at "
                    f"{quiet_peak:.3f} against {peak:.3f} for the active units",
                    0 <= quiet_epoch <= epochs / 4 and quiet_peak <= 0.5 * peak, source="Fig. 11.2",
                    words="A typical inactive neuron quickly learns to stay silent. Its dropout variance grows only "
                          "minimally", measured=quiet_peak / peak if peak else None, threshold=0.5,
                    basis="silent (below 0.1) within the first quarter of the epochs, and a peak sd at most half the "
                          "active units'"),
        ]
    else:
        out.append(Verdict(f"Fig. 11.2's populations: not measured ({active} active, {inactive} inactive units for "
                           "the input)", False, source="Fig. 11.2", measurable=False))
    out.append(Verdict(f"the consistency of active units does not decline in higher layers: mean sd {top:.3f} in the "
                       f"top layer, {first:.3f} in the first", top <= first + 2 * noise, source="Fig. 11.3",
                       words="Consistency of active neurons does not noticeably decline in the upper layers",
                       measured=top - first, threshold=0.0, noise=noise,
                       basis="the difference of the two layer means, against twice its standard error"))
    return out


EXPERIMENT = Experiment(
    "dynamics", "Figs. 11.1-11.3", "Sparsity, learning phases and consistency",
    "Dropout training produces sparse activations; an active unit's dropout variance starts low, rises, then "
    "settles while an inactive unit quickly falls silent; and active units stay as consistent in higher layers as in "
    "lower ones.",
    compute, plot, verdicts, needs_study=True)
