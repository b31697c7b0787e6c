"""droplab.stacked: many networks trained together equal the same networks trained one at a time.

The references here are written with plain torch (nn.functional, autograd, torch.optim.Adam) and replay the
random stream the module's text specifies, network by network."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from droplab import _compile, ensemble
from droplab.stacked import StackedMLP, fit_stacked


def _stream_masks(lanes: torch.Tensor, sizes: list[int], keep: torch.Tensor) -> list[torch.Tensor]:
    """The masks of one network from its group's lanes (..., W): lane <= round(keep 2^32) - 2^31 - 1."""
    masks, start = [], 0
    for width, k in zip(sizes[:-1], keep.tolist(), strict=True):
        threshold = round(k * 2.0**32) - 2**31 - 1
        masks.append(lanes[..., start:start + width].to(torch.int64) <= threshold)
        start += width
    return masks


def _draw_lanes(shape: tuple[int, ...], width: int, generator: torch.Generator) -> torch.Tensor:
    words = torch.empty(*shape, (width + 1) // 2, dtype=torch.int64).random_(-2**63, None, generator=generator)
    return words.view(torch.int32)[..., :width]


def _forward(x, weights, biases, masks, keep):
    a = x
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        a = F.linear(a * masks[i] / keep[i], w.T, b)
        if i < len(weights) - 1:
            a = torch.relu(a)
    return a


def _reference_fit(x, y, sizes, keep, l2, init, *, epochs, batch, lr, seed, groups, members):
    """Each network alone, autograd and torch.optim.Adam (not fused), on the replayed stream."""
    g = torch.Generator().manual_seed(seed)
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):  # the initial weights' draws
        torch.rand(groups, members, fan_in, fan_out, generator=g, dtype=torch.float64)
    n, width, steps = x.shape[1], sum(sizes[:-1]), []
    for _ in range(epochs):
        order = torch.rand(groups, n, generator=g).argsort(1)
        for start in range(0, n, batch):
            index = order[:, start:start + batch]
            steps.append((index, _draw_lanes((groups, index.shape[1]), width, g)))
    trained = {}
    for s in range(groups):
        for m in range(members):
            weights = [w[s * members + m].clone().requires_grad_() for w in init[0]]
            biases = [b[s * members + m, 0].clone().requires_grad_() for b in init[1]]
            opt = torch.optim.Adam(weights + biases, lr=lr, eps=1e-7, foreach=False)
            for index, lanes in steps:
                masks = _stream_masks(lanes[s], sizes, keep[s, m])
                out = _forward(x[s, index[s]], weights, biases, masks, keep[s, m].tolist())
                loss = (out - y[s, index[s]]).square().mean() + l2[s, m] * sum(w.square().sum() for w in weights)
                opt.zero_grad()
                loss.backward()
                opt.step()
            trained[s, m] = ([w.detach() for w in weights], [b.detach() for b in biases])
    return trained


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "eager"])
@pytest.mark.parametrize("sizes", [[3, 5, 1], [4, 6, 5, 2]])
def test_networks_trained_together_equal_each_trained_alone(sizes, compiled):
    groups, members, n = 2, 3, 37
    torch.manual_seed(0)
    x = torch.randn(groups, n, sizes[0], dtype=torch.float64)
    y = torch.randn(groups, n, sizes[-1], dtype=torch.float64)
    keep = torch.tensor([[0.9, 0.5, 1.0], [0.7, 0.995, 0.8]], dtype=torch.float64)[..., None].expand(
        groups, members, len(sizes) - 1).clone()
    keep[0, 1, -1] = 0.6  # a different rate on the last dropped layer
    l2 = torch.tensor([[1e-3, 0.0, 1e-2], [1e-4, 5e-3, 2e-3]], dtype=torch.float64)
    model = StackedMLP(sizes, groups=groups, members=members, keep=keep, dtype=torch.float64,
                       generator=torch.Generator().manual_seed(5))
    init = ([w.clone() for w in model.weights], [b.clone() for b in model.biases])
    g = torch.Generator().manual_seed(5)
    model = StackedMLP(sizes, groups=groups, members=members, keep=keep, dtype=torch.float64, generator=g)
    fit_stacked(model, x, y, l2=l2, epochs=3, batch_size=8, lr=1e-2, generator=g, compiled=compiled)
    ref = _reference_fit(x, y, sizes, keep, l2, init, epochs=3, batch=8, lr=1e-2, seed=5, groups=groups,
                         members=members)
    for (s, m), (weights, biases) in ref.items():
        for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
            assert torch.allclose(model.weights[i][s * members + m], w, rtol=1e-9, atol=1e-12), (s, m, i)
            assert torch.allclose(model.biases[i][s * members + m, 0], b, rtol=1e-9, atol=1e-12), (s, m, i)
    # the weights moved: the comparison is not between untrained copies
    assert (model.weights[0] - init[0][0]).abs().max() > 1e-2


