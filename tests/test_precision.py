"""bfloat16 Monte Carlo and training against float64 with the same masks, and what the precision records."""

import dataclasses

import pytest
import torch

from droplab import DropoutMLP, data, ensemble, presets, train
from droplab.statistics import STATISTICS


def _net():
    torch.manual_seed(0)
    return DropoutMLP([30, 64, 64, 5], keep=[0.8, 0.5, 0.5], init="glorot", init_gain=2.0).eval()


def _worst_in_se(stats, ref):
    return max(float(((a.E.double() - b.E).abs() / b.se_E.clamp_min(1e-300)).max())
               for a, b in zip(stats.layers[1:], ref.layers[1:], strict=True))


def test_bfloat16_monte_carlo_against_float64_with_the_same_masks():
    net, x = _net(), torch.rand(4, 30, generator=torch.Generator().manual_seed(1))
    runs = {}
    for precision in ("float64", "float32", "bfloat16", "bfloat16x3"):
        model = net.double() if precision == "float64" else net.float()
        xs = x.double() if precision == "float64" else x
        runs[precision] = ensemble.monte_carlo(model, xs, samples=4000, generator=torch.Generator().manual_seed(0),
                                               precision=None if precision == "float64" else precision)
        assert runs[precision].precision == precision
    ref = runs["float64"]
    assert _worst_in_se(runs["float32"], ref) < 1e-3  # the same masks: only float32 rounding differs
    assert _worst_in_se(runs["bfloat16x3"], ref) < 0.25  # compensated: about float32's accuracy
    single = _worst_in_se(runs["bfloat16"], ref)
    assert 1e-3 < single < 3.0  # one bfloat16 product: a bias of the order of the sampling error, never zero
    assert _worst_in_se(runs["bfloat16x3"], ref) < single


def test_bfloat16_weights_follow_an_update_the_version_counter_does_not_see():
    # torch's fused Adam (and .data) change weights without bumping their version: the bfloat16 copies are made
    # per call and held by it, never cached on the user's network
    net, x = _net(), torch.rand(2, 30)
    first = ensemble.monte_carlo(net, x, samples=50, precision="bfloat16", generator=torch.Generator().manual_seed(0))
    from droplab.ensemble._precision import low_precision_weights

    version = net.linears[0].weight._version
    net.linears[0].weight.data.mul_(2.0)  # no version bump
    assert net.linears[0].weight._version == version
    assert torch.equal(low_precision_weights(net)[0][0], net.linears[0].weight.to(torch.bfloat16))
    again = ensemble.monte_carlo(net, x, samples=50, precision="bfloat16", generator=torch.Generator().manual_seed(0))
    assert not torch.equal(first.layers[1].E, again.layers[1].E)
    assert not any(k.startswith("_droplab") for k in vars(net))  # nothing left on the user's module


def test_bfloat16_adam_training_learns_and_remakes_its_weight_copies():
    """torch's fused Adam updates weights without bumping their version counter: bfloat16 copies keyed on it went
    stale, and the network never left chance. The copies are remade after every step instead."""
    torch.manual_seed(0)
    p = presets.preset("quick")
    digits = data.load("digits", normalize="standard")
    config = dataclasses.replace(p.train, epochs=8, optimizer="adam", lr=2e-3, momentum_start=0.9, momentum_end=0.9,
                                 precision="bfloat16")
    result = train.fit(train.build_model(p.model, seed=0), digits, config, progress=False)
    assert result.test_error < 15.0  # chance is 90%; the stale copies gave 88%
    float32 = train.fit(train.build_model(p.model, seed=0), digits, dataclasses.replace(config, precision="float32"),
                        progress=False)
    assert abs(result.test_error - float32.test_error) < 4.0
    model = train.build_model(p.model, seed=0)
    with train._Precision(model, "bfloat16") as low:
        first = low.weight(0)
        assert low.weight(0) is first  # kept within a step
        with torch.no_grad():
            model.linears[0].weight.add_(1.0)
        low.refresh()
        assert torch.equal(low.weight(0), model.linears[0].weight.to(torch.bfloat16))


