"""The contract test over the public API (issue 35's harness): every public function of droplab's numeric modules
is called with valid arguments (a registry says what valid is where the signature cannot), then with each argument
in turn replaced by generated bad values: wrong types, NumPy scalars and arrays, booleans, empty, NaN, inf, huge,
negative, zero, wrong shapes and dtypes. Each call must either work, with no NaN or inf in its result that the
inputs did not hold, or raise ValueError / TypeError whose message names the argument. Never another exception.

``test_every_public_function_is_covered`` keeps the registry whole: a public function is in ``VALID`` or in
``EXEMPT`` with the reason (files, processes, the command line: the other harnesses cover them)."""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from droplab import DropoutMLP, ensemble

MODULES = ["droplab.means", "droplab.metrics", "droplab.theory", "droplab.gates", "droplab.transfer",
           "droplab.ensemble", "droplab.config", "droplab.presets", "droplab.host"]


def _net() -> DropoutMLP:
    torch.manual_seed(0)
    return DropoutMLP([3, 4, 2], keep=[0.8, 0.5]).eval()


def _probs(b=6, c=3) -> torch.Tensor:
    return torch.softmax(torch.randn(b, c, generator=torch.Generator().manual_seed(1)), -1)


X = torch.rand(5, 3, generator=torch.Generator().manual_seed(2))
LABELS = torch.tensor([0, 1, 2, 0, 1, 2])
O = torch.rand(8, 4, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.1  # outputs in (0, 1), 8 members
W8 = torch.full((8,), 1 / 8)

# name -> a callable giving the valid keyword arguments (fresh each call: a function may not change them)
VALID: dict[str, Callable[[], dict[str, Any]]] = {
    # means
    "means.bound_mean_only": lambda: {"e": torch.tensor([0.2, 0.5])},
    "means.bound_simple": lambda: {"e": torch.tensor([0.2, 0.5])},
    "means.bound_variance": lambda: {"e": torch.tensor([0.2, 0.5]), "v": torch.tensor([0.01, 0.02])},
    "means.cartwright_field_bounds": lambda: {"o": O.clone(), "weights": None, "dim": 0},
    "means.class_normalized_geometric_mean": lambda: {"o": torch.softmax(torch.randn(8, 2, 3), -1), "dim": 0},
    "means.complement_geometric_mean": lambda: {"o": O.clone(), "weights": W8.clone(), "dim": 0},
    "means.expected_derivative_mean_field": lambda: {"mean_s": torch.tensor([0.1, -0.4]), "c": 1.0, "lam": 1.0},
    "means.expected_derivative_second_order": lambda: {"mean_s": torch.tensor([0.1, -0.4]),
                                                       "var_s": torch.tensor([0.2, 0.1]), "lam": 1.0},
    "means.gaussian_expected_logistic": lambda: {"mean_s": torch.tensor([0.1, -0.4]), "var_s": torch.tensor([0.2, 0.1]),
                                                 "c": 1.0, "lam": 1.0},
    "means.geometric_mean": lambda: {"o": O.clone(), "weights": W8.clone(), "dim": 0},
    "means.logistic_nwgm": lambda: {"s": torch.randn(8, 4), "weights": W8.clone(), "dim": 0, "c": 1.0, "lam": 1.0},
    "means.normalized_geometric_mean": lambda: {"o": O.clone(), "weights": W8.clone(), "dim": 0},
    "means.nwgm_error_around_half": lambda: {"e": torch.tensor([0.4, 0.6]), "v": torch.tensor([0.01, 0.02])},
    "means.nwgm_error_extremes": lambda: {"e": torch.tensor([0.05, 0.95]), "v": torch.tensor([0.001, 0.002])},
    "means.nwgm_around_extremes": lambda: {"e": torch.tensor([0.05, 0.95]), "v": torch.tensor([0.001, 0.002])},
    "means.nwgm_around_half": lambda: {"e": torch.tensor([0.4, 0.6]), "v": torch.tensor([0.01, 0.02])},
    "means.nwgm_around_mean": lambda: {"e": torch.tensor([0.4, 0.6]), "v": torch.tensor([0.01, 0.02])},
    "means.relu_expectation_gaussian": lambda: {"mean_s": torch.tensor([0.1, -0.4]), "var_s": torch.tensor([0.2, 0.1]),
                                                "lam": 1.0},
    "means.relu_error_discrete": lambda: {"s": torch.randn(8, 4), "weights": W8.clone(), "dim": 0, "lam": 1.0},
    "means.relu_error_uniform": lambda: {"a": torch.tensor([0.5, 2.0]), "lam": 1.0},
    "means.weighted_mean": lambda: {"o": O.clone(), "weights": W8.clone(), "dim": 0},
    "means.weighted_variance": lambda: {"o": O.clone(), "weights": W8.clone(), "dim": 0},
    # metrics
    "metrics.accuracy": lambda: {"predictions": _probs(), "labels": LABELS.clone()},
    "metrics.brier_score": lambda: {"predictions": _probs(), "labels": LABELS.clone()},
    "metrics.entropy": lambda: {"p": _probs()},
    "metrics.expected_calibration_error": lambda: {"predictions": _probs(), "labels": LABELS.clone(), "bins": 5},
    "metrics.mutual_information": lambda: {"predictions": _probs(), "expected_entropy": torch.full((6,), 0.5)},
    "metrics.negative_log_likelihood": lambda: {"predictions": _probs(), "labels": LABELS.clone()},
    "metrics.ood_scores": lambda: {"in_scores": torch.rand(20), "out_scores": torch.rand(20) + 0.5},
    "metrics.regression_scores": lambda: {"predictions": torch.randn(6), "targets": torch.randn(6), "tau": 2.0,
                                          "variance": torch.rand(6)},
    "metrics.reliability": lambda: {"predictions": _probs(), "labels": LABELS.clone(), "bins": 5},
    "metrics.risk_coverage": lambda: {"confidence": torch.rand(6), "correct": torch.tensor([1, 0, 1, 1, 0, 1])},
    "metrics.scores": lambda: {"predictions": _probs(), "labels": LABELS.clone(), "bins": 5},
    "metrics.temperature_scale": lambda: {"member_logits": torch.randn(4, 6, 3), "labels": LABELS.clone(),
                                          "bounds": (0.1, 10.0)},
    # theory
    "theory.deep_linear_correction": lambda: {"w": torch.tensor([0.5, -0.2]), "var_alpha": torch.tensor([0.1, 0.2]),
                                              "cov_alpha_beta": torch.tensor([0.01, 0.0])},
    "theory.ensemble_error": lambda: {"v": 1.0, "c": 0.3, "n": 5},
    "theory.ensemble_gradient_linear_unit": lambda: {"w": torch.tensor([0.5, -0.2]), "inputs": torch.tensor([1.0, 2.0]),
                                                     "keep": torch.tensor([0.8, 0.5]), "target": 1.0},
    "theory.ensemble_gradient_logistic_unit": lambda: {"w": torch.tensor([0.5, -0.2]),
                                                       "inputs": torch.tensor([1.0, 2.0]),
                                                       "keep": torch.tensor([0.8, 0.5]), "target": 1.0, "lam": 1.0},
    "theory.l2_as_gaussian_noise": lambda: {"mse": 0.5, "w": torch.tensor([0.5, -0.2]), "alpha": 0.1},
    "theory.linear_unit_expected_gradient": lambda: {"w": torch.tensor([0.5, -0.2]), "inputs": torch.tensor([1.0, 2.0]),
                                                     "keep": torch.tensor([0.8, 0.5]), "target": 1.0},
    "theory.linear_unit_penalty": lambda: {"w": torch.tensor([0.5, -0.2]), "inputs": torch.tensor([1.0, 2.0]),
                                           "keep": torch.tensor([0.8, 0.5])},
    "theory.logistic_unit_expected_gradient": lambda: {"w": torch.tensor([0.5, -0.2]),
                                                       "inputs": torch.tensor([1.0, 2.0]),
                                                       "keep": torch.tensor([0.8, 0.5]), "target": 1.0, "lam": 1.0},
    "theory.exact_expected_gradient": lambda: {"net": _net(), "x": X[:2].clone(), "y": torch.tensor([0, 1])},
    # gates and transfers
    "gates.bernoulli_noise": lambda: {"shape": (3, 4), "keep": 0.5, "generator": torch.Generator().manual_seed(0),
                                      "dtype": torch.float32, "device": torch.device("cpu")},
    "gates.check_keep": lambda: {"keep": 0.5},
    "gates.check_scaling": lambda: {"scaling": "paper"},
    "gates.gate_kind": lambda: {"name": "bernoulli"},
    "gates.random_words": lambda: {"count": 4, "generator": torch.Generator().manual_seed(0),
                                   "device": torch.device("cpu")},
    "transfer.linear": lambda: {"lam": 1.0},
    "transfer.logistic": lambda: {"c": 1.0, "lam": 1.0},
    "transfer.make_transfer": lambda: {"name": "relu", "lam": 1.0, "t": 0.0},
    "transfer.relu": lambda: {"lam": 1.0, "t": 0.0},
    "transfer.softmax": lambda: {"lam": 1.0},
    "transfer.tanh": lambda: {"lam": 1.0},
    # ensemble
    "ensemble.monte_carlo": lambda: {"net": _net(), "x": X.clone(), "samples": 20,
                                     "generator": torch.Generator().manual_seed(0), "bins": 5,
                                     "histogram_units": [(1, 0)], "pairs": [(1, 0, 1, 1)]},
    "ensemble.predictive": lambda: {"model": torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5)).eval(),
                                    "x": X.clone(), "samples": 20, "generator": torch.Generator().manual_seed(0),
                                    "output": "values", "batch_dim": 0, "temperature": 1.0},
    "ensemble.weight_scaled": lambda: {"net": _net(), "x": X.clone()},
    "ensemble.chunk_size": lambda: {"net": _net(), "x": X.clone(), "memory": 2**20, "samples": 100, "tile": None},
    "ensemble.check_moments": lambda: {"model": torch.nn.Sequential(torch.nn.Linear(3, 4),
                                                                    torch.nn.Dropout(0.5)).eval(),
                                       "x": X.clone(), "samples": 20, "threshold": 4.0,
                                       "generator": torch.Generator().manual_seed(0)},
    "ensemble.moments": lambda: {"model": torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
                                                              torch.nn.Dropout(0.5), torch.nn.Linear(4, 2)).eval(),
                                 "x": X.clone(), "output": "logits", "batch_dim": 0},
    "ensemble.linear_moments": lambda: {"net": DropoutMLP([3, 4, 2], keep=[0.8, 0.5], transfer="linear",
                                                          output="linear").eval(), "x": X.clone()},
    "ensemble.gaussian_moments": lambda: {"net": _net(), "x": X.clone(), "method": "quadrature"},
    "ensemble.exact": lambda: {"net": _net(), "x": X.clone(), "max_configurations": 4096, "bins": 5,
                               "histogram_units": [(2, 1)]},
    "ensemble.dropconnect_inference": lambda: {"net": _net(), "x": X.clone(), "samples": 20,
                                               "generator": torch.Generator().manual_seed(0)},
    "ensemble.pair_approximations": lambda: {"net": _net(), "x": X.clone(), "pairs": [(1, 0, 1, 1)]},
    "ensemble.predict": lambda: {"stats": ensemble.weight_scaled(_net(), X), "rule": "mean"},
    "ensemble.mutual_information": lambda: {"predictions": ensemble.monte_carlo(_net(), X, samples=20)},
    "ensemble.predictive_entropy": lambda: {"probabilities": _probs()},
    "ensemble.variance_approximations": lambda: {"weight_scaled": ensemble.weight_scaled(_net(), X)},
    "ensemble.estimate": lambda: {"name": "weight_scaled", "net": _net(), "x": X.clone()},
    "ensemble.estimator": lambda: {"name": "monte_carlo"},
    # settings
    "config.fit_keep": lambda: {"keep": [0.8, 0.5], "gated_layers": 2},
    "presets.preset": lambda: {"name": "quick"},
    "host.choose": lambda: {"task": "training", "sizes": [64, 32, 10], "rows": 8},
    "host.supported": lambda: {"precision": "bfloat16"},
}

