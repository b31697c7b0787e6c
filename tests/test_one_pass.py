"""ensemble.moments, the one-pass estimator on any torch model (issue 36), against exact answers: enumeration of
every mask of small linear networks, quadrature for one logistic, ReLU and tanh unit with a Gaussian input, and
Monte Carlo where the rules are approximations; refusals by name."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats
from torch import nn
from torch.nn import functional as F

from droplab import ensemble


def _enumerate(model: nn.Module, x: torch.Tensor, drops: list[nn.Dropout]) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact mean and variance over every mask of the listed dropout modules (each drops units independently)."""
    outs, probs = [], []
    shapes = []
    hooks = []
    current: dict[int, torch.Tensor] = {}

    def gate(module, args, output, idx):
        return args[0] * current[idx] / (1 - module.p)

    with torch.no_grad():
        for d in drops:  # the size of each dropout site's input
            out = {}
            h = d.register_forward_hook(lambda m, a, o, out=out: out.update(shape=a[0].shape))
            model(x)
            h.remove()
            shapes.append(out["shape"])
        sizes = [math.prod(s) for s in shapes]
        for i, d in enumerate(drops):
            hooks.append(d.register_forward_hook(lambda m, a, o, i=i: gate(m, a, o, i)))
        for bits in itertools.product((0.0, 1.0), repeat=sum(sizes)):
            b = torch.tensor(bits, dtype=torch.float64)
            p, start = 1.0, 0
            for i, (d, shape, n) in enumerate(zip(drops, shapes, sizes, strict=True)):
                mask = b[start:start + n]
                start += n
                current[i] = mask.view(shape)
                p *= float(torch.prod(torch.where(mask > 0, 1 - d.p, d.p)))
            outs.append(model(x))
            probs.append(p)
    for h in hooks:
        h.remove()
    o, w = torch.stack(outs), torch.tensor(probs, dtype=torch.float64).view(-1, *([1] * (outs[0].dim())))
    mean = (w * o).sum(0)
    return mean, (w * (o - mean).square()).sum(0)


def test_a_linear_network_with_one_dropout_layer_equals_enumeration():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.3), nn.Linear(4, 2)).double().eval()
    x = torch.randn(1, 3, dtype=torch.float64)
    mean, var = _enumerate(model, x, [model[1]])
    got = ensemble.moments(model, x)
    assert torch.allclose(got.mean, mean, atol=1e-12) and torch.allclose(got.variance, var, atol=1e-12)


def test_dropout_after_a_convolution_pooled_and_mapped_equals_enumeration():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.Dropout(0.4), nn.AvgPool1d(2), nn.Flatten(),
                          nn.Linear(4, 1)).double().eval()
    x = torch.randn(1, 1, 4, dtype=torch.float64)
    mean, var = _enumerate(model, x, [model[1]])
    got = ensemble.moments(model, x)
    assert torch.allclose(got.mean, mean, atol=1e-12) and torch.allclose(got.variance, var, atol=1e-12)


def test_overlapping_windows_after_a_dropout_site_are_an_approximation_whose_mean_is_exact():
    # dropout on the inputs of a convolution: neighbouring outputs share masks, and pooling them sums covariances
    # the diagonal leaves out (the module's doc says so): the mean stays exact, the variance does not
    torch.manual_seed(1)
    model = nn.Sequential(nn.Dropout(0.4), nn.Conv1d(1, 2, 3, padding=1), nn.AvgPool1d(2), nn.Flatten(),
                          nn.Linear(4, 1)).double().eval()
    x = torch.randn(1, 1, 4, dtype=torch.float64)
    mean, var = _enumerate(model, x, [model[0]])
    got = ensemble.moments(model, x)
    assert torch.allclose(got.mean, mean, atol=1e-12)
    assert not torch.allclose(got.variance, var, rtol=0.05)