def test_precision_bad_input():
    net, x = _net(), torch.rand(2, 30)
    with pytest.raises(ValueError, match="precision must be one of"):
        ensemble.monte_carlo(net, x, samples=5, precision="float16")
    with pytest.raises(ValueError, match="takes float32 inputs"):
        ensemble.monte_carlo(net.double(), x.double(), samples=5, precision="bfloat16")
    with pytest.raises(ValueError, match=r"precision must be one of \('auto', 'float32', 'bfloat16'\)"):
        train.TrainConfig(precision="half")


def test_bfloat16_training_gradients_match_float32_and_it_learns(tmp_path):
    p = presets.preset("quick")
    digits = data.load("digits", normalize="standard")
    model = train.build_model(dataclasses.replace(p.model, keep=1.0), seed=0)
    x, y = digits.x_train[:64], digits.y_train[:64]
    g32 = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), list(model.parameters()))
    with train._Precision(model, "bfloat16"):
        g16 = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), list(model.parameters()))
    for a, b in zip(g32, g16, strict=True):
        assert float((a - b).norm() / a.norm()) < 0.02  # bfloat16's 8 bits: about 2^-8 relative
    assert all(type(m.forward).__name__ == "method" for m in model.linears)  # restored after the context
    config = dataclasses.replace(p.train, epochs=8, precision="bfloat16")
    result = train.fit(train.build_model(p.model, seed=0), digits, config, out_dir=tmp_path, progress=False)
    assert result.test_error < 10.0  # chance is 90%
    import json

    assert json.loads((tmp_path / "config.json").read_text())["train"]["precision"] == "bfloat16"
    with pytest.raises(ValueError, match="train precision = 'bfloat16' \\(now 'float32'\\)"):
        train.fit(train.build_model(p.model, seed=0), digits, dataclasses.replace(config, precision="float32"),
                  out_dir=tmp_path, resume=True, progress=False)


@pytest.mark.parametrize("statistics", [STATISTICS, ("E",)])
def test_fused_statistics_match_the_unfused_pass_and_exact_enumeration(statistics):
    # fused=True sums every logistic layer's statistics in one compiled kernel: the same masks give the same
    # statistics up to float32 summation order, for all statistics and for the mean alone (no shift)
    torch.manual_seed(0)
    net = DropoutMLP((4, 7, 5, 3), keep=(0.8, 0.5, 0.5)).eval()
    x = torch.rand(4, 4)
    runs = [ensemble.monte_carlo(net, x, samples=3000, generator=torch.Generator().manual_seed(5),
                                 statistics=statistics, fused=fused) for fused in (False, True)]
    for a, b in zip(runs[0].layers[1:], runs[1].layers[1:], strict=True):
        for key in ("E", "Var", "Var_S", "E_S", "E_derivative", "WGM", "NWGM", "se_E"):
            ours, theirs = getattr(b, key), getattr(a, key)
            assert (ours is None) == (theirs is None), key
            if ours is not None:
                torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    if statistics == ("E",):
        return
    truth = ensemble.exact(net.double(), x.double())  # 2^(4 + 7 + 5) configurations: the ensemble itself
    for b, t in zip(runs[1].layers[1:], truth.layers[1:], strict=True):
        assert float(((b.E.double() - t.E).abs() / b.se_E.double().clamp_min(1e-12)).max()) < 5
        torch.testing.assert_close(b.Var.double(), t.Var, rtol=0.1, atol=1e-4)


def test_fused_with_bfloat16_and_bad_input():
    torch.manual_seed(0)
    net = DropoutMLP((6, 9, 3), keep=(0.8, 0.5)).eval()
    x = torch.rand(4, 6)
    a, b = (ensemble.monte_carlo(net, x, samples=500, generator=torch.Generator().manual_seed(1), precision="bfloat16",
                                 fused=fused) for fused in (False, True))
    torch.testing.assert_close(b.layers[1].Var, a.layers[1].Var, rtol=1e-5, atol=1e-7)
    with pytest.raises(TypeError, match="fused must be True or False"):
        ensemble.monte_carlo(net, x, samples=10, fused="yes")
    with pytest.raises(ValueError, match="fused=True fuses a DropoutMLP"):
        ensemble.monte_carlo(torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Dropout(0.5)), x, samples=10,
                             fused=True)


