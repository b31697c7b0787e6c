"""Every verdict function on synthetic numbers: one set where each claim holds, then, claim by claim, a change
that makes exactly that claim fail. A verdict that cannot fail is caught here."""

import copy

import pytest

from droplab.experiments import (
    appendix,
    bounds,
    dynamics,
    generalization,
    gradients,
    lecture,
    meanlaws,
    network,
    sampling,
    spiking,
    transfer,
)
from droplab.experiments._base import Verdict, binomial_se, worst_ratio


def _gaussian(mean=0.0, sd=0.01, skew=0.1, kurt=0.2):
    return [mean, sd, skew, kurt]


def approximations_holding():
    n = {}
    for when in ("before", "after"):
        for h in (1, 2, 3):
            p = f"layer {h} {when}: "
            n[p + "mean |E - W|"] = 0.004
            n[p + "mean |E - NWGM|"] = 0.003
            n[p + "mean sd(O)"] = 0.05
            n[p + "fraction |E - NWGM| <= bound 2 + 5 SE"] = 1.0
            n[p + "mean error of Eq. 87 (E - NWGM)"] = 2e-3
            n[p + "mean error of Eq. 202 (E - NWGM)"] = 1e-3
            n[p + "mean |E(f'(S)) - f'(E(S))|"] = 1e-3
            n[p + "mean first-order spread of f'(S), |f''(E(S))| sd(S)"] = 1e-2
            n[p + "NWGM - E: mean, sd, skewness, excess kurtosis"] = _gaussian()
            n[p + "W - E: mean, sd, skewness, excess kurtosis"] = _gaussian(skew=0.1 if when == "before" else 0.5)
            n[p + "correlation(alpha, beta)"] = 0.02
            n[p + "sd(alpha), sd(beta), sd(E - W)"] = [0.004, 0.003, 0.005]
        n[f"{when}: sd(E - W) at the top hidden layer, sqrt(sum of Var(alpha) over layers)"] = [0.005, 0.007]
    return {"numbers": n}


def _set(r, key_suffix, value, when="after", layers=(3,)):
    for h in layers:
        r["numbers"][f"layer {h} {when}: {key_suffix}"] = value


APPROXIMATION_BREAKS = [
    (0, lambda r: _set(r, "mean |E - W|", 0.06)),
    (1, lambda r: _set(r, "mean |E - NWGM|", 0.06)),
    (2, lambda r: _set(r, "fraction |E - NWGM| <= bound 2 + 5 SE", 0.999)),
    (3, lambda r: _set(r, "mean error of Eq. 202 (E - NWGM)", 3e-3)),
    (4, lambda r: _set(r, "mean |E(f'(S)) - f'(E(S))|", 2e-2)),
    (5, lambda r: _set(r, "NWGM - E: mean, sd, skewness, excess kurtosis", _gaussian(kurt=3.0), "before")),
    (6, lambda r: _set(r, "NWGM - E: mean, sd, skewness, excess kurtosis", _gaussian(mean=0.05))),
    (7, lambda r: _set(r, "W - E: mean, sd, skewness, excess kurtosis", _gaussian(skew=-2.5), "before")),
    (8, lambda r: _set(r, "W - E: mean, sd, skewness, excess kurtosis", _gaussian(kurt=-2.5))),
    (9, lambda r: _set(r, "W - E: mean, sd, skewness, excess kurtosis", _gaussian(skew=0.01), layers=(1, 2, 3))),
    (10, lambda r: _set(r, "correlation(alpha, beta)", -0.3)),
    (11, lambda r: r["numbers"].update(
        {"after: sd(E - W) at the top hidden layer, sqrt(sum of Var(alpha) over layers)": [0.008, 0.007]})),
]


VAR_CURVE = "mean Var at the start, its peak (epoch), at the end"