def _enumerate_covariance(model: nn.Module, x: torch.Tensor, drops: list[nn.Dropout]) -> torch.Tensor:
    """The exact covariance of the outputs of one input over every mask of the listed dropout modules."""
    widths: dict[int, int] = {}

    def width(i: int, inputs: tuple) -> None:  # (a hook that returns None leaves the output alone)
        widths[i] = inputs[0][0].numel()  # one input's values at the site, whatever their shape

    hooks = [d.register_forward_hook(lambda m, a, o, i=i: width(i, a)) for i, d in enumerate(drops)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    current: dict[int, torch.Tensor] = {}
    hooks = [d.register_forward_hook(lambda m, a, o, i=i: a[0] * current[i].view(a[0].shape) / (1 - m.p))
             for i, d in enumerate(drops)]
    n = [widths[i] for i in range(len(drops))]
    outs, probs = [], []
    with torch.no_grad():
        for bits in itertools.product((0.0, 1.0), repeat=sum(n)):
            b, start, p = torch.tensor(bits, dtype=torch.float64), 0, 1.0
            for i, d in enumerate(drops):
                current[i] = b[start:start + n[i]]
                start += n[i]
                p *= float(torch.prod(torch.where(current[i] > 0, 1 - d.p, d.p)))
            outs.append(model(x)[0])
            probs.append(p)
    for h in hooks:
        h.remove()
    o, w = torch.stack(outs), torch.tensor(probs, dtype=torch.float64)
    centred = o - (w[:, None] * o).sum(0)
    return torch.einsum("k,ki,kj->ij", w, centred, centred)


def test_full_covariance_makes_a_deep_linear_network_exact():
    """Sections 2-5: with dropout on the inputs and on every hidden layer of a linear network, the diagonal pass
    leaves out the covariances that shared masks create; carrying the full covariance makes means, variances and
    covariances exact (against every one of the 2^9 masks)."""
    from droplab.ensemble._onepass import Gaussian, _Interpreter

    torch.manual_seed(3)
    model = nn.Sequential(nn.Dropout(0.3), nn.Linear(3, 3), nn.Dropout(0.5), nn.Linear(3, 3), nn.Dropout(0.2),
                          nn.Linear(3, 2)).double().eval()
    x = torch.randn(1, 3, dtype=torch.float64)
    drops = [model[0], model[2], model[4]]
    mean, var = _enumerate(model, x, drops)
    full = ensemble.moments(model, x, covariance="full")
    assert torch.allclose(full.mean, mean, atol=1e-12) and torch.allclose(full.variance, var, atol=1e-12)
    out = _Interpreter(torch.fx.symbolic_trace(model), full=True).run(x)
    assert isinstance(out, Gaussian) and out.c is not None
    assert torch.allclose(out.c[0], _enumerate_covariance(model, x, drops), atol=1e-12)
    diagonal = ensemble.moments(model, x)
    assert torch.allclose(diagonal.mean, mean, atol=1e-12) and not torch.allclose(diagonal.variance, var, rtol=0.02)


def test_a_flattened_feature_map_carries_its_covariance_from_the_first_linear_map():
    """A dropout site on a feature map (B, C, H, W) gives independent entries; flattened and mapped by a linear
    layer, the outputs share every entry, and under covariance='full' they carry W diag(v) W^T from that layer on:
    exact against every one of the 2^8 masks (the diagonal pass has no covariance to give)."""
    from droplab.ensemble._onepass import _Interpreter

    torch.manual_seed(5)
    model = nn.Sequential(nn.Unflatten(1, (2, 2, 2)), nn.Dropout(0.4), nn.Flatten(), nn.Linear(8, 3), nn.Dropout(0.3),
                          nn.Linear(3, 2)).double().eval()
    x = torch.randn(1, 8, dtype=torch.float64)
    out = _Interpreter(torch.fx.symbolic_trace(model), full=True).run(x)
    assert out.c is not None
    assert torch.allclose(out.c[0], _enumerate_covariance(model, x, [model[1], model[4]]), atol=1e-12)
    assert _Interpreter(torch.fx.symbolic_trace(model)).run(x).c is None


def test_an_output_too_wide_for_its_covariance_keeps_exact_variances(monkeypatch):
    """A linear map whose output is wider than FULL_LIMIT is carried with its variances alone, taken exactly from
    the covariance before it (a linear network: against every mask); wider inputs are never given a covariance."""
    from droplab.ensemble import _onepass

    monkeypatch.setattr(_onepass, "FULL_LIMIT", 4)
    torch.manual_seed(6)
    model = nn.Sequential(nn.Dropout(0.3), nn.Linear(3, 3), nn.Dropout(0.5), nn.Linear(3, 5), nn.Linear(5, 2)).double()
    x = torch.randn(1, 3, dtype=torch.float64)
    mean, var = _enumerate(model.eval(), x, [model[0], model[2]])
    out = _onepass._Interpreter(torch.fx.symbolic_trace(model), full=True).run(x)
    assert out.c is None  # the 5 wide layer ended the covariance; its 2 outputs are diagonal again
    wide = _onepass._Interpreter(torch.fx.symbolic_trace(model[:4]), full=True).run(x)
    exact = _enumerate(model[:4], x, [model[0], model[2]])
    assert wide.c is None and torch.allclose(wide.v, exact[1], atol=1e-12)
    assert torch.allclose(out.m, mean, atol=1e-12)


@pytest.mark.parametrize("rho", [-0.6, -0.2, 0.3, 0.7])
def test_the_covariance_of_two_rectified_gaussians_against_quadrature(rho):
    # Mehler's expansion to second order in the covariance, against 2-D quadrature of the bivariate normal
    from droplab.ensemble._onepass import Gaussian, _relu

    m, s = np.array([0.4, -0.3]), np.array([1.0, 0.7])
    c = np.array([[s[0] ** 2, rho * s[0] * s[1]], [rho * s[0] * s[1], s[1] ** 2]])
    g = Gaussian(torch.from_numpy(m[None]), torch.from_numpy(s[None] ** 2), torch.from_numpy(c[None]))
    got = _relu(g)
    nodes, weights = np.polynomial.hermite.hermgauss(80)
    z = np.sqrt(2) * nodes
    u, w = np.meshgrid(z, z, indexing="ij"), np.outer(weights, weights) / math.pi
    chol = np.linalg.cholesky(c)
    a = m[0] + chol[0, 0] * u[0]
    b = m[1] + chol[1, 0] * u[0] + chol[1, 1] * u[1]
    ra, rb = np.maximum(a, 0), np.maximum(b, 0)
    exact = (w * ra * rb).sum() - (w * ra).sum() * (w * rb).sum()
    assert float(got.c[0, 0, 1]) == pytest.approx(exact, abs=0.02 * s[0] * s[1] * abs(rho) + 1e-4)
    assert float(got.c[0, 0, 0]) == pytest.approx(float(got.v[0, 0]))  # the diagonal is the closed-form variance
    first_order = float(torch.special.ndtr(torch.tensor(m / s)).prod()) * c[0, 1]
    assert abs(float(got.c[0, 0, 1]) - exact) <= abs(first_order - exact) + 1e-12  # the second term helps


def test_full_covariance_follows_monte_carlo_where_the_diagonal_does_not():
    """On an MLP with dropout after every layer, trained on scikit-learn's digits, the diagonal pass puts the logits'
    variance at a fraction of Monte Carlo's (the covariances between hidden units are left out) and the mutual
    information far below it; the full covariance brings them near Monte Carlo's (K = 20,000)."""
    from droplab import data

    digits = data.load("digits", validation=0.0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 128),
                          nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(15):
        for i in range(0, len(digits.x_train), 64):
            opt.zero_grad()
            F.cross_entropy(model(digits.x_train[i:i + 64]), digits.y_train[i:i + 64]).backward()
            opt.step()
    model = model.double().eval()
    x = digits.x_test[:40].double()
    mc = ensemble.predictive(model, x, samples=20000, generator=torch.Generator().manual_seed(0))
    full, diagonal = (ensemble.moments(model, x, covariance=c) for c in ("full", "diagonal"))
    ratio_full = float((full.variance / mc.variance).median())
    ratio_diagonal = float((diagonal.variance / mc.variance).median())
    assert 0.8 < ratio_full < 1.25 and not 0.8 < ratio_diagonal < 1.25, (ratio_full, ratio_diagonal)
    assert float(((full.mean - mc.mean) / mc.standard_error).abs().median()) < 2.0
    mcp = ensemble.predictive(model, x, samples=20000, output="logits", generator=torch.Generator().manual_seed(0))
    fullp = ensemble.moments(model, x, output="logits", covariance="full")
    diagp = ensemble.moments(model, x, output="logits")
    assert torch.allclose(fullp.mean.sum(-1), torch.ones(40, dtype=torch.float64))
    assert float(((fullp.mean - mcp.mean) / mcp.standard_error.clamp_min(1e-9)).abs().median()) < float(
        ((diagp.mean - mcp.mean) / mcp.standard_error.clamp_min(1e-9)).abs().median())
    mi = [float((s.mutual_information / mcp.mutual_information).median()) for s in (fullp, diagp)]
    assert abs(mi[0] - 1) < abs(mi[1] - 1) and 0.6 < mi[0] < 1.4, mi
    same = ensemble.moments(model, x, output="logits", covariance="full")
    assert torch.equal(same.mean, fullp.mean) and torch.equal(same.variance, fullp.variance)  # same input, same pass
    many = ensemble.moments(model, torch.cat([x] * 4), output="logits", covariance="full")  # 160 inputs: 3 chunks
    assert torch.allclose(many.mean[120:], fullp.mean, rtol=0, atol=1e-12)
    assert torch.allclose(many.variance[120:], fullp.variance, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="covariance must be 'diagonal' or 'full', got 'dense'"):
        ensemble.moments(model, x, covariance="dense")
    with pytest.raises(ValueError, match="batch first; give batch_dim=0"):
        ensemble.moments(model, x.T.contiguous(), batch_dim=1, covariance="full")
    from droplab import DropoutMLP

    with pytest.raises(ValueError, match="gaussian_moments, which carries variances only"):
        ensemble.moments(DropoutMLP([4, 3, 2], keep=0.5), torch.randn(2, 4), covariance="full")


def _gaussian_expectation(f, m: float, s: float) -> tuple[float, float]:
    e = integrate.quad(lambda z: f(z) * stats.norm.pdf(z, m, s), m - 12 * s, m + 12 * s)[0]
    e2 = integrate.quad(lambda z: f(z) ** 2 * stats.norm.pdf(z, m, s), m - 12 * s, m + 12 * s)[0]
    return e, e2 - e * e


@pytest.mark.parametrize("m, s", [(0.0, 1.0), (1.5, 0.5), (-2.0, 2.0), (0.3, 0.01)])
def test_relu_of_a_gaussian_is_the_closed_form(m, s):
    from droplab.ensemble._onepass import Gaussian, _relu

    got = _relu(Gaussian(torch.tensor([m], dtype=torch.float64), torch.tensor([s * s], dtype=torch.float64)))
    e, v = _gaussian_expectation(lambda z: max(z, 0.0), m, s)
    assert float(got.m) == pytest.approx(e, abs=1e-9) and float(got.v) == pytest.approx(v, abs=1e-9)


@pytest.mark.parametrize("m, s", [(0.0, 1.0), (1.5, 0.5), (-2.0, 2.0), (0.5, 3.0)])
def test_a_logistic_unit_with_gaussian_input_against_quadrature(m, s):
    # Eq. 242 for the mean (within 0.02 of the integral over these inputs, the paper's accuracy); the variance by
    # Gauss-Hermite quadrature (within 1%)
    from droplab.ensemble._onepass import Gaussian, _sigmoid, _tanh

    g = Gaussian(torch.tensor([m], dtype=torch.float64), torch.tensor([s * s], dtype=torch.float64))
    e, v = _gaussian_expectation(lambda z: 1 / (1 + math.exp(-z)), m, s)
    got = _sigmoid(g)
    assert float(got.m) == pytest.approx(e, abs=0.02) and float(got.v) == pytest.approx(v, rel=0.01, abs=1e-6)
    e, v = _gaussian_expectation(math.tanh, m, s)
    got = _tanh(g)
    assert float(got.m) == pytest.approx(e, abs=0.04) and float(got.v) == pytest.approx(v, rel=0.01, abs=1e-6)


def test_a_model_with_one_dropout_site_in_a_functional_forward_equals_enumeration():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3), nn.Linear(3, 2)

        def forward(self, x):
            return self.b(F.dropout(self.a(x), 0.25, training=self.training).flatten(1)) * 2.0 + 1.0

    torch.manual_seed(2)
    model = Functional().double().eval()
    x = torch.randn(1, 3, dtype=torch.float64)
    drop = nn.Dropout(0.25)
    ref = nn.Sequential(model.a, drop, model.b).double().eval()  # the same network, the site as a module
    mean, var = _enumerate(ref, x, [drop])
    got = ensemble.moments(model, x)
    assert torch.allclose(got.mean, mean * 2 + 1, atol=1e-12) and torch.allclose(got.variance, 4 * var, atol=1e-12)