def test_float32_training_equals_the_float64_run_to_float32_rounding():
    groups, members, n, sizes = 2, 2, 50, [3, 8, 1]
    torch.manual_seed(1)
    x, y = torch.randn(groups, n, 3), torch.randn(groups, n, 1)
    runs = []
    for dtype in (torch.float32, torch.float64):
        g = torch.Generator().manual_seed(2)
        model = StackedMLP(sizes, groups=groups, members=members, keep=0.9, generator=g, dtype=dtype)
        runs.append(fit_stacked(model, x, y, l2=1e-3, epochs=2, batch_size=16, generator=g))
    for w32, w64 in zip(runs[0].weights, runs[1].weights, strict=True):
        assert torch.allclose(w32.double(), w64, rtol=1e-4, atol=1e-5)


def test_where_compiling_fails_it_warns_and_trains_eagerly_to_the_same_weights(monkeypatch):
    def boom(*args):
        raise RuntimeError("no C++ compiler here")

    def run(compiled):
        g = torch.Generator().manual_seed(4)
        model = StackedMLP([3, 5, 1], groups=2, members=2, keep=0.8, generator=g, dtype=torch.float64)
        x = torch.linspace(-1, 1, 2 * 30 * 3, dtype=torch.float64).view(2, 30, 3)
        return fit_stacked(model, x, x[..., :1] ** 2, l2=1e-3, epochs=2, batch_size=8, generator=g, compiled=compiled)

    monkeypatch.setattr(_compile, "_compiled", {"stacked.step": boom})
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C\\+\\+ compiler.*running eagerly"):
        failed = run(True)
    assert _compile._compiled.get("failed")
    eager = run(False)
    assert all(torch.equal(u, v) for u, v in zip(failed.parameters, eager.parameters, strict=True))


