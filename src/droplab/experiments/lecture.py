"""The lecture (CS/DS 541 Class 14) and the article: L2 as Gaussian input noise, ensemble error, the worked
example, co-adaptation, and the p(1 - p) penalty of dropout on a linear unit."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .. import modes, theory, train
from ..data import Dataset
from ..net import DropoutMLP
from ._base import Context, Experiment, Numbers, Verdict
from .gradients import masks

F64 = torch.float64


def l2_as_noise(rng: np.random.Generator) -> dict[str, Any]:
    """E[((x + n)^T w - y)^2] = f(w) + alpha ||w||^2 for n ~ N(0, alpha I), measured over many noise draws."""
    m, d, alpha = 200, 5, 0.3
    x = rng.normal(size=(m, d))
    y = x @ rng.normal(size=d) + 0.1 * rng.normal(size=m)
    rows = []
    for _ in range(4):
        w = rng.normal(size=d)
        f = np.mean((x @ w - y) ** 2)
        noise = rng.normal(scale=np.sqrt(alpha), size=(4000, m, d))
        noisy = np.mean(((x + noise) @ w - y) ** 2)
        rows.append((float(noisy), float(theory.l2_as_gaussian_noise(f, torch.from_numpy(w), alpha)), float(f)))
    return {"rows": rows, "alpha": alpha}


def ensemble_error(rng: np.random.Generator) -> dict[str, Any]:
    """MSE of the average of n correlated unbiased predictors against v/n + (n-1)c/n."""
    v, ns, out = 1.0, [1, 2, 3, 5, 10, 20], {}
    for c in (0.0, 0.5, 1.0):
        # eps_i = sqrt(c) z_0 + sqrt(v - c) z_i: variance v, pairwise covariance c (c = v included)
        eps = np.sqrt(c) * rng.normal(size=(40_000, 1)) + np.sqrt(v - c) * rng.normal(size=(40_000, 20))
        out[str(c)] = {"measured": [float(np.mean(eps[:, :n].mean(1) ** 2)) for n in ns],
                       "formula": [float(theory.ensemble_error(v, c, n)) for n in ns]}
    return {"n": ns, "curves": out}


def worked_example() -> list[float]:
    net = DropoutMLP((3, 3, 2), transfer="linear", output="linear", keep=0.5).double()
    with torch.no_grad():
        net.linears[0].weight.copy_(torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]))
        net.linears[1].weight.copy_(torch.tensor([[1.0, 2, 3], [4, 5, 6]]))
        for lin in net.linears:
            lin.bias.zero_()
    m = torch.tensor([[1.0, 0.0, 1.0]], dtype=F64)
    with modes.replay(net, {"gates.0": m, "gates.1": m}), torch.no_grad():
        return net(torch.tensor([[0.0, 1.0, 2.0]], dtype=F64))[0].tolist()


def co_adaptation(seed: int, epochs: int) -> dict[str, Any]:
    """Start at the lecture's co-adapted W = [[2,-3,1,-1],[2,-3,-1,1]] (y = 2x1 - 3x2 through h1 + h2) and train
    with and without dropout on the hidden units; the +-1 weights cancel only when both pathways are present."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2000, 4, generator=gen, dtype=F64)
    y = (2 * x[:, 0] - 3 * x[:, 1]).unsqueeze(1)
    data = Dataset("co-adaptation", x[:1500], y[:1500], x[1500:1750], y[1500:1750], x[1750:], y[1750:], 0)
    out = {}
    for label, keep in (("without dropout", 1.0), ("with dropout", 0.5)):
        net = DropoutMLP((4, 2, 1), transfer="linear", output="linear", keep=(1.0, keep), scaling="inverted").double()
        with torch.no_grad():
            net.linears[0].weight.copy_(torch.tensor([[2.0, -3, 1, -1], [2, -3, -1, 1]]))
            net.linears[1].weight.copy_(torch.tensor([[0.5, 0.5]]))
            for lin in net.linears:
                lin.bias.zero_()
        before = float(net.linears[0].weight.detach()[:, 2:].abs().mean())
        config = train.TrainConfig(epochs=epochs, batch_size=50, lr=0.01, momentum_start=0.5, momentum_end=0.9,
                                   momentum_epochs=5, loss="squared", seed=seed, patience=None)
        result = train.fit(net, data, config, progress=False)
        w1 = result.model.linears[0].weight.detach()
        w2 = result.model.linears[1].weight.detach()
        xt, yt = data.x_test, data.y_test
        alone = [float(((xt @ w1[k]) * w2[0, k] * 2 - yt[:, 0]).square().mean()) for k in range(2)]
        out[label] = {"co-adapted weights before": before, "co-adapted weights after": float(w1[:, 2:].abs().mean()),
                      "test MSE": result.test_error, "pathway alone MSE": alone}
    return out