def variance_holding():
    n = {"after: fraction Var <= W(1 - W) + 5 SE": 0.99, "before: mean |E(OO) - W W|": 1e-3,
         "before: mean |E(OO) - W|": 0.2, "after: mean |E(OO) - W W|": 1e-2, "after: mean |E(OO) - W|": 0.05,
         "mean Var at the start, its peak (epoch), at the end": [1e-4, 5e-3, 8.0, 3e-3]}
    return {"numbers": n, "epochs": list(range(31))}


VARIANCE_BREAKS = [
    (0, lambda r: r["numbers"].update({"after: fraction Var <= W(1 - W) + 5 SE": 0.9})),
    (1, lambda r: r["numbers"].update({"before: mean |E(OO) - W W|": 0.3})),
    (2, lambda r: r["numbers"].update({"after: mean |E(OO) - W W|": 0.06})),
    (3, lambda r: r["numbers"].update({VAR_CURVE: [1e-3, 5e-3, 8.0, 3e-3]})),
    (3, lambda r: r["numbers"].update({VAR_CURVE: [1e-4, 5e-3, 30.0, 5e-3]})),
]


def pairs_holding():
    n = {}
    for when in ("before", "after"):
        n[f"{when}: unconnected, mean |E(OO) - W W|"] = 1e-3
        n[f"{when}: unconnected, mean |E(OO) - 0|"] = 0.2
    n["before: connected, W W error minus W_ij W_j error (mean, SE)"] = [-1e-4, 1e-4]
    n["after: connected, W W error minus W_ij W_j error (mean, SE)"] = [1e-3, 1e-4]
    return {"numbers": n}


PAIRS_BREAKS = [
    (0, lambda r: r["numbers"].update({"before: unconnected, mean |E(OO) - W W|": 0.05})),
    (1, lambda r: r["numbers"].update({"after: unconnected, mean |E(OO) - 0|": 5e-3})),
    (2, lambda r: r["numbers"].update({"before: connected, W W error minus W_ij W_j error (mean, SE)": [1e-3, 1e-4]})),
    (3, lambda r: r["numbers"].update({"after: connected, W W error minus W_ij W_j error (mean, SE)": [1e-4, 1e-4]})),
]


def dynamics_holding():
    n = {}
    for h in (1, 2, 3):
        n[f"layer {h}: fraction of activations below 0.1"] = 0.7
        n[f"layer {h}: active units, mean dropout sd at the end, its SE, count"] = [0.1, 0.005, 300]
    n.update({"active unit: dropout sd at start, peak, end": [0.001, 0.2, 0.15],
              "active unit: t of the sd trend over the last quarter of epochs": 0.5,
              "inactive unit: peak dropout sd": 0.01, "inactive unit: mean output at end": 0.01})
    return {"numbers": n}


DYNAMICS_BREAKS = [
    (0, lambda r: r["numbers"].update({"layer 2: fraction of activations below 0.1": 0.3})),
    (1, lambda r: r["numbers"].update({"active unit: dropout sd at start, peak, end": [0.05, 0.2, 0.15]})),
    (2, lambda r: r["numbers"].update({"active unit: t of the sd trend over the last quarter of epochs": -4.0})),
    (3, lambda r: r["numbers"].update({"inactive unit: mean output at end": 0.3})),
    (3, lambda r: r["numbers"].update({"inactive unit: peak dropout sd": 0.3})),
    (4, lambda r: r["numbers"].update({"layer 3: active units, mean dropout sd at the end, its SE, count": [0.2, 0.005,
                                                                                                          300]})),
]


def three_networks_holding():
    n = {}
    for h in (1, 2):
        for name in ("dropout", "spiking"):
            n[f"layer {h}: mean |E({name}) - W|"] = 0.01
            n[f"layer {h}: mean sd(O) ({name})"] = 0.1
    n["predicted class agrees with W (dropout)"] = n["predicted class agrees with W (spiking)"] = 1.0
    return {"numbers": n}


THREE_BREAKS = [
    (0, lambda r: r["numbers"].update({"layer 2: mean |E(dropout) - W|": 0.2})),
    (1, lambda r: r["numbers"].update({"layer 1: mean |E(spiking) - W|": 0.2})),
]


