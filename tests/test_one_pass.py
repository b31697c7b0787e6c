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
