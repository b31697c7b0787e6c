"""Estimators against independent references: configurations replayed one by one here, closed forms, NumPy."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

import droplab
from droplab import DropoutMLP, ensemble, means
from droplab.nn import Dropout

F64 = torch.float64


def _net(sizes, seed=0, scale=2.0, **kwargs):
    torch.manual_seed(seed)
    net = DropoutMLP(sizes, **kwargs).double().eval()
    with torch.no_grad():
        for lin in net.linears:
            lin.weight.mul_(scale)
    return net


def _enumerate_by_hand(net, x):
    """Independent reference: every unit-mask configuration replayed one at a time -> (probabilities, traces)."""
    gates = {f"gates.{h}": torch.as_tensor(g.keep, dtype=F64).expand(net.sizes[h])
             for h, g in enumerate(net.gates) if hasattr(g, "keep")}
    sizes = [k.numel() for k in gates.values()]
    probs, traces = [], []
    for bits in itertools.product([0.0, 1.0], repeat=sum(sizes)):
        bits = torch.tensor(bits, dtype=F64)
        noise, prob, offset = {}, 1.0, 0
        for (name, keep), n in zip(gates.items(), sizes, strict=True):
            b = bits[offset:offset + n]
            offset += n
            prob *= float(torch.prod(keep**b * (1 - keep) ** (1 - b)))
            noise[name] = b.expand(x.shape[0], n)
        with droplab.replay(net, noise), torch.no_grad():
            traces.append(net.trace(x))
        probs.append(prob)
    return np.array(probs), traces


@pytest.mark.parametrize("gate", ["bernoulli", "dropin"])
def test_exact_matches_configurations_replayed_one_by_one(gate):
    net = _net((3, 4, 2), keep=(torch.tensor([0.9, 0.5, 0.7], dtype=F64), 0.6), gate=gate, scaling="paper")
    x = torch.rand(2, 3, dtype=F64)
    p, traces = _enumerate_by_hand(net, x)
    stats = ensemble.exact(net, x, pairs=[(1, 0, 1, 3), (2, 1, 1, 2)])
    assert stats.samples == 2**7 and abs(p.sum() - 1) < 1e-12
    for h in (1, 2):
        o = np.stack([t.O[h].numpy() for t in traces])  # (configs, B, n)
        assert np.allclose(stats.layers[h].E.numpy(), np.einsum("c,cbn->bn", p, o))
        assert np.allclose(stats.layers[h].Var.numpy(), means.weighted_variance(np.moveaxis(o, 0, -1), p))
        nwgm = means.normalized_geometric_mean(np.moveaxis(o, 0, -1), p)
        assert np.allclose(stats.layers[h].NWGM.numpy(), nwgm, atol=1e-12)
        assert np.allclose(stats.layers[h].WGM.numpy(), means.geometric_mean(np.moveaxis(o, 0, -1), p), atol=1e-12)
        s = np.stack([t.S[h].numpy() for t in traces])
        assert np.allclose(stats.layers[h].Var_S.numpy(), means.weighted_variance(np.moveaxis(s, 0, -1), p))
        # E(S) is computed from E(O^{h-1}) (Rao-Blackwell), not from the members' S: it must be the same number
        assert np.allclose(stats.layers[h].E_S.numpy(), np.einsum("c,cbn->bn", p, s), rtol=0, atol=1e-12)
    o1, o2 = np.stack([t.O[1].numpy() for t in traces]), np.stack([t.O[2].numpy() for t in traces])
    assert np.allclose(stats.pairs[(1, 0, 1, 3)].numpy(), np.einsum("c,cb->b", p, o1[:, :, 0] * o1[:, :, 3]))
    assert np.allclose(stats.pairs[(2, 1, 1, 2)].numpy(), np.einsum("c,cb->b", p, o2[:, :, 1] * o1[:, :, 2]))


def test_first_layer_weight_scaling_is_exactly_the_nwgm():
    # Eqs. 34-39: W = sigma(E(S)) = NWGM(O) exactly for logistic units, any per-unit rates
    net = _net((5, 6, 3), keep=(torch.tensor([0.9, 0.2, 0.5, 0.7, 0.3], dtype=F64), 0.5), c=1.5, lam=2.0)
    x = torch.rand(3, 5, dtype=F64)
    ex, ws = ensemble.exact(net, x), ensemble.weight_scaled(net, x)
    assert torch.allclose(ws.layers[1].E, ex.layers[1].NWGM, atol=1e-12)
    assert torch.allclose(ws.layers[1].E_S, ex.layers[1].E_S, atol=1e-12)  # E(S) is linear in the masks


@pytest.mark.parametrize("kind,scaling", [("bernoulli", "paper"), ("bernoulli", "inverted"), ("dropin", "paper")])
@pytest.mark.parametrize("connections", [False, True])
def test_linear_networks_weight_scaling_and_linear_moments_are_exact(kind, scaling, connections):
    keep = (torch.tensor([0.9, 0.4, 0.7], dtype=F64), torch.tensor([0.5, 0.8, 0.6, 0.3], dtype=F64))
    ckeep = (None, torch.full((2, 4), 0.6, dtype=F64)) if connections else None
    net = _net((3, 4, 2), transfer="linear", output="linear", keep=keep, gate=kind, scaling=scaling,
               connection_keep=ckeep, connection_kind="bernoulli" if kind != "dropin" else "dropin")
    x = torch.randn(2, 3, dtype=F64)
    ex = ensemble.exact(net, x, pairs=[(1, i, 1, j) for i in range(4) for j in range(4)] +
                        [(2, 0, 2, 1), (2, 0, 2, 0)])
    lm = ensemble.linear_moments(net, x)
    for h in (1, 2):
        assert torch.allclose(lm.layers[h].E, ex.layers[h].E, atol=1e-10)
        assert torch.allclose(lm.layers[h].Var, ex.layers[h].Var, atol=1e-10)
    cov1 = torch.stack([ex.pairs[(1, i, 1, j)] for i in range(4) for j in range(4)], -1).view(2, 4, 4)
    cov1 = cov1 - ex.layers[1].E[:, :, None] * ex.layers[1].E[:, None, :]
    assert torch.allclose(lm.covariances[1], cov1, atol=1e-10)
    cov_out = ex.pairs[(2, 0, 2, 1)] - ex.layers[2].E[:, 0] * ex.layers[2].E[:, 1]
    assert torch.allclose(lm.covariances[2][:, 0, 1], cov_out, atol=1e-10)
    if kind != "dropin" or not connections:  # weight scaling is the exact mean of a linear network (Eq. 24)
        assert torch.allclose(ensemble.weight_scaled(net, x).output.E, ex.output.E, atol=1e-10)


def test_linear_moments_for_gaussian_noise_match_monte_carlo():
    net = _net((3, 4, 2), transfer="linear", output="linear", keep=(0.8, 0.5), gate="gaussian")
    x = torch.randn(2, 3, dtype=F64)
    lm = ensemble.linear_moments(net, x)
    mc = ensemble.monte_carlo(net, x, samples=200_000, generator=torch.Generator().manual_seed(0))
    for h in (1, 2):
        assert torch.all((mc.layers[h].E - lm.layers[h].E).abs() <= 4 * mc.layers[h].se_E)
        assert torch.allclose(mc.layers[h].Var, lm.layers[h].Var, rtol=0.03)


CASES = [("logistic", "bernoulli", None), ("tanh", "bernoulli", None), ("relu", "dropin", None),
         ("linear", "bernoulli", None), ("logistic", "bernoulli", 0.7), ("relu", "bernoulli", 0.6)]


@pytest.mark.parametrize("transfer,gate,connection", CASES)
def test_monte_carlo_agrees_with_exact_within_4_standard_errors(transfer, gate, connection):
    ckeep = (None, connection) if connection else None
    sizes = (3, 4, 3) if not connection else (3, 3, 2)
    net = _net(sizes, keep=(0.8, 0.5), transfer=transfer, gate=gate, connection_keep=ckeep)
    x = torch.rand(3, 3, dtype=F64)
    ex = ensemble.exact(net, x)
    mc = ensemble.monte_carlo(net, x, samples=20_000, generator=torch.Generator().manual_seed(1))
    for h in (1, 2):
        se = mc.layers[h].se_E
        ok = (mc.layers[h].E - ex.layers[h].E).abs() <= 4 * se + 1e-12
        assert torch.all(ok), (h, mc.layers[h].E, ex.layers[h].E, se)
        assert torch.allclose(mc.layers[h].Var, ex.layers[h].Var, rtol=0.1, atol=1e-6)


def test_monte_carlo_same_seed_same_result_and_chunking():
    net = _net((4, 6, 3), keep=(0.8, 0.5))
    x = torch.rand(2, 4, dtype=F64)
    a = ensemble.monte_carlo(net, x, samples=500, generator=torch.Generator().manual_seed(5))
    b = ensemble.monte_carlo(net, x, samples=500, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.layers[2].E, b.layers[2].E)
    c = ensemble.monte_carlo(net, x, samples=500, generator=torch.Generator().manual_seed(5), memory=1)  # K_c = 1
    assert torch.all((c.layers[2].E - a.layers[2].E).abs() <= 6 * a.layers[2].se_E)
    assert net.gates[0].gate_mode == "expect"  # modes restored


@pytest.mark.parametrize("memory", [1, 2**30])  # one configuration per chunk, or all in one chunk
def test_float32_variances_survive_a_large_mean(memory):
    # Output = 1000 + small dropout noise: Var ~ 1e-4 against E^2 ~ 1e6. Raw float32 sums of x and x^2 would
    # lose every digit (E(x^2) - E(x)^2 cancels 10 orders of magnitude, float32 keeps 7); the shifted sums keep
    # the variance to the precision of the float32 outputs themselves. Reference: exact enumeration of the same
    # network in float64.
    torch.manual_seed(0)
    net64 = DropoutMLP((3, 4, 2), keep=0.5, transfer="linear", output="linear").double().eval()
    with torch.no_grad():
        net64.linears[-1].weight.mul_(0.1)
        net64.linears[-1].bias.fill_(1000.0)
    net32 = DropoutMLP.from_config(net64.config()).eval()
    net32.load_state_dict({k: v.float() for k, v in net64.state_dict().items()})
    x = torch.rand(2, 3, dtype=F64)
    ref = ensemble.exact(net64, x)
    got = ensemble.exact(net32, x.float(), memory=memory)
    assert 1e-6 < ref.output.Var.min() and ref.output.Var.max() < 1e-2 and ref.output.E.min() > 999
    torch.testing.assert_close(got.output.Var.double(), ref.output.Var, rtol=1e-3, atol=0)
    torch.testing.assert_close(got.output.E.double(), ref.output.E, rtol=1e-6, atol=0)


def test_spiking_network_mean_input_matches_eq_133():
    # E(S^1) = sum_j w_j r E(O_j) with spikes of size r on the input (values in [0, 1])
    net = _net((4, 3, 2), keep=0.5, gate="spiking")
    x = torch.rand(2, 4, dtype=F64)
    mc = ensemble.monte_carlo(net, x, samples=40_000, generator=torch.Generator().manual_seed(0))
    expected = x @ (0.5 * net.linears[0].weight.T) + net.linears[0].bias
    se = (mc.layers[1].Var_S / 40_000).sqrt()
    assert torch.all((mc.layers[1].E_S - expected).abs() <= 4 * se)


def test_gaussian_moments_beat_weight_scaling_where_var_s_is_large():
    net = _net((10, 8, 3), keep=(0.5, 0.5), scale=8.0)
    x = torch.rand(20, 10, dtype=F64)
    ex = ensemble.exact(net, x, max_configurations=2**18)
    ws = ensemble.weight_scaled(net, x)
    assert float(ex.layers[1].Var_S.mean()) > 1.0  # large input variance
    for method in ("quadrature", "eq242"):
        gm = ensemble.gaussian_moments(net, x, method=method)
        err_g = (gm.layers[1].E - ex.layers[1].E).abs().mean()
        err_w = (ws.layers[1].E - ex.layers[1].E).abs().mean()
        assert err_g < err_w, (method, err_g, err_w)


def test_gaussian_moments_are_exact_for_one_linear_layer():
    net = _net((5, 3), transfer="linear", output="linear", keep=0.6)
    x = torch.randn(4, 5, dtype=F64)
    gm, ex = ensemble.gaussian_moments(net, x), ensemble.exact(net, x)
    assert torch.allclose(gm.output.E, ex.output.E) and torch.allclose(gm.output.Var, ex.output.Var)


def test_dropconnect_inference_runs_and_is_close_to_exact():
    net = _net((4, 5, 3), keep=1.0, connection_keep=(0.5, None), scale=1.0)
    x = torch.rand(3, 4, dtype=F64)
    ex = ensemble.exact(net, x)
    dc = ensemble.dropconnect_inference(net, x, samples=20_000, generator=torch.Generator().manual_seed(0))
    assert dc.estimator == "dropconnect_inference"
    assert torch.allclose(dc.layers[1].E, ex.layers[1].E, atol=0.01)


def test_exact_refuses_with_the_count():
    net = _net((30, 4, 2), keep=0.5)
    with pytest.raises(ValueError, match="2\\^34 = 17,179,869,184 configurations"):
        ensemble.exact(net, torch.rand(1, 30, dtype=F64))
    with pytest.raises(ValueError, match="Bernoulli noise"):
        ensemble.exact(_net((3, 2), keep=0.5, gate="gaussian"), torch.rand(1, 3, dtype=F64))


def test_predictions_entropy_and_mutual_information():
    net = _net((4, 5, 3), keep=(0.8, 0.5))
    x = torch.rand(3, 4, dtype=F64)
    ex = ensemble.exact(net, x)
    probs = ensemble.predict(ex)
    assert torch.allclose(probs.sum(1), torch.ones(3, dtype=F64))
    nwgm = ensemble.predict(ensemble.weight_scaled(net, x), rule="nwgm")
    assert torch.allclose(nwgm.sum(1), torch.ones(3, dtype=F64))
    mi = ensemble.mutual_information(ex)
    assert torch.all(mi > 0)
    no_dropout = _net((4, 5, 3), keep=1.0)
    assert torch.allclose(ensemble.mutual_information(ensemble.exact(no_dropout, x)), torch.zeros(3, dtype=F64),
                          atol=1e-12)
    h = ensemble.predictive_entropy(torch.tensor([[0.5, 0.5, 0.0]]))
    assert torch.allclose(h, torch.tensor([np.log(2)]).float())


def test_monte_carlo_on_any_module_with_gates():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), Dropout(keep=0.5), nn.Linear(16, 3)).double().eval()
    x = torch.rand(5, 4, dtype=F64)
    stats = ensemble.monte_carlo(model, x, samples=300, generator=torch.Generator().manual_seed(0), output="logits")
    assert stats.output.E.shape == (5, 3) and torch.allclose(stats.output.E.sum(1), torch.ones(5, dtype=F64))
    assert torch.all(ensemble.mutual_information(stats) >= 0)
    assert torch.allclose(ensemble.mutual_information(stats), stats.mutual_information)
    with pytest.raises(ValueError, match="drew no dropout mask"):
        ensemble.monte_carlo(nn.Linear(4, 3).double(), x)


def test_histograms_are_distributions():
    net = _net((4, 6, 3), keep=(0.8, 0.5))
    x = torch.rand(2, 4, dtype=F64)
    stats = ensemble.monte_carlo(net, x, samples=1000, histogram_units=[(1, 0), (2, 2)], bins=20,
                                 generator=torch.Generator().manual_seed(0))
    for hist in stats.histograms.values():
        assert hist.shape == (2, 20) and torch.allclose(hist.sum(1), torch.ones(2, dtype=F64))


def test_pair_approximations_from_w():
    net = _net((4, 5, 3), keep=(0.8, 0.5), scale=0.5)
    x = torch.rand(4, 4, dtype=F64)
    pairs = [(2, 1, 1, 3), (1, 0, 1, 2)]
    approx = ensemble.pair_approximations(net, x, pairs)
    ex = ensemble.exact(net, x, pairs=pairs)
    ws = ensemble.weight_scaled(net, x)
    assert torch.allclose(approx["W W"][(1, 0, 1, 2)], ws.layers[1].E[:, 0] * ws.layers[1].E[:, 2])
    assert (1, 0, 1, 2) not in approx["W_ij W_j"]  # unconnected
    connected = (2, 1, 1, 3)
    # with small weights the Taylor form (Eq. 122) and forward propagation (Eq. 121) agree closely
    assert torch.allclose(approx["taylor"][connected], approx["W_ij W_j"][connected], atol=1e-3)
    for key in ("W W", "W_ij W_j"):
        assert torch.allclose(approx[key][connected], ex.pairs[connected], atol=0.02)
    var = ensemble.variance_approximations(ws)
    assert torch.allclose(var[1]["W(1-W)"], ws.layers[1].E * (1 - ws.layers[1].E))


def test_estimator_registry_returns_the_same_type():
    net = _net((3, 4, 2), transfer="linear", output="linear", keep=(0.8, 0.5))
    x = torch.rand(2, 3, dtype=F64)
    for name, estimator in ensemble.ESTIMATORS.items():
        stats = estimator(net, x)
        if name == "predictive":  # any model: the statistics of its output, [inputs, output] in layer terms
            assert isinstance(stats, ensemble.PredictiveStatistics) and stats.output_kind == "values"
            assert [tuple(layer.E.shape) for layer in stats.layers] == [(2, 3), (2, 2)]
            continue
        assert isinstance(stats, ensemble.EnsembleStatistics), name
        assert [tuple(layer.E.shape) for layer in stats.layers] == [(2, 3), (2, 4), (2, 2)], name


@pytest.mark.parametrize("statistics", [("E",), ("E", "Var"), ("E", "Var", "NWGM"), ("E", "WGM", "Var_S")])
def test_monte_carlo_statistics_subsets_agree_with_the_full_run(statistics):
    net = _net((4, 6, 3), keep=(0.8, 0.5))
    x = torch.rand(2, 4, dtype=F64)
    full = ensemble.monte_carlo(net, x, samples=300, generator=torch.Generator().manual_seed(2))
    part = ensemble.monte_carlo(net, x, samples=300, generator=torch.Generator().manual_seed(2), statistics=statistics)
    for h in (1, 2):
        assert torch.allclose(part.layers[h].E, full.layers[h].E)
        for name in ("Var", "NWGM", "WGM", "Var_S"):
            got = getattr(part.layers[h], name)
            if name in statistics and got is not None:
                assert torch.allclose(got, getattr(full.layers[h], name)), name
            elif name not in statistics:
                assert got is None, name
    with pytest.raises(ValueError, match="unknown statistics"):
        ensemble.monte_carlo(net, x, samples=10, statistics=("mean",))


@pytest.mark.parametrize("gate", ["bernoulli", "gaussian", "dropin", "spiking"])
def test_monte_carlo_e_s_agrees_with_the_sample_mean_of_s(gate):
    # E(S) is computed from E(O) of the layer below (Rao-Blackwell), which needs the gate's mean to be the
    # conditional mean of its output. Reference: the plain sample mean of S over an independent sampling run,
    # through net.trace; within 4.5 of its standard errors (the Rao-Blackwell estimate's own error is smaller)
    net = _net((5, 6, 4, 3), scale=1.0, keep=0.6, gate=gate, scaling="paper")
    x = torch.rand(2, 5, dtype=F64)
    mc = ensemble.monte_carlo(net, x, samples=40_000, generator=torch.Generator().manual_seed(1))
    with droplab.sample(net, generator=torch.Generator().manual_seed(2)), torch.no_grad():
        trace = net.trace(x.repeat(40_000, 1))
    for h in (1, 2, 3):
        s = trace.S[h].view(40_000, 2, -1)
        se = s.std(0) / 40_000**0.5
        assert torch.all((mc.layers[h].E_S - s.mean(0)).abs() <= 4.5 * se + 1e-12), (gate, h)


def test_gaussian_moments_of_rectified_units_are_exact_under_a_gaussian_s():
    # issue 9: Gauss-Hermite quadrature missed the kink (E 0.2015 against 0.1978 at S ~ N(-0.5, 1))
    from scipy import integrate, stats

    from droplab.ensemble._moments import _relu_gaussian_moments

    def moment(k, mu, sd, lam):
        return integrate.quad(lambda s: (lam * max(s, 0)) ** k * stats.norm.pdf(s, mu, sd), -20, 20, points=[0])[0]

    for mu, var, lam in ((-0.5, 1.0, 1.0), (0.3, 0.04, 2.0), (2.0, 0.5, 1.0)):
        e_ref, e2_ref = moment(1, mu, var**0.5, lam), moment(2, mu, var**0.5, lam)
        e, v = _relu_gaussian_moments(torch.tensor([mu], dtype=torch.float64),
                                      torch.tensor([var], dtype=torch.float64), lam)
        assert float(e) == pytest.approx(e_ref, abs=1e-9)
        assert float(v) == pytest.approx(e2_ref - e_ref**2, abs=1e-9)
    e, _ = _relu_gaussian_moments(torch.tensor([-0.5], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64),
                                  1.0)
    assert float(e) == pytest.approx(0.1978, abs=5e-5)


def test_estimators_refuse_bad_batches():
    from droplab import ensemble
    from droplab.net import DropoutMLP

    net = DropoutMLP((4, 6, 3), keep=(0.8, 0.5)).eval()
    gen = torch.Generator().manual_seed(0)
    bad = torch.rand(2, 4)
    bad[0, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        ensemble.monte_carlo(net, bad, samples=10, generator=gen)
    with pytest.raises(ValueError, match="NaN or inf"):
        ensemble.gaussian_moments(net, bad)
    with pytest.raises(ValueError, match="x is empty"):
        ensemble.monte_carlo(net, torch.rand(0, 4), samples=10, generator=gen)
    with pytest.raises(TypeError, match="samples must be int, got the bool True"):
        ensemble.monte_carlo(net, torch.rand(2, 4), samples=True, generator=gen)
    with pytest.raises(ValueError, match="positive integer"):
        ensemble.dropconnect_inference(net, torch.rand(2, 4), samples=0)
    with pytest.raises(ValueError, match="network takes 4"):
        ensemble.gaussian_moments(net, torch.rand(2, 5))
    with pytest.raises(ValueError, match=r"about 1e"):
        ensemble.exact(DropoutMLP((4000, 10), keep=0.5).eval(), torch.rand(1, 4000))


def test_the_registry_states_what_each_estimator_does():
    # a linear network (every estimator runs) with a softmax output (so the random ones draw)
    softmax = _net((3, 4, 2), transfer="linear", output="softmax", keep=(0.8, 0.5))
    linear = _net((3, 4, 2), transfer="linear", output="linear", keep=(0.8, 0.5))
    x = torch.rand(2, 3, dtype=F64)
    for name, est in ensemble.ESTIMATORS.items():
        assert ensemble.estimator(est.cli) is est and ensemble.estimator(name) is est
        net = linear if name == "linear_moments" else softmax
        if est.random:
            a = est(net, x, samples=50, generator=torch.Generator().manual_seed(0))
            b = est(net, x, samples=50, generator=torch.Generator().manual_seed(0))
            c = est(net, x, samples=50, generator=torch.Generator().manual_seed(1))
            assert torch.equal(a.output.E, b.output.E) and not torch.equal(a.output.E, c.output.E), name
        else:
            a = est(net, x)
            assert torch.equal(a.output.E, est(net, x).output.E), name
            with pytest.raises(ValueError, match="deterministic"):
                est(net, x, samples=10)
        for field in est.statistics:  # every statistic it says it fills is there, in the layers where it is defined
            assert any(getattr(layer, field) is not None for layer in a.layers[1:]), (name, field)
    stats = ensemble.estimate("linear_moments", linear, x)
    assert len(stats.covariances) == 3 and stats.covariances[1].shape == (2, 4, 4)
    assert torch.allclose(torch.diagonal(stats.covariances[1], dim1=1, dim2=2), stats.layers[1].Var)
    with pytest.raises(ValueError, match="handles linear units, not logistic, softmax"):
        ensemble.estimate("linear-moments", _net((3, 4, 2), keep=0.5), x)
    with pytest.raises(TypeError, match="runs on a DropoutMLP"):
        ensemble.estimate("exact", nn.Sequential(nn.Linear(3, 2), Dropout(keep=0.5)).double(), x)
    with pytest.raises(ValueError, match="unknown estimator name='bayes'"):
        ensemble.estimate("bayes", linear, x)


def test_predictive_is_its_own_estimator_and_monte_carlo_the_dropout_mlps():
    # the registry's monte_carlo is the per-unit estimator of a DropoutMLP and refuses another model by naming the
    # estimator that takes it; predictive samples any model, a DropoutMLP included (its output layer says what it
    # returns), and agrees with exact enumeration within 4.5 of its standard errors
    net = _net((3, 4, 2), output="softmax", keep=(0.8, 0.5))
    x = torch.rand(2, 3, dtype=F64)
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)).double().eval()
    with pytest.raises(TypeError, match="monte_carlo runs on a DropoutMLP, got Sequential; use predictive"):
        ensemble.estimate("monte_carlo", model, x, samples=10)
    got = ensemble.estimate("predictive", model, x, samples=50, generator=torch.Generator().manual_seed(0),
                            output="logits")
    assert got.output_kind == "logits" and got.mean.shape == (2, 2) and got.mutual_information.shape == (2,)
    # a softmax output (lam 2: softmax(2 S), read from the logits S), a logistic one and a linear one: O^L sampled
    for output, kind in (("softmax", "logits"), ("logistic", "values"), ("linear", "values")):
        net = _net((3, 4, 2), output=output, keep=(0.8, 0.5), lam=2.0)
        stats = ensemble.estimate("predictive", net, x, samples=4000, generator=torch.Generator().manual_seed(1))
        exact = ensemble.exact(net, x)
        assert stats.output_kind == kind, output
        assert float(((stats.mean - exact.output.E).abs() / stats.standard_error).max()) < 4.5, output
        assert torch.allclose(stats.variance, exact.output.Var, rtol=0.15), output
    with pytest.raises(ValueError, match="softmax output .* leave output=None, not 'values'"):
        ensemble.predictive(net.__class__((3, 4, 2), output="softmax").double(), x, output="values")


def test_a_dropout_mlps_chunks_hold_its_activations_within_the_budget_not_only_its_outputs():
    """A one-output regression network on many inputs: sized by its outputs, a chunk held thousands of members
    (4,573 inputs, 100 hidden units: 14.5 GB at 1,000 samples, and the UCI protein run was killed for memory).
    Sized by its activations, every chunk stays within the budget and the chunks still cover every member."""
    from droplab.config import ModelConfig
    from droplab.ensemble._common import CPU_MODULE_CHUNK
    from droplab.ensemble._predictive import _members
    from droplab.train import build_model

    net = build_model(ModelConfig(sizes=(9, 100, 1), transfer="relu", output="linear", keep=(0.9, 0.9),
                                  scaling="inverted", init="glorot"), seed=0).double().eval()
    x = torch.randn(4000, 9, dtype=torch.float64)
    chunks = [out.shape[0] for out in _members(net, x, 300, torch.Generator().manual_seed(0), 2**40, 0, True)]
    assert sum(chunks) == 300
    assert max(chunks) * 4000 * (9 + 100 + 1) * 8 * 3 <= CPU_MODULE_CHUNK  # the activations of the biggest chunk
    assert max(chunks) > 1  # and the members still run together
