"""Section 10: spiking, dropout and deterministic networks agree on average (Fig. 10.2); backpercolation."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from .. import ensemble, modes, train
from ..gates import GATES
from ..net import DropoutMLP
from ._base import Context, Experiment, Numbers, Verdict, binomial_se, mc_precision, worst_ratio
from .network import WITHIN_SD, flat, mc_stats

# Section 10.1: a spike r Delta (Delta ~ B(O)) and a dropout output delta O (delta ~ B(r)) have the same mean r O;
# Var(spike) = r^2 O (1 - O) exceeds Var(dropout) = r (1 - r) O^2 exactly when r > O. Measured with droplab's own
# gates on the trained network's top-hidden-layer outputs W, leaving out near-ties |r - O| < TIE (at 0.05 the two
# variances differ by 20%, six times the sampling error of their ratio at 4,000 samples) and rare events (fewer than
# 25 expected spikes or silences: a unit with O = 1e-4 shows no spike in 4,000 samples, and a sampled variance of 0)
TIE, SPIKE_SAMPLES = 0.05, 4000


def _spike_variance(ctx: Context, w: Any, n: Numbers) -> None:
    o = w.layers[-2].E.reshape(-1).double().clamp(0, 1)  # the top hidden layer's outputs on the study inputs
    r = float(ctx.settings.model.keeps[1])
    gen = torch.Generator(device=o.device).manual_seed(ctx.seed)
    many = o.expand(SPIKE_SAMPLES, -1)
    spike = GATES["spiking"].sample(many, r, generator=gen).var(0)
    drop = GATES["bernoulli"].sample(many, r, generator=gen).var(0)
    # a sampled variance needs events to see: at least 25 expected spikes (and 25 silences) among the samples
    seen = torch.minimum(o, 1 - o) * SPIKE_SAMPLES >= 25
    clear = ((o - r).abs() >= TIE) & seen
    agree = ((spike > drop) == (r > o))[clear]
    n.add("spike_variance_order", float(agree.double().mean()) if agree.numel() else 0.0, "fraction of responses where "
          "Var(spike) > Var(dropout) exactly when r > O (|r - O| >= 0.05, at least 25 expected spikes and silences)")
    n.add("spike_variance_responses", int(clear.sum()), "responses compared")
    n.add("spike_variance_closed_form_error", float(((spike - r * r * o * (1 - o)).abs()).max()),
          "largest |sampled Var(spike) - r^2 O (1 - O)|")


def compute_three_networks(ctx: Context) -> dict[str, Any]:
    dropout_net = ctx.study.model("last")
    config = {**dropout_net.config(), "gate": "spiking"}  # same weights; spikes of size r = the keep rates
    spiking_net = DropoutMLP.from_config(config).to(ctx.device).eval()
    spiking_net.load_state_dict(dropout_net.state_dict())
    x = ctx.study.inputs()
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    k = ctx.settings.measurements.samples
    w = ensemble.weight_scaled(dropout_net, x)
    stats = {"dropout": mc_stats(ctx, "last")[0],  # the study network's own measurement (Figs. 9.3-9.15)
             "spiking": ensemble.monte_carlo(spiking_net, x, samples=k, generator=gen,
                                                 precision=mc_precision(ctx))}
    out: dict[str, Any] = {"layers": {}}
    n = Numbers()
    for h in range(1, len(w.layers)):
        row = {"W": flat(w.layers[h].E)[:2000].tolist()}
        for name, st in stats.items():
            row[name] = flat(st.layers[h].E)[:2000].tolist()
            n.add("mean_abs_e_minus_w", float(np.abs(flat(st.layers[h].E) - flat(w.layers[h].E)).mean()),
                  "mean |E - W|", network=name, layer=h)
            n.add("mean_sd", float(np.sqrt(flat(st.layers[h].Var)).mean()), "mean sd(O)", network=name, layer=h)
        out["layers"][f"layer {h}"] = row
    _spike_variance(ctx, w, n)
    for name, st in stats.items():
        n.add("class_agreement", float((st.output.E.argmax(1) == w.output.E.argmax(1)).float().mean()),
              "fraction of inputs whose predicted class agrees with W", network=name)
    out["numbers"] = n.records()
    return out


def plot_three_networks(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    layers = list(r["layers"])
    fig, axes = subplots(1, len(layers), figsize=(3.2 * len(layers), 3.2), squeeze=False)
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
    n = Numbers.of(r)
    out = []
    for name in ("dropout", "spiking"):
        ratio = worst_ratio(n.series("mean_abs_e_minus_w", network=name), n.series("mean_sd", network=name))
        agree = n.get("class_agreement", network=name)
        out.append(Verdict(
            f"the {name} network's average matches the deterministic network in every layer: mean |E - W| at most "
            f"{ratio:.3f} of the mean sd(O); same predicted class for {100 * agree:.0f}% of inputs", ratio < 1.0,
            source="Section 10.1, Fig. 10.2",
            words="the spiking, dropout and deterministic networks give approximately the same average outputs "
                  "(paraphrase)", measured=float(ratio), threshold=1.0, basis=WITHIN_SD))
    order, count = n.get("spike_variance_order"), n.get("spike_variance_responses")
    out.append(Verdict(
        f"spiking units vary more than dropout units exactly when r > O: the order of the two variances follows "
        f"r > O for {100 * order:.1f}% of {count} unit responses (r = spike size = keep rate)",
        order >= 0.99, source="Section 10.1, Eqs. 125-133", measured=order, threshold=0.99, measurable=count >= 20,
        words="(derived) Var(r Delta) = r^2 O(1 - O) against Var(delta O) = r(1 - r) O^2, same mean r O",
        basis=f"99% of responses with |r - O| >= {TIE} ({SPIKE_SAMPLES:,} samples each; the rest are sampling "
              "noise near the tie)"))
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
    """Backpropagation's gradient against backpercolation's, with the same forward masks, in float64.

    The backpercolation gradient is multilinear in the backward masks (a path crosses each unit once and the
    masks are independent), so its expectation is its value at the masks' means: ``exact`` compares that with
    backpropagation. ``relative error at K/4, K``: the Monte Carlo average of K sampled backward passes, which
    for an unbiased estimate falls like 1/sqrt(K) (a factor 2 from K/4 to K) and for a biased one levels off.
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
    keep = {h: (act.transfer.derivative(trace.S[h + 1]) if act.keep == "derivative"
                else torch.full_like(trace.S[h + 1], act.keep))
            for h, act in enumerate(perc.activations) if hasattr(act, "keep")}  # backpercolated hidden layers
    at_mean = _weight_gradients(perc, x, y, {**masks, **{f"activations.{h}": p for h, p in keep.items()}})
    k = ctx.settings.measurements.gradient_samples
    total, errors = torch.zeros_like(bp), {}
    for i in range(1, k + 1):
        noise = {**masks, **{f"activations.{h}": torch.bernoulli(p, generator=gen) for h, p in keep.items()}}
        total += _weight_gradients(perc, x, y, noise)
        if i in (k // 4, k):
            errors[i] = float((total / i - bp).norm() / bp.norm())
    return {"exact": float((at_mean - bp).abs().max() / bp.abs().max()), "relative errors": errors}


FINETUNE_EPOCHS = 3
# "trains alike": an equivalence test. The difference of the test errors, widened by 1.645 of its standard errors
# (a one-sided 5% bound, as in TOST), must stay within a quarter of what backpropagation itself improved
ALIKE_FRACTION = 0.25


def _finetune(ctx: Context, start: int, backward: str | None, lr: float, epochs: int) -> tuple[float, torch.Tensor]:
    """Train on from the snapshot at ``start`` with the study's optimizer and schedule at a small learning rate
    (SGD schedules without momentum). Returns (test error, weight change)."""
    study = ctx.study
    net = DropoutMLP.from_config(dataclasses.replace(study.model_config(), backward=backward).as_dict())
    net.load_state_dict(study.model(start).state_dict())
    before = torch.cat([lin.weight.detach().reshape(-1) for lin in net.linears]).cpu().clone()
    schedule = study.train_config()
    momentum = schedule.momentum_end if schedule.optimizer == "adam" else 0.0
    config = dataclasses.replace(schedule, epochs=epochs, lr=lr, lr_decay=1.0, lr_schedule="exponential",
                                 momentum_start=momentum, momentum_end=momentum, seed=ctx.seed)  # a constant rate
    result = train.fit(net, study.data, config, progress=False, device=ctx.device)
    net = result.model
    after = torch.cat([lin.weight.detach().reshape(-1) for lin in net.linears]).cpu()
    _, error = train.evaluate(net, study.data.x_test.to(ctx.device), study.data.y_test.to(ctx.device))
    return error, (after - before).double()


def compute_backpercolation(ctx: Context) -> dict[str, Any]:
    n = Numbers()
    for label, backward in (("p = f'(S)", "derivative"), ("p = 0.5 fixed", 0.5)):
        g = expected_gradient(ctx, backward)
        n.add("exact_relative_difference", g["exact"],
              "exact expectation against backpropagation, max relative difference", backward=label)
        for samples, error in g["relative errors"].items():
            n.add("relative_error_of_average", error, "relative error of the average of sampled backward passes",
                  backward=label, samples=samples)
    # training from a snapshot where learning is under way, with a small learning rate
    errors = [row["test_error"] for row in ctx.study.metrics]
    start = next((i + 1 for i, e in enumerate(errors) if e < 50.0), max(1, len(errors) // 2))
    start = min(ctx.study.epochs, key=lambda e: abs(e - start))
    lr = 0.1 * ctx.settings.train.lr
    results = {name: _finetune(ctx, start, backward, lr, FINETUNE_EPOCHS) for name, backward in
               (("backpropagation", None), ("backpercolation", "derivative"))}
    (e_bp, d_bp), (e_perc, d_perc) = results["backpropagation"], results["backpercolation"]
    n_test = len(ctx.study.data.x_test)
    at = {"run": "small learning rate"}
    n.add("start_epoch", start, "start epoch", **at)
    n.add("lr", lr, "learning rate", **at)
    n.add("start_test_error", errors[start - 1], "test error % at the start", **at)
    n.add("epochs", FINETUNE_EPOCHS, "epochs trained from the start", **at)
    n.add("test_error", e_bp, "test error % at the end", training="backpropagation", **at)
    n.add("test_error", e_perc, "test error % at the end", training="backpercolation", **at)
    n.add("test_error_difference_se", float(np.hypot(binomial_se(e_bp, n_test), binomial_se(e_perc, n_test))),
          "SE of the difference of the test errors", **at)
    n.add("weight_change_cosine", float((d_bp @ d_perc) / (d_bp.norm() * d_perc.norm() + 1e-300)),
          "cosine of the two weight changes", **at)
    return {"numbers": n.records()}


def plot_backpercolation(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    n = Numbers.of(r)
    fig, axes = subplots(1, 2, figsize=(11, 4))
    labels = ["p = f'(S)", "p = 0.5 fixed"]
    for label, color in zip(labels, ("tab:green", "tab:gray"), strict=True):
        ks = n.coordinates("samples", "relative_error_of_average", backward=label)
        errs = n.series("relative_error_of_average", by="samples", backward=label)
        axes[0].loglog(ks, errs, "o-", color=color, label=f"backpercolation, {label}")
        axes[0].loglog(ks, [errs[0], errs[0] * (ks[0] / ks[1]) ** 0.5], ":", color=color)
    axes[0].set(xlabel="backward passes averaged (K)", ylabel="||average - backprop|| / ||backprop||",
                title="average of sampled backpercolation gradients")
    axes[0].legend(fontsize=8, title="dotted: 1/sqrt(K)", title_fontsize=8)
    start, lr, e0 = n.get("start_epoch"), n.get("lr"), n.get("start_test_error")
    e_bp, e_perc = (n.get("test_error", training=t) for t in ("backpropagation", "backpercolation"))
    se = n.get("test_error_difference_se")
    axes[1].bar(["start", "backpropagation", "backpercolation"], [e0, e_bp, e_perc],
                yerr=[0, se / np.sqrt(2), se / np.sqrt(2)], color=["tab:gray", "tab:blue", "tab:green"])
    axes[1].set(ylabel="test error (%)",
                title=f"{n.get('epochs'):.0f} epochs from epoch {start:.0f} at learning rate {lr:g}")
    fig.suptitle("Section 10.2: backpropagation is backpercolation's ensemble average", fontsize=11)
    fig.tight_layout()
    return fig


def verdicts_backpercolation(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    exact = n.get("exact_relative_difference", backward="p = f'(S)")
    quarter, full = n.series("relative_error_of_average", by="samples", backward="p = f'(S)")
    e_bp, e_perc = (n.get("test_error", training=t) for t in ("backpropagation", "backpercolation"))
    se, e0, epochs = n.get("test_error_difference_se"), n.get("start_test_error"), n.get("epochs")
    gain = e0 - e_bp  # what backpropagation learned in the fine-tuning
    margin = ALIKE_FRACTION * gain
    worst = abs(e_perc - e_bp) + 1.645 * se
    words = "backpropagation can be viewed as the ensemble average of backpercolation (paraphrase)"
    return [
        Verdict(f"the expected backpercolation gradient (masks at their means f'(S)) is the backpropagation gradient: "
                f"largest relative difference {exact:.1e}", exact < 1e-10, source="Section 10.2", words=words,
                measured=exact, threshold=1e-10, basis="float64 rounding, with room"),
        Verdict(f"the average of sampled backward passes converges to it like an unbiased average: its error falls by "
                f"{quarter / full:.2f}x from K/4 to K samples (2 for 1/sqrt(K))", quarter / full > 1.5,
                source="Section 10.2", words=words, measured=quarter / full, threshold=1.5,
                basis="an unbiased average falls by 2 over a 4x larger K, a biased one levels off near 1; 1.5 is "
                      "between"),
        Verdict(f"at a small learning rate, training with backpercolation agrees with backpropagation: from "
                f"{e0:.2f}%, {epochs:.0f} epochs take backpropagation to {e_bp:.2f}% and backpercolation to "
                f"{e_perc:.2f}%" + ("" if gain > 4 * se else " (not measured: backpropagation did not learn by 4 "
                                                             "standard errors)"),
                worst <= margin, source="Section 10.2", measurable=gain > 4 * se,
                words="with a very small learning rate backpercolation is essentially identical to backpropagation",
                measured=worst, threshold=margin,
                basis=f"an equivalence test: |difference| + 1.645 SE within {100 * ALIKE_FRACTION:g}% of "
                      "backpropagation's own improvement over the fine-tuning"),
    ]


BACKPERCOLATION = Experiment(
    "backpercolation", "Section 10.2", "Backpercolation against backpropagation",
    "Backpropagation is the ensemble average of dropout in the backward pass with keep rates f'(S): the expected "
    "backpercolation gradient is the gradient, so at small learning rates the two train alike.",
    compute_backpercolation, plot_backpercolation, verdicts_backpercolation, needs_study=True)