def linear_penalty() -> dict[str, Any]:
    """Exact E[E_D] - E_ENS for a linear unit over all masks, against 1/2 sum p(1-p) w^2 I^2, as p varies."""
    gen = torch.Generator().manual_seed(0)
    inputs, w, t = torch.randn(5, generator=gen, dtype=F64), torch.randn(5, generator=gen, dtype=F64), 0.5
    ps, measured, formula = np.linspace(0.05, 0.95, 19), [], []
    for p in ps:
        e_d = sum(prob * 0.5 * float((t - (d * w * inputs).sum()) ** 2)
                  for d, prob in masks(torch.full((5,), float(p), dtype=F64)))
        e_ens = 0.5 * float((t - (p * w * inputs).sum()) ** 2)
        measured.append(e_d - e_ens)
        formula.append(float(theory.linear_unit_penalty(w, inputs, torch.full((5,), float(p), dtype=F64))))
    return {"p": ps.tolist(), "measured": measured, "formula": formula}


def compute(ctx: Context) -> dict[str, Any]:
    rng = np.random.default_rng(ctx.seed)
    out = {"l2": l2_as_noise(rng), "ensemble": ensemble_error(rng), "worked": worked_example(),
           "coadapt": co_adaptation(ctx.seed, ctx.settings.measurements.coadapt_epochs), "penalty": linear_penalty()}
    n = Numbers()
    n.add("worked_example", out["worked"], "worked example output (lecture: [60, 132])")
    for i, (noisy, predicted, plain) in enumerate(out["l2"]["rows"], start=1):
        n.add("noisy_loss", noisy, "loss with Gaussian input noise", weights=i)
        n.add("l2_loss", predicted, "f(w) + alpha |w|^2", weights=i)
        n.add("plain_loss", plain, "f(w)", weights=i)
    size = out["ensemble"]["n"][-1]
    for c, curve in out["ensemble"]["curves"].items():
        n.add("ensemble_mse", curve["measured"][-1], f"ensemble MSE at n = {size}, measured", c=c)
        n.add("ensemble_mse_formula", curve["formula"][-1], f"ensemble MSE at n = {size}, v/n + (n-1)c/n", c=c)
    for label, row in out["coadapt"].items():
        n.add("coadapted_weights_before", row["co-adapted weights before"], "mean |w| of the x3, x4 columns before",
              training=label)
        n.add("coadapted_weights_after", row["co-adapted weights after"], "mean |w| of the x3, x4 columns after",
              training=label)
    pen = out["penalty"]
    n.add("penalty_gap", float(np.max(np.abs(np.subtract(pen["measured"], pen["formula"])))),
          "linear-unit penalty: max |measured - p(1-p) formula|")
    n.add("penalty_argmax", pen["p"][int(np.argmax(pen["measured"]))], "linear-unit penalty: p of the largest penalty")
    out["numbers"] = n.records()
    return out