def test_a_ctrl_c_the_compiler_wrapped_in_its_own_error_stops_and_is_not_taken_for_a_failure(monkeypatch):
    # a compiler that catches the KeyboardInterrupt of a Ctrl-C and raises its own error from it: the eager
    # fallback would otherwise swallow the Ctrl-C and run on
    def wrapped(*args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise RuntimeError("backend compiler failed") from interrupt

    monkeypatch.setattr(_compile, "_compiled", {"probe": wrapped})
    with pytest.raises(KeyboardInterrupt):
        _compile.run("probe", lambda: "eager", True)
    assert not _compile._compiled.get("failed")
    monkeypatch.setattr(_compile, "_compiled", {"probe": lambda: (_ for _ in ()).throw(RuntimeError("no compiler"))})
    with pytest.warns(RuntimeWarning, match="torch.compile failed"):
        assert _compile.run("probe", lambda: "eager", True) == "eager"  # a real failure still falls back


def test_a_compiled_kernel_that_disagrees_with_the_eager_function_is_caught_on_its_first_call(monkeypatch):
    # measured: torch 2.13's inductor with AVX2 vectors (ATEN_CPU_CAPABILITY=avx2) zeroed a quarter of a Bernoulli
    # gate's kept units, and fused Monte Carlo returned NaN statistics; the first call of every kernel is checked
    def gate(o, words):
        return torch.where(words < 128, o, torch.zeros(()))

    def miscompiled(o, words):  # the wrong code: some kept units dropped
        g = gate(o, words)
        g[::4] = 0.0
        return g

    monkeypatch.setattr(_compile, "_compiled", {})
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: miscompiled)
    o, words = torch.rand(64, 32), torch.randint(0, 256, (64, 32), dtype=torch.uint8)
    with pytest.warns(RuntimeWarning, match="mc_gate kernel disagrees with the eager function.*running eagerly"):
        out = _compile.run("mc_gate", gate, True, o, words)
    assert torch.equal(out, gate(o, words))  # the eager result, not the wrong one
    assert _compile._compiled.get("failed")
    assert torch.equal(_compile.run("mc_gate", gate, True, o, words), gate(o, words))  # eager from now on
    # what agrees to summation-order rounding passes, and NaN where eager has none does not
    assert _compile._disagreement((o.sum(0) * (1 + 1e-6), words), (o.sum(0), words)) is None
    assert "NaN" in _compile._disagreement(o.sum(0) * float("nan"), o.sum(0))
    levels = torch.randint(-127, 128, (1000,), dtype=torch.int8)
    nudged = levels.clone()
    nudged[:5] += 1
    assert _compile._disagreement(nudged, levels) is None  # a level's rounding in 0.5% of entries
    nudged[:50] += 1
    assert "integer outputs" in _compile._disagreement(nudged, levels)


@pytest.mark.slow
def test_fused_monte_carlo_with_avx2_kernels_equals_the_unfused_run():
    # the real kernels of an AVX2 host (torch's capability lowered): fused=True must give unfused's statistics
    import os
    import subprocess
    import sys

    code = ("import torch, warnings\n"
            "from droplab import DropoutMLP, ensemble\n"
            "torch.manual_seed(0)\n"
            "net = DropoutMLP((784, 1200, 1200, 10), keep=(0.8, 0.5, 0.5)).eval()\n"
            "x = torch.rand(10, 784)\n"
            "runs = [ensemble.monte_carlo(net, x, samples=500, generator=torch.Generator().manual_seed(0), "
            "precision='float32', fused=f) for f in (False, True)]\n"
            "print(max(float((a.E - b.E).abs().max()) for a, b in zip(runs[0].layers[1:], runs[1].layers[1:])))\n")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5  # NaN before the check: this fails on NaN too


@pytest.mark.parametrize("chunk", [1 << 20, 100])
def test_compiled_predictive_equals_the_eager_one_in_any_blocks(chunk):
    g = torch.Generator().manual_seed(6)
    model = StackedMLP([3, 7, 1], groups=2, members=3, keep=[[[0.8, 0.6]]], generator=g, dtype=torch.float64)
    x = torch.randn(2, 11, 3, dtype=torch.float64, generator=g)
    y = torch.randn(2, 11, 1, dtype=torch.float64, generator=g)
    runs = [model.predictive(x, samples=40, generator=torch.Generator().manual_seed(1), targets=y,
                             tau=[[1.0, 3.0, 9.0]], chunk_elements=chunk, compiled=compiled)
            for compiled in (True, False)]
    assert torch.allclose(runs[0].mean, runs[1].mean, rtol=1e-12, atol=1e-12)
    assert torch.allclose(runs[0].log_likelihood, runs[1].log_likelihood, rtol=1e-12, atol=1e-12)


def test_same_seed_same_weights_and_predictions():
    def run():
        g = torch.Generator().manual_seed(3)
        model = StackedMLP([2, 6, 1], groups=3, members=2, keep=[[[0.8, 0.9]]], generator=g)
        x = torch.linspace(-1, 1, 3 * 20 * 2).view(3, 20, 2)
        fit_stacked(model, x, x.sum(-1, keepdim=True), l2=1e-3, epochs=2, batch_size=7, generator=g)
        return model, model.predictive(x, samples=50, generator=g, targets=x[..., :1], tau=2.0)
    (a, pa), (b, pb) = run(), run()
    assert all(torch.equal(u, v) for u, v in zip(a.parameters, b.parameters, strict=True))
    assert torch.equal(pa.mean, pb.mean) and torch.equal(pa.log_likelihood, pb.log_likelihood)


