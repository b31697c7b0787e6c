"""Section 10: spiking, dropout and deterministic networks agree on average (Fig. 10.2); backpercolation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import ensemble, modes, train
from ..net import DropoutMLP
from ._base import Context, Experiment, Verdict, binomial_se
from .network import WITHIN_SD, flat, mc_stats


def compute_three_networks(ctx: Context) -> dict[str, Any]:
    dropout_net = ctx.study.model("last")
    config = {**dropout_net.config(), "gate": "spiking"}  # same weights; spikes of size r = the keep rates
    spiking_net = DropoutMLP.from_config(config).to(ctx.device).eval()
    spiking_net.load_state_dict(dropout_net.state_dict())
    x = ctx.study.inputs()
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    k = ctx.settings["samples"]
    w = ensemble.weight_scaled(dropout_net, x)
    stats = {"dropout": mc_stats(ctx, "last")[0],  # the study network's own measurement (Figs. 9.3-9.15)
             "spiking": ensemble.monte_carlo(spiking_net, x, samples=k, generator=gen)}
    out: dict[str, Any] = {"layers": {}, "numbers": {}}
    for h in range(1, len(w.layers)):
        row = {"W": flat(w.layers[h].E)[:2000].tolist()}
        for name, st in stats.items():
            row[name] = flat(st.layers[h].E)[:2000].tolist()
            out["numbers"][f"layer {h}: mean |E({name}) - W|"] = float(np.abs(flat(st.layers[h].E) -
                                                                            flat(w.layers[h].E)).mean())
            out["numbers"][f"layer {h}: mean sd(O) ({name})"] = float(np.sqrt(flat(st.layers[h].Var)).mean())
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
        ax.set_title(f"Fig. 10.2: {name}")
    axes[0, 0].set_ylabel("ensemble mean E")
    axes[0, 0].legend(fontsize=9)
    fig.tight_layout()
    return fig


def verdicts_three_networks(r: dict[str, Any]) -> list[Verdict]:
    n = r["numbers"]
    layers = sorted({int(k.split()[1].rstrip(":")) for k in n if k.startswith("layer")})
    out = []
    for name in ("dropout", "spiking"):
        ratio = max(n[f"layer {h}: mean |E({name}) - W|"] / max(n[f"layer {h}: mean sd(O) ({name})"], 1e-300)
                    for h in layers)
        agree = n[f"predicted class agrees with W ({name})"]
        out.append(Verdict(
            f"the {name} network's average matches the deterministic network in every layer: mean |E - W| at most "
            f"{ratio:.3f} of the mean sd(O); same predicted class for {100 * agree:.0f}% of inputs", ratio < 1.0,
            source="Section 10.1, Fig. 10.2",
            words="the spiking, dropout and deterministic networks give approximately the same average outputs "
                  "(paraphrase)", measured=float(ratio), threshold=1.0, basis=WITHIN_SD))
    return out


THREE_NETWORKS = Experiment(
    "spiking", "Section 10.1, Fig. 10.2", "Spiking, dropout and deterministic networks",
    "A network of stochastic spiking units (spike of size r with probability O), the dropout network with keep "
    "rates r and the deterministic network with weights scaled by r give approximately the same average outputs.",
    compute_three_networks, plot_three_networks, verdicts_three_networks, needs_study=True)


# ------------------------------------------------------------------------------------------- backpercolation
def _weight_gradients(net: DropoutMLP, x: torch.Tensor, y: torch.Tensor,
                      noise: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss gradient of the weights below the output layer (those whose error passes a backpercolated
    unit), flattened, for one fixed set of forward (and backward) masks."""
    net.zero_grad()
    with modes.replay(net, noise):
        torch.nn.functional.cross_entropy(net(x), y).backward()
    return torch.cat([lin.weight.grad.reshape(-1) for lin in net.linears[:-1]])