# public functions the contract test does not call, and why
EXEMPT = {
    "ensemble.Pair": "a type alias (a tuple of four ints), not a function",
    "metrics.reliability_diagram": "draws a figure: its inputs are reliability()'s, checked there",
    "metrics.risk_coverage_plot": "draws a figure of risk_coverage()'s result, checked there",
    "config.config_fields": "introspects a dataclass given by droplab's own code",
    "config.from_dict": "reads the TOML tables: covered by the command-line fuzz and the sweep tests",
    "config.to_toml": "writes settings droplab built",
    "presets.resolve": "the settings of a preset: covered by the command-line fuzz (train's flags)",
    "host.cache_dir": "no arguments",
    "host.capability": "no arguments",
    "host.cpu_flags": "no arguments",
    "host.cpu_model": "no arguments",
    "host.describe": "times products of droplab's own shapes (droplab info)",
    "host.peaks": "times products: slow, and its arguments are sizes droplab passes",
    "host.product_seconds": "times a product: called by choose with shapes droplab computes",
    "host.check_named": "warns on choose's arguments, built by droplab",
    "theory.top_layer_expected_gradient": "eight tensors of one layer's moments: checked by the theory tests",
}

# results that hold NaN by design, documented where the function is
NAN_BY_DESIGN = {"metrics.reliability": "an empty bin's accuracy and confidence are NaN (Reliability's doc)"}