def test_an_mlp_with_dropout_after_every_layer_against_monte_carlo():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 64), nn.Tanh(),
                          nn.Dropout(0.3), nn.Linear(64, 3)).eval()
    x = torch.randn(16, 8)
    one = ensemble.moments(model, x)
    mc = ensemble.predictive(model, x, samples=20000, generator=torch.Generator().manual_seed(0))
    z = ((one.mean - mc.mean) / mc.standard_error).abs()
    assert float(z.median()) < 2.0 and float((one.mean - mc.mean).abs().max()) < 0.05 * float(mc.mean.abs().max())
    ratio = one.variance / mc.variance
    assert 0.8 < float(ratio.median()) < 1.25
    logits = ensemble.moments(model, x, output="logits")
    assert torch.allclose(logits.mean.sum(-1), torch.ones(16)) and logits.nwgm is not None
    mcp = ensemble.predictive(model, x, samples=20000, output="logits", generator=torch.Generator().manual_seed(0))
    assert float((logits.mean - mcp.mean).abs().max()) < 0.05


@pytest.mark.parametrize("model, x, message", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Dropout(0.5), nn.MaxPool2d(2)), torch.randn(2, 1, 6, 6),
     r"no rule for MaxPool2d at '2'.*maximum of Gaussians"),
    (nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Softplus()), torch.randn(2, 4), r"no rule for Softplus at '2'"),
])
def test_an_operation_without_a_rule_is_refused_by_name(model, x, message):
    with pytest.raises(ValueError, match=message):
        ensemble.moments(model.eval(), x)


