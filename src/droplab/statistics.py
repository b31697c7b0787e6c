"""The statistics every estimator of the dropout ensemble returns, one module below both ``droplab.ensemble``
(which computes them) and ``droplab.metrics`` (which scores them), so that neither imports the other.

``EnsembleStatistics`` holds per-unit statistics of every layer of a ``DropoutMLP`` (``LayerStatistics``, one per
layer, 0 = the input); ``PredictiveStatistics`` holds the statistics of the output of any model (Monte Carlo by
``predictive``, one pass by ``moments``). Both answer ``.output`` and ``.layers`` in the same terms, so code
written for one reads the other. ``droplab.ensemble`` exports the same classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

__all__ = ["OUTPUTS", "STATISTICS", "EnsembleStatistics", "LayerStatistics", "Pair", "PredictiveStatistics"]

STATISTICS = ("E", "Var", "NWGM", "WGM", "E_S", "Var_S", "E_derivative")
"""The per-unit statistics an estimator can compute (``statistics=`` restricts Monte Carlo to some of them)."""

OUTPUTS = ("values", "logits", "probabilities")
"""What a model other than a ``DropoutMLP`` may return (``output=`` of ``predictive`` and ``moments``)."""

Pair = tuple[int, int, int, int]  # (layer h, unit i, layer l, unit j): E(O^h_i O^l_j)


@dataclass
class LayerStatistics:
    """Per-unit statistics of one layer; every tensor is (B, n_h). None where not defined or not computed.

    Attributes:
        E: E(O), the ensemble's mean output of each unit.
        Var: Var(O).
        NWGM: The normalized weighted geometric mean of O (Eq. 39; Eqs. 44-47 for softmax).
        WGM: The weighted geometric mean G of O (outputs in [0, 1] only).
        E_S: E(S), the mean input sum.
        Var_S: Var(S).
        E_derivative: E(f'(S)).
        se_E: The standard error of E (Monte Carlo only).
    """

    E: Tensor
    Var: Tensor | None = None
    NWGM: Tensor | None = None
    WGM: Tensor | None = None
    E_S: Tensor | None = None
    Var_S: Tensor | None = None
    E_derivative: Tensor | None = None
    se_E: Tensor | None = None


@dataclass
class EnsembleStatistics:
    """What every estimator returns: one ``LayerStatistics`` per layer (0 = input) and extras.

    ``pairs`` maps each requested (h, i, l, j) to E(O^h_i O^l_j), shape (B,). ``expected_entropy`` is
    E(H(O^L)) of a softmax output over the ensemble (for mutual information). ``samples`` is K for Monte
    Carlo, the number of configurations for exact enumeration, None for deterministic estimators.

    ``covariances`` (``linear_moments`` only) holds each layer's full covariance of O, shape (B, n_h, n_h).

    For a model other than a ``DropoutMLP`` (``monte_carlo(model, x, output=...)``), ``layers`` is [input,
    output] and ``output_kind`` says what the model returned: ``"values"`` (``output.E``, ``output.Var`` and
    ``output.se_E`` are the mean, variance and standard error of each output value), or ``"logits"`` /
    ``"probabilities"`` (``output.E`` holds the mean class probabilities, classes along the last dimension,
    with ``predictive_entropy`` H(E(p)), ``expected_entropy`` E(H(p)), ``mutual_information`` their difference
    (the BALD score) and ``variation_ratio`` 1 - (votes for the modal class) / K).

    Attributes:
        estimator: The estimator's name.
        layers: One ``LayerStatistics`` per layer, 0 = the input.
        pairs: (h, i, l, j) -> E(O^h_i O^l_j), shape (B,).
        expected_entropy: E(H(O^L)) of a softmax output, per input.
        histograms: (layer, unit) -> (B, bins) frequencies of O over [0, 1].
        histogram_edges: The histograms' bin edges.
        samples: K, the configurations enumerated, or None.
        output_kind: What a model other than a ``DropoutMLP`` returned, else None.
        covariances: Per layer, (B, n_h, n_h) (``linear_moments`` only).
        precision: The products' precision, where it was chosen.
        predictive_entropy: H(E(p)) per input, for class outputs.
        mutual_information: H(E(p)) - E(H(p)) per input, for class outputs.
        variation_ratio: 1 - (votes for the modal class) / K, for class outputs.
    """

    estimator: str
    layers: list[LayerStatistics]
    pairs: dict[Pair, Tensor] = field(default_factory=dict)
    expected_entropy: Tensor | None = None
    histograms: dict[tuple[int, int], Tensor] = field(default_factory=dict)
    histogram_edges: Tensor | None = None
    samples: int | None = None
    output_kind: str | None = None
    covariances: list[Tensor] | None = None
    precision: str | None = None  # the products' precision (float64, float32 or bfloat16), where it was chosen
    predictive_entropy: Tensor | None = None
    mutual_information: Tensor | None = None
    variation_ratio: Tensor | None = None

    @property
    def output(self) -> LayerStatistics:
        return self.layers[-1]

    def summary(self) -> str:
        rows = [f"{self.estimator}" + (f" ({self.samples} samples)" if self.samples else "")]
        for h, layer in enumerate(self.layers[1:], start=1):
            parts = [f"layer {h}: mean E {float(layer.E.mean()):.4f}"]
            if layer.NWGM is not None:
                parts.append(f"mean |E - NWGM| {float((layer.E - layer.NWGM).abs().mean()):.2e}")
            if layer.Var is not None:
                parts.append(f"mean Var {float(layer.Var.mean()):.2e}")
            rows.append(", ".join(parts))
        return "\n".join(rows)


@dataclass
class PredictiveStatistics:
    """What ``predictive`` (``monte_carlo`` on a model other than a ``DropoutMLP``) returns, per input.

    ``output_kind`` is what the model returned: ``"values"`` (``mean``, ``variance`` and ``standard_error`` of
    each output value over the members), or ``"logits"`` / ``"probabilities"`` (the same of each class
    probability, classes along the last dimension, with ``predictive_entropy`` H(E(p)), ``expected_entropy``
    E(H(p)), ``mutual_information`` their difference (the BALD score) and ``variation_ratio`` 1 - (votes for the
    modal class) / K, all in nats; ``mean_logits`` E(logits) for ``"logits"``). ``samples`` is K.
    ``output`` (and ``layers``, [inputs, output]) give the same numbers in ``EnsembleStatistics``' terms
    (``output.E``, ``output.Var``, ``output.se_E``, ``output.E_S``), so code written for either reads both.

    Attributes:
        output_kind: ``"values"``, ``"logits"`` or ``"probabilities"``.
        samples: K (0 for the one-pass ``moments``).
        inputs: The inputs.
        mean: Each output value's mean (class probabilities for classes).
        variance: Each output value's variance over the members.
        standard_error: The mean's Monte Carlo standard error (0 for ``moments``).
        mean_logits: E(logits), for ``"logits"``.
        predictive_entropy: H(E(p)) per input, in nats.
        expected_entropy: E(H(p)) per input, in nats.
        mutual_information: Their difference, the BALD score.
        variation_ratio: 1 - (votes for the modal class) / K.
        log_likelihood: Per input, Gal & Ghahramani's Monte Carlo log-likelihood (``targets`` and ``tau`` given).
        tau: The observation precision it was computed with.
        estimator: ``"monte_carlo"`` (``predictive``) or ``"moments"``.
        targets: The targets ``log_likelihood`` was streamed with (float64).
        nwgm: ``moments`` with logits: the normalized NWGM of Eq. 47, softmax(E(logits)).
    """

    output_kind: str
    samples: int
    inputs: Tensor
    mean: Tensor
    variance: Tensor
    standard_error: Tensor
    mean_logits: Tensor | None = None
    predictive_entropy: Tensor | None = None
    expected_entropy: Tensor | None = None
    mutual_information: Tensor | None = None
    variation_ratio: Tensor | None = None
    log_likelihood: Tensor | None = None  # per input, Gal & Ghahramani's Monte Carlo estimate (targets, tau given)
    tau: float | None = None
    estimator: str = "monte_carlo"
    targets: Tensor | None = None  # the targets ``log_likelihood`` was streamed with (float64)
    nwgm: Tensor | None = None  # ``moments`` with logits: the normalized NWGM of Eq. 47, softmax(E(logits))

    @property
    def output(self) -> LayerStatistics:
        return LayerStatistics(E=self.mean, Var=self.variance, se_E=self.standard_error, E_S=self.mean_logits)

    @property
    def layers(self) -> list[LayerStatistics]:
        return [LayerStatistics(E=self.inputs), self.output]

    def summary(self) -> str:
        text = (f"{self.estimator} ({self.samples} samples, output {self.output_kind}): "
                f"mean {float(self.mean.mean()):.4f}")
        if self.mutual_information is not None:
            text += f", mean mutual information {float(self.mutual_information.mean()):.3g} nats"
        return text