def expected_gradient(ctx: Context, backward: str | float) -> dict[str, float]:
    """Backpropagation against the average of K backpercolation gradients with the same forward masks.

    Returns the mean of z^2 = ((mean_K - g_bp) / SE_K)^2 over weights whose sampled gradient varies: about
    (K - 1)/(K - 3) for an unbiased estimate, more with a bias.
    """
    study = ctx.study
    base = study.model("last").double()  # float64: the comparison must not see float32 rounding as a bias
    x, y = study.data.x_train[:32].to(ctx.device).double(), study.data.y_train[:32].to(ctx.device)
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    with modes.record(base, generator=gen) as masks, torch.no_grad():
        trace = base.trace(x)
    bp = _weight_gradients(base, x, y, dict(masks))
    perc = DropoutMLP.from_config({**base.config(), "backward": backward}).to(ctx.device).double()
    perc.load_state_dict(base.state_dict())
    k = ctx.settings["gradient_samples"]
    total, total2 = torch.zeros_like(bp), torch.zeros_like(bp)
    for _ in range(k):
        noise = dict(masks)
        for h, act in enumerate(perc.activations):
            if hasattr(act, "keep"):  # a backpercolated hidden layer: draw its backward mask
                s = trace.S[h + 1]
                prob = act.transfer.derivative(s) if act.keep == "derivative" else torch.full_like(s, act.keep)
                noise[f"activations.{h}"] = torch.bernoulli(prob, generator=gen).to(s.dtype)
        g = _weight_gradients(perc, x, y, noise)
        total += g
        total2 += g * g
    mean = total / k
    var = (total2 / k - mean * mean).clamp_min(0) * k / (k - 1)
    se = (var / k).sqrt()
    ok = se > 1e-9 * (bp.abs().max() + 1e-300)  # weights whose sampled gradient varies at all
    z2 = ((mean - bp)[ok] / se[ok]) ** 2
    return {"mean z^2": float(z2.mean()), "weights compared": int(ok.sum()),
            "relative error of the average": float((mean - bp).norm() / bp.norm())}


def _finetune(ctx: Context, start: int, backward: str | None, lr: float, epochs: int) -> tuple[float, torch.Tensor]:
    """Train on from the snapshot at ``start`` with a small learning rate and no momentum.

    Returns (test error, weight change)."""
    study = ctx.study
    net = DropoutMLP.from_config({**study.model_config(), "backward": backward})
    net.load_state_dict(study.model(start).state_dict())
    before = torch.cat([lin.weight.detach().reshape(-1) for lin in net.linears]).cpu().clone()
    config = train.TrainConfig(epochs=epochs, batch_size=study.settings["batch_size"], lr=lr, momentum_start=0.0,
                               momentum_end=0.0, max_norm=study.settings["max_norm"], seed=ctx.seed)
    result = train.fit(net, study.data, config, progress=False, device=ctx.device)
    net = result.model
    after = torch.cat([lin.weight.detach().reshape(-1) for lin in net.linears]).cpu()
    _, error = train.evaluate(net, study.data.x_test.to(ctx.device), study.data.y_test.to(ctx.device))
    return error, (after - before).double()


