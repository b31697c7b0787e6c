"""Generalization: the same network trained with each regularizer; Monte Carlo against weight scaling."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import ensemble, modes
from ..presets import ARMS
from ..presets import preset as training_preset
from ._base import Context, Experiment, Numbers, Verdict, binomial_se, mc_precision
from ._settings import StudySettings

# Each arm trains at its own learning rate (and L2 coefficient), chosen on validation by its sweep (presets.ARMS);
# the arms other than dropout (the study network itself) train in the precision the host runs fastest ("auto",
# droplab.host): bfloat16 products where they run >= 1.25x float32's (measured on the standard preset on an
# avx512_bf16 host: equal test error to float32 within 1.4 binomial SE over 3 seeds, 1.9x faster), float32 on a
# CPU with AVX2 only, where bfloat16 products run 25-40x slower than float32's
ARM_PRECISION = "auto"


def arm_settings(label: str, settings: StudySettings) -> tuple[dict[str, Any], float]:
    """(model changes, learning rate) of arm ``label`` for a study preset's ``settings``. The arms' learning rates
    were chosen on the standard preset; other presets keep their ratio to its learning rate (for the substitutes'
    SGD schedules, as for the standard's Adam). Connection dropout stays on the classifier layer at any depth."""
    arm = ARMS[label]
    changes = dict(arm.model)
    if "connection_keep" in changes:
        weights = len(settings.hidden) + 1
        changes["connection_keep"] = [None] * (weights - 1) + [changes["connection_keep"][-1]]
    return changes, settings.train.lr * arm.lr / training_preset("standard").train.lr


def train_arm(ctx: Context, label: str) -> dict[str, Any]:
    """The arm ``label`` of ``presets.ARMS`` trained once per run (the dropout arm is the study network). With a Ray
    cluster (``--ray``), the first section that needs an arm sends every arm there at once, side by side."""
    if ctx.ray and not ctx.cache.get("arms on ray"):
        from ._remote import train_variants

        train_variants(ctx.study, [_arm_job(name, ctx.settings) for name in ARMS], ctx.ray)
        ctx.cache["arms on ray"] = True
    return ctx.study.train_variant(**_arm_job(label, ctx.settings))


def _arm_job(label: str, settings: StudySettings) -> dict[str, Any]:
    """``Study.train_variant``'s keywords for arm ``label``."""
    changes, lr = arm_settings(label, settings)
    return {"model_changes": changes, "lr": lr, "l2": ARMS[label].l2,
            "precision": "float32" if label == "dropout" else ARM_PRECISION}


def _weights_and_sparsity(ctx: Context, models: dict[str, Any], n: Numbers) -> None:
    """Section 11.5-11.7: dropout keeps the weights small and favours sparse activity, against the network trained
    without regularization (the control). Weights as they predict: each layer's weights times its keep rate."""
    x = ctx.study.data.x_test[:1000].to(ctx.device)
    for label in ("dropout", "no regularization"):
        net = models[label].eval()
        keeps = [float(k) for k in net.config()["keep"]] if isinstance(net.config()["keep"], list) else \
            [float(net.config()["keep"])] * len(net.linears)
        for h, (linear, keep) in enumerate(zip(net.linears, keeps, strict=True), start=1):
            rms = float((keep * linear.weight.detach().double()).square().mean().sqrt())
            n.add("weight_rms", rms, "RMS of the weights as they predict (keep x w)", regularizer=label, layer=h)
        with modes.expect(net), torch.no_grad():
            trace = net.trace(x)
        for h in range(1, len(trace.O) - 1):
            n.add("fraction_below_0_1", float((trace.O[h] < 0.1).double().mean()),
                  "fraction of hidden activations below 0.1 (1,000 test inputs)", regularizer=label, layer=h)


def compute(ctx: Context) -> dict[str, Any]:
    data = ctx.study.data
    out: dict[str, Any] = {"errors": {}, "curves": {}}
    n = Numbers()
    models = {}
    for label, arm in ARMS.items():
        result = train_arm(ctx, label)
        out["errors"][label] = result["test_error"]
        out["curves"][label] = [row["val_error"] for row in result["history"]]
        n.add("test_error", result["test_error"], "test error %", regularizer=label)
        n.add("trained", int(result["trained"]), "trained (1) or within 5 points of chance (0)", regularizer=label)
        n.add("lr", arm_settings(label, ctx.settings)[1], "learning rate (its sweep's best on validation)",
              regularizer=label)
        if arm.l2:
            n.add("l2", arm.l2, "L2 coefficient (its sweep's best on validation)", regularizer=label)
        n.add("best_epoch", result["best_epoch"], "best validation epoch", regularizer=label)
        models[label] = result["model"]
    out["dataset"] = ctx.settings.data.dataset  # on MNIST's own split, the arms are held against published numbers
    n.add("chance_error", ctx.study.chance_error, "chance test error % (the commonest class)")
    n.add("test_examples", len(data.x_test), "test examples")
    _weights_and_sparsity(ctx, models, n)
    # Monte Carlo prediction against weight scaling as the number of samples grows (dropout network)
    net = models["dropout"].eval()
    x, y = data.x_test.to(ctx.device), data.y_test.to(ctx.device)
    ws_err = 100 * float((ensemble.weight_scaled(net, x).output.E.argmax(1) != y).float().mean())
    ks, errs = [1, 2, 5, 10, 20, 50, 100, 200], []
    gen = torch.Generator(device=ctx.device).manual_seed(ctx.seed)
    total, done = torch.zeros_like(ensemble.weight_scaled(net, x).output.E, dtype=torch.float64), 0
    for k in ks:  # one growing ensemble: each k adds k - done members to the running sum (200 members in all)
        stats = ensemble.monte_carlo(net, x, samples=k - done, generator=gen, statistics=("E",),
                                     precision=mc_precision(ctx))
        total += (k - done) * stats.output.E.double()
        done = k
        errs.append(100 * float((total.argmax(1) != y).float().mean()))
    out["mc"] = {"samples": ks, "error": errs, "weight_scaled": ws_err}
    n.add("weight_scaled_test_error", ws_err, "weight-scaled test error % (dropout network)")
    for k, err in zip(ks, errs, strict=True):
        n.add("monte_carlo_test_error", err, "Monte Carlo test error % (dropout network)", samples=k)
    out["numbers"] = n.records()
    return out


def plot(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    fig, axes = subplots(1, 2, figsize=(13, 4.2))
    num = Numbers.of(r)
    names = list(r["errors"])
    values = [r["errors"][k] for k in names]
    labels = [f"{k}, lr {num.get('lr', regularizer=k):g}" + ("" if num.get("trained", regularizer=k)
                                                              else " (did not train)") for k in names]
    n = num.get("test_examples")
    bars = [2 * binomial_se(v, n) for v in values]
    axes[0].barh(labels, values, xerr=bars, capsize=3)
    for y, (v, b) in enumerate(zip(values, bars, strict=True)):  # log axis: a run stuck at chance squashes nothing
        axes[0].annotate(f"{v:.2f}%", (v + b, y), xytext=(5, 0), textcoords="offset points", va="center")
    axes[0].set_xscale("log")
    axes[0].set_xlim(min(values) / 1.5, max(values) * 3)
    axes[0].set_xlabel("test error (%), log scale; bars: 2 binomial SE")
    axes[0].set_title("the same network, each regularizer at its best learning rate")
    axes[1].semilogx(r["mc"]["samples"], r["mc"]["error"], "o-", label="Monte Carlo average")
    axes[1].axhline(r["mc"]["weight_scaled"], color="k", ls="--", label="weight scaling")
    axes[1].set_xlabel("dropout samples per input")
    axes[1].set_ylabel("test error (%)")
    axes[1].set_title("Monte Carlo prediction against weight scaling")
    axes[1].legend(fontsize=9)
    fig.tight_layout()
    return fig


def _section_11_verdicts(num: Numbers) -> list[Verdict]:
    """Section 11: dropout keeps the weights small and makes activity sparse, against the network trained
    without regularization."""
    ok = all(num.get("trained", regularizer=label) for label in ("dropout", "no regularization"))
    out = []
    mine, control = (num.series("weight_rms", regularizer=k) for k in ("dropout", "no regularization"))
    smaller = sum(a < b for a, b in zip(mine, control, strict=True))
    out.append(Verdict(
        "dropout keeps the weights small: RMS of the predicting weights per layer "
        f"{', '.join(f'{a:.3f}' for a in mine)} against {', '.join(f'{b:.3f}' for b in control)} without "
        f"regularization (smaller in {smaller} of "
        f"{len(mine)} layers)", smaller == len(mine), source="Section 11.5", measurable=ok,
        words="Thus dropout has a built in regularization effect that keeps the weights small",
        measured=float(smaller), threshold=float(len(mine)),
        basis="every weight layer, against the same network trained without regularization at its own best "
              "learning rate"))
    sparse, plain = (num.series("fraction_below_0_1", regularizer=k) for k in ("dropout", "no regularization"))
    out.append(Verdict(
        f"sparsity is a consequence of dropout: {100 * np.mean(sparse):.1f}% of hidden activations below 0.1 with "
        f"dropout against {100 * np.mean(plain):.1f}% without (layers: "
        + ", ".join(f"{100 * a:.0f}/{100 * b:.0f}%" for a, b in zip(sparse, plain, strict=True)) + ")",
        float(np.mean(sparse)) > float(np.mean(plain)), source="Sections 11.5, 11.7, Fig. 11.1", measurable=ok,
        words="dropout has also a built-in propensity towards sparse representations",
        measured=float(np.mean(sparse) - np.mean(plain)), threshold=0.0,
        basis="the mean fraction over hidden layers, against the control network without dropout"))
    return out


# Srivastava et al. (2014, JMLR), Table 2, MNIST's 60,000 / 10,000 split: a standard network (no dropout) 1.60% test
# error, a dropout network of logistic units (3 x 1,024, keep 0.8 / 0.5) 1.35%
SRIVASTAVA_STANDARD, SRIVASTAVA_DROPOUT_LOGISTIC = 1.60, 1.35


def _published_verdicts(e: dict[str, float], n: int, trained: Any) -> list[Verdict]:
    """The paper preset (MNIST's own 60,000 / 10,000 digits): the study network and the no-regularization arm against
    Srivastava et al.'s Table 2 on the same data."""
    dropout, plain = e["dropout"], e["no regularization"]
    near = 2 * binomial_se(SRIVASTAVA_STANDARD, n)
    return [
        Verdict(f"the study network (4 x 1,200 logistic, dropout) reaches Srivastava et al.'s dropout error on MNIST: "
                f"{dropout:.2f}% against their {SRIVASTAVA_DROPOUT_LOGISTIC:.2f}% (3 x 1,024 logistic units)",
                dropout <= SRIVASTAVA_DROPOUT_LOGISTIC, group="other", source="Srivastava et al. (2014), Table 2",
                words="Dropout NN, Logistic, 3 layers, 1024 units: 1.35", paper=f"{SRIVASTAVA_DROPOUT_LOGISTIC:.2f}%",
                measured=dropout, threshold=SRIVASTAVA_DROPOUT_LOGISTIC, noise=binomial_se(dropout, n),
                basis="at or below the published test error on the same 10,000 test digits (theirs from their own "
                      "search of schedules; the study's is the standard preset's, 30 epochs)",
                measurable=trained("dropout")),
        Verdict(f"the network without regularization is near Srivastava et al.'s standard network: {plain:.2f}% "
                f"against their {SRIVASTAVA_STANDARD:.2f}%", abs(plain - SRIVASTAVA_STANDARD) <= near,
                group="other", source="Srivastava et al. (2014), Table 2", words="Standard Neural Net: 1.60",
                paper=f"{SRIVASTAVA_STANDARD:.2f}%",
                measured=abs(plain - SRIVASTAVA_STANDARD), threshold=near, noise=binomial_se(plain, n),
                basis="within two binomial standard errors of the published test error (10,000 test digits)",
                measurable=trained("no regularization")),
    ]


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    e, mc, num = r["errors"], r["mc"], Numbers.of(r)
    n = num.get("test_examples")

    def se(*errors: float) -> float:  # binomial SE of a difference of test errors on the same n examples
        return float(np.hypot(*(binomial_se(x, n) for x in errors)))

    def trained(*labels: str) -> bool:
        return all(num.get("trained", regularizer=label) for label in labels)

    def untrained(*labels: str) -> str:
        return "; ".join(f"{label} did not train ({e[label]:.2f}%, chance {num.get('chance_error'):.2f}%)"
                         for label in labels if not num.get("trained", regularizer=label))

    at50 = mc["error"][mc["samples"].index(50)]
    ws = mc["weight_scaled"]
    out = []
    for other, source in (("no regularization", "Hinton et al. (2012); Srivastava et al. (2014)"),
                          ("L2", "Srivastava et al. (2014), Table 9"),
                          ("connection dropout", "Wan et al. (2013)")):
        gap, noise = e[other] - e["dropout"], se(e["dropout"], e[other])
        ok = trained("dropout", other)
        text = (f"dropout generalizes better than {other}: test error {e['dropout']:.2f}% against {e[other]:.2f}%"
                if ok else f"dropout against {other}: not measured ({untrained('dropout', other)})")
        words = ("dropout reduces overfitting and improves test error (paraphrase)" if other != "connection dropout"
                 else "DropConnect and dropout perform comparably (paraphrase); droplab checks only the ordering")
        out.append(Verdict(text, gap > 2 * noise, group="other", source=source, words=words, measured=gap,
                           threshold=2 * noise, noise=noise, measurable=ok,
                           basis="each arm at its own best learning rate; an improvement of more than two binomial "
                                 "standard errors of the difference"))
    out += _section_11_verdicts(num)
    if r.get("dataset") == "mnist":
        out += _published_verdicts(e, n, trained)
    gauss = abs(e["Gaussian dropout"] - e["dropout"])
    ok = trained("Gaussian dropout", "dropout")
    out += [
        Verdict(f"Gaussian dropout does about as well as Bernoulli dropout: {e['Gaussian dropout']:.2f}% against "
                f"{e['dropout']:.2f}%" if ok else f"Gaussian against Bernoulli dropout: not measured "
                f"({untrained('Gaussian dropout', 'dropout')})", gauss <= 2 * se(e["Gaussian dropout"], e["dropout"]),
                group="other", source="Srivastava et al. (2014), Section 10",
                words="Gaussian dropout works as well as Bernoulli dropout (paraphrase)", measured=gauss,
                threshold=2 * se(e["Gaussian dropout"], e["dropout"]), noise=se(e["Gaussian dropout"], e["dropout"]),
                basis="a difference within two binomial standard errors", measurable=ok),
        Verdict(f"about 50 Monte Carlo samples match weight scaling: {at50:.2f}% against {ws:.2f}%",
                abs(at50 - ws) <= 2 * se(at50, ws), group="other", source="Srivastava et al. (2014), Fig. 11",
                words="around k = 50 the Monte Carlo method becomes as good as the approximate averaging method",
                measured=abs(at50 - ws), threshold=2 * se(at50, ws), noise=se(at50, ws),
                basis="a difference within two binomial standard errors (same test examples: conservative)",
                measurable=trained("dropout")),
        Verdict(f"a single sampled subnetwork is worse than the ensemble: {mc['error'][0]:.2f}% against {ws:.2f}%",
                mc["error"][0] - ws > 2 * se(mc["error"][0], ws), group="other",
                source="Srivastava et al. (2014), Fig. 11", words="(k = 1 on their curve)",
                measured=mc["error"][0] - ws, threshold=2 * se(mc["error"][0], ws), noise=se(mc["error"][0], ws),
                basis="worse by more than two binomial standard errors of the difference",
                measurable=trained("dropout")),
    ]
    return out


EXPERIMENT = Experiment(
    "generalization", "Generalization", "Regularizers compared; Monte Carlo against weight scaling",
    "Dropout (Bernoulli or Gaussian) regularizes better than nothing and than dropin, and averaging about 50 "
    "sampled subnetworks matches the deterministic weight-scaled network (Srivastava et al. 2014).",
    compute, plot, verdicts, needs_study=True)