SMALL_LR = "small learning rate: test error after 2 epochs, backpropagation, backpercolation"


def backpercolation_holding():
    return {"numbers": {
        "backpercolation p = f'(S): exact expectation against backpropagation, max relative difference": 1e-17,
        "backpercolation p = f'(S): relative error of the average of 50, 200 samples": [0.4, 0.2],
        SMALL_LR: [10.0, 10.5], "small learning rate: SE of the difference": 0.9}}


BACKPERC_BREAKS = [
    (0, lambda r: r["numbers"].update(
        {"backpercolation p = f'(S): exact expectation against backpropagation, max relative difference": 0.1})),
    (1, lambda r: r["numbers"].update(
        {"backpercolation p = f'(S): relative error of the average of 50, 200 samples": [0.4, 0.35]})),
    (2, lambda r: r["numbers"].update({SMALL_LR: [10.0, 14.0]})),
]


def generalization_holding():
    errors = {"no regularization": 6.0, "L2": 5.5, "dropout": 4.0, "Gaussian dropout": 4.3, "connection dropout": 4.5,
              "dropin": 80.0}
    mc = {"samples": [1, 2, 5, 10, 20, 50, 100, 200], "error": [7.0, 6.0, 5.0, 4.5, 4.2, 4.1, 4.0, 4.0],
          "weight_scaled": 4.0}
    return {"errors": errors, "mc": mc, "numbers": {"test examples": 2000}}


GENERALIZATION_BREAKS = [
    (0, lambda r: r["errors"].update({"no regularization": 4.5})),
    (1, lambda r: r["errors"].update({"Gaussian dropout": 6.0})),
    (2, lambda r: r["mc"].update({"error": [7.0, 6.0, 5.0, 4.5, 4.2, 6.0, 4.0, 4.0]})),
    (3, lambda r: r["mc"].update({"error": [4.1, 6.0, 5.0, 4.5, 4.2, 4.1, 4.0, 4.0]})),
]


def dropin_holding():
    return {"numbers": {"bernoulli gates on the dropout-trained weights: mean Var(S) per layer": [1.0, 2.0, 3.0, 0.5],
                        "dropin gates on the dropout-trained weights: mean Var(S) per layer": [2.0, 5.0, 9.0, 3.0],
                        "dropin: test error": 20.0, "bernoulli: test error": 4.0, "test examples": 2000}}


DROPIN_BREAKS = [
    (0, lambda r: r["numbers"].update({"dropin: test error": 4.5})),
    (1, lambda r: r["numbers"].update(
        {"dropin gates on the dropout-trained weights: mean Var(S) per layer": [2.0, 5.0, 2.0, 3.0]})),
]


def gradients_holding():
    return {"numbers": {
        "single linear unit (Eq. 147): max |E(dE_D/dw) - (dE_ENS/dw + w I^2 Var(delta))|": 1e-16,
        "deep linear network (Eq. 155): |E(dE_D/dw) - (dE_ENS/dw + w Var(alpha) + Cov(alpha, beta))|": 0.0},
        "curve": {"scale": [0.1, 1.0], "eq164": [1e-5, 1e-2], "ens164": [1e-2, 1e-1], "eq181": [1e-5, 1e-2],
                  "ens181": [1e-2, 1e-1]}}


GRADIENT_BREAKS = [
    (0, lambda r: r["numbers"].update(
        {"single linear unit (Eq. 147): max |E(dE_D/dw) - (dE_ENS/dw + w I^2 Var(delta))|": 1e-4})),
    (1, lambda r: r["numbers"].update(
        {"deep linear network (Eq. 155): |E(dE_D/dw) - (dE_ENS/dw + w Var(alpha) + Cov(alpha, beta))|": 1e-3})),
    (2, lambda r: r["curve"].update({"eq164": [2e-2, 1e-2]})),
    (3, lambda r: r["curve"].update({"eq181": [2e-2, 1e-2]})),
]