@pytest.mark.parametrize("keep, scaling", [(0.5, "paper"), (0.8, "inverted"), (0.75, "paper"), (0.3, "inverted")])
def test_the_fused_gate_draws_the_gates_own_masks(keep, scaling):
    # byte words (0.5, 0.75), 32-bit words (0.8, 0.3), both scalings: the compiled gate gives the gate's own
    # output bit for bit from the same generator, in float32 and cast to bfloat16
    from droplab import modes
    from droplab.ensemble._precision import _fused_gate
    from droplab.nn import UnitGate

    gate, o = UnitGate(keep, scaling=scaling), torch.rand(37, 50) - 0.2
    outs = []
    for fused in (False, True, "bfloat16"):
        with modes.sample(gate, generator=torch.Generator().manual_seed(2)):
            outs.append(gate(o) if fused is False else _fused_gate(
                gate, o, torch.bfloat16 if fused == "bfloat16" else torch.float32))
    assert torch.equal(outs[1], outs[0]) and torch.equal(outs[2], outs[0].to(torch.bfloat16))
    assert 0 < float((outs[0] == 0).float().mean()) < 1
    per_unit = UnitGate(torch.full((50,), keep), scaling=scaling)
    with modes.sample(per_unit, generator=torch.Generator().manual_seed(2)):
        assert _fused_gate(per_unit, o, torch.float32) is None  # per-unit rates: the gate runs itself


def test_tile_and_timings_are_public_options_for_profiling():
    net, x = _net(), torch.rand(2, 30)
    spent: dict[str, float] = {}
    a = ensemble.monte_carlo(net, x, samples=200, generator=torch.Generator().manual_seed(0), timings=spent)
    b = ensemble.monte_carlo(net, x, samples=200, generator=torch.Generator().manual_seed(0))
    assert spent["statistics"] > 0 and torch.equal(a.layers[1].E, b.layers[1].E)  # timing changes nothing
    c = ensemble.monte_carlo(net, x, samples=200, generator=torch.Generator().manual_seed(0), tile=2**20)
    z = (c.layers[1].E - b.layers[1].E).abs() / (c.layers[1].se_E**2 + b.layers[1].se_E**2).sqrt().clamp_min(1e-12)
    assert float(z.max()) < 5.5  # other chunks, other masks: the same ensemble, within Monte Carlo noise
    with pytest.raises(ValueError, match="tile must be a positive number of bytes"):
        ensemble.monte_carlo(net, x, samples=2, tile=0)
    with pytest.raises(TypeError, match="timings must be a dict"):
        ensemble.monte_carlo(net, x, samples=2, timings=[])
    assert "E" in ensemble.STATISTICS


def _diffs(precision, seeds, samples=400, net=None):
    """E - E_f64 with the same masks, every unit of every layer, one row per seed."""
    net = _net() if net is None else net
    x = torch.rand(4, net.sizes[0], generator=torch.Generator().manual_seed(1))
    rows = []
    for seed in seeds:
        ref = ensemble.monte_carlo(net.double(), x.double(), samples=samples, statistics=("E",),
                                   generator=torch.Generator().manual_seed(seed))
        run = ensemble.monte_carlo(net.float(), x, samples=samples, statistics=("E",), precision=precision,
                                   generator=torch.Generator().manual_seed(seed))
        rows.append(torch.cat([(a.E.double() - b.E).flatten() for a, b in zip(run.layers[1:], ref.layers[1:],
                                                                             strict=True)]))
    return torch.stack(rows)


def test_bfloat16c_is_unbiased_its_error_averages_out_over_independent_runs():
    # the mean over R runs of (E - E_f64, same masks) shrinks as 1/sqrt(R) when the rounding error has mean
    # zero: its t-statistic over the runs stays of order 1 for every unit. bfloat16's rounding of the weights is
    # the same in every run, a bias: its t-statistics grow as sqrt(R) (here far above 3)
    seeds = range(24)
    t = {}
    for precision in ("bfloat16c", "bfloat16"):
        d = _diffs(precision, seeds)
        moving = d.std(0) > 0  # units whose error varies from run to run (an exactly-0 unit has t undefined)
        t[precision] = d.mean(0)[moving] / (d.std(0)[moving] / len(seeds) ** 0.5)
    rms = {p: float(v.square().mean().sqrt()) for p, v in t.items()}
    assert rms["bfloat16c"] < 1.5, rms
    assert rms["bfloat16"] > 3.0, rms
    # and the size: bfloat16c's error is a small fraction of bfloat16's
    assert float(_diffs("bfloat16c", [0]).abs().max()) < 0.2 * float(_diffs("bfloat16", [0]).abs().max())


