"""Scoring a trained network with the ensemble's estimators: what ``droplab evaluate`` computes, as a library.

``output_means`` averages the output layer over the dropout ensemble with one estimator (in chunks of inputs, so
memory stays bounded); ``evaluate`` scores those averages on a dataset's test split: the test error (or the MSE of
a regression), and for class probabilities the NLL, Brier score, ECE and the area under the risk-coverage curve,
the out-of-distribution scores of the predictive entropy against another dataset's inputs, and the reliability and
risk-coverage figures. The command line parses, checks and prints; the numbers come from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import ensemble, metrics
from .data import Dataset
from .net import DropoutMLP

__all__ = ["evaluate", "output_means"]

INPUT_CHUNK = 256  # inputs per estimator call


def output_means(model: DropoutMLP, x: Tensor, estimator: str = "weight_scaled", *, samples: int = 1000,
                 seed: int = 0) -> Tensor:
    """E(O^L) per input under one estimator of ``droplab.ensemble.ESTIMATORS``.

    Args:
        model: A trained ``DropoutMLP``.
        x: Inputs, shape (B, n_0), on the model's device.
        estimator: An estimator's Python or command-line name (``"weight_scaled"``, ``"monte-carlo"``, ...).
        samples: Members per input, for random estimators.
        seed: The seed of one generator that runs through all the chunks of inputs, for random estimators.

    Returns:
        Tensor: Shape (B, n_L): class probabilities for a softmax output.
    """
    chosen = ensemble.estimator(estimator)
    generator = torch.Generator(device=x.device).manual_seed(seed)
    outs = []
    for start in range(0, len(x), INPUT_CHUNK):
        xb = x[start:start + INPUT_CHUNK]
        stats = chosen(model, xb, samples=samples, generator=generator) if chosen.random else chosen(model, xb)
        outs.append(stats.output.E)
    return torch.cat(outs)


def evaluate(model: DropoutMLP, data: Dataset, estimator: str = "weight_scaled", *, samples: int = 1000,
             seed: int = 0, ood: Dataset | None = None, figures: str | Path | None = None) -> dict[str, Any]:
    """One estimator's scores on ``data``'s test split.

    Args:
        model: A trained ``DropoutMLP`` whose input size is the data's.
        data: The dataset (its ``x_test``, ``y_test``), on the model's device.
        estimator: As ``output_means``'.
        samples: As ``output_means``'.
        seed: As ``output_means``'.
        ood: Another dataset of the same input size: its test inputs are scored as out of distribution by the
            predictive entropy (AUROC, AUPR in and out, FPR at 95% TPR); class probabilities only.
        figures: A folder for ``reliability-<estimator>.png`` and ``risk-coverage-<estimator>.png``; class probabilities
            only.

    Returns:
        dict: ``test_mse`` for a regression; ``test_error`` (percent, counted exactly) for classes, and where the
            output gives class probabilities (softmax, or logistic outputs normalized to sum to 1) ``nll``, ``brier``,
            ``ece``, ``aurc``, with ``ood`` and the figures' paths where asked.
    """
    if data.input_size != model.sizes[0]:
        raise ValueError(f"the network takes {model.sizes[0]} inputs and {data.name} has {data.input_size}; give "
                         "the dataset it was trained on")
    probabilistic = model.output_name in ("softmax", "logistic")
    if (ood is not None or figures is not None) and not (data.num_classes and probabilistic):
        raise ValueError(f"ood and figures score class probabilities; this network's {model.output_name} output on "
                         f"{data.name} gives none. Leave them out")
    means = output_means(model, data.x_test, estimator, samples=samples, seed=seed)
    if not data.num_classes:
        return {"test_mse": float((means - data.y_test).double().square().mean())}
    wrong = int((means.argmax(1) != data.y_test).sum())  # counted exactly: float32 means print noise
    row: dict[str, Any] = {"test_error": round(100.0 * wrong / len(data.y_test), 6)}
    if not probabilistic:
        return row
    p = means / means.sum(1, keepdim=True)
    score = metrics.scores(p, data.y_test)
    confidence, guess = p.max(1)
    rc = metrics.risk_coverage(confidence, guess == data.y_test)
    row.update({"nll": round(score["nll"], 6), "brier": round(score["brier"], 6), "ece": round(score["ece"], 6),
                "aurc": round(rc.aurc, 6)})
    if ood is not None:
        q = output_means(model, ood.x_test, estimator, samples=samples, seed=seed)
        scores = metrics.ood_scores(metrics.entropy(p), metrics.entropy(q / q.sum(1, keepdim=True)))
        row["ood"] = {"dataset": ood.name, **{k: round(v, 6) for k, v in vars(scores).items()}}
    if figures is not None:
        folder = Path(figures)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"reliability-{estimator}.png"
        metrics.reliability_diagram(p, data.y_test, path,
                                    title=f"{data.name}: {estimator}, reliability (ECE {score['ece']:.3f})")
        row["reliability"] = str(path)
        curve = folder / f"risk-coverage-{estimator}.png"
        metrics.risk_coverage_plot(rc, curve,
                                   title=f"{data.name}: {estimator}, selective prediction (AURC {rc.aurc:.4f})")
        row["risk_coverage"] = str(curve)
    return row