def test_products_of_two_random_tensors_and_untraceable_models_are_refused():
    class Square(nn.Module):
        def __init__(self):
            super().__init__()
            self.d = nn.Dropout(0.5)

        def forward(self, x):
            h = self.d(x)
            return h * h

    with pytest.raises(ValueError, match="product of two random tensors"):
        ensemble.moments(Square().eval(), torch.randn(2, 3))

    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(ValueError, match="torch.fx can trace"):
        ensemble.moments(Branchy(), torch.randn(2, 3))
    with pytest.raises(ValueError, match="BatchNorm in eval mode"):
        ensemble.moments(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5)).train(),
                         torch.randn(4, 3))


def test_a_deterministic_model_has_zero_variance_and_its_own_output():
    model = nn.Sequential(nn.Linear(3, 5), nn.MaxPool1d(1), nn.Softplus()).eval()  # no dropout: no rule needed
    x = torch.randn(4, 3)
    got = ensemble.moments(model, x)
    assert torch.equal(got.mean, model(x)) and not bool(got.variance.any())
    assert np.isfinite(got.mean.numpy()).all()


def test_the_check_flags_an_input_where_the_gaussian_assumption_breaks():
    # one input, dropped or kept: S is -5 or 15, not Gaussian; ReLU's Gaussian mean 6.98 against the true 7.5
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(1, 1), nn.ReLU()).double().eval()
    with torch.no_grad():
        model[1].weight.fill_(10.0 / 2)  # inverted dropout doubles the kept input: S = 10 x - 5 or -5
        model[1].bias.fill_(-5.0)
    x = torch.tensor([[2.0], [0.0]], dtype=torch.float64)  # the second input gives S = -5 always: exact
    check = ensemble.check_moments(model, x, samples=8192, generator=torch.Generator().manual_seed(0))
    assert check.flagged.tolist() == [True, False] and "1 of 2 inputs" in check.summary()
    assert float(check.monte_carlo.mean[0]) == pytest.approx(7.5, abs=0.3)
    with pytest.raises(ValueError, match="threshold must be a positive number"):
        ensemble.check_moments(model, x, threshold=0)