def test_a_unit_is_kept_with_probability_its_keep_rate_to_2e_10():
    model = StackedMLP([1, 1], groups=1, members=3, keep=[[[0.005], [0.5], [1.0]]],
                       generator=torch.Generator().manual_seed(0))
    for member, k in enumerate([0.005, 0.5, 1.0]):
        t = round(k * 2.0**32) - 2**31 - 1  # kept: lane <= t, t + 2^31 + 1 lanes of the 2^32
        lanes = torch.tensor([[[max(t, -2**31)], [min(t + 1, 2**31 - 1)], [-2**31], [2**31 - 1]]], dtype=torch.int32)
        factor = model._factors(lanes.view(1, 4, 1))[0][member].flatten()
        assert factor[0] == 1 / k and factor[2] == 1 / k
        assert factor[1] == (1 / k if k == 1.0 else 0.0) and factor[3] == (1 / k if k == 1.0 else 0.0)
    # and the frequencies: 200,000 lanes per rate, within 5 binomial SE
    g = torch.Generator().manual_seed(1)
    kept = model._factors(model._draw_lanes((1, 200_000), g))[0].flatten(1) > 0
    for member, k in enumerate([0.005, 0.5, 1.0]):
        se = math.sqrt(k * (1 - k) / 200_000)
        assert abs(float(kept[member].double().mean()) - k) <= 5 * se + 1e-12


def test_predictive_without_dropout_is_the_network_and_a_gaussian_log_likelihood():
    g = torch.Generator().manual_seed(0)
    model = StackedMLP([3, 7, 2], groups=2, members=2, keep=1.0, generator=g, dtype=torch.float64)
    for b in model.biases:
        b.normal_(generator=g)
    x, y = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 5, 2, dtype=torch.float64)
    tau = torch.tensor([[0.5, 2.0], [1.0, 3.0]], dtype=torch.float64)
    stats = model.predictive(x, samples=4, generator=g, targets=y, tau=tau)
    for s in range(2):
        for m in range(2):
            net = model.member(s, m).eval()
            out = net(x[s])
            assert torch.allclose(stats.mean[s, m], out, atol=1e-12)
            t = float(tau[s, m])  # log N(y; out, I / tau), two outputs
            ll = -0.5 * t * (y[s] - out).square().sum(-1) + math.log(t) - math.log(2 * math.pi)
            assert torch.allclose(stats.log_likelihood[s, m], ll, atol=1e-10)