def _z_against_exact(net, precision, runs=40):
    """z = (E - E_exact) / SE over ``runs`` independent runs of 300 samples and every unit of every layer."""
    x = torch.rand(3, net.sizes[0], generator=torch.Generator().manual_seed(2))
    truth = ensemble.exact(net.double(), x.double())
    z = []
    for seed in range(runs):
        run = ensemble.monte_carlo(net.float(), x, samples=300, precision=precision,
                                   generator=torch.Generator().manual_seed(seed))
        z.append(torch.cat([((a.E.double() - b.E) / a.se_E.double()).flatten()
                            for a, b in zip(run.layers[1:], truth.layers[1:], strict=True)]))
    return torch.stack(z)


def test_bfloat16c_standard_errors_are_honest_against_exact_enumeration():
    # the reported SE covers the sampling noise and the rounding together, so z has sd about 1 (0.86-1.14 holds
    # with room for 40 x 44 correlated z-scores); 2^(6 + 8 + 6) configurations enumerate the truth
    torch.manual_seed(0)
    z = _z_against_exact(DropoutMLP((6, 8, 6, 3), keep=(0.8, 0.5, 0.5), init="glorot", init_gain=2.0).eval(),
                         "bfloat16c")
    assert 0.86 < float(z.std()) < 1.14, float(z.std())
    assert abs(float(z.mean())) < 0.15


