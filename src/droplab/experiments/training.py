"""The study network's training, first: its curve (loss, validation and test error, mean dropout variance per
layer, every epoch), and whether it ran in the paper's regime (Section 11.7's three phases) to convergence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._base import Context, Experiment, Numbers, Verdict
from .network import mc_stats

# Section 11.7, phase 1: "the consistency is high" at the start: the mean Var(O) of a layer at epoch 0 is at most
# this fraction of its peak over training (phase 2: a rise)
START_FRACTION = 0.5
# phase 3, "the consistency of the units stabilizes": over the last quarter of the epochs the mean Var(O) rises by
# at most this fraction of its peak (stable or falling)
TAIL_RISE = 0.1
# the precondition of the regime: it learns from the first epochs
FIRST_EPOCHS, FIRST_ERROR = 3, 50.0


def compute(ctx: Context) -> dict[str, Any]:
    study = ctx.study
    study.ensure()
    n = Numbers()
    for row in study.metrics:
        e = int(row["epoch"])
        n.add("train_loss", row["train_loss"], "training loss (dropout network, cross-entropy)", epoch=e)
        n.add("val_error", row["val_error"], "validation error % (weight scaling)", epoch=e)
        n.add("test_error", row["test_error"], "test error % (weight scaling)", epoch=e)
    n.add("epochs", len(study.metrics), "epochs trained")
    n.add("best_epoch", study.best_epoch, "best validation epoch (the weights every test error refers to)")
    n.add("final_test_error", study.test_error, "test error % at the best validation epoch")
    n.add("chance_loss", math.log(study.data.output_size), "chance loss ln(classes)")
    k = ctx.settings.measurements.trajectory_samples
    for epoch in study.epochs:
        mc, _ = mc_stats(ctx, epoch, samples=k)
        for h in range(1, len(mc.layers) - 1):
            n.add("mean_var_o", float(mc.layers[h].Var.double().mean()), "mean dropout Var(O) over units and inputs",
                  layer=h, epoch=epoch)
    return {"numbers": n.records()}


def phases(curve: list[float]) -> dict[str, float]:
    """Section 11.7's three phases on one layer's mean Var(O) over epochs 0..T: the start against the peak,
    where the peak is, and the rise over the last quarter of the epochs, as a fraction of the peak."""
    v = np.asarray(curve, dtype=np.float64)
    if v.size < 4 or not np.all(np.isfinite(v)):
        raise ValueError(f"expected a finite curve of at least 4 epochs, got {curve!r}")
    peak = float(v.max())
    tail = v[-max(2, len(v) // 4):]
    return {"start_over_peak": float(v[0] / peak) if peak > 0 else math.inf, "peak_epoch": int(v.argmax()),
            "tail_rise": float((tail[-1] - tail[0]) / peak) if peak > 0 else 0.0}


def _plain_log(ax: Any) -> None:
    """A log y axis with plain numbers (2, 5, 10) for tick labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    n = Numbers.of(r)
    epochs = n.coordinates("epoch", "train_loss")
    fig, axes = subplots(1, 3, figsize=(17, 4.4))
    axes[0].plot(epochs, n.series("train_loss", by="epoch"), "o-", ms=3, label="training loss (with dropout)")
    axes[0].axhline(n.get("chance_loss"), color="k", ls=":", label="chance, ln 10")
    axes[0].set(title="the study network: training loss", xlabel="epoch", ylabel="cross-entropy")
    _plain_log(axes[0])
    axes[0].legend(fontsize=9)
    axes[1].plot(epochs, n.series("val_error", by="epoch"), "o-", ms=3, label="validation")
    axes[1].plot(epochs, n.series("test_error", by="epoch"), "s-", ms=3, label="test")
    best = n.get("best_epoch")
    axes[1].axvline(best, color="k", ls="--", lw=1, label=f"best validation epoch ({best})")
    _plain_log(axes[1])
    axes[1].set(title="error of the weight-scaled network", xlabel="epoch", ylabel="error (%), log scale")
    axes[1].legend(fontsize=9)
    for h in n.coordinates("layer", "mean_var_o"):
        axes[2].plot(n.coordinates("epoch", "mean_var_o", layer=h), n.series("mean_var_o", by="epoch", layer=h),
                     "o-", ms=3, label=f"hidden layer {h}")
    axes[2].set(title="Section 11.7: mean dropout Var(O), every epoch", xlabel="epoch (0: before training)",
                ylabel="mean Var(O)")
    axes[2].legend(fontsize=9)
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    epochs = n.get("epochs")
    losses = n.series("train_loss", by="epoch")
    tests = n.series("test_error", by="epoch")
    chance = n.get("chance_loss")
    early = min(FIRST_EPOCHS, len(tests))
    best, tail_start = n.get("best_epoch"), epochs - max(1, epochs // 10)
    out = [
        Verdict(f"the study network learns from its first epochs: training loss {losses[0]:.3f} in epoch 1 (chance "
                f"{chance:.3f}), test error {tests[early - 1]:.2f}% after epoch {early}",
                losses[0] < chance and tests[early - 1] < FIRST_ERROR, group="regime", source="Section 11.7, phase 1",
                words="at the beginning of learning, when the weights are random and very small ...",
                measured=tests[early - 1], threshold=FIRST_ERROR,
                basis=f"training loss below ln(classes) from epoch 1 and test error below {FIRST_ERROR:g}% by epoch "
                      f"{FIRST_EPOCHS}: no plateau at chance"),
        Verdict(f"the study network converged: its best validation epoch is {best} of {epochs}",
                best <= tail_start, group="regime", source="Section 11.7, phase 3",
                words="as learning converges, the consistency of the units stabilizes", measured=best,
                threshold=tail_start, basis="the best validation epoch is not among the last 10% of the epochs"),
    ]
    layers = n.coordinates("layer", "mean_var_o")
    curves = {h: n.series("mean_var_o", by="epoch", layer=h) for h in layers}
    if min(len(c) for c in curves.values()) < 4:  # the test preset's two epochs: no phases to see
        words = "the three phases need at least 4 snapshots (epoch 0 and 3 more)"
        return out + [Verdict(f"phases 1-3: not measured ({words})", False, source="Section 11.7",
                              measurable=False, basis=words)]
    found = {h: phases(c) for h, c in curves.items()}
    start = max(f["start_over_peak"] for f in found.values())
    rise = max(f["tail_rise"] for f in found.values())
    out += [
        Verdict(f"phases 1-2: in every hidden layer the mean dropout variance starts low and rises: at epoch 0 it is "
                f"at most {start:.2f} of its peak (peaks at epochs "
                f"{', '.join(str(f['peak_epoch']) for f in found.values())})",
                start <= START_FRACTION and all(f["peak_epoch"] > 0 for f in found.values()),
                source="Section 11.7", words="as learning progresses, the sizes of the weights increase ... the "
                "consistencies decreases, i.e. for a given input the dropout variance of the units across subnetworks "
                "increases", measured=start, threshold=START_FRACTION,
                basis=f"Var(O) at epoch 0 at most {START_FRACTION:g} of the layer's peak, in every hidden layer"),
        Verdict(f"phase 3: the mean dropout variance of every hidden layer is stable or falling at the end: over the "
                f"last quarter of the epochs it rises by at most {rise:+.2f} of its peak",
                rise <= TAIL_RISE, source="Section 11.7",
                words="as learning converges, the consistency of the units stabilizes, i.e. for a given input the "
                      "variance of the units across subnetworks becomes roughly constant", measured=rise,
                threshold=TAIL_RISE, basis=f"a rise of at most {TAIL_RISE:g} of the peak over the last quarter"),
    ]
    return out


EXPERIMENT = Experiment(
    "training", "Section 11.7", "The study network's training",
    "Dropout learning goes through three phases: from small random weights the dropout variance is small, it "
    "grows while the weights grow, and it stabilizes as learning converges. Every figure after this one measures "
    "this network.",
    compute, plot, verdicts, needs_study=True)