def test_streamed_log_likelihood_equals_the_one_from_stored_samples():
    g = torch.Generator().manual_seed(4)
    sizes, groups, members, n, samples = [2, 6, 1], 2, 2, 4, 30
    keep = torch.tensor([[0.7, 0.9], [0.6, 0.8]], dtype=torch.float64)[..., None].expand(2, 2, 2)
    model = StackedMLP(sizes, groups=groups, members=members, keep=keep, generator=g, dtype=torch.float64)
    x, y = torch.randn(groups, n, 2, dtype=torch.float64), torch.randn(groups, n, 1, dtype=torch.float64)
    tau = torch.tensor([[1.5, 0.5], [2.0, 1.0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(9)
    per_sample = groups * members * n * max(sizes)  # chunk_elements for one sample per chunk
    stats = model.predictive(x, samples=samples, generator=g, targets=y, tau=tau, chunk_elements=per_sample)
    g = torch.Generator().manual_seed(9)
    lanes = [_draw_lanes((groups, 1, n), sum(sizes[:-1]), g) for _ in range(samples)]
    for s in range(groups):
        for m in range(members):
            k = s * members + m
            weights, biases = [w[k] for w in model.weights], [b[k, 0] for b in model.biases]
            outs = torch.stack([_forward(x[s], weights, biases, _stream_masks(lane[s, 0], sizes, keep[s, m]),
                                         keep[s, m].tolist()) for lane in lanes])  # (T, n, 1)
            a = -0.5 * float(tau[s, m]) * (y[s] - outs).square().sum(-1)
            ll = torch.logsumexp(a, 0) - math.log(samples) + 0.5 * math.log(float(tau[s, m]) / (2 * math.pi))
            assert torch.allclose(stats.mean[s, m], outs.mean(0), atol=1e-12)
            assert torch.allclose(stats.log_likelihood[s, m], ll, atol=1e-10)


def test_the_members_monte_carlo_agrees_with_droplabs_ensemble_predictive():
    g = torch.Generator().manual_seed(6)
    model = StackedMLP([3, 16, 1], groups=1, members=2, keep=[[[0.8, 0.7], [0.95, 0.9]]], generator=g)
    x = torch.randn(1, 6, 3)
    ours = model.predictive(x, samples=20_000, generator=g)
    for m in range(2):
        net = model.member(0, m).double()
        theirs = ensemble.predictive(net, x[0].double(), samples=20_000, generator=torch.Generator().manual_seed(7))
        se = (theirs.variance.flatten() / 20_000 * 2).sqrt()  # the difference of two independent means
        assert ((ours.mean[0, m].flatten() - theirs.mean.flatten()).abs() <= 5 * se).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"keep": 0.0}, "keep rates must lie in"),
    ({"keep": [0.5, 0.5, 0.5]}, "keep must broadcast"),
    ({"sizes": [3]}, "sizes must be two or more"),
    ({"groups": 0}, "groups and members"),
])
def test_bad_construction_is_refused(kwargs, message):
    args = {"sizes": [3, 4, 1], "groups": 2, "members": 2, "keep": 0.9, "generator": torch.Generator()} | kwargs
    sizes = args.pop("sizes")
    with pytest.raises(ValueError, match=message):
        StackedMLP(sizes, **args)


def test_bad_training_and_prediction_inputs_are_refused():
    g = torch.Generator().manual_seed(0)
    model = StackedMLP([3, 4, 1], groups=2, members=2, keep=0.9, generator=g)
    with pytest.raises(ValueError, match="must be \\(groups=2"):
        fit_stacked(model, torch.zeros(3, 5, 3), torch.zeros(3, 5, 1), l2=0.0, epochs=1, generator=g)
    with pytest.raises(ValueError, match="3 features"):
        fit_stacked(model, torch.zeros(2, 5, 4), torch.zeros(2, 5, 1), l2=0.0, epochs=1, generator=g)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        fit_stacked(model, torch.zeros(2, 5, 3), torch.zeros(2, 5, 1), l2=0.0, epochs=0, generator=g)
    with pytest.raises(ValueError, match="both targets and tau"):
        model.predictive(torch.zeros(2, 5, 3), samples=3, generator=g, targets=torch.zeros(2, 5, 1))
    with pytest.raises(ValueError, match="tau .* must be positive"):
        model.predictive(torch.zeros(2, 5, 3), samples=3, generator=g, targets=torch.zeros(2, 5, 1), tau=0.0)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        model.predictive(torch.zeros(2, 5, 3), samples=0, generator=g)
    with pytest.raises(ValueError, match="no network"):
        model.member(2, 0)
    bad = torch.zeros(2, 5, 3)
    bad[1, 2, 0] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN or inf \\(1 values\\)"):
        fit_stacked(model, bad, torch.zeros(2, 5, 1), l2=0.0, epochs=1, generator=g)
    with pytest.raises(ValueError, match="x contains NaN"):
        model.predictive(bad, samples=3, generator=g)
    with pytest.raises(ValueError, match="x must be"):
        model.predictive(torch.zeros(5), samples=3, generator=g)
