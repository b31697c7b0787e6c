"""Figs. 11.1-11.3: sparsity of trained activations, the three learning phases, consistency per layer."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import modes
from ._base import Context, Experiment, Verdict, draw_hist, hist
from .network import mc_stats


@torch.no_grad()
def _samples(net: Any, x: torch.Tensor, layer: int, units: list[int], k: int, seed: int) -> np.ndarray:
    """k dropout samples of the given units' outputs for one input: (k, len(units))."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    with modes.sample(net, generator=gen):
        trace = net.trace(x.expand(k, -1))
    return trace.O[layer][:, units].double().cpu().numpy()


def compute(ctx: Context) -> dict[str, Any]:
    study = ctx.study
    final = study.model("last")
    data_x = study.data.x_test[:1000].to(ctx.device)
    with modes.expect(final), torch.no_grad():
        trace = final.trace(data_x)
    n_hidden = len(trace.O) - 2
    out: dict[str, Any] = {"sparsity": {}, "numbers": {}, "phases": {}, "consistency": {}}
    for h in range(1, n_hidden + 1):
        o = trace.O[h].double().cpu().numpy()
        out["sparsity"][f"layer {h}"] = hist(o, 40, (0, 1))
        out["numbers"][f"layer {h}: fraction of activations below 0.1"] = float(np.mean(o < 0.1))
        out["numbers"][f"layer {h}: median activation"] = float(np.median(o))
    # Fig. 11.2: one input, an active and an inactive unit of the last hidden layer, over training
    x = study.inputs(1)
    with modes.expect(final), torch.no_grad():
        w_final = final.trace(x).O[n_hidden][0].cpu().numpy()
    active, inactive = int(np.argmax(w_final)), int(np.argmin(w_final))
    k = min(1000, ctx.settings["samples"])
    for name, unit in (("active", active), ("inactive", inactive)):
        curves = {"mean": [], "p5": [], "p95": [], "sd": []}
        for epoch in study.epochs:
            s = _samples(study.model(epoch), x, n_hidden, [unit], k, ctx.seed)[:, 0]
            curves["mean"].append(float(s.mean()))
            curves["p5"].append(float(np.percentile(s, 5)))
            curves["p95"].append(float(np.percentile(s, 95)))
            curves["sd"].append(float(s.std()))
        out["phases"][name] = curves
    out["epochs"] = study.epochs
    sd = out["phases"]["active"]["sd"]
    sd_start, sd_max, sd_end = sd[0], max(sd), sd[-1]
    out["numbers"].update({"active unit: dropout sd at start, peak, end": [sd_start, sd_max, sd_end],
                           "inactive unit: dropout sd at end": out["phases"]["inactive"]["sd"][-1],
                           "inactive unit: mean output at end": out["phases"]["inactive"]["mean"][-1]})
    # Fig. 11.3: dropout sd of active units (W > 0.1 at the end) per layer over training
    _, ws_final = mc_stats(ctx, "last")
    for h in range(1, n_hidden + 1):
        mask = (ws_final.layers[h].E > 0.1).cpu()
        series = []
        for epoch in study.epochs:
            mc, _ = mc_stats(ctx, epoch)
            sd = mc.layers[h].Var.sqrt().cpu()[mask]
            series.append([float(sd.mean()), float(np.percentile(sd.numpy(), 5)), float(np.percentile(sd.numpy(), 95))]
                          if sd.numel() else [float("nan")] * 3)
        out["consistency"][f"layer {h}"] = series
        out["numbers"][f"layer {h}: mean dropout sd of active units at the end"] = series[-1][0]
    return out


def plot(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.4))
    for name, h in r["sparsity"].items():
        draw_hist(axes[0], h, label=name)
    axes[0].set_yscale("log")
    axes[0].set_title("Fig. 11.1: trained activations per layer", fontsize=9)
    axes[0].legend(fontsize=6)
    for name, color in (("active", "tab:red"), ("inactive", "tab:blue")):
        c = r["phases"][name]
        axes[1].plot(r["epochs"], c["mean"], color=color, label=f"{name} unit")
        axes[1].fill_between(r["epochs"], c["p5"], c["p95"], color=color, alpha=0.2)
    axes[1].set_title("Fig. 11.2: learning phases (mean, 5-95%)", fontsize=9)
    axes[1].set_xlabel("epoch")
    axes[1].legend(fontsize=6)
    for name, series in r["consistency"].items():
        axes[2].plot(r["epochs"], [s[0] for s in series], marker="o", label=name)
    axes[2].set_title("Fig. 11.3: dropout sd of active units", fontsize=9)
    axes[2].set_xlabel("epoch")
    axes[2].legend(fontsize=6)
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = r["numbers"]
    layers = sorted(k.split(":")[0] for k in n if k.endswith("fraction of activations below 0.1"))
    sparse = [n[f"{layer}: fraction of activations below 0.1"] for layer in layers]
    start, peak, end = n["active unit: dropout sd at start, peak, end"]
    sds = [n[f"{layer}: mean dropout sd of active units at the end"] for layer in layers]
    return [
        Verdict(f"trained representations are sparse: {100 * min(sparse):.0f}-{100 * max(sparse):.0f}% of hidden "
                "activations are below 0.1", min(sparse) > 0.5),
        Verdict(f"an active unit's dropout sd rises from {start:.3f} to a peak of {peak:.3f} and settles at {end:.3f}",
                peak > start and end <= peak),
        Verdict("an inactive unit stays silent with little variance: mean output "
                f"{n['inactive unit: mean output at end']:.3f}"
                f", sd {n['inactive unit: dropout sd at end']:.3f} at the end",
                n["inactive unit: dropout sd at end"] <= end),
        Verdict(f"the consistency of active units does not degrade in higher layers: sd of the top layer "
                f"{sds[-1]:.3f}, of the first {sds[0]:.3f}", sds[-1] <= 1.5 * sds[0]),
    ]


EXPERIMENT = Experiment(
    "dynamics", "Figs. 11.1-11.3", "Sparsity, learning phases and consistency",
    "Dropout training produces sparse activations; an active unit's dropout variance rises then settles while an "
    "inactive unit quickly falls silent; and active units stay as consistent in higher layers as in lower ones.",
    compute, plot, verdicts, needs_study=True)
