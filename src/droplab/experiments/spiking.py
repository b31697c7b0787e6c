"""Section 10: spiking, dropout and deterministic networks agree on average (Fig. 10.2); backpercolation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import ensemble
from ..net import DropoutMLP
from ._base import Context, Experiment, Verdict
from .network import flat


def compute_three_networks(ctx: Context) -> dict[str, Any]:
    dropout_net = ctx.study.model("last")
    config = {**dropout_net.config(), "gate": "spiking"}  # same weights; spikes of size r = the keep rates
    spiking_net = DropoutMLP.from_config(config).to(ctx.device).eval()
    spiking_net.load_state_dict(dropout_net.state_dict())
    x = ctx.study.inputs()
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    k = ctx.settings["samples"]
    w = ensemble.weight_scaled(dropout_net, x)
    nets = {"dropout": dropout_net, "spiking": spiking_net}
    stats = {name: ensemble.monte_carlo(net, x, samples=k, generator=gen) for name, net in nets.items()}
    out: dict[str, Any] = {"layers": {}, "numbers": {}}
    for h in range(1, len(w.layers)):
        row = {"W": flat(w.layers[h].E)[:2000].tolist()}
        for name, st in stats.items():
            row[name] = flat(st.layers[h].E)[:2000].tolist()
            out["numbers"][f"layer {h}: mean |E({name}) - W|"] = float(np.abs(flat(st.layers[h].E) -
                                                                            flat(w.layers[h].E)).mean())
            out["numbers"][f"layer {h}: mean Var({name})"] = float(flat(st.layers[h].Var).mean())
        out["layers"][f"layer {h}"] = row
    agree = {name: float((st.output.E.argmax(1) == w.output.E.argmax(1)).float().mean()) for name, st in stats.items()}
    out["numbers"].update({f"predicted class agrees with W ({name})": a for name, a in agree.items()})
    return out


def plot_three_networks(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    layers = list(r["layers"])
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3.2), squeeze=False)
    for ax, name in zip(axes[0], layers, strict=True):
        d = r["layers"][name]
        ax.scatter(d["W"], d["dropout"], s=3, label="dropout network")
        ax.scatter(d["W"], d["spiking"], s=3, label="spiking network")
        ax.plot([0, 1], [0, 1], "k", lw=0.5)
        ax.set_xlabel("W (deterministic network)")
        ax.set_title(f"Fig. 10.2: {name}", fontsize=9)
    axes[0, 0].set_ylabel("ensemble mean E")
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return fig


def verdicts_three_networks(r: dict[str, Any]) -> list[Verdict]:
    n = r["numbers"]
    last = max(int(k.split()[1].rstrip(":")) for k in n if k.startswith("layer"))
    out = []
    for name in ("dropout", "spiking"):
        gap = n[f"layer {last}: mean |E({name}) - W|"]
        agree = n[f"predicted class agrees with W ({name})"]
        out.append(Verdict(f"the {name} network's average output matches the deterministic network: mean |E - W| "
                           f"{gap:.4f} at the output, same predicted class for {100 * agree:.0f}% of inputs",
                           gap < 0.05 and agree >= 0.8))
    return out


THREE_NETWORKS = Experiment(
    "spiking", "Section 10.1, Fig. 10.2", "Spiking, dropout and deterministic networks",
    "A network of stochastic spiking units (spike of size r with probability O), the dropout network with keep "
    "rates r and the deterministic network with weights scaled by r give approximately the same average outputs.",
    compute_three_networks, plot_three_networks, verdicts_three_networks, needs_study=True)


# ------------------------------------------------------------------------------------------- backpercolation
def compute_backpercolation(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"curves": {}, "numbers": {}}
    for label, backward in (("backpropagation", None), ("backpercolation, p = f'(S)", "derivative"),
                            ("backpercolation, p = 0.5 fixed", 0.5)):
        result = ctx.study.train_variant(backward=backward)
        out["curves"][label] = [row["test_error"] for row in result.history]
        out["numbers"][f"{label}: test error at the best validation epoch"] = result.test_error
    return out


def plot_backpercolation(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, curve in r["curves"].items():
        ax.plot(range(1, len(curve) + 1), curve, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.set_yscale("log")
    ax.set_title("Section 10.2: backpercolation against backpropagation", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def verdicts_backpercolation(r: dict[str, Any]) -> list[Verdict]:
    n = r["numbers"]
    bp = n["backpropagation: test error at the best validation epoch"]
    perc = n["backpercolation, p = f'(S): test error at the best validation epoch"]
    return [Verdict(f"backpercolation (errors kept with probability f'(S), passed whole) learns: test error "
                    f"{perc:.2f}% against {bp:.2f}% with backpropagation, same budget", perc <= bp + 5.0)]


BACKPERCOLATION = Experiment(
    "backpercolation", "Section 10.2", "Backpercolation against backpropagation",
    "Backpropagation is the ensemble average of dropout in the backward pass with keep rates f'(S); training "
    "with such sampled backward passes (backpercolation) still learns.",
    compute_backpercolation, plot_backpercolation, verdicts_backpercolation, needs_study=True)
