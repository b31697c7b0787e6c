"""Sections 2-5: the exact results, each against exact enumeration of every dropout mask.

- Eqs. 15-17 (unit dropout) and 18-20 (connection dropout) on one linear layer: means, variances and covariances;
  the two differ only in the covariances, which connection dropout makes 0.
- Eqs. 24-25: droplab's ``linear_moments`` recursions against ``ensemble.exact`` on a deep linear network.
- Eq. 39: for a logistic unit, NWGM(O) = sigma(E(S)), exactly; Eq. 47: for a softmax layer, the class-normalized
  NWGM is softmax(E(S)).
- Eq. 87 is written with "<~": a two-point counterexample exceeds its variance-free bounds.

Enumeration here is plain NumPy over every mask with its probability, independent of droplab's estimators.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from .. import ensemble, means
from ..net import DropoutMLP
from ._base import Context, Experiment, Numbers, Verdict

TOLERANCE = 1e-10  # float64 enumeration against a closed form
COUNTEREXAMPLE = {"O": (0.01, 0.99), "P": (0.75, 0.25)}  # Eq. 87: E = 0.255


def _masks(n: int, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every 0/1 mask over n gates, (2^n, n), and its probability under independent keeps."""
    bits = np.array(list(itertools.product((0.0, 1.0), repeat=n)))
    prob = np.prod(np.where(bits == 1, keep, 1 - keep), axis=1)
    return bits, prob


