"""Appendices C and E on the study network: each formula against the sampled truth, per hidden layer, before and
after training.

* Appendix C (Eqs. 213-218): NWGM(O^2) as an estimate of E(O^2), and the variance it gives, NWGM(O^2) - NWGM(O)^2,
  against the sampled E(O^2) and Var(O) and against the range Eq. 212 leaves, [0, E(1 - E)].
* Appendix E.1 (Eqs. 224-227): S Gaussian, so O has the density of Eq. 226: Kolmogorov-Smirnov distance between each
  unit's sampled S and the Gaussian of its own mean and variance (the same distance as between the sampled O and
  Eq. 225's F_O: the logistic is monotone).
* Appendix E.2 (Eqs. 228-230): the mean and variance of S over a layer from the statistics of its weights and of the
  gated activities feeding it, assuming the two independent.
* Appendix E.3 (Eqs. 231-234): O Beta (moment fit per unit), so S has the density of Eq. 233: the same distance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import means, modes
from ._base import Context, Experiment, Numbers, Verdict
from .network import WHEN

SAMPLES = 1000  # dropout samples per input for the distributions (Section 9.6's trajectory size)
E2_TOLERANCE = 0.15  # Eqs. 228-230 on independent weights and activities: Var(S) within 15%
C_USEFUL = 0.5  # Appendix C's variance estimate "sharper than Eq. 212" needs an error under half the width E(1 - E)


def _ks_gaussian(s: np.ndarray) -> np.ndarray:
    """Per column: the Kolmogorov-Smirnov distance between the samples and the Gaussian of their mean and sd."""
    from scipy import stats

    z = (np.sort(s, axis=0) - s.mean(0)) / np.where(s.std(0) > 0, s.std(0), 1.0)
    cdf, k = stats.norm.cdf(z), s.shape[0]
    hi, lo = np.arange(1, k + 1)[:, None] / k, np.arange(k)[:, None] / k
    return np.maximum(np.abs(hi - cdf), np.abs(cdf - lo)).max(0)


def _ks_beta(o: np.ndarray) -> np.ndarray:
    """Per column: the distance between the samples of O in (0, 1) and the Beta fitted by moments."""
    from scipy import stats

    o = np.clip(o, 1e-6, 1 - 1e-6)
    m, v = o.mean(0), np.maximum(o.var(0), 1e-12)
    common = np.maximum(m * (1 - m) / v - 1, 1e-3)
    a, b = m * common, (1 - m) * common
    cdf, k = stats.beta.cdf(np.sort(o, axis=0), a, b), o.shape[0]
    hi, lo = np.arange(1, k + 1)[:, None] / k, np.arange(k)[:, None] / k
    return np.maximum(np.abs(hi - cdf), np.abs(cdf - lo)).max(0)


@torch.no_grad()
def _layer_samples(net: Any, x: torch.Tensor, k: int, seed: int) -> Any:
    """For each hidden layer h in turn: (S, O, gated input to layer h) samples as float32 arrays (k, inputs x
    units); one layer's arrays at a time."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    with modes.sample(net, generator=gen):
        o = x.repeat(k, 1)  # (k * inputs, n0), sample-major
        for stage in net.stages()[:-1]:
            gated = stage.gate(o)
            s = stage.linear(gated)
            o = stage.activation(s)
            yield tuple(t.float().cpu().numpy().reshape(k, -1) for t in (s, o, gated))


