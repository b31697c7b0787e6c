"""Section 11: the expected dropout gradient is the ensemble gradient plus an adaptive weight decay
(Eqs. 147-148, 155, 164, 181), measured by enumerating every mask of small networks; and dropin (11.6)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from .. import ensemble, modes, theory
from ..net import DropoutMLP
from ._base import Context, Experiment, Numbers, Verdict, binomial_se

F64 = torch.float64


def masks(keep: torch.Tensor) -> list[tuple[torch.Tensor, float]]:
    """Every Bernoulli mask of len(keep) units with its probability."""
    out = []
    for bits in itertools.product([0.0, 1.0], repeat=len(keep)):
        d = torch.tensor(bits, dtype=F64)
        out.append((d, float(torch.prod(keep**d * (1 - keep) ** (1 - d)))))
    return out


def single_linear(gen: torch.Generator) -> dict[str, float]:
    """Eqs. 147-148: O = sum_i delta_i w_i I_i, E = (t - O)^2 / 2."""
    n = 6
    inputs, w = torch.randn(n, generator=gen, dtype=F64), torch.randn(n, generator=gen, dtype=F64)
    keep, t = torch.rand(n, generator=gen, dtype=F64) * 0.8 + 0.1, 0.7
    expected = torch.zeros(n, dtype=F64)
    for d, p in masks(keep):
        expected += p * (-(t - (d * w * inputs).sum()) * d * inputs)  # Eq. 145
    predicted = theory.linear_unit_expected_gradient(w, inputs, keep, t)  # Eq. 147
    return {"difference": float((expected - predicted).abs().max()),
            "decay": float((w * inputs**2 * keep * (1 - keep)).abs().max())}


def deep_linear(gen: torch.Generator) -> dict[str, float]:
    """Eq. 155 on a 4-3-1 linear network with dropout on inputs and hidden units, for one first-layer weight."""
    w1, w2 = torch.randn(3, 4, generator=gen, dtype=F64), torch.randn(1, 3, generator=gen, dtype=F64)
    x, t = torch.randn(4, generator=gen, dtype=F64), 0.3
    keep = torch.tensor([0.8] * 4 + [0.5] * 3, dtype=F64)
    grads, alphas, betas, probs = [], [], [], []
    for d, p in masks(keep):
        w = w1.clone().requires_grad_()
        s = (w2 @ ((w @ (d[:4] * x)) * d[4:]))[0]
        (alpha,) = torch.autograd.grad(s, w, retain_graph=True)  # S = alpha w + beta, linear in w[0, 0]
        e = 0.5 * (t - s) ** 2
        (g,) = torch.autograd.grad(e, w)
        a = alpha[0, 0]
        grads.append(g[0, 0])
        alphas.append(a)
        betas.append(s.detach() - a * w1[0, 0])
        probs.append(p)
    p = torch.tensor(probs, dtype=F64)
    g, a, b = torch.stack(grads), torch.stack(alphas), torch.stack(betas)
    ea, eb = (p * a).sum(), (p * b).sum()
    var_a, cov_ab = (p * (a - ea) ** 2).sum(), (p * (a - ea) * (b - eb)).sum()
    ens = (ea * w1[0, 0] + eb - t) * ea  # Eq. 153
    predicted = ens + theory.deep_linear_correction(w1[0, 0], var_a, cov_ab)  # Eq. 155
    return {"difference": float((p * g).sum() - predicted), "w_var_alpha": float(w1[0, 0] * var_a),
            "cov_alpha_beta": float(cov_ab)}


def logistic_unit(gen: torch.Generator, scale: float) -> dict[str, float]:
    """Eq. 164: one logistic unit, relative entropy error; weights of the given scale."""
    n = 6
    inputs = torch.rand(n, generator=gen, dtype=F64)
    w = scale * torch.randn(n, generator=gen, dtype=F64)
    keep, t = torch.full((n,), 0.5, dtype=F64), 1.0
    expected = torch.zeros(n, dtype=F64)
    for d, p in masks(keep):
        o = torch.sigmoid((d * w * inputs).sum())
        expected += p * (-(t - o) * d * inputs)  # Eq. 160 with lambda = 1
    ens = theory.ensemble_gradient_logistic_unit(w, inputs, keep, t)  # Eq. 159
    predicted = theory.logistic_unit_expected_gradient(w, inputs, keep, t)  # Eq. 164
    return {"corrected": float((expected - predicted).norm() / expected.norm()),
            "ensemble": float((expected - ens).norm() / expected.norm())}


def top_layer(gen: torch.Generator, scale: float) -> dict[str, float]:
    """Eq. 181: logistic output unit over a logistic hidden layer with dropout, weight w_ij of the top layer."""
    net = DropoutMLP((4, 5, 1), keep=(1.0, 0.5), output="logistic").double().eval()
    with torch.no_grad():  # weights from ``gen``: no global seeding
        for lin in net.linears:
            bound = 1 / lin.in_features**0.5
            lin.weight.copy_(scale * (2 * torch.rand(lin.weight.shape, generator=gen, dtype=F64) - 1) * bound)
            lin.bias.copy_((2 * torch.rand(lin.bias.shape, generator=gen, dtype=F64) - 1) * bound)
    x, t = torch.rand(1, 4, generator=gen, dtype=F64), 1.0
    stats = ensemble.exact(net, x)
    keep = torch.full((5,), 0.5, dtype=F64)
    expected = torch.zeros(5, dtype=F64)
    for d, p in masks(keep):
        net.zero_grad()
        with modes.replay(net, {"gates.1": d.view(1, 5)}):
            o = net.output(x)[0, 0]
        loss = -(t * torch.log(o) + (1 - t) * torch.log(1 - o))
        loss.backward()
        expected += p * net.linears[1].weight.grad[0]
    ws = ensemble.weight_scaled(net, x)
    w_top, w_hidden = ws.output.E[0, 0], ws.layers[1].E[0]
    u = ws.output.E_S[0, 0]
    e_o, var_o = stats.layers[1].E[0], stats.layers[1].Var[0]
    ens = -(t - w_top) * keep * w_hidden
    wij = net.linears[1].weight[0].detach()
    predicted = theory.top_layer_expected_gradient(wij, w_hidden, e_o, var_o, keep, t, w_top, u)  # Eq. 181
    return {"corrected": float((expected - predicted).norm() / expected.norm()),
            "ensemble": float((expected - ens).norm() / expected.norm())}


def compute(ctx: Context) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(ctx.seed)
    n = Numbers()
    lin = single_linear(gen)
    n.add("difference", lin["difference"], "max |E(dE_D/dw) - (dE_ENS/dw + w I^2 Var(delta))|",
          network="single linear unit (Eq. 147)")
    n.add("decay", lin["decay"], "size of the weight-decay term", network="single linear unit (Eq. 147)")
    deep = deep_linear(gen)
    n.add("difference", deep["difference"], "|E(dE_D/dw) - (dE_ENS/dw + w Var(alpha) + Cov(alpha, beta))|",
          network="deep linear network (Eq. 155)")
    n.add("w_var_alpha", deep["w_var_alpha"], "w Var(alpha)", network="deep linear network (Eq. 155)")
    n.add("cov_alpha_beta", deep["cov_alpha_beta"], "Cov(alpha, beta)", network="deep linear network (Eq. 155)")
    curve: dict[str, list[float]] = {"scale": [], "eq164": [], "ens164": [], "eq181": [], "ens181": []}
    for scale in (0.1, 0.3, 1.0, 3.0):
        lu, tl = logistic_unit(gen, scale), top_layer(gen, scale)
        curve["scale"].append(scale)
        for network, eq, errors in (("logistic unit", "164", lu), ("top layer", "181", tl)):
            curve[f"eq{eq}"].append(errors["corrected"])
            curve[f"ens{eq}"].append(errors["ensemble"])
            n.add("relative_error_corrected", errors["corrected"], f"relative error of Eq. {eq}", network=network,
                  weight_scale=scale)
            n.add("relative_error_ensemble", errors["ensemble"], "relative error of the ensemble gradient alone",
                  network=network, weight_scale=scale)
    return {"curve": curve, "numbers": n.records()}


def plot(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    c = r["curve"]
    fig, ax = subplots(figsize=(5.5, 3.4))
    ax.loglog(c["scale"], c["eq164"], "o-", label="Eq. 164 (logistic unit)")
    ax.loglog(c["scale"], c["ens164"], "o--", label="ensemble gradient alone")
    ax.loglog(c["scale"], c["eq181"], "s-", label="Eq. 181 (top layer)")
    ax.loglog(c["scale"], c["ens181"], "s--", label="ensemble gradient alone (top layer)")
    ax.set_xlabel("weight scale")
    ax.set_ylabel("relative error against exact E(dE_D/dw)")
    ax.set_title("Section 11: expected dropout gradient")
    ax.legend(fontsize=9)
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    lin = abs(n.get("difference", network="single linear unit (Eq. 147)"))
    deep = abs(n.get("difference", network="deep linear network (Eq. 155)"))
    small = 0  # index of the smallest weight scale
    c = {f"{kind}{eq}": n.series(f"relative_error_{key}", by="weight_scale", network=network)
         for eq, network in (("164", "logistic unit"), ("181", "top layer"))
         for kind, key in (("eq", "corrected"), ("ens", "ensemble"))}
    exact = dict(threshold=1e-10, basis="float64 rounding (sums of tens of terms give about 1e-15), with room")
    return [
        Verdict(f"single linear unit: E(dropout gradient) = ensemble gradient + w I^2 Var(delta) exactly "
                f"(difference {lin:.1e})", lin < 1e-10, source="Section 11.2, Eqs. 147-148",
                words="the expected dropout gradient is the gradient of the ensemble plus a weight decay term",
                measured=lin, **exact),
        Verdict(f"deep linear network: E(dropout gradient) = ensemble gradient + w Var(alpha) + Cov(alpha, beta) "
                f"exactly (difference {deep:.1e})", deep < 1e-10, source="Section 11.3, Eq. 155",
                words="E(dE_D/dw) = dE_ENS/dw + w Var(alpha) + Cov(alpha, beta)", measured=deep, **exact),
        Verdict(f"logistic unit: adding the adaptive decay of Eq. 164 cuts the error of the ensemble gradient from "
                f"{c['ens164'][small]:.2e} to {c['eq164'][small]:.2e} (small weights)",
                c["eq164"][small] < c["ens164"][small], source="Section 11.4, Eq. 164",
                words="the expected gradient is approximately the ensemble gradient plus an adaptive weight decay",
                measured=c["eq164"][small], threshold=c["ens164"][small],
                basis="the error of the ensemble gradient alone, which the correction claims to improve on"),
        Verdict(f"top layer: Eq. 181 cuts the error from {c['ens181'][small]:.2e} to {c['eq181'][small]:.2e} "
                "(small weights)", c["eq181"][small] < c["ens181"][small], source="Section 11.5, Eq. 181",
                words="an adaptive weight decay term proportional to Var(delta_j O_j)", measured=c["eq181"][small],
                threshold=c["ens181"][small], basis="the error of the ensemble gradient alone"),
    ]


EXPERIMENT = Experiment(
    "gradients", "Section 11 (Eqs. 147-148, 155, 164, 181)", "The expected dropout gradient",
    "The expected dropout gradient is the gradient of the ensemble plus an adaptive weight decay: exactly for "
    "linear units and networks, approximately for logistic units and the top layer of deep networks.",
    compute, plot, verdicts)


# ------------------------------------------------------------------------------------------- dropin
def compute_dropin(ctx: Context) -> dict[str, Any]:
    from .generalization import train_arm

    out: dict[str, Any] = {"curves": {}}
    n = Numbers()
    nets = {}
    for gate, label in (("bernoulli", "dropout"), ("dropin", "dropin")):
        result = train_arm(ctx, label)  # each at its own learning rate; dropout: the study network itself
        out["curves"][gate] = [row["val_error"] for row in result["history"]]
        n.add("test_error", result["test_error"], "test error %", gate=gate)
        n.add("trained", int(result["trained"]), "trained (1) or within 5 points of chance (0)", gate=gate)
        nets[gate] = result["model"]
    n.add("test_examples", len(ctx.study.data.x_test), "test examples")
    n.add("chance_error", ctx.study.chance_error, "chance test error % (the commonest class)")
    x = ctx.study.inputs()
    # Eq. 189 measured where the paper means it: each network trained with its own gate, gated by it
    for gate, net in nets.items():
        gm = ensemble.gaussian_moments(net.to(ctx.device).eval(), x)
        for h, layer in enumerate(gm.layers[1:], start=1):
            n.add("mean_var_s", float(layer.Var_S.mean()), "mean Var(S), each network trained with its own gate",
                  gate=gate, layer=h)
    # and the arithmetic of Eq. 189 alone: the dropout-trained weights, gated by dropout or by dropin
    trained = nets["bernoulli"]
    for gate in ("bernoulli", "dropin"):
        net = DropoutMLP.from_config({**trained.config(), "gate": gate}).to(ctx.device).eval()
        net.load_state_dict(trained.state_dict())
        gm = ensemble.gaussian_moments(net, x)
        for h, layer in enumerate(gm.layers[1:], start=1):
            n.add("same_weights_var_s", float(layer.Var_S.mean()), "mean Var(S) with the dropout-trained weights",
                  gate=gate, layer=h)
    out["numbers"] = n.records()
    return out


def plot_dropin(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    fig, axes = subplots(1, 2, figsize=(10, 3.2))
    for gate, curve in r["curves"].items():
        axes[0].plot(range(1, len(curve) + 1), curve, label="dropout" if gate == "bernoulli" else gate)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("validation error (%)")
    axes[0].set_title("Section 11.6: dropin against dropout")
    axes[0].legend(fontsize=9)
    for gate in ("bernoulli", "dropin"):
        v = Numbers.of(r).series("mean_var_s", gate=gate)
        axes[1].semilogy(range(1, len(v) + 1), v, marker="o",
                         label=f"{'dropout' if gate == 'bernoulli' else gate}-trained network")
    axes[1].set_xlabel("layer (the last is the softmax output)")
    axes[1].set_ylabel("mean Var(S)")
    axes[1].set_xticks(range(1, len(v) + 1))
    axes[1].set_title("mean Var(S), each network with its own gate (Eq. 189)")
    axes[1].legend(fontsize=9)
    fig.tight_layout()
    return fig


def verdicts_dropin(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    var_out, var_in = n.series("mean_var_s", gate="bernoulli"), n.series("mean_var_s", gate="dropin")
    e_in, e_out = n.get("test_error", gate="dropin"), n.get("test_error", gate="bernoulli")
    count = n.get("test_examples")
    se = float(np.hypot(binomial_se(e_in, count), binomial_se(e_out, count)))
    dropout_trained, dropin_trained = n.get("trained", gate="bernoulli"), n.get("trained", gate="dropin")
    if not dropout_trained:
        first = f"dropin against dropout: not measured (the dropout network did not train: {e_out:.2f}%)"
    elif not dropin_trained:
        first = (f"dropin does not work: at the best learning rate of its sweep it ends at {e_in:.2f}% test error, "
                 f"within 5 points of chance ({n.get('chance_error'):.2f}%), against {e_out:.2f}% for dropout")
    else:
        first = f"dropin generalizes worse than dropout: test error {e_in:.2f}% against {e_out:.2f}%"
    return [
        Verdict(first, e_in - e_out > 2 * se, source="Section 11.6",
                words="simulations show that dropin behaves very differently and in fact does not work",
                measured=e_in - e_out, threshold=2 * se, noise=se, measurable=bool(dropout_trained),
                basis="worse by more than two binomial standard errors of the difference, each network at the best "
                      "learning rate of its own sweep"),
        Verdict(f"dropin raises the input variances that dropout keeps small: mean Var(S) of the top hidden layer "
                f"{var_in[-2]:.3g} in the dropin-trained network, {var_out[-2]:.3g} in the dropout-trained one",
                var_in[-2] > var_out[-2], source="Section 11.6, Eq. 189",
                words="setting units to 1 tends to maximize variances, rather than minimizing them",
                measured=var_in[-2], threshold=var_out[-2],
                basis="each network trained with its own gate and measured with it (on the dropout-trained weights "
                      "alone the difference follows from Eq. 189 by arithmetic; that number is in the table)"),
    ]


DROPIN = Experiment(
    "dropin", "Section 11.6", "Dropin against dropout",
    "Dropin (units set to 1 instead of 0) does not work: it maximizes the variances that dropout minimizes.",
    compute_dropin, plot_dropin, verdicts_dropin, needs_study=True)