def sampling_holding():
    names = list(sampling.DISTRIBUTIONS)
    n = {}
    for k in names:
        n[f"{k}: mean E, m=100"] = 0.5 if "0.5)" in k or "[0, 1]" in k else 0.25
        n[f"{k}: mean NWGM, m=100"] = n[f"{k}: mean E, m=100"] - 0.0001
        n[f"{k}: sd of NWGM - E, m=100"] = 0.01
        n[f"{k}: correlation at m=1000"] = 0.99
        n[f"{k}: m x covariance at m=100 and m=1000, SE of their difference"] = [0.05, 0.051, 0.002]
    n["uniform [0, 0.5]: fraction of samples with NWGM <= E, m=100"] = 1.0
    return {"numbers": n, "sizes": [10, 100, 1000], "repeats": 5000}


SAMPLING_BREAKS = [
    (0, lambda r: r["numbers"].update({"normal (0.5, 0.1): mean NWGM, m=100": 0.45})),
    (1, lambda r: r["numbers"].update({"uniform [0, 1]: correlation at m=1000": 0.5})),
    (2, lambda r: r["numbers"].update({"uniform [0, 1]: m x covariance at m=100 and m=1000, SE of their difference":
                                       [0.05, 0.03, 0.002]})),
    (3, lambda r: r["numbers"].update({"uniform [0, 0.5]: fraction of samples with NWGM <= E, m=100": 0.9998})),
]


def bounds_holding():
    import math

    return {"numbers": {"argmax bound (Fig. 8.1)": 0.5 - math.sqrt(math.sqrt(5) - 2) / 2,
                        "paper: 0.5 - sqrt(sqrt(5) - 2) / 2": 0.5 - math.sqrt(math.sqrt(5) - 2) / 2,
                        "argmax 2E(1-E)|1-2E| (Fig. 8.2)": 0.5 - math.sqrt(3) / 6,
                        "paper: 0.5 - sqrt(3) / 6": 0.5 - math.sqrt(3) / 6}}


BOUNDS_BREAKS = [
    (0, lambda r: r["numbers"].update({"argmax bound (Fig. 8.1)": 0.26})),
    (1, lambda r: r["numbers"].update({"argmax 2E(1-E)|1-2E| (Fig. 8.2)": 0.25})),
]


def means_holding():
    n = {"Eq. 88 example: largest difference from the paper": 4e-7, "Eq. 88 example: NWGM - E >= E - G": True,
         "(0.25, 0.75) example: E, NWGM": [0.5, 0.5],
         "O = (0.55, 0.65): E - NWGM true, Eq. 85, Eq. 202": [-1.0e-3, -1.01e-3, -1.0e-3],
         "O = (0.55, 0.65): V": 0.0025,
         "O = (0.55, 0.65): E - G true, V (Eq. 84), V / (2E) (Appendix B)": [2e-3, 2.5e-3, 2e-3],
         "Eq. 77: fraction with G <= E": 1.0, "property 2: fraction with G <= NWGM": 1.0,
         "Eq. 81: fraction with NWGM <= E when every O <= 0.5": 1.0,
         "Eq. 82: fraction with NWGM >= E when every O >= 0.5": 1.0,
         "mean |E - NWGM|, mean |E - a random member|": [0.01, 0.2]}
    for loss in ("squared", "relative entropy"):
        for name in ("E", "G", "NWGM"):
            n[f"Eqs. 56-58, {loss}, t in [0, 1]: fraction with Error({name}) <= E(Error)"] = 1.0
    return {"numbers": n}