def plot(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    fig, axes = subplots(1, 4, figsize=(19, 4.2))
    rows = np.array(r["l2"]["rows"])
    axes[0].plot(rows[:, 1], rows[:, 0], "o")
    lim = [rows[:, :2].min(), rows[:, :2].max()]
    axes[0].plot(lim, lim, "k", lw=0.5)
    axes[0].set_xlabel("f(w) + alpha |w|^2")
    axes[0].set_ylabel("loss with Gaussian input noise")
    axes[0].set_title("L2 = Gaussian input noise")
    for c, curve in r["ensemble"]["curves"].items():
        axes[1].plot(r["ensemble"]["n"], curve["measured"], "o", label=f"measured, c = {c}")
        axes[1].plot(r["ensemble"]["n"], curve["formula"], "-", color=axes[1].lines[-1].get_color())
    axes[1].set_xlabel("ensemble size n")
    axes[1].set_title("ensemble MSE against v/n + (n-1)c/n")
    axes[1].set_ylabel("mean squared error of the average")
    axes[1].legend(fontsize=8, loc="center right", bbox_to_anchor=(1.0, 0.3))
    labels = list(r["coadapt"])
    axes[2].bar([f"{lab}\nbefore" for lab in labels] + [f"{lab}\nafter" for lab in labels],
                [r["coadapt"][lab]["co-adapted weights before"] for lab in labels] +
                [r["coadapt"][lab]["co-adapted weights after"] for lab in labels])
    axes[2].set_title("co-adapted weights (x3, x4 columns)")
    axes[2].tick_params(axis="x", labelsize=8)
    axes[2].set_ylabel("mean |w| of the x3, x4 columns")
    axes[3].plot(r["penalty"]["p"], r["penalty"]["measured"], "o", label="exact E[E_D] - E_ENS")
    axes[3].plot(r["penalty"]["p"], r["penalty"]["formula"], "-", label="1/2 sum p(1-p) w^2 I^2")
    axes[3].set_xlabel("keep probability p")
    axes[3].set_title("dropout penalty on a linear unit")
    axes[3].legend(fontsize=9)
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    sources = ["lecture, worked example", "lecture, L2 as noise", "lecture, ensembles", "lecture, co-adaptation",
               "article"]
    return [dataclasses.replace(v, group="lecture", source=src) for v, src in zip(_verdicts(r), sources, strict=True)]


def _verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    rows = np.array(r["l2"]["rows"])
    rel = float(np.max(np.abs(rows[:, 0] - rows[:, 1]) / rows[:, 1]))
    ens = max(abs(c["measured"][i] - c["formula"][i]) / c["formula"][i]
              for c in r["ensemble"]["curves"].values() for i in range(len(r["ensemble"]["n"])))
    co = r["coadapt"]
    after, before = co["with dropout"]["co-adapted weights after"], co["with dropout"]["co-adapted weights before"]
    plain = co["without dropout"]["co-adapted weights after"]
    gap, p_max, worked = n.get("penalty_gap"), n.get("penalty_argmax"), n.get("worked_example")
    return [
        Verdict(f"the worked example gives {worked}", worked == [60, 132],
                words="y = [60, 132]", paper="[60, 132]", measured=None, basis="exact (integers)"),
        Verdict(f"training with Gaussian input noise equals f(w) + alpha |w|^2 within {100 * rel:.2f}%", rel < 0.01,
                words="L2 regularization is equivalent to Gaussian noise augmentation of the inputs", measured=rel,
                threshold=0.01, basis="4,000 noise draws of 200 examples: about 10 Monte Carlo standard errors"),
        Verdict(f"the ensemble error follows v/n + (n-1)c/n within {100 * ens:.1f}% for c in 0, v/2, v", ens < 0.03,
                words="the expected squared error of the ensemble is v/n + (n-1)c/n", measured=ens, threshold=0.03,
                basis="40,000 draws: a mean square has relative SE sqrt(2/40,000) = 0.7%; 3% is about 4 SE"),
        Verdict(f"dropout undoes co-adaptation: the cancelling x3, x4 weights go from {before:.2f} to {after:.2f} with "
                f"dropout, and stay at {plain:.2f} without", after < 0.5 * before and plain > 0.9,
                words="dropout discourages co-adaptation (paraphrase of the lecture's example)",
                measured=after / before,
                threshold=0.5, basis="at least halved with dropout; kept (above 0.9) without"),
        Verdict(f"dropout on a linear unit adds exactly the penalty 1/2 p(1-p) w^2 I^2 (largest difference {gap:.1e}), "
                f"largest at p = {p_max:.2f}", gap < 1e-10 and abs(p_max - 0.5) < 1e-9,
                words="dropout is an L2 penalty scaled by p(1-p), which is largest at p = 0.5", paper="p = 0.5",
                measured=gap, threshold=1e-10, basis="float64 rounding, with room; p on a grid that contains 0.5"),
    ]


EXPERIMENT = Experiment(
    "lecture", "Lecture and article", "L2 and noise, ensembles, the worked example, co-adaptation, the p(1-p) penalty",
    "For linear regression, L2 regularization equals Gaussian input noise; an ensemble's error is v/n + (n-1)c/n; "
    "the worked example outputs [60, 132]; dropout breaks co-adaptation; and dropout on a linear unit is an L2 "
    "penalty scaled by p(1-p), largest at p = 0.5.", compute, plot, verdicts)