@pytest.mark.parametrize("precision", ["bfloat16c", "int8c"])
def test_corrected_precisions_same_seed_same_result_fused_the_same_and_recorded(precision):
    net = _net() if precision == "bfloat16c" else _int8_net()
    x = torch.rand(3, net.sizes[0])
    a, b = (ensemble.monte_carlo(net, x, samples=300, precision=precision,
                                 generator=torch.Generator().manual_seed(4)) for _ in range(2))
    assert a.precision == precision
    assert all(torch.equal(u.E, v.E) and torch.equal(u.Var, v.Var) for u, v in zip(a.layers, b.layers, strict=True))
    fused = ensemble.monte_carlo(net, x, samples=300, precision=precision, fused=True,
                                 generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(fused.layers[2].E, a.layers[2].E, rtol=1e-5, atol=1e-6)  # the same masks


def test_the_weights_stochastic_rounding_is_unbiased_and_its_compiled_pass_gives_the_same_bits():
    """bfloat16c's weights: hi is one of the two bfloat16 neighbours of w (so hi + lo = w to about 2^-16 of w), its
    mean over fresh draws is w (within 4.5 standard errors of the mean of 4,000 draws, the largest of 200; rounding
    to nearest is off by more than 50 of them), and the compiled one-pass kernel gives the eager function's bits."""
    from droplab import _compile
    from droplab.ensemble._precision import _dither_words, _rounded_weight, stochastic_round

    g = torch.Generator().manual_seed(11)
    w = torch.cat([torch.randn(200, generator=g) * 10.0 ** torch.randint(-3, 3, (200,), generator=g),
                   torch.tensor([0.0, -0.0, 1.0, -2.5, 1e-30])]).view(5, 41)
    draws = 4000
    his = []
    for _ in range(draws):
        words = _dither_words(tuple(w.shape), g, w.device)
        hi, lo = _rounded_weight(w, words)
        assert torch.equal(hi.float(), stochastic_round(w, words.to(torch.int32) & 0xFFFF))  # the documented cut
        his.append(hi.double())
    his = torch.stack(his)
    down = w.to(torch.bfloat16).double()  # one neighbour; the other is a bfloat16 step away
    step = (torch.nextafter(w.abs().to(torch.bfloat16), torch.tensor(float("inf"), dtype=torch.bfloat16)).double()
            - w.abs().to(torch.bfloat16).double())
    assert bool(((his - down).abs() <= step).all())
    mean, se = his.mean(0), his.std(0) / draws ** 0.5
    exact = (his.std(0) == 0)  # w already a bfloat16 value (zeros, 1.0, -2.5): never moved
    assert bool((his[:, exact] == w.double()[exact]).all())
    z = ((mean - w.double()) / se)[~exact]
    assert float(z.abs().max()) < 4.5, float(z.abs().max())
    assert float(((w.to(torch.bfloat16).double() - w.double()) / se)[~exact].abs().max()) > 50  # not a vacuous bound
    words = _dither_words(tuple(w.shape), g, w.device)
    eager = _rounded_weight(w, words)
    compiled = _compile.run("test_round_weights", _rounded_weight, True, w, words)
    assert all(torch.equal(a.view(torch.int16), b.view(torch.int16)) for a, b in zip(eager, compiled, strict=True))


def test_fused_monte_carlo_where_compiling_fails_warns_and_gives_the_unfused_numbers(monkeypatch):
    from droplab import _compile

    def boom(*args):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(_compile, "_compiled", {name: boom for name in (
        "mc_gate", "mc_corrected_gate", "mc_logistic_sums", "mc_round_weights", "mc_round_int8", "mc_int8_gate",
        "mc_int8_dequantize")})
    torch.manual_seed(0)
    net = DropoutMLP((8, 8, 3), keep=(0.8, 0.5)).eval()  # its 8 -> 8 layer runs in int8 under int8c
    x = torch.rand(3, 8)
    for precision in ("float32", "bfloat16c", "int8c"):
        _compile._compiled.pop("failed", None)
        with pytest.warns(RuntimeWarning, match="torch.compile failed .*running eagerly"):
            fused = ensemble.monte_carlo(net, x, samples=400, precision=precision, fused=True,
                                         generator=torch.Generator().manual_seed(2))
        plain = ensemble.monte_carlo(net, x, samples=400, precision=precision,
                                     generator=torch.Generator().manual_seed(2))
        for a, b in zip(fused.layers[1:], plain.layers[1:], strict=True):  # the same masks and roundings
            torch.testing.assert_close(a.E, b.E, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(a.Var, b.Var, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------------------------------- int8c
def _int8_net():
    """Every product but the last in int8 under int8c (sizes multiples of 8), the first on the dithered inputs."""
    torch.manual_seed(0)
    return DropoutMLP([32, 64, 64, 5], keep=[0.8, 0.5, 0.5], init="glorot", init_gain=2.0).eval()


def test_int8c_runs_the_layers_it_can_in_int8_and_the_others_exactly_in_float32():
    from torch import nn

    from droplab.ensemble._precision import int8_layer

    assert [int8_layer(lin) for lin in _int8_net().linears] == [True, True, False]  # 5 outputs: float32
    assert not int8_layer(nn.Linear(133_008, 8))  # 127 * 127 * K would overflow the int32 sums
    # a network none of whose layers fits: int8c is the float32 estimator itself, bit for bit (the same masks)
    torch.manual_seed(0)
    net, x = DropoutMLP((6, 10, 3), keep=(0.8, 0.5)).eval(), torch.rand(3, 6)
    a, b = (ensemble.monte_carlo(net, x, samples=200, precision=p, generator=torch.Generator().manual_seed(3))
            for p in ("int8c", "float32"))
    assert all(torch.equal(u.E, v.E) and torch.equal(u.Var, v.Var) for u, v in zip(a.layers, b.layers, strict=True))


def test_int8c_is_unbiased_its_error_averages_out_over_independent_runs():
    # as bfloat16c's test: the t-statistics over 24 runs of (E - E_f64, same masks) stay of order 1 for every unit;
    # bfloat16's fixed rounding, a bias, gives t far above 3 on the same network (the test can fail)
    seeds = range(24)
    t = {}
    for precision in ("int8c", "bfloat16"):
        d = _diffs(precision, seeds, net=_int8_net())
        moving = d.std(0) > 0
        t[precision] = d.mean(0)[moving] / (d.std(0)[moving] / len(seeds) ** 0.5)
    rms = {p: float(v.square().mean().sqrt()) for p, v in t.items()}
    assert rms["int8c"] < 1.5, rms
    assert rms["bfloat16"] > 3.0, rms
    one = _diffs("int8c", [0], net=_int8_net())
    assert float(one.abs().max()) < 0.2 * float(_diffs("bfloat16", [0], net=_int8_net()).abs().max())


def test_int8c_standard_errors_are_honest_against_exact_enumeration():
    # the SE covers the sampling noise and the int8 rounding together. Both products before the output run in int8
    # (sizes 8); 2^(8 + 8) configurations enumerate the truth
    torch.manual_seed(0)
    z = _z_against_exact(DropoutMLP((8, 8, 8, 3), keep=(0.8, 0.5, 1.0), init="glorot", init_gain=2.0).eval(), "int8c")
    assert 0.86 < float(z.std()) < 1.14, float(z.std())
    assert abs(float(z.mean())) < 0.15


def test_int8c_refuses_float64_inputs_and_weights_it_cannot_scale():
    net, x = _int8_net(), torch.rand(3, 32)
    with pytest.raises(ValueError, match="takes float32 inputs"):
        ensemble.monte_carlo(net.double(), x.double(), samples=10, precision="int8c")
    net.float()
    with torch.no_grad():
        net.linears[1].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="int8c' cannot scale weights that hold NaN or inf"):
        ensemble.monte_carlo(net, x, samples=10, precision="int8c")
    # finite weights whose ReLU outputs overflow to inf: refused at the next layer, not scaled into zeros
    torch.manual_seed(0)
    huge = DropoutMLP([32, 64, 64, 5], keep=[0.8, 0.5, 0.5], transfer="relu").eval()
    with torch.no_grad():
        huge.linears[0].weight.fill_(1e38)
    with pytest.raises(ValueError, match="layer 1's outputs overflowed to inf"):
        ensemble.monte_carlo(huge, x, samples=10, precision="int8c")


def test_int8c_weights_stochastic_rounding_is_unbiased_and_its_compiled_pass_gives_the_same_bits():
    """q is the floor or the ceiling of w / scale (|q| <= 127), q * scale + lo = w to a bfloat16 rounding of lo,
    the mean of q * scale over 4,000 fresh draws is w within 4.5 standard errors (rounding to nearest is off by
    more than 50), a zero row stays zero, and the compiled kernel gives the eager function's bits."""
    from droplab import _compile
    from droplab.ensemble._precision import _dither_words, _rounded_int8_weight

    g = torch.Generator().manual_seed(11)
    w = torch.randn(6, 40, generator=g) * 10.0 ** torch.randint(-3, 3, (6, 1), generator=g)
    w[5] = 0.0
    draws, values = 4000, []
    for _ in range(draws):
        q, scale, hi, lo = _rounded_int8_weight(w, _dither_words(tuple(w.shape), g, w.device))
        levels = w[:5] / scale[:5, None]
        assert bool(((q[:5].double() - levels.double().floor()).abs() <= 1).all()) and int(q.abs().max()) <= 127
        assert torch.equal(hi.float(), q.float())
        torch.testing.assert_close((q * scale[:, None] + lo.float())[:5], w[:5], rtol=0, atol=float(scale.max()) / 64)
        values.append(q.double() * scale[:, None].double())
    assert bool((torch.stack(values)[:, 5] == 0).all())
    v = torch.stack(values)[:, :5]
    mean, se = v.mean(0), v.std(0) / draws ** 0.5
    moving = se > 0
    z = ((mean - w[:5].double()) / se)[moving]
    assert float(z.abs().max()) < 4.5, float(z.abs().max())
    nearest = torch.round(w[:5] / scale[:5, None]).double() * scale[:5, None].double()
    assert float(((nearest - w[:5].double()) / se)[moving].abs().max()) > 50  # not a vacuous bound
    words = _dither_words(tuple(w.shape), g, w.device)
    eager = _rounded_int8_weight(w, words)
    compiled = _compile.run("test_round_int8", _rounded_int8_weight, True, w, words)
    assert all(torch.equal(a, b) for a, b in zip(eager, compiled, strict=True))


def test_int8c_on_a_relu_network_large_z_scores_only_where_a_unit_fires_in_a_few_samples():
    # A ReLU unit that fires in one sample of thousands has E = SE (both v / K): whether that one S rounds above 0
    # decides E, so |E - E_f64| / SE can exceed 2 there (measured: int8c 2.24 on this network, bfloat16c 2.14)
    # while the error itself is 10x smaller than on the units that fire often. On the units that fire in some 10
    # samples or more (E >= sqrt(10) SE), int8c and bfloat16c stay within 0.5 SE; plain bfloat16 does not (so the
    # test can fail).
    torch.manual_seed(0)
    net = DropoutMLP((64, 128, 128, 10), transfer="relu", keep=(0.8, 0.5, 0.5), scaling="inverted").eval()
    x = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    ref = ensemble.monte_carlo(net.double(), x.double(), samples=4000, statistics=("E", "Var"),
                               generator=torch.Generator().manual_seed(0))
    net.float()
    worst = {}
    for precision in ("int8c", "bfloat16c", "bfloat16"):
        stats = ensemble.monte_carlo(net, x, samples=4000, statistics=("E", "Var"), precision=precision,
                                     generator=torch.Generator().manual_seed(0))
        in_se, rare, often = [], [], []
        for a, b in zip(stats.layers[1:], ref.layers[1:], strict=True):
            error = (a.E.double() - b.E).abs()
            many = b.E.abs() >= 10**0.5 * b.se_E
            in_se.append(float((error / b.se_E)[many & (b.se_E > 0)].max()))
            rare.append(float(torch.cat([error[~many], error.new_zeros(1)]).max()))
            often.append(float(error[many].max()))
        worst[precision] = max(in_se)
        assert max(rare) < 0.1 * max(often), (precision, rare, often)
    assert worst["int8c"] < 0.5 and worst["bfloat16c"] < 0.5, worst
    assert worst["bfloat16"] > 0.5, worst


def test_int8c_scales_by_bounds_known_in_advance_and_saturated_units_stay_in_range():
    # the gated inputs' scale: the first layer's largest input / p, a logistic layer's 1 / p (inverted scaling),
    # the chunk's largest value where nothing bounds them (ReLU outputs, Gaussian gates)
    from droplab.ensemble._precision import _input_bounds

    torch.manual_seed(0)
    net = DropoutMLP((16, 16, 16, 8), keep=(0.8, 0.5, 0.5), scaling="inverted").eval()
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(1))
    bounds = _input_bounds(net, x)
    assert torch.equal(bounds[0], x.abs().amax(1) / 0.8) and torch.equal(bounds[1], torch.full((4,), 2.0))
    assert _input_bounds(DropoutMLP((16, 16, 8), transfer="relu", keep=(1.0, 0.5)), x)[1] is None
    assert _input_bounds(DropoutMLP((16, 16, 8), gate="gaussian", keep=(0.8, 0.5)), x)[0] is None
    # saturated logistic units (half of the first layer's): outputs exactly 1, gated 2.0 = the bound, the top level
    # (127) and no further
    with torch.no_grad():
        net.linears[0].bias[::2] = 50.0
    ref = ensemble.monte_carlo(net.double(), x.double(), samples=2000, statistics=("E", "Var"),
                               generator=torch.Generator().manual_seed(0))
    net.float()
    assert bool((ref.layers[1].E[:, ::2] == 1).all())
    runs = [ensemble.monte_carlo(net, x, samples=2000, statistics=("E", "Var"), precision="int8c", fused=fused,
                                 generator=torch.Generator().manual_seed(0)) for fused in (False, True)]
    for stats in runs:  # a level past 127 would wrap to -128 and put the next layer many SE off
        assert float((stats.layers[1].E[:, ::2] - 1).abs().max()) < 1e-6
        for a, b in zip(stats.layers[1:], ref.layers[1:], strict=True):
            sampled = b.se_E > 0
            assert float(((a.E.double() - b.E).abs() / b.se_E)[sampled].max()) < 0.5
    for a, b in zip(runs[0].layers[1:], runs[1].layers[1:], strict=True):  # fused: the same to a level's rounding
        sampled = b.se_E > 0
        assert float(((a.E - b.E).abs() / b.se_E)[sampled].max()) < 0.05