MEANS_BREAKS = [
    (0, lambda r: r["numbers"].update({"Eq. 88 example: largest difference from the paper": 3e-6})),
    (1, lambda r: r["numbers"].update({"(0.25, 0.75) example: E, NWGM": [0.5, 0.5001]})),
    (2, lambda r: r["numbers"].update({"O = (0.55, 0.65): E - NWGM true, Eq. 85, Eq. 202": [-1e-3, -5e-4, -1e-3]})),
    (3, lambda r: r["numbers"].update({"Eqs. 56-58, squared, t in [0, 1]: fraction with Error(E) <= E(Error)": 0.99})),
    (4, lambda r: r["numbers"].update(
        {"Eqs. 56-58, relative entropy, t in [0, 1]: fraction with Error(NWGM) <= E(Error)": 0.99})),
    (5, lambda r: r["numbers"].update({"Eqs. 56-58, squared, t in [0, 1]: fraction with Error(G) <= E(Error)": 0.8})),
    (6, lambda r: r["numbers"].update({"Eq. 81: fraction with NWGM <= E when every O <= 0.5": 0.9999})),
    (7, lambda r: r["numbers"].update({"mean |E - NWGM|, mean |E - a random member|": [0.3, 0.2]})),
]


def lecture_holding():
    return {"numbers": {"worked example output (lecture: [60, 132])": [60.0, 132.0],
                        "linear-unit penalty: max |measured - p(1-p) formula|": 1e-16,
                        "linear-unit penalty: p of the largest penalty": 0.5},
            "worked": [60.0, 132.0], "l2": {"rows": [[1.001, 1.0, 0.8], [2.0, 2.002, 1.5]]},
            "ensemble": {"n": [1, 2], "curves": {"0.5": {"measured": [1.0, 0.751], "formula": [1.0, 0.75]}}},
            "coadapt": {"with dropout": {"co-adapted weights before": 1.0, "co-adapted weights after": 0.2},
                        "without dropout": {"co-adapted weights before": 1.0, "co-adapted weights after": 1.0}}}


LECTURE_BREAKS = [
    (0, lambda r: r.update({"worked": [60.0, 133.0]})),
    (1, lambda r: r.update({"l2": {"rows": [[1.05, 1.0, 0.8]]}})),
    (2, lambda r: r.update({"ensemble": {"n": [2], "curves": {"0.5": {"measured": [0.8], "formula": [0.75]}}}})),
    (3, lambda r: r["coadapt"]["with dropout"].update({"co-adapted weights after": 0.7})),
    (3, lambda r: r["coadapt"]["without dropout"].update({"co-adapted weights after": 0.5})),
    (4, lambda r: r["numbers"].update({"linear-unit penalty: p of the largest penalty": 0.45})),
]

def appendix_holding():
    n = {}
    for h in (1, 2):
        n[f"layer {h} after: mean |E - Eq. 242|, mean |E - NWGM|"] = [0.002, 0.003]
        n[f"layer {h} after: mean |E - gaussian_moments|, mean |E - W|"] = [0.003, 0.004]
        n[f"layer {h} after: mean sd(O)"] = 0.05
    return {"numbers": n}


APPENDIX_BREAKS = [
    (0, lambda r: r["numbers"].update({"layer 2 after: mean |E - Eq. 242|, mean |E - NWGM|": [0.06, 0.003]})),
    (1, lambda r: r["numbers"].update({"layer 1 after: mean |E - gaussian_moments|, mean |E - W|": [0.07, 0.004]})),
]

def transfer_holding():
    n = {}
    for t in ("logistic", "tanh", "relu"):
        for h in (1, 2):
            n[f"{t} layer {h}: mean |E - W|, mean sd(O)"] = [0.01, 0.1]
    for h in (1, 2):
        n[f"relu layer {h}: mean |E - RL(E(S))| where |E(S)|/sd(S) < 1, > 2 (units)"] = [0.1, 0.01, 50, 300]
        n[f"relu layer {h}: mean |E - Eq. 72|, mean |E - RL(E(S))|"] = [0.005, 0.02]
    return {"numbers": n}


TRANSFER_BREAKS = [
    (0, lambda r: r["numbers"].update({"tanh layer 2: mean |E - W|, mean sd(O)": [0.2, 0.1]})),
    (1, lambda r: r["numbers"].update({"relu layer 1: mean |E - W|, mean sd(O)": [0.2, 0.1]})),
    (2, lambda r: r["numbers"].update(
        {"relu layer 2: mean |E - RL(E(S))| where |E(S)|/sd(S) < 1, > 2 (units)": [0.01, 0.1, 50, 300]})),
    (3, lambda r: r["numbers"].update({"relu layer 1: mean |E - Eq. 72|, mean |E - RL(E(S))|": [0.03, 0.02]})),
]

