"""Section 7.2 and Appendix A: dropout with tanh and rectified linear units.

What forward propagation needs is E(f(S)) ~ f(E(S)) (Eq. 68), not the NWGM. The same small network is trained
with logistic, tanh and rectified linear hidden units on the study's data, and each is measured unit by unit
against Monte Carlo: W against E, and for rectified linear units RL(E(S)) and Eq. 72 (S Gaussian) against
E(RL(S)), split by how far the unit's mean input is from the threshold in dropout standard deviations.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .. import ensemble, means, train
from ._base import Context, Experiment, Numbers, Verdict, mc_precision, worst_ratio
from .network import WITHIN_SD, flat

TRANSFERS = ("logistic", "tanh", "relu")
TRANSFER_LR = {"sgd": 0.1, "adam": 1e-3}


def _train(ctx: Context, transfer: str) -> Any:
    study = ctx.study
    m = ctx.settings.measurements
    hidden = m.transfer_hidden
    config = dataclasses.replace(study.model_config(), transfer=transfer, init_gain=1.0,
                                 sizes=(study.data.input_size, *hidden, study.data.output_size),
                                 keep=(ctx.settings.model.keeps[0], *[ctx.settings.model.keeps[1]] * len(hidden)))
    model = train.build_model(config, seed=ctx.seed)
    # a learning rate all three transfer functions train stably with, for the study's optimizer (rectified units
    # diverge under SGD at 1.0; Adam's 0.1 leaves every unit dead)
    schedule = study.train_config()
    schedule = dataclasses.replace(schedule, epochs=m.transfer_epochs, lr=TRANSFER_LR[schedule.optimizer],
                                   lr_decay=1.0, lr_schedule="exponential")  # a constant rate
    return train.fit(model, study.data, schedule, progress=False, device=ctx.device)


def compute(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"scatter": {}}
    x = ctx.study.inputs()
    n = Numbers()
    for transfer in TRANSFERS:
        result = _train(ctx, transfer)
        net = result.model.eval()
        gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
        mc = ensemble.monte_carlo(net, x, samples=ctx.settings.measurements.samples, generator=gen,
                                  precision=mc_precision(ctx))
        ws = ensemble.weight_scaled(net, x)
        n.add("test_error", result.test_error, "test error %", transfer=transfer)
        for h in range(1, len(mc.layers) - 1):
            e, w, sd = flat(mc.layers[h].E), flat(ws.layers[h].E), np.sqrt(flat(mc.layers[h].Var))
            n.add("mean_abs_e_minus_w", float(np.abs(e - w).mean()), "mean |E - W|", transfer=transfer, layer=h)
            n.add("mean_sd", float(sd.mean()), "mean sd(O)", transfer=transfer, layer=h)
            if transfer != "relu":
                continue
            mu, var = flat(mc.layers[h].E_S), flat(mc.layers[h].Var_S)
            z = np.abs(mu) / np.sqrt(np.maximum(var, 1e-300))
            err_plain = np.abs(e - np.maximum(mu, 0))  # RL(E(S)), Eq. 70
            err72 = np.abs(e - flat(means.relu_expectation_gaussian(mc.layers[h].E_S, mc.layers[h].Var_S)))
            near, far = z < 1, z > 2
            at = {"transfer": transfer, "layer": h}
            for units, where, words in (("near", near, "|E(S)|/sd(S) < 1"), ("far", far, "|E(S)|/sd(S) > 2")):
                n.add("units", int(where.sum()), f"units where {words}", **at, region=units)
                if where.any():
                    n.add("mean_abs_e_minus_relu_of_mean", float(err_plain[where].mean()),
                          f"mean |E - RL(E(S))| where {words}", **at, region=units)
            n.add("mean_abs_e_minus_eq72", float(err72.mean()), "mean |E - Eq. 72|", **at)
            n.add("mean_abs_e_minus_relu_of_mean", float(err_plain.mean()), "mean |E - RL(E(S))|", **at, region="all")
            out["scatter"][f"layer {h}"] = {"z": z[:3000].tolist(), "err": err_plain[:3000].tolist(),
                                            "err72": err72[:3000].tolist()}
    out["numbers"] = n.records()
    return out


def plot(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    n = Numbers.of(r)
    fig, axes = subplots(1, 2, figsize=(13, 4.4))
    for transfer in TRANSFERS:
        rows = list(zip(n.series("mean_abs_e_minus_w", transfer=transfer), n.series("mean_sd", transfer=transfer),
                        strict=True))
        axes[0].plot(range(1, len(rows) + 1), [a / b if b > 0 else np.nan for a, b in rows], "o-", label=transfer)
    axes[0].axhline(1.0, color="k", ls="--", label="one dropout sd")
    axes[0].set(xlabel="hidden layer", ylabel="mean |E - W| / mean sd(O)", title="W against E, per transfer function")
    axes[0].set_yscale("log")
    axes[0].set_xticks(range(1, len(rows) + 1))
    axes[0].legend(fontsize=9, loc="center right")
    for (name, d), marker in zip(r["scatter"].items(), ("o", "x", "^", "s"), strict=False):
        axes[1].scatter(d["z"], np.maximum(d["err"], 1e-8), s=4, marker=marker, color="tab:blue",
                        label=f"RL(E(S)), {name}")
        axes[1].scatter(d["z"], np.maximum(d["err72"], 1e-8), s=4, marker=marker, color="tab:orange",
                        label=f"Eq. 72, {name}")
    axes[1].set_xscale("symlog", linthresh=0.1)
    axes[1].set_yscale("log")
    axes[1].set(xlabel="|E(S)| / sd(S) (distance from the threshold in dropout sd)",
                ylabel="|E(RL(S)) - estimate| (0 drawn at 1e-8)", title="rectified linear units: estimates of E(RL(S))")
    axes[1].legend(fontsize=8, markerscale=3, loc="lower left")
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    out = []
    for transfer in ("tanh", "relu"):
        worst = worst_ratio(n.series("mean_abs_e_minus_w", transfer=transfer), n.series("mean_sd", transfer=transfer))
        out.append(Verdict(
            f"with {transfer} units the deterministic network approximates the ensemble too: mean |E - W| at most "
            f"{worst:.3f} of the mean sd(O) in every hidden layer", worst < 1.0, source="Section 7.2, Eq. 68",
            words="the ensemble averaging property of dropout is preserved to some extent also for rectified linear "
                  "transfer functions", measured=float(worst), threshold=1.0, basis=WITHIN_SD))
    layers = n.coordinates("layer", "units", transfer="relu")
    near_far = [(n.get("mean_abs_e_minus_relu_of_mean", transfer="relu", layer=h, region="near"),
                 n.get("mean_abs_e_minus_relu_of_mean", transfer="relu", layer=h, region="far")) for h in layers
                if all(n.get("units", transfer="relu", layer=h, region=k) > 0 for k in ("near", "far"))]
    worse_near = sum(a > b for a, b in near_far)
    out.append(Verdict(
        f"RL(E(S)) is a worse estimate of E(RL(S)) near the threshold (|E(S)| < sd(S)) than far from it (> 2 sd) in "
        f"{worse_near} of {len(near_far)} layers", bool(near_far) and worse_near == len(near_far),
        source="Section 7.2, Eqs. 72-75",
        words="Eq. (68) is satisfied within each linear portion and will be satisfied around the threshold if the "
              "variance of S is small", measured=float(worse_near), threshold=float(len(near_far)),
        basis="every layer with units on both sides"))
    e72 = list(zip(n.series("mean_abs_e_minus_eq72", transfer="relu"),
                   n.series("mean_abs_e_minus_relu_of_mean", transfer="relu", region="all"), strict=True))
    better = sum(a < b for a, b in e72)
    out.append(Verdict(
        f"Eq. 72 (S Gaussian) estimates E(RL(S)) better than RL(E(S)) in {better} of {len(e72)} layers",
        bool(e72) and better == len(e72), source="Section 7.2, Eq. 72",
        words="E(RL(S)) = lam mu Phi(mu / sigma) + lam sigma / sqrt(2 pi) exp(-mu^2 / 2 sigma^2)",
        measured=float(better), threshold=float(len(e72)), basis="every layer"))
    return out


EXPERIMENT = Experiment(
    "transfer", "Section 7.2, Appendix A", "Dropout with tanh and rectified linear units",
    "The deterministic approximation of the ensemble needs only E(f(S)) ~ f(E(S)) (Eq. 68), which holds for tanh "
    "and, away from the threshold or with small Var(S), for rectified linear units; Eq. 72 gives E(RL(S)) for "
    "Gaussian S.", compute, plot, verdicts, needs_study=True)
