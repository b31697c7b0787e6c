"""Generalization: the same network trained with each regularizer; Monte Carlo against weight scaling."""

from __future__ import annotations

from typing import Any

import torch

from .. import ensemble
from ._base import Context, Experiment, Verdict


def _variants(keep: list[float]) -> dict[str, dict[str, Any]]:
    """Changes to the study network's config (and its L2) for each regularizer compared."""
    return {
        "no regularization": {"keep": 1.0},
        "L2": {"keep": 1.0, "l2": 1e-4},
        "dropout": {},
        "Gaussian dropout": {"gate": "gaussian"},
        "connection dropout": {"keep": 1.0, "connection_keep": keep},
        "dropin": {"gate": "dropin"},
    }


def compute(ctx: Context) -> dict[str, Any]:
    data = ctx.study.data
    out: dict[str, Any] = {"errors": {}, "numbers": {}}
    models = {}
    for label, changes in _variants(ctx.study.model_config()["keep"]).items():
        result = ctx.study.train_variant(**changes)
        out["errors"][label] = result.test_error
        out["numbers"][f"{label}: test error %"] = result.test_error
        models[label] = result.model
    # Monte Carlo prediction against weight scaling as the number of samples grows (dropout network)
    net = models["dropout"].eval()
    x, y = data.x_test.to(ctx.device), data.y_test.to(ctx.device)
    ws_err = 100 * float((ensemble.weight_scaled(net, x).output.E.argmax(1) != y).float().mean())
    ks, errs = [1, 2, 5, 10, 20, 50, 100, 200], []
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    for k in ks:
        stats = ensemble.monte_carlo(net, x, samples=k, generator=gen, statistics=("E",))
        errs.append(100 * float((stats.output.E.argmax(1) != y).float().mean()))
    out["mc"] = {"samples": ks, "error": errs, "weight_scaled": ws_err}
    out["numbers"]["weight-scaled test error %"] = ws_err
    out["numbers"].update({f"Monte Carlo, {k} samples: test error %": e for k, e in zip(ks, errs, strict=True)})
    return out


def plot(r: dict[str, Any]) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    labels = list(r["errors"])
    axes[0].barh(labels, [r["errors"][k] for k in labels])
    axes[0].set_xlabel("test error (%)")
    axes[0].set_title("the same network, each regularizer, same budget", fontsize=9)
    axes[1].semilogx(r["mc"]["samples"], r["mc"]["error"], "o-", label="Monte Carlo average")
    axes[1].axhline(r["mc"]["weight_scaled"], color="k", ls="--", label="weight scaling")
    axes[1].set_xlabel("dropout samples per input")
    axes[1].set_ylabel("test error (%)")
    axes[1].set_title("Monte Carlo prediction against weight scaling", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    e, mc = r["errors"], r["mc"]
    at50 = mc["error"][mc["samples"].index(50)]
    return [
        Verdict(f"dropout generalizes better than no regularization: test error {e['dropout']:.2f}% against "
                f"{e['no regularization']:.2f}%", e["dropout"] < e["no regularization"]),
        Verdict(f"Gaussian dropout does about as well as Bernoulli dropout: {e['Gaussian dropout']:.2f}% against "
                f"{e['dropout']:.2f}%", abs(e["Gaussian dropout"] - e["dropout"]) <= 1.0),
        Verdict(f"about 50 Monte Carlo samples match weight scaling (Srivastava et al. 2014): {at50:.2f}% against "
                f"{mc['weight_scaled']:.2f}%", abs(at50 - mc["weight_scaled"]) <= 1.0),
        Verdict(f"a single sampled subnetwork is worse than the ensemble: {mc['error'][0]:.2f}% against "
                f"{mc['weight_scaled']:.2f}%", mc["error"][0] > mc["weight_scaled"]),
    ]


EXPERIMENT = Experiment(
    "generalization", "Generalization", "Regularizers compared; Monte Carlo against weight scaling",
    "Dropout (Bernoulli or Gaussian) regularizes better than nothing and than dropin, and averaging about 50 "
    "sampled subnetworks matches the deterministic weight-scaled network (Srivastava et al. 2014).",
    compute, plot, verdicts, needs_study=True)