CASES = [
    ("transfer", transfer.verdicts, transfer_holding, TRANSFER_BREAKS),
    ("appendix", appendix.verdicts, appendix_holding, APPENDIX_BREAKS),
    ("approximations", network.verdicts_approximations, approximations_holding, APPROXIMATION_BREAKS),
    ("variance", network.verdicts_variance, variance_holding, VARIANCE_BREAKS),
    ("pairs", network.verdicts_pairs, pairs_holding, PAIRS_BREAKS),
    ("dynamics", dynamics.verdicts, dynamics_holding, DYNAMICS_BREAKS),
    ("spiking", spiking.verdicts_three_networks, three_networks_holding, THREE_BREAKS),
    ("backpercolation", spiking.verdicts_backpercolation, backpercolation_holding, BACKPERC_BREAKS),
    ("generalization", generalization.verdicts, generalization_holding, GENERALIZATION_BREAKS),
    ("dropin", gradients.verdicts_dropin, dropin_holding, DROPIN_BREAKS),
    ("gradients", gradients.verdicts, gradients_holding, GRADIENT_BREAKS),
    ("sampling", sampling.verdicts, sampling_holding, SAMPLING_BREAKS),
    ("bounds", bounds.verdicts, bounds_holding, BOUNDS_BREAKS),
    ("means", meanlaws.verdicts, means_holding, MEANS_BREAKS),
    ("lecture", lecture.verdicts, lecture_holding, LECTURE_BREAKS),
]


@pytest.mark.parametrize("name, verdicts, holding, breaks", CASES, ids=[c[0] for c in CASES])
def test_every_verdict_holds_on_numbers_where_its_claim_holds(name, verdicts, holding, breaks):
    out = verdicts(holding())
    assert all(isinstance(v, Verdict) for v in out)
    assert [v.text for v in out if not v.holds] == []
    assert all(v.group in ("paper", "other", "lecture") and v.source for v in out)
    # every verdict is broken by at least one case below
    assert {i for i, _ in breaks} == set(range(len(out)))


@pytest.mark.parametrize("name, verdicts, holding, breaks, index, change",
                         [(c[0], c[1], c[2], c[3], i, ch) for c in CASES for i, ch in c[3]],
                         ids=[f"{c[0]}-{i}-{k}" for c in CASES for k, (i, _) in enumerate(c[3])])
def test_each_verdict_fails_where_its_claim_fails(name, verdicts, holding, breaks, index, change):
    r = holding()
    change(r)
    out = verdicts(copy.deepcopy(r))
    failed = [i for i, v in enumerate(out) if not v.holds]
    assert index in failed, out[index].text


def test_at_noise_flag_and_binomial_se():
    assert Verdict("x", True, measured=1.0, threshold=1.1, noise=0.1).at_noise
    assert not Verdict("x", True, measured=1.0, threshold=2.0, noise=0.1).at_noise
    assert not Verdict("x", True, measured=1.0, threshold=1.0).at_noise  # no noise known
    assert binomial_se(5.0, 2000) == pytest.approx(100 * (0.05 * 0.95 / 2000) ** 0.5)
    assert binomial_se(0.0, 100) > 0  # one error's worth, never 0


def test_worst_ratio():
    assert worst_ratio([0.01, 0.03], [0.1, 0.1]) == pytest.approx(0.3)
    assert worst_ratio([0.0, 0.02], [0.0, 0.1]) == pytest.approx(0.2)  # 0 error at 0 scale is no error
    assert worst_ratio([0.01, 0.02], [0.0, 0.1]) == float("inf")  # an error where the scale is 0 fails any threshold
    with pytest.raises(ValueError, match="as many errors as scales"):
        worst_ratio([0.1], [0.1, 0.2])