def _moments(s: np.ndarray, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of the rows of s weighted by prob."""
    mean = prob @ s
    centred = s - mean
    return mean, (centred * prob[:, None]).T @ centred


def _single_layer(rng: np.random.Generator, n: Numbers) -> None:
    inputs, outputs = 6, 3
    w, x = rng.normal(0, 1, (outputs, inputs)), rng.uniform(0, 1, inputs)
    keep = rng.uniform(0.3, 0.9, inputs)
    bits, prob = _masks(inputs, keep)  # unit dropout: one gate per input, shared by every output (Eq. 13)
    mean, cov = _moments((bits * x) @ w.T, prob)
    pq = keep * (1 - keep)
    closed_cov = (w * pq * x**2) @ w.T  # Eqs. 16-17
    n.add("max_abs_error", float(np.abs(mean - w @ (keep * x)).max()), "|E(S) - Eq. 15|", model="unit",
          moment="mean")
    n.add("max_abs_error", float(np.abs(cov - closed_cov).max()), "|Cov - Eqs. 16-17|", model="unit",
          moment="covariance")
    off = ~np.eye(outputs, dtype=bool)
    n.add("max_abs_covariance", float(np.abs(cov[off]).max()), "largest |Cov(S_i, S_l)|, i != l", model="unit")
    ckeep = rng.uniform(0.3, 0.9, (outputs, inputs))  # connection dropout: one gate per weight (Eq. 14)
    bits, prob = _masks(outputs * inputs, ckeep.ravel())
    s = np.einsum("mij,ij,j->mi", bits.reshape(-1, outputs, inputs), w, x)
    mean, cov = _moments(s, prob)
    n.add("max_abs_error", float(np.abs(mean - (w * ckeep) @ x).max()), "|E(S) - Eq. 18|",
          model="connection", moment="mean")
    closed_var = (w**2 * ckeep * (1 - ckeep)) @ x**2  # Eq. 19
    n.add("max_abs_error", float(np.abs(np.diag(cov) - closed_var).max()), "|Var(S) - Eq. 19|",
          model="connection", moment="variance")
    n.add("max_abs_covariance", float(np.abs(cov[off]).max()), "largest |Cov(S_i, S_l)|, i != l (Eq. 20: 0)",
          model="connection")


def _deep_linear(n: Numbers, seed: int) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DropoutMLP([5, 4, 3, 2], transfer="linear", output="linear", keep=(0.8, 0.5, 0.6)).double().eval()
    x = torch.rand(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    lm, ex = ensemble.linear_moments(net, x), ensemble.exact(net, x)
    for h in range(1, len(ex.layers)):
        n.add("max_abs_error", float((lm.layers[h].E_S - ex.layers[h].E_S).abs().max()),
              "|E(S) recursion (Eq. 24) - enumeration|", model="deep linear", layer=h,
              moment="mean")
        n.add("max_abs_error", float((lm.layers[h].Var_S - ex.layers[h].Var_S).abs().max()),
              "|Var(S) recursion (Eq. 25) - enumeration|", model="deep linear", layer=h, moment="variance")


def _nwgm_identities(rng: np.random.Generator, n: Numbers) -> None:
    inputs = 8
    w, x, keep = rng.normal(0, 1, inputs), rng.uniform(0, 1, inputs), rng.uniform(0.3, 0.9, inputs)
    bits, prob = _masks(inputs, keep)
    s = (bits * x) @ w
    o = 1 / (1 + np.exp(-s))
    nwgm = float(means.normalized_geometric_mean(o, prob))
    n.add("max_abs_error", abs(nwgm - 1 / (1 + np.exp(-float(prob @ s)))), "|NWGM(O) - sigma(E(S))| (Eq. 39)",
          model="logistic")
    n.add("gap_e_nwgm", abs(float(prob @ o) - nwgm), "|E(O) - NWGM(O)| (not 0: the identity is NWGM's)",
          model="logistic")
    classes = 4
    wk = rng.normal(0, 1, (classes, inputs))
    sk = (bits * x) @ wk.T  # (masks, classes)
    ok = np.exp(sk - sk.max(1, keepdims=True))
    ok /= ok.sum(1, keepdims=True)
    nwgm_k = np.asarray(means.class_normalized_geometric_mean(ok, prob, dim=0))
    es = prob @ sk
    soft = np.exp(es - es.max()) / np.exp(es - es.max()).sum()
    n.add("max_abs_error", float(np.abs(nwgm_k - soft).max()), "|NWGM(O_i) - softmax(E(S))_i| (Eq. 47)",
          model="softmax")


def _counterexample(n: Numbers) -> None:
    o, p = np.array(COUNTEREXAMPLE["O"]), np.array(COUNTEREXAMPLE["P"])
    e, v = float(p @ o), float(p @ (o - p @ o) ** 2)
    gap = abs(e - float(means.normalized_geometric_mean(o, p)))
    n.add("counterexample_gap", gap, "Eq. 87 counterexample, O = (0.01, 0.99), P = (0.75, 0.25): |E - NWGM|")
    n.add("counterexample_e", e, "its E").add("counterexample_v", v, "its V")
    for name, value in (("variance", means.bound_variance(np.array(e), np.array(v))),
                        ("mean only", means.bound_mean_only(np.array(e))),
                        ("simple", means.bound_simple(np.array(e)))):
        n.add("counterexample_bound", float(value), f"Eq. 87 bound ({name})", bound=name)


def compute(ctx: Context) -> dict[str, Any]:
    rng = np.random.default_rng(ctx.seed)
    n = Numbers()
    _single_layer(rng, n)
    _deep_linear(n, ctx.seed)
    _nwgm_identities(rng, n)
    _counterexample(n)
    return {"numbers": n.records()}


def plot(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    num = Numbers.of(r)
    fig, axes = subplots(1, 2, figsize=(15, 5.2), gridspec_kw={"width_ratios": [1.5, 1]})
    def name(rec: dict[str, Any]) -> str:
        where = rec["where"]
        return f"{where['model']}{', layer ' + str(where['layer']) if 'layer' in where else ''}: {rec['label']}"

    rows = [(name(rec), max(rec["value"], 1e-18)) for rec in r["numbers"] if rec["key"] == "max_abs_error"]
    rows += [(name(rec), max(rec["value"], 1e-18)) for rec in r["numbers"]
             if rec["key"] == "max_abs_covariance" and rec["where"]["model"] == "connection"]
    labels = [lab if len(lab) < 62 else lab[:60] + "..." for lab, _ in rows]
    axes[0].barh(range(len(rows)), [v for _, v in rows], color="tab:blue")
    axes[0].set_yticks(range(len(rows)), labels, fontsize=8)
    axes[0].set_xscale("log")
    axes[0].axvline(TOLERANCE, color="k", ls="--", label=f"tolerance {TOLERANCE:g}")
    axes[0].set(title="Sections 2-5: closed forms against enumeration", xlabel="largest absolute difference")
    axes[0].legend(fontsize=9)
    bounds = {b: num.get("counterexample_bound", bound=b) for b in num.coordinates("bound", "counterexample_bound")}
    names = ["|E - NWGM|", *[f"bound\n({b})" for b in bounds]]
    values = [num.get("counterexample_gap"), *bounds.values()]
    axes[1].bar(range(len(values)), values, color=["tab:red"] + ["tab:gray"] * len(bounds))
    axes[1].set_xticks(range(len(values)), names, fontsize=9)
    for i, v in enumerate(values):
        axes[1].annotate(f"{v:.3f}", (i, v), xytext=(0, 3), textcoords="offset points", ha="center")
    axes[1].set(title="Eq. 87 is approximate:\nO = (0.01, 0.99), P = (0.75, 0.25)", ylabel="value")
    fig.tight_layout()
    return fig


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n = Numbers.of(r)
    unit_cov = n.get("max_abs_covariance", model="unit")
    conn_cov = n.get("max_abs_covariance", model="connection")
    linear = [n.get("max_abs_error", model="unit", moment="mean"),
              n.get("max_abs_error", model="unit", moment="covariance"),
              n.get("max_abs_error", model="connection", moment="mean"),
              n.get("max_abs_error", model="connection", moment="variance")]
    deep = n.values("max_abs_error", model="deep linear")
    logistic, softmax = n.get("max_abs_error", model="logistic"), n.get("max_abs_error", model="softmax")
    gap = n.get("counterexample_gap")
    simple_bound = n.get("counterexample_bound", bound="mean only")
    return [
        Verdict(f"one linear layer: Eqs. 15-19 match enumeration to {max(linear):.1e}; the covariances of unit dropout "
                f"are not 0 (up to {unit_cov:.3f}) and those of connection dropout are ({conn_cov:.1e}, Eq. 20)",
                max(linear) <= TOLERANCE and conn_cov <= TOLERANCE and unit_cov > 100 * TOLERANCE,
                source="Section 2, Eqs. 15-20", words="Note the difference in covariance between the two models. When "
                "dropout is applied to the connections, S_i and S_l are entirely independent.",
                measured=max(max(linear), conn_cov), threshold=TOLERANCE, basis="float64 rounding"),
        Verdict(f"deep linear networks: the recursions for E(S) and Var(S) match enumeration to {max(deep):.1e}",
                max(deep) <= TOLERANCE, source="Section 3, Eqs. 24-25",
                words="all the covariances can also be computed recursively from the input layer to the output layer",
                measured=max(deep), threshold=TOLERANCE, basis="float64 rounding"),
        Verdict(f"a logistic unit: NWGM(O) = sigma(E(S)) to {logistic:.1e}; a softmax layer: the normalized NWGM is "
                f"softmax(E(S)) to {softmax:.1e}", max(logistic, softmax) <= TOLERANCE,
                source="Section 4, Eqs. 39 and 47", words="NWGM(O(N)) = sigma(E(S))", measured=max(logistic, softmax),
                threshold=TOLERANCE, basis="float64 rounding"),
        Verdict(f"Eq. 87 is an approximate bound ('<~'): for O = (0.01, 0.99) with P = (0.75, 0.25), |E - NWGM| = "
                f"{gap:.3f} exceeds its variance-free bound {simple_bound:.3f}", gap > simple_bound,
                source="Section 8, Eq. 87", words="|E - G/(G + G')| ~ V|1 - 2E|/(1 - 2V) <= ... (written with <~)",
                measured=gap, threshold=simple_bound, basis="the bound E(1 - E)|1 - 2E|/(1 - 2E(1 - E)) of Eq. 87"),
    ]


EXPERIMENT = Experiment(
    "exact", "Sections 2-5", "The exact results, against enumeration",
    "For linear units and networks the dropout moments follow in closed form (unit and connection dropout differ "
    "only in the covariances); for a logistic unit the NWGM is exactly sigma(E(S)), and for a softmax layer "
    "softmax(E(S)).", compute, plot, verdicts)