def test_moments_is_an_estimator_of_the_registry_and_the_command_line(tmp_path, capsys):
    from droplab.cli import main

    assert ensemble.estimator("moments").models == "any" and not ensemble.estimator("moments").random
    assert main(["train", "--preset", "tiny", "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run" / "best.safetensors"), "--estimator", "moments"]) == 0
    assert "moments" in capsys.readouterr().out


def test_a_torch_module_with_dropout_inside_is_refused_not_run_as_deterministic():
    # torch.fx keeps torch.nn's modules whole: a TransformerEncoderLayer's attention and feed-forward dropout would
    # otherwise run in eval mode (deterministic) and be left out of the ensemble, silently (found by the benchmark)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, batch_first=True)
    model = nn.Sequential(layer, nn.Dropout(0.2), nn.Linear(8, 2)).eval()
    with pytest.raises(ValueError, match=r"cannot see into TransformerEncoderLayer at '0'.*dropout"):
        ensemble.moments(model, torch.randn(3, 4, 8))
    quiet = nn.Sequential(nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True), nn.Dropout(0.2),
                          nn.Linear(8, 2)).eval()
    got = ensemble.moments(quiet, torch.randn(3, 4, 8))  # no dropout inside: the layer is deterministic, exact
    assert got.mean.shape == (3, 4, 2) and bool((got.variance > 0).all())