# amounts of work or of memory: a huge one is long, not wrong
WORK = {"samples", "max_configurations", "memory", "count", "rows", "bins", "n", "gated_layers"}


class Weird:
    def __repr__(self) -> str:
        return "Weird()"


def _bad_values(name: str, default: Any) -> list[tuple[str, Any]]:
    out = [("an object", Weird()), ("text", "text"), ("True", True), ("NaN", float("nan")), ("inf", float("inf")),
           ("-1", -1), ("0", 0), ("-0.5", -0.5), ("NumPy NaN", np.float64("nan")),
           ("NumPy array", np.array([1.0, 2.0])),
           ("empty tensor", torch.empty(0)), ("NaN tensor", torch.full((2,), float("nan"))),
           ("int tensor", torch.tensor([1, 2])), ("3-D tensor", torch.rand(2, 2, 2)), ("list", [1.0, "a"])]
    if name not in WORK:
        out.append(("huge", 10**30))
    if default is not inspect.Parameter.empty and default is not None:
        out.append(("None", None))
    return out


def _functions() -> dict[str, Callable[..., Any]]:
    found = {}
    for mod in MODULES:
        m = importlib.import_module(mod)
        for a in m.__all__:
            f = getattr(m, a)
            if callable(f) and not inspect.isclass(f) or a == "Pair":
                found[f"{mod.removeprefix('droplab.')}.{a}"] = f
    return found