def compute(ctx: Context) -> dict[str, Any]:
    n = Numbers()
    out: dict[str, Any] = {"ks": {}}
    x = ctx.study.inputs()
    k = min(SAMPLES, ctx.settings.measurements.samples)
    for when, epoch in WHEN:
        net = ctx.study.model(epoch)
        for h, (s, o, gated) in enumerate(_layer_samples(net, x, k, ctx.seed), start=1):
            s, o = s.astype(np.float64), o.astype(np.float64)
            at = {"layer": h, "when": when}
            # Appendix C: NWGM(O^2) for E(O^2), and the variance estimate it gives
            e, e2, v = o.mean(0), (o**2).mean(0), o.var(0)
            nwgm = np.asarray(means.normalized_geometric_mean(np.clip(o, 1e-12, 1 - 1e-12), dim=0))
            nwgm2 = np.asarray(means.normalized_geometric_mean(np.clip(o**2, 1e-12, 1 - 1e-12), dim=0))
            v_c = nwgm2 - nwgm**2
            n.add("mean_abs_e2_minus_nwgm2", float(np.abs(e2 - nwgm2).mean()), "mean |E(O^2) - NWGM(O^2)| (Eq. 214)",
                  **at)
            n.add("mean_abs_v_minus_vc", float(np.abs(v - v_c).mean()), "mean |Var(O) - (NWGM(O^2) - NWGM(O)^2)|",
                  **at)
            n.add("mean_var", float(v.mean()), "mean Var(O)", **at)
            n.add("mean_bound_width", float((e * (1 - e)).mean()), "mean E(1 - E), the width of Eq. 212's range", **at)
            # Appendix E.1 and E.3: Gaussian S, Beta O
            ks_s, ks_o = _ks_gaussian(s), _ks_beta(o)
            n.add("median_ks_gaussian_s", float(np.median(ks_s)), "median KS distance, S against its Gaussian "
                  "(Eqs. 224-226)", **at)
            n.add("median_ks_beta_o", float(np.median(ks_o)), "median KS distance, O against its moment-fitted Beta "
                  "(Eqs. 231-233)", **at)
            n.add("fraction_gaussian_not_rejected", float(np.mean(ks_s < 1.63 / np.sqrt(k))),
                  "fraction of responses whose S a 1% KS test does not reject as Gaussian", **at)
            if when == "after":
                out["ks"][f"layer {h}"] = {"gaussian_s": np.sort(ks_s)[:: max(1, ks_s.size // 400)].tolist(),
                                           "beta_o": np.sort(ks_o)[:: max(1, ks_o.size // 400)].tolist()}
            # Appendix E.2: the layer's S from its weights' and its gated inputs' statistics (Eqs. 228-229)
            w = net.linears[h - 1].weight.detach().double().cpu().numpy()
            b = net.linears[h - 1].bias.detach().double().cpu().numpy()
            mu_w, var_w = w.mean(), w.var()
            mu_o, var_o = float(gated.mean(dtype=np.float64)), float(gated.var(dtype=np.float64))
            fan_in = w.shape[1]
            pred_var = fan_in * ((var_w + mu_w**2) * (var_o + mu_o**2) - mu_w**2 * mu_o**2)
            pop_var = float((s - b.repeat(len(x))[None, :]).var())  # Eqs. 228-229 have no bias
            n.add("relative_error_eq229", abs(pred_var - pop_var) / pop_var, "|Eq. 229 - Var(S) over the layer| / "
                  "Var(S)", **at)
            n.add("var_s_population", pop_var, "Var(S) over units, inputs and masks (bias removed)", **at)
            n.add("var_s_eq229", float(pred_var), "Eq. 229 from the weights' and gated activities' statistics", **at)
    out["samples"] = k
    out["numbers"] = n.records()
    return out


def plot(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    n = Numbers.of(r)
    fig, axes = subplots(1, 3, figsize=(20, 4.6), layout="constrained")
    for name, d in r["ks"].items():
        line, = axes[0].plot(d["gaussian_s"], np.linspace(0, 1, len(d["gaussian_s"])), label=f"{name}: Gaussian S")
        axes[0].plot(d["beta_o"], np.linspace(0, 1, len(d["beta_o"])), ls="--", color=line.get_color(),
                     label=f"{name}: Beta O")
    axes[0].axvline(1.63 / np.sqrt(r["samples"]), color="k", lw=1, ls=":", label="1% KS critical value")
    axes[0].set(title="Appendix E.1/E.3 after training: KS distances", xlabel="KS distance per unit response",
                ylabel="cumulative fraction")
    axes[0].legend(fontsize=7)
    layers = n.coordinates("layer", "mean_var")
    for when, style in (("before", "--"), ("after", "-")):
        axes[1].semilogy(layers, n.series("mean_abs_v_minus_vc", when=when), "o" + style, color="tab:red",
                         label=f"|Var(O) - Appendix C estimate|, {when}")
        axes[1].semilogy(layers, n.series("mean_var", when=when), "s" + style, color="tab:blue",
                         label=f"Var(O) sampled, {when}")
        axes[1].semilogy(layers, n.series("mean_bound_width", when=when), "^" + style, color="tab:gray",
                         label=f"E(1 - E), Eq. 212's width, {when}")
        axes[2].semilogy(layers, n.series("var_s_population", when=when), "o" + style, color="tab:blue",
                         label=f"sampled, {when}")
        axes[2].semilogy(layers, n.series("var_s_eq229", when=when), "x" + style, ms=9, color="tab:orange",
                         label=f"Eq. 229, {when}")
    axes[1].set(title="Appendix C: the variance from NWGM(O^2)", xlabel="hidden layer",
                ylabel="mean over unit responses")
    axes[2].set(title="Appendix E.2: Var(S) over a layer", xlabel="hidden layer", ylabel="Var(S)")
    for ax in axes[1:]:
        ax.set_xticks(layers)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    out = []
    useful = [a / w for a, w in zip(n.series("mean_abs_v_minus_vc", when="after"),
                                    n.series("mean_bound_width", when="after"), strict=True)]
    out.append(Verdict(
        "Appendix C: the variance from NWGM(O^2) - NWGM(O)^2 is no sharper than the range Eq. 212 leaves: its mean "
        "error is " + ", ".join(f"{100 * u:.0f}%" for u in useful) + " of the width E(1 - E) by layer after training",
        min(useful) >= C_USEFUL, source="Appendix C, Eqs. 212-218",
        words="additional costly information seem to be required, in order to get estimates of V that are sharper "
              "than those in Eq. (212), and one might as well directly sample the values O_i",
        measured=min(useful), threshold=C_USEFUL,
        basis=f"not sharper: an error of at least {100 * C_USEFUL:g}% of E(1 - E) in every layer"))
    ks = n.series("median_ks_gaussian_s", when="after")
    critical = 1.36 / np.sqrt(r["samples"])
    beta = n.series("median_ks_beta_o", when="after")
    out.append(Verdict(
        "Appendix E.1: S is close to Gaussian for a typical unit: median KS distance "
        f"{', '.join(f'{x:.3f}' for x in ks)} by layer after training (5% critical {critical:.3f}); O against a "
        f"Beta: {', '.join(f'{x:.3f}' for x in beta)}",
        max(ks) < critical, source="Appendix E.1, Eqs. 224-227",
        words="it is natural to assume that the incoming sum S into a neuron has a Gaussian distribution",
        measured=max(ks), threshold=critical,
        basis="the median unit response's KS distance under the 5% critical value 1.36 / sqrt(K)"))
    before = n.series("relative_error_eq229", when="before")
    after = n.series("relative_error_eq229", when="after")
    out.append(Verdict(
        "Appendix E.2: with independent weights and activities (the random initial weights), Eq. 229 gives Var(S) "
        f"over a layer within {100 * max(before):.1f}% (after training, when they are learned together: "
        f"{', '.join(f'{100 * a:.0f}%' for a in after)})", max(before) <= E2_TOLERANCE,
        source="Appendix E.2, Eqs. 228-230",
        words="Assume that the weights ... and the weights and the activities are independent of each other",
        measured=max(before), threshold=E2_TOLERANCE,
        basis=f"within {100 * E2_TOLERANCE:g}% where its assumption holds"))
    return out


EXPERIMENT = Experiment(
    "distributions", "Appendices C and E", "Higher moments and the distributions of S and O",
    "NWGM(O^k) estimates E(O^k), but the variance it gives is no sharper than the bounds of Eq. 212 (Appendix C); S is "
    "near-Gaussian, O then has the density of Eq. 226, and the moments of S follow from those of the weights and the "
    "activities when these are independent (Appendix E).", compute, plot, verdicts, needs_study=True)