@pytest.mark.parametrize("scale", [0.1, 0.5])
def test_the_members_expected_entropy_against_sampled_gaussian_logits(scale):
    """E(H(softmax(Z))) for Z ~ N(m, diag v) against 20,000 sampled logits per input (float64): the one-pass value
    lies within 4 sampling SE plus 10% of the correction it makes to H(softmax(m)), and nearer than H(softmax(m))."""
    from droplab import metrics
    from droplab.ensemble._onepass import expected_entropy

    g = torch.Generator().manual_seed(0)
    m = 2 * torch.randn(40, 10, dtype=torch.float64, generator=g)
    v = scale * torch.rand(40, 10, dtype=torch.float64, generator=g)
    z = m + v.sqrt() * torch.randn(20_000, 40, 10, dtype=torch.float64, generator=g)
    h = metrics.entropy(torch.softmax(z, -1), log_p=torch.log_softmax(z, -1))
    ref, se = h.mean(0), h.std(0) / math.sqrt(len(h))
    at_mean = metrics.entropy(torch.softmax(m, -1))
    est = expected_entropy(m, v)
    assert bool(((est - ref).abs() <= 4 * se + 0.1 * (ref - at_mean).abs()).all())
    assert float((est - ref).abs().mean()) < 0.2 * float((at_mean - ref).abs().mean())
    assert torch.allclose(expected_entropy(m, torch.zeros_like(v)), at_mean, rtol=0, atol=1e-12)  # no variance


def test_the_one_pass_mutual_information_follows_monte_carlo():
    """The one-pass BALD score: zero for a model without dropout, and across inputs of a dropout MLP it ranks as Monte
    Carlo's (K = 4,000) does (Spearman > 0.8) at a comparable size."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 5)).double().eval()
    x = 2 * torch.randn(64, 6, dtype=torch.float64)
    one = ensemble.moments(model, x, output="logits")
    mc = ensemble.predictive(model, x, samples=4000, output="logits", generator=torch.Generator().manual_seed(1))
    rho = stats.spearmanr(one.mutual_information.numpy(), mc.mutual_information.numpy()).statistic
    assert rho > 0.8, rho
    ratio = float(one.mutual_information.mean() / mc.mutual_information.mean())
    assert 0.5 < ratio < 2.0, ratio
    plain = nn.Sequential(nn.Linear(6, 5)).double().eval()
    assert float(ensemble.moments(plain, x, output="logits").mutual_information.abs().max()) < 1e-12