FUNCTIONS = _functions()


def _nonfinite(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_floating_point() and not bool(torch.isfinite(value).all())
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_nonfinite(v) for v in value)
    if isinstance(value, dict):
        return any(_nonfinite(v) for v in value.values())
    if hasattr(value, "__dataclass_fields__"):
        return any(_nonfinite(getattr(value, f)) for f in value.__dataclass_fields__)
    return False


def _held_nonfinite(value: Any) -> bool:
    if isinstance(value, (torch.Tensor, float, list, tuple, dict)):
        return _nonfinite(value)
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f" and not np.isfinite(value).all()
    return isinstance(value, np.floating) and not np.isfinite(value)


def test_every_public_function_is_covered():
    missing = sorted(set(FUNCTIONS) - set(VALID) - set(EXEMPT))
    assert not missing, f"public functions neither in VALID nor in EXEMPT: {missing}"
    assert not sorted(set(VALID) - set(FUNCTIONS)), "VALID names functions that are not public"


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_arguments_work_and_give_finite_results(name):
    result = FUNCTIONS[name](**VALID[name]())
    assert name in NAN_BY_DESIGN or not _nonfinite(result), f"{name}: NaN or inf from valid arguments"


CASES = [(name, param, label) for name in sorted(VALID) for param in VALID[name]()
         for label, _ in _bad_values(param, inspect.signature(FUNCTIONS[name]).parameters[param].default)]