def compute_backpercolation(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {"numbers": {}, "curves": {}}
    for label, backward in (("p = f'(S)", "derivative"), ("p = 0.5 fixed", 0.5)):
        g = expected_gradient(ctx, backward)
        out["numbers"][f"backpercolation {label}: expected gradient, mean z^2 against backpropagation"] = g["mean z^2"]
        out["numbers"][f"backpercolation {label}: relative error of the {ctx.settings['gradient_samples']}-sample "
                       "average"] = g["relative error of the average"]
    # training from a snapshot where learning is under way, with a small learning rate
    errors = [row["test_error"] for row in ctx.study.metrics]
    start = next((i + 1 for i, e in enumerate(errors) if e < 50.0), max(1, len(errors) // 2))
    start = min(ctx.study.epochs, key=lambda e: abs(e - start))
    lr = 0.1 * ctx.settings["lr"]
    results = {name: _finetune(ctx, start, backward, lr, 2) for name, backward in
               (("backpropagation", None), ("backpercolation", "derivative"))}
    (e_bp, d_bp), (e_perc, d_perc) = results["backpropagation"], results["backpercolation"]
    n_test = len(ctx.study.data.x_test)
    out["numbers"]["small learning rate: start epoch, learning rate, test error at the start"] = [
        start, lr, errors[start - 1]]
    out["numbers"]["small learning rate: test error after 2 epochs, backpropagation, backpercolation"] = [e_bp, e_perc]
    out["numbers"]["small learning rate: SE of the difference"] = float(np.hypot(
        binomial_se(e_bp, n_test), binomial_se(e_perc, n_test)))
    out["numbers"]["small learning rate: cosine of the two weight changes"] = float(
        (d_bp @ d_perc) / (d_bp.norm() * d_perc.norm() + 1e-300))
    return out


def plot_backpercolation(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    n = r["numbers"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    labels = ["p = f'(S)", "p = 0.5 fixed"]
    z2 = [n[f"backpercolation {label}: expected gradient, mean z^2 against backpropagation"] for label in labels]
    axes[0].bar(labels, z2, color=["tab:green", "tab:gray"])
    axes[0].axhline(1.0, color="k", ls="--", label="unbiased: mean z^2 = 1")
    axes[0].set_yscale("log")
    axes[0].set(ylabel="mean z^2 of (average - backprop) / SE", title="expected backpercolation gradient")
    axes[0].legend(fontsize=8)
    start, lr, e0 = n["small learning rate: start epoch, learning rate, test error at the start"]
    e_bp, e_perc = n["small learning rate: test error after 2 epochs, backpropagation, backpercolation"]
    se = n["small learning rate: SE of the difference"]
    axes[1].bar(["start", "backpropagation", "backpercolation"], [e0, e_bp, e_perc],
                yerr=[0, se / np.sqrt(2), se / np.sqrt(2)], color=["tab:gray", "tab:blue", "tab:green"])
    axes[1].set(ylabel="test error (%)", title=f"2 epochs from epoch {start:.0f} at learning rate {lr:g}")
    fig.suptitle("Section 10.2: backpropagation is backpercolation's ensemble average", fontsize=11)
    fig.tight_layout()
    return fig


def verdicts_backpercolation(r: dict[str, Any]) -> list[Verdict]:
    n = r["numbers"]
    z2 = n["backpercolation p = f'(S): expected gradient, mean z^2 against backpropagation"]
    e_bp, e_perc = n["small learning rate: test error after 2 epochs, backpropagation, backpercolation"]
    se = n["small learning rate: SE of the difference"]
    return [
        Verdict(f"the average of sampled backpercolation gradients is the backpropagation gradient: mean z^2 = "
                f"{z2:.3f} over the weights (1 when unbiased)", z2 < 1.2, source="Section 10.2",
                words="backpropagation can be viewed as the ensemble average of backpercolation (paraphrase)",
                measured=z2, threshold=1.2,
                basis="mean z^2 is about 1 for an unbiased average; a bias of 0.45 standard errors per weight "
                      "gives 1.2"),
        Verdict(f"at a small learning rate, training with backpercolation agrees with backpropagation: test error "
                f"{e_perc:.2f}% against {e_bp:.2f}% after 2 epochs", abs(e_perc - e_bp) <= 2 * se,
                source="Section 10.2", words="(a consequence of the ensemble-average statement, tested here)",
                measured=abs(e_perc - e_bp), threshold=2 * se, noise=se,
                basis="two binomial standard errors of the difference"),
    ]


BACKPERCOLATION = Experiment(
    "backpercolation", "Section 10.2", "Backpercolation against backpropagation",
    "Backpropagation is the ensemble average of dropout in the backward pass with keep rates f'(S): the expected "
    "backpercolation gradient is the gradient, so at small learning rates the two train alike.",
    compute_backpercolation, plot_backpercolation, verdicts_backpercolation, needs_study=True)