@pytest.mark.parametrize("name, param, label", CASES, ids=[f"{n}-{p}-{v}" for n, p, v in CASES])
def test_a_bad_argument_works_or_is_refused_by_name(name, param, label):
    default = inspect.signature(FUNCTIONS[name]).parameters[param].default
    bad = dict(_bad_values(param, default))[label]
    kwargs = VALID[name]()
    kwargs[param] = bad
    try:
        result = FUNCTIONS[name](**kwargs)
    except (ValueError, TypeError) as exc:
        assert param in str(exc) or param.replace("_", " ") in str(exc), \
            f"{name}({param}={label}): the message does not name {param!r}: {exc}"
        return
    if not _held_nonfinite(bad) and name not in NAN_BY_DESIGN:
        assert not _nonfinite(result), f"{name}({param}={label}) returned NaN or inf"


def _pair_cases(per_pair: int = 3) -> list[tuple[str, str, str, str, str]]:
    """Two arguments bad at once: ``per_pair`` drawn pairs of bad values for every pair of a function's arguments."""
    import itertools
    import random

    rng = random.Random(35)
    out = []
    for name in sorted(VALID):
        params = inspect.signature(FUNCTIONS[name]).parameters
        for a, b in itertools.combinations(list(VALID[name]()), 2):
            la = [label for label, _ in _bad_values(a, params[a].default)]
            lb = [label for label, _ in _bad_values(b, params[b].default)]
            for _ in range(per_pair):
                out.append((name, a, rng.choice(la), b, rng.choice(lb)))
    return out


PAIRS = _pair_cases()


@pytest.mark.slow
@pytest.mark.parametrize("name, a, la, b, lb", PAIRS, ids=[f"{n}-{a}={x}-{b}={y}" for n, a, x, b, y in PAIRS])
def test_two_bad_arguments_work_or_are_refused_by_name(name, a, la, b, lb):
    params = inspect.signature(FUNCTIONS[name]).parameters
    kwargs = VALID[name]()
    kwargs[a] = dict(_bad_values(a, params[a].default))[la]
    kwargs[b] = dict(_bad_values(b, params[b].default))[lb]
    try:
        result = FUNCTIONS[name](**kwargs)
    except (ValueError, TypeError) as exc:
        assert any(p in str(exc) or p.replace("_", " ") in str(exc) for p in (a, b)), \
            f"{name}({a}={la}, {b}={lb}): the message names neither: {exc}"
        return
    if not (_held_nonfinite(kwargs[a]) or _held_nonfinite(kwargs[b])) and name not in NAN_BY_DESIGN:
        assert not _nonfinite(result), f"{name}({a}={la}, {b}={lb}) returned NaN or inf"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_the_finiteness_check_refuses_nan_and_inf_and_keeps_finite_values_whose_sum_overflows(dtype):
    """The contract reads a tensor once (its sum) to see that it is finite; a sum of finite values that overflows
    (values near the dtype's largest) must not be refused, and one NaN or infinity anywhere must be."""
    from droplab._contract import _finite
    from droplab.means import weighted_mean  # a public function with a checked tensor argument

    big = torch.finfo(dtype).max / 2
    assert _finite(torch.full((64,), big, dtype=dtype))  # the sum is inf; every value is finite
    assert _finite(torch.randn(50, 7).to(dtype))
    for bad in (math.nan, math.inf, -math.inf):
        t = torch.randn(50, 7).to(dtype)
        t[13, 4] = bad
        assert not _finite(t)
    x = torch.randn(4, 3, dtype=torch.float64)
    x[1, 2] = math.nan
    with pytest.raises(ValueError, match="holds NaN or inf"):
        weighted_mean(x)
