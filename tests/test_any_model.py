"""droplab's modes and Monte Carlo on models built from torch's own dropout, and ``droplab.convert``.

References: torch's dropout in training mode (sampled with torch's RNG, a separate implementation), closed
forms for a two-outcome ensemble, and the model's eval output.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import droplab
from droplab import modes
from droplab.ensemble import monte_carlo


class CNN(nn.Module):
    """Conv, BatchNorm, Dropout2d, and F.dropout in the forward (what module-swapping wrappers miss)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop2d = nn.Dropout2d(0.3)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def features(self, x):
        return F.relu(self.bn(self.conv(x)))

    def forward(self, x):
        h = self.drop2d(self.features(x))
        return self.fc(F.dropout(h.flatten(1), 0.5, self.training))


def _cnn():
    torch.manual_seed(0)
    model = CNN().double()
    model.train()
    with torch.no_grad():
        model(torch.randn(64, 1, 6, 6, dtype=torch.float64))  # running statistics away from their start
    return model.eval()


def _x(shape=(4, 1, 6, 6), seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _record_replay_expect(model, x, expected, atol=0.0):
    """A recorded draw replays to the bit, and ``expect`` gives ``expected`` (the eval-mode output, or a closed
    form): exactly, or within ``atol`` where attention's fused kernels sum in another order. Returns (the noise,
    the draw)."""
    with torch.no_grad():
        with modes.record(model, generator=_gen()) as noise:
            y = model(x)
        with modes.replay(model, noise):
            assert torch.equal(model(x), y)
        with modes.expect(model):
            got = model(x)
            assert torch.equal(got, expected) if atol == 0 else torch.allclose(got, expected, rtol=0, atol=atol)
    return noise, y


def test_batchnorm_keeps_eval_statistics_and_training_flag_is_untouched():
    model, x = _cnn(), _x()
    mean, var = model.bn.running_mean.clone(), model.bn.running_var.clone()
    with torch.no_grad():
        eval_out = model(x)
        with modes.sample(model, generator=_gen()):
            assert not model.training and not model.drop2d.training
            model(x)
        monte_carlo(model, x, samples=50, generator=_gen(), output="logits")
        with modes.off(model):
            off_out = model(x)
    assert torch.equal(model.bn.running_mean, mean) and torch.equal(model.bn.running_var, var)
    assert not model.training
    assert torch.equal(off_out, eval_out)  # BatchNorm used its running statistics (its eval form)


def test_sample_varies_off_and_expect_do_not_and_same_generator_same_outputs():
    model, x = _cnn(), _x()
    with torch.no_grad():
        eval_out = model(x)
        with modes.sample(model, generator=_gen(3)):
            a, b = model(x), model(x)
        with modes.sample(model, generator=_gen(3)):
            a2 = model(x)
        with modes.off(model):
            off1, off2 = model(x), model(x)
        with modes.expect(model):
            expect_out = model(x)
    assert not torch.equal(a, b)
    assert torch.equal(a, a2)
    assert torch.equal(off1, off2) and torch.equal(expect_out, eval_out)


def test_record_then_replay_is_exact_and_names_modules_and_functional_calls():
    model, x = _cnn(), _x()
    with torch.no_grad():
        with modes.record(model, generator=_gen(5)) as noise:
            y = model(x)
        assert set(noise) == {"drop2d", "model:dropout#0"}
        assert noise["drop2d"].shape == (4, 4, 1, 1)  # one draw per example and channel, as Dropout2d
        assert noise["model:dropout#0"].shape == (4, 144)
        with modes.replay(model, noise):
            assert torch.equal(model(x), y)
        with modes.replay(model, {**noise, "drop2d": torch.zeros(4, 4, 1, 1, dtype=torch.float64)}):
            dropped = model(x)
    expected = model.fc(F.dropout(torch.zeros(4, 144, dtype=torch.float64), 0.0) * noise["model:dropout#0"] / 0.5)
    assert torch.allclose(dropped, expected)


class Reused(nn.Module):
    """One dropout module called twice in a forward, and a block (with F.dropout inside) called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.d, self.a = nn.Dropout(0.5), nn.Linear(6, 6)
        self.block = Block()

    def forward(self, x):
        return self.block(self.block(self.d(self.a(self.d(x)))))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 6)

    def forward(self, x):
        return F.dropout(torch.tanh(self.lin(x)), 0.3, self.training)


def test_a_module_called_twice_gets_one_mask_per_call_and_replays_exactly():
    """Issue 18: ``self.d(self.a(self.d(x)))`` recorded one mask named "d" and replay gave another output."""
    torch.manual_seed(0)
    model, x = Reused().eval(), torch.randn(5, 6)
    with torch.no_grad():
        with modes.record(model, generator=_gen(1)) as noise:
            y = model(x)
        assert set(noise) == {"d", "d#1", "block:dropout#0", "block#1:dropout#0"}
        assert not torch.equal(noise["d"], noise["d#1"])  # two draws, not one mask used twice
        with modes.replay(model, noise):
            assert torch.equal(model(x), y)
            assert torch.equal(model(x), y)  # the counts start afresh with each forward of the model
        # by hand: the same masks applied where torch's modules would apply them
        h = model.a(x * noise["d"] / 0.5) * noise["d#1"] / 0.5
        h = torch.tanh(model.block.lin(h)) * noise["block:dropout#0"] / 0.7
        h = torch.tanh(model.block.lin(h)) * noise["block#1:dropout#0"] / 0.7
        assert torch.allclose(h, y)
        with modes.replay(model, {k: v for k, v in noise.items() if k != "d#1"}), \
                pytest.raises(ValueError, match="no mask for torch dropout 'd#1'"):
            model(x)


def test_replay_refuses_a_mask_value_other_than_0_and_1_and_a_missing_mask():
    model, x = _cnn(), _x()
    with torch.no_grad(), modes.record(model, generator=_gen()) as noise:
        model(x)
    bad = {**noise, "drop2d": noise["drop2d"] * 7}
    with pytest.raises(ValueError, match="other than 0 and 1"), modes.replay(model, bad):
        model(x)
    with pytest.raises(ValueError, match="no mask for torch dropout 'model:dropout#0'"), \
            modes.replay(model, {"drop2d": noise["drop2d"]}):
        model(x)
    gated = nn.Sequential(nn.Linear(3, 3), droplab.nn.Dropout(keep=0.5))
    with pytest.raises(ValueError, match="holds 7"), modes.replay(gated, {"1": torch.full((2, 3), 7.0)}):
        gated(torch.ones(2, 3))


def test_monte_carlo_mean_matches_a_hand_loop_with_torch_dropout_in_training_mode():
    model, x = _cnn(), _x()
    samples = 4000
    stats = monte_carlo(model, x, samples=samples, generator=_gen(), output="logits")
    torch.manual_seed(11)
    total = total_sq = 0
    with torch.no_grad():
        h = model.features(x)  # BatchNorm in eval, as in the Monte Carlo run
        for _ in range(samples):
            z = F.dropout(F.dropout2d(h, 0.3, training=True).flatten(1), 0.5, training=True)
            p = torch.softmax(model.fc(z), -1)
            total, total_sq = total + p, total_sq + p * p
    mean = total / samples
    se_hand = ((total_sq / samples - mean**2).clamp_min(0) / samples).sqrt()
    z = (stats.output.E - mean).abs() / (stats.output.se_E**2 + se_hand**2).sqrt().clamp_min(1e-12)
    assert float(z.max()) < 4.5, float(z.max())  # 20 values: the largest of 20 |N(0,1)| is below 4.5


def test_transformer_encoder_layer_attention_dropout_is_sampled_and_matches_training_mode():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.2, batch_first=True).double().eval()
    x = _x((2, 3, 8))
    with torch.no_grad():
        eval_out = layer(x)
    noise, _ = _record_replay_expect(layer, x, eval_out, atol=1e-12)
    assert "self_attn:scaled_dot_product_attention#0" in noise
    assert noise["self_attn:scaled_dot_product_attention#0"].shape == (2, 2, 3, 3)  # (B, heads, L, S)
    assert {"dropout", "dropout1", "dropout2"} <= set(noise)
    samples = 3000
    stats = monte_carlo(layer, x, samples=samples, generator=_gen(1))
    assert stats.output_kind == "values" and stats.output.E.shape == x.shape
    layer.train()  # the reference: torch's own dropout, including attention dropout, in training mode
    torch.manual_seed(2)
    with torch.no_grad():
        outs = torch.stack([layer(x) for _ in range(samples)])
    layer.eval()
    se = (stats.output.se_E**2 + outs.var(0) / samples).sqrt()
    z = (stats.output.E - outs.mean(0)).abs() / se
    assert float(z.max()) < 5.0, float(z.max())  # 48 values
    ratio = stats.output.Var / outs.var(0)
    assert 0.8 < float(ratio.median()) < 1.25


def test_batch_dim_one_for_sequence_first_models():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.2).double().eval()  # (L, B, E)
    x = _x((3, 2, 8))
    stats = monte_carlo(layer, x, samples=200, generator=_gen(), batch_dim=1)
    assert stats.output.E.shape == x.shape
    with pytest.raises(ValueError, match="batch_dim"):
        monte_carlo(layer, x[:, :1].expand(3, 3, 8).contiguous(), samples=4, batch_dim=5)


def test_functional_dropout_outside_the_context_is_torchs_own():
    model = _cnn()
    other = nn.Dropout(0.5)
    torch.manual_seed(0)
    before = F.dropout(torch.ones(1000), 0.5, training=True)
    with torch.no_grad(), modes.sample(model, generator=_gen()):
        assert torch.equal(other.eval()(torch.ones(3)), torch.ones(3))  # another model: not intercepted
        assert torch.equal(F.dropout(torch.ones(3), 0.5, training=False), torch.ones(3))
    torch.manual_seed(0)
    assert torch.equal(F.dropout(torch.ones(1000), 0.5, training=True), before)
    assert not hasattr(F.dropout, "__wrapped__")  # torch's function is back


@pytest.mark.parametrize(("module", "shape", "mask"), [
    (nn.Dropout1d(0.4), (3, 4, 5), (3, 4, 1)),
    (nn.Dropout3d(0.4), (2, 3, 2, 2, 2), (2, 3, 1, 1, 1)),
    (nn.FeatureAlphaDropout(0.4), (2, 3, 4, 4), (2, 3, 1, 1)),
    (nn.AlphaDropout(0.4), (2, 6), (2, 6)),
])
def test_every_torch_dropout_module_is_covered(module, shape, mask):
    model = nn.Sequential(nn.Identity(), module).eval()
    x = _x(shape)
    with torch.no_grad(), modes.record(model, generator=_gen()) as noise:
        y = model(x)
    assert noise["1"].shape == mask and not torch.equal(y, x)
    with torch.no_grad(), modes.replay(model, noise):
        assert torch.equal(model(x), y)


from torch.nn.functional import dropout as early_bound_dropout  # noqa: E402  (bound before any context: on purpose)


class ATenDropout(nn.Module):
    """Dropout applied the ways torch offers besides the module functions: ATen's entry points in ``torch``,
    an ``F.dropout`` bound at import time, the in-place and feature forms, ``native_dropout``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 6)

    def forward(self, x):
        h = torch.dropout(self.a(x), 0.5, self.training)
        h = early_bound_dropout(h, 0.3, self.training)
        h = torch.feature_dropout(h.view(len(x), 3, 2), 0.4, self.training).view(len(x), 6)
        h = torch.alpha_dropout(h, 0.2, self.training)
        h = h.clone()
        torch.dropout_(h, 0.25, self.training)
        out, _ = torch.native_dropout(h, 0.1, self.training)
        return out


def test_aten_entry_points_and_early_bound_functions_are_sampled_named_and_replayed():
    torch.manual_seed(0)
    model = ATenDropout().double().eval()
    x = _x((4, 6))
    with torch.no_grad():
        plain = model(x)
    noise, y = _record_replay_expect(model, x, plain)  # expect: each call's eval output, as torch gives in eval mode
    assert set(noise) == {"model:dropout#0", "model:dropout#1", "model:feature_dropout#0", "model:alpha_dropout#0",
                          "model:dropout#2", "model:native_dropout#0"}
    assert noise["model:feature_dropout#0"].shape == (4, 3, 1)
    assert not torch.equal(y, plain)
    assert torch.dropout is torch._C._VariableFunctions.dropout and "dropout" not in vars(torch._VF)  # restored


def test_aten_dropout_has_torchs_distribution():
    # E and Var of torch.dropout under droplab against torch's own in training mode (inverted dropout, p = 0.3:
    # mean x, variance x^2 p / (1 - p))
    x = torch.linspace(0.5, 2, 4, dtype=torch.float64).repeat(40000, 1)
    model = nn.Sequential(nn.Identity()).eval()
    model.forward = lambda v: torch.dropout(v, 0.3, False)  # noqa: E731  (eval: torch would return v)
    with torch.no_grad(), modes.sample(model, generator=_gen()):
        ours = model(x)
    se = (x[0] ** 2 * 0.3 / 0.7 / len(x)).sqrt()
    assert float(((ours.mean(0) - x[0]).abs() / se).max()) < 4
    assert torch.allclose(ours.var(0), x[0] ** 2 * 0.3 / 0.7, rtol=0.05)


def drop_path(x, drop_prob=0.0, training=False, scale_by_keep=True):
    """timm's drop_path (timm/layers/drop.py), as models copy it: one draw per example, from the global RNG."""
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    random_tensor = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


class DropPath(nn.Module):  # timm's module: reads self.training, so it is the identity in eval mode
    def __init__(self, drop_prob=0.0, scale_by_keep=True):
        super().__init__()
        self.drop_prob, self.scale_by_keep = drop_prob, scale_by_keep

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f, self.drop_path = nn.Linear(5, 5), DropPath(0.4)

    def forward(self, x):
        return x + self.drop_path(self.f(x))


def test_stochastic_depth_is_sampled_per_example_with_timms_distribution():
    torch.manual_seed(0)
    model = Residual().double().eval()
    x = _x((3, 5))
    with torch.no_grad():
        noise, _ = _record_replay_expect(model, x, x + model.f(x))
    assert noise["drop_path"].shape == (3, 1)
    samples = 4000
    stats = monte_carlo(model, x, samples=samples, generator=_gen(1))
    model.train()  # the reference: timm's code in training mode
    torch.manual_seed(3)
    with torch.no_grad():
        outs = torch.stack([model(x) for _ in range(samples)])
    se = (stats.output.se_E**2 + outs.var(0) / samples).sqrt()
    assert float(((stats.output.E - outs.mean(0)).abs() / se).max()) < 4.5  # 15 values
    assert 0.85 < float((stats.output.Var / outs.var(0)).median()) < 1.15


def test_a_module_that_looks_like_dropout_but_is_unknown_is_refused_by_name():
    class LockedDropout(nn.Module):  # AWD-LSTM's variational dropout: its own mask, only when training
        def forward(self, x):
            if not self.training:
                return x
            return x * x.new_empty(1, *x.shape[1:]).bernoulli_(0.5) / 0.5

    class SpatialDropout(nn.Module):  # a dropout-named module that uses torch's dropout: sampled, not refused
        def forward(self, x):
            return F.dropout1d(x.unsqueeze(-1), 0.5, self.training).squeeze(-1)

    model = nn.Sequential(nn.Linear(3, 3), LockedDropout(), nn.Dropout(0.5)).eval()
    with pytest.raises(ValueError, match=r"cannot sample 1 \(.*LockedDropout\).*nn.Dropout"):
        with torch.no_grad(), modes.sample(model, generator=_gen()):
            model(torch.ones(2, 3))
    with pytest.raises(ValueError, match="LockedDropout"):
        monte_carlo(model, torch.ones(2, 3), samples=4)
    with modes.expect(model), torch.no_grad():  # its eval output is its mean: nothing to refuse
        model(torch.ones(2, 3))
    fine = nn.Sequential(nn.Linear(3, 3), SpatialDropout()).eval()
    with torch.no_grad(), modes.record(fine, generator=_gen()) as noise:
        fine(torch.ones(2, 3))
    assert set(noise) == {"1:dropout1d#0"}


def test_alpha_dropout_has_torchs_distribution():
    x = torch.linspace(-2, 2, 5, dtype=torch.float64).repeat(20000, 1)
    model = nn.Sequential(nn.AlphaDropout(0.3)).eval()
    with torch.no_grad(), modes.sample(model, generator=_gen()):
        ours = model(x)
    torch.manual_seed(0)
    theirs = F.alpha_dropout(x, 0.3, training=True)
    se = ((ours.var(0) + theirs.var(0)) / len(x)).sqrt()
    assert float(((ours.mean(0) - theirs.mean(0)).abs() / se).max()) < 4
    assert torch.allclose(ours.var(0), theirs.var(0), rtol=0.05)


def test_a_regression_output_is_not_softmaxed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), droplab.nn.Dropout(keep=0.5), nn.Linear(4, 1)).double()
    x = _x((6, 3))
    stats = monte_carlo(model, x, samples=20000, generator=_gen())
    # the exact ensemble: E = W2 E(gated h) + b = the eval output (inverted dropout); Var from Bernoulli masks
    with torch.no_grad():
        h = model[0](x)
        exact_mean = model.eval()(x)
        exact_var = ((model[2].weight[0] ** 2) * h**2).sum(1, keepdim=True) * (0.5 * 0.5) / 0.25
    assert stats.output_kind == "values"
    assert float(((stats.output.E - exact_mean).abs() / stats.output.se_E).max()) < 4.5
    assert torch.allclose(stats.output.Var, exact_var, rtol=0.05)
    with pytest.raises(ValueError, match="output='logits'"):
        monte_carlo(model, x, samples=4, output="probabilities")


def test_class_uncertainty_against_a_two_outcome_closed_form():
    # one input unit kept with probability 0.8: logits (4, 1) when kept, (0, 1) when dropped
    model = nn.Sequential(droplab.nn.Dropout(keep=0.8, scaling="paper"), nn.Linear(1, 2)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[4.0], [0.0]]))
        model[1].bias.copy_(torch.tensor([0.0, 1.0]))
    samples = 40000
    stats = monte_carlo(model, torch.ones(1, 1, dtype=torch.float64), samples=samples, generator=_gen(),
                        output="logits")
    kept, dropped = torch.softmax(torch.tensor([4.0, 1.0], dtype=torch.float64), 0), \
        torch.softmax(torch.tensor([0.0, 1.0], dtype=torch.float64), 0)

    def entropy(p):
        return float(-(p * p.log()).sum())

    mean = 0.8 * kept + 0.2 * dropped
    expected = 0.8 * entropy(kept) + 0.2 * entropy(dropped)
    se_q = math.sqrt(0.8 * 0.2 / samples)  # the kept share is binomial
    assert abs(float(stats.variation_ratio[0]) - 0.2) < 4 * se_q
    assert abs(float(stats.output.E[0, 0]) - float(mean[0])) < 4 * se_q * float(kept[0] - dropped[0])
    assert abs(float(stats.expected_entropy[0]) - expected) < 4 * se_q * abs(entropy(kept) - entropy(dropped))
    assert abs(float(stats.predictive_entropy[0]) - entropy(mean)) < 0.01
    assert abs(float(stats.mutual_information[0]) - (entropy(mean) - expected)) < 0.01
    probs = monte_carlo(nn.Sequential(model, nn.Softmax(-1)), torch.ones(1, 1, dtype=torch.float64),
                        samples=samples, generator=_gen(), output="probabilities")
    assert torch.allclose(probs.output.E, stats.output.E)


def test_monte_carlo_is_reproducible_and_refuses_a_model_without_dropout():
    model, x = _cnn(), _x()
    a = monte_carlo(model, x, samples=30, generator=_gen(7), output="logits")
    b = monte_carlo(model, x, samples=30, generator=_gen(7), output="logits")
    c = monte_carlo(model, x, samples=30, generator=_gen(8), output="logits")
    assert torch.equal(a.output.E, b.output.E) and torch.equal(a.variation_ratio, b.variation_ratio)
    assert not torch.equal(a.output.E, c.output.E)
    one = monte_carlo(model, x, samples=30, generator=_gen(7), output="logits", memory=1)  # one member per chunk
    assert one.samples == 30 and float(((one.output.E - a.output.E).abs() / a.output.se_E).max()) < 6
    with pytest.raises(ValueError, match="drew no dropout mask"):
        monte_carlo(nn.Sequential(nn.Linear(3, 2)), torch.ones(2, 3), samples=3)
    with pytest.raises(ValueError, match="output must be one of"):
        monte_carlo(model, x, samples=3, output="softmax")
    with pytest.raises(ValueError, match="leave output=None"):
        monte_carlo(droplab.DropoutMLP((3, 4, 2)), torch.ones(2, 3), samples=3, output="logits")


def test_convert_replaces_torch_dropout_by_droplab_gates_with_the_same_meaning():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Dropout2d(0.25), nn.Flatten(), nn.Dropout(0.5),
                          nn.Linear(3 * 4 * 4, 2)).double().eval()
    converted = droplab.convert(model)
    assert isinstance(model[1], nn.Dropout2d) and isinstance(model[3], nn.Dropout)  # the original is unchanged
    assert isinstance(converted[1], droplab.nn.Dropout) and converted[1].keep == 0.75
    assert converted[1].mask_sharing == "channel" and converted[3].mask_sharing == "unit"
    x = _x((5, 1, 6, 6))
    with torch.no_grad():
        assert torch.equal(converted(x), model(x))
        with modes.record(converted, generator=_gen()) as noise:
            converted(x)
    assert noise["1"].shape == (5, 3, 1, 1) and noise["3"].shape == (5, 48)
    a = monte_carlo(model, x, samples=3000, generator=_gen(1))
    b = monte_carlo(converted, x, samples=3000, generator=_gen(2))
    z = (a.output.E - b.output.E).abs() / (a.output.se_E**2 + b.output.se_E**2).sqrt()
    assert float(z.max()) < 4.5
    with pytest.raises(ValueError, match="drops everything"):
        droplab.convert(nn.Sequential(nn.Dropout(1.0)))
    with pytest.raises(TypeError, match="torch.nn.Module"):
        droplab.convert("model")


def test_channel_shared_unit_gate_with_per_channel_keep():
    gate = droplab.nn.Dropout(torch.tensor([1.0, 0.5]).view(2, 1, 1), mask_sharing="channel")
    x = torch.ones(4000, 2, 3, 3)
    y = gate.train()(x)
    assert torch.equal(y[:, 0], x[:, 0])  # keep 1
    per_channel = y[:, 1].flatten(1)
    assert bool((per_channel == per_channel[:, :1]).all())  # one draw shared over the positions
    assert abs(float((per_channel[:, 0] > 0).double().mean()) - 0.5) < 4 * math.sqrt(0.25 / 4000)
    with pytest.raises(ValueError, match="mask_sharing must be one of"):
        droplab.nn.Dropout(keep=0.5, mask_sharing="example")


def test_contexts_in_two_threads_do_not_leak_into_each_other_or_into_a_third_model():
    import threading

    models = {"a": _cnn(), "b": ATenDropout().double().eval()}
    inputs = {"a": _x(), "b": _x((4, 6))}
    third = nn.Sequential(nn.Linear(6, 6), nn.Dropout(0.5)).double()  # outside any context, in training mode

    def run(name: str, seed: int, rounds: int = 30) -> list[torch.Tensor]:
        outs, gen = [], _gen(seed)
        with torch.no_grad():
            for _ in range(rounds):
                with modes.record(models[name], generator=gen) as noise:
                    out = models[name](inputs[name])
                with modes.replay(models[name], noise):
                    assert torch.equal(models[name](inputs[name]), out)
                outs.append(out)
        return outs

    alone = {"a": run("a", 1), "b": run("b", 2)}  # one at a time: the reference
    torch.manual_seed(5)
    with torch.no_grad():
        third_alone = [third(inputs["b"]) for _ in range(30)]
    together: dict[str, list[torch.Tensor]] = {}
    errors: list[BaseException] = []

    def worker(name: str, seed: int) -> None:
        try:
            together[name] = run(name, seed)
        except BaseException as e:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(e)

    threads = [threading.Thread(target=worker, args=args) for args in (("a", 1), ("b", 2))]
    torch.manual_seed(5)
    for t in threads:
        t.start()
    with torch.no_grad():  # torch's own dropout, on the global RNG, while both contexts are open elsewhere
        third_together = [third(inputs["b"]) for _ in range(30)]
    for t in threads:
        t.join()
    assert not errors, errors
    for name in alone:
        assert all(torch.equal(x, y) for x, y in zip(alone[name], together[name], strict=True)), name
    assert all(torch.equal(x, y) for x, y in zip(third_alone, third_together, strict=True))


def test_a_failure_inside_a_context_leaves_torch_as_it_was():
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.2), nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1,
                                                                                       batch_first=True)).eval()
    before = {name: getattr(F, name) for name in ("dropout", "dropout2d", "multi_head_attention_forward",
                                                  "scaled_dot_product_attention")}
    fastpath = torch.backends.mha.get_fastpath_enabled()
    for context in (lambda: modes.sample(model, generator=_gen()), lambda: modes.expect(model),
                    lambda: modes.record(model, generator=_gen())):
        with pytest.raises(RuntimeError, match="inside"):
            with torch.no_grad(), context():
                model(torch.ones(2, 3, 8))
                raise RuntimeError("a failure inside the context")
        assert {name: getattr(F, name) for name in before} == before
        assert torch.dropout is torch._C._VariableFunctions.dropout and "dropout" not in vars(torch._VF)
        assert torch.backends.mha.get_fastpath_enabled() == fastpath
        for module in model.modules():
            assert not module._forward_hooks and not module._forward_pre_hooks
    with pytest.raises(ValueError, match="shape"):  # a failure raised by droplab itself, inside the forward
        with torch.no_grad(), modes.replay(model, {"1": torch.ones(1, 1)}):
            model[:2](torch.ones(2, 8))
    assert {name: getattr(F, name) for name in before} == before
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


class Counted(nn.Sequential):
    runs = 0  # how many times its forward ran

    def forward(self, x):
        type(self).runs += 1
        return super().forward(x)


class LateDropout(nn.Module):
    """A backbone (conv, BatchNorm) then a dropout head; the backbone's first conv is called again after the
    first draw (a reused module), and its output is changed in place by the caller."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Counted(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.head = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        h = self.backbone(x)
        h.mul_(2.0)  # in place on the backbone's output: must not change what is reused
        z = F.dropout(h.flatten(1), 0.5, self.training)
        again = self.backbone[0](x).mean((1, 2, 3))  # the conv again, after the first draw: run every time
        return self.head(z) + again[:, None]


class Wrapped(nn.Module):  # the backbone one level deeper: found by a second, capturing pass
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize(("wrap", "runs"), [(False, 1), (True, 2)])
def test_the_deterministic_prefix_runs_once_with_the_same_results(wrap, runs):
    torch.manual_seed(0)
    inner = LateDropout().double()
    inner.train()
    with torch.no_grad():
        inner(torch.randn(32, 1, 6, 6, dtype=torch.float64))
    inner.eval()
    model = Wrapped(inner).eval() if wrap else inner
    x = _x()
    Counted.runs = 0
    cached = monte_carlo(model, x, samples=300, generator=_gen(3), output="logits", memory=2**16)
    assert Counted.runs == runs  # the probe (and a capture when the backbone is nested), not once per chunk
    plain = monte_carlo(model, x, samples=300, generator=_gen(3), output="logits", cache_prefix=False, memory=2**16)
    assert Counted.runs > runs + 3  # several chunks
    model = inner
    for field in ("E", "Var", "E_S"):
        assert torch.allclose(getattr(cached.output, field), getattr(plain.output, field), rtol=0, atol=1e-12), field
    assert torch.allclose(cached.mutual_information, plain.mutual_information, rtol=0, atol=1e-12)
    assert torch.equal(cached.variation_ratio, plain.variation_ratio)
    assert "forward" not in vars(model.backbone) and not model.backbone._forward_hooks
    # and against the hand loop: torch's own dropout in training mode, BatchNorm on its running statistics
    with torch.no_grad():
        h = model.backbone(x) * 2.0
        again = model.backbone[0](x).mean((1, 2, 3))[:, None]
        torch.manual_seed(4)
        probs = torch.stack([torch.softmax(model.head(F.dropout(h.flatten(1), 0.5, True)) + again, -1)
                             for _ in range(3000)])
    se = (cached.output.se_E**2 + probs.var(0) / len(probs)).sqrt()
    assert float(((cached.output.E - probs.mean(0)).abs() / se).max()) < 4.5  # 20 values


def test_a_model_that_draws_first_caches_nothing_and_a_bad_flag_is_refused():
    model = nn.Sequential(nn.Dropout(0.2), nn.Linear(3, 2)).double().eval()
    x = torch.ones(4, 3, dtype=torch.float64)
    a = monte_carlo(model, x, samples=50, generator=_gen(), output="logits")
    b = monte_carlo(model, x, samples=50, generator=_gen(), output="logits", cache_prefix=False)
    assert torch.equal(a.output.E, b.output.E)
    with pytest.raises(TypeError, match="cache_prefix must be True or False"):
        monte_carlo(model, x, samples=5, cache_prefix="yes")


@pytest.mark.parametrize("fullgraph", [False, True])
def test_a_compiled_model_samples_like_its_eager_module_and_no_graph_keeps_sampling(fullgraph):
    torch._dynamo.reset()
    model = _cnn()
    x = _x()
    compiled = torch.compile(model, fullgraph=fullgraph, dynamic=False)
    with torch.no_grad():
        plain = compiled(x)  # compiled before any context: its graph has dropout off (eval)
        assert torch.allclose(plain, model(x), atol=1e-10)
        for context in (modes.sample, modes.record):
            with context(compiled, generator=_gen(4)) as noise:
                ours = compiled(x)
            with context(model, generator=_gen(4)) as eager_noise:
                eager = model(x)
            assert torch.equal(ours, eager)  # same seed, same masks, same outputs as the eager model
            if noise is not None:
                assert set(noise) == set(eager_noise) == {"drop2d", "model:dropout#0"}
                with modes.replay(compiled, noise):
                    assert torch.equal(compiled(x), ours)
        with modes.expect(compiled):
            assert torch.allclose(compiled(x), plain, atol=1e-10)
        with modes.off(compiled):
            assert torch.allclose(compiled(x), plain, atol=1e-10)
        assert torch.equal(compiled(x), plain)  # after the contexts: the compiled graph, deterministic
    a = monte_carlo(compiled, x, samples=200, generator=_gen(5), output="logits")
    b = monte_carlo(model, x, samples=200, generator=_gen(5), output="logits")
    assert torch.equal(a.output.E, b.output.E) and torch.equal(a.output.Var, b.output.Var)


def test_a_model_compiled_inside_a_context_samples_there_and_not_after():
    torch._dynamo.reset()
    model = _cnn()
    x = _x()
    with torch.no_grad():
        eval_out = model(x)
        with modes.sample(model, generator=_gen(6)):
            compiled = torch.compile(model, dynamic=False)  # traced while droplab's wrappers are in place
            first, second = compiled(x), compiled(x)
            assert not torch.equal(first, second)  # sampled at run time, not baked into the graph
        with modes.sample(model, generator=_gen(6)):
            eager_first = model(x)
        assert torch.allclose(first, eager_first, atol=1e-10)  # the same masks as the eager model
        for _ in range(3):  # the context closed: no graph left sampling
            assert torch.allclose(compiled(x), eval_out, atol=1e-10)


class TrainingGatedAttention(nn.Module):
    """Hugging Face's pattern: the rate of an owned nn.Dropout is read only when training, and 0.0 is passed in
    eval (transformers' BertSelfAttention: ``dropout=0.0 if not self.training else self.dropout.p``)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.dropout = nn.Dropout(0.3)

    def forward(self, x):
        return F.dropout(self.proj(x), p=0.0 if not self.training else self.dropout.p, training=self.training)


def test_a_dropout_read_only_when_training_is_refused_by_name_until_its_owner_is_set_training():
    model = nn.Sequential(TrainingGatedAttention(), nn.Dropout(0.2)).double().eval()
    x = torch.ones(3, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"cannot sample 0\.dropout \(p=0\.3, in 0, a TrainingGatedAttention\).*"
                                         r"model\.get_submodule\('0'\)\.training = True"):
        monte_carlo(model, x, samples=10)
    with modes.expect(model), torch.no_grad():  # nothing to sample in expect mode: no refusal
        model(x)
    model[0].training = True  # the owner's own flag: its rate is passed, and droplab samples it
    with torch.no_grad(), modes.record(model, generator=_gen()) as noise:
        model(x)
    assert set(noise) == {"0:dropout#0", "1"}
    assert not model[1].training  # the rest stays in eval


def _bert(attn: str):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=16, num_labels=3,
                                     hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.2,
                                     attn_implementation=attn)
    torch.manual_seed(0)
    bert = transformers.BertForSequenceClassification(config).double().eval()  # random weights: no download

    class Logits(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids):
            return self.bert(input_ids=ids).logits

    return Logits().eval()


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_hugging_face_bert_hidden_and_attention_dropout(attn):
    model = _bert(attn)
    ids = torch.randint(0, 40, (3, 6), generator=_gen(7))
    with pytest.raises(ValueError, match=r"attention\.self\.dropout \(p=0\.2.*BertSelfAttention"):
        monte_carlo(model, ids, samples=4, output="logits")
    for m in model.modules():  # the fix the error names: the attention modules' own flags
        if type(m).__name__ == "BertSelfAttention":
            m.training = True
    with torch.no_grad(), modes.record(model, generator=_gen()) as noise:
        y = model(ids)
    function = "dropout" if attn == "eager" else "scaled_dot_product_attention"
    assert f"bert.bert.encoder.layer.0.attention.self:{function}#0" in noise
    assert "bert.bert.encoder.layer.1.output.dropout" in noise and "bert.dropout" in noise
    with torch.no_grad(), modes.replay(model, noise):
        assert torch.equal(model(ids), y)
    samples = 2000
    stats = monte_carlo(model, ids, samples=samples, generator=_gen(1), output="logits")
    model.train()  # the reference: transformers' own dropout, hidden and attention, in training mode (no BatchNorm)
    torch.manual_seed(2)
    with torch.no_grad():
        probs = torch.stack([torch.softmax(model(ids), -1) for _ in range(samples)])
    model.eval()
    se = (stats.output.se_E**2 + probs.var(0) / samples).sqrt()
    assert float(((stats.output.E - probs.mean(0)).abs() / se).max()) < 4.5  # 9 values
    assert 0.8 < float((stats.output.Var / probs.var(0)).median()) < 1.25


def test_predictive_is_its_own_estimator_with_its_own_result_type():
    from scipy.stats import entropy as scipy_entropy

    from droplab import metrics
    from droplab.ensemble import PredictiveStatistics, predictive

    model, x = _cnn(), _x()
    stats = predictive(model, x, samples=400, generator=_gen(2), output="logits")
    same = monte_carlo(model, x, samples=400, generator=_gen(2), output="logits")  # dispatches to it
    assert isinstance(stats, PredictiveStatistics) and isinstance(same, PredictiveStatistics)
    assert torch.equal(stats.mean, same.mean) and stats.samples == 400 and stats.output_kind == "logits"
    assert torch.equal(stats.output.E, stats.mean) and torch.equal(stats.output.se_E, stats.standard_error)
    # the uncertainty formulas, once (metrics), against SciPy's entropy
    p = stats.mean.numpy()
    assert torch.allclose(stats.predictive_entropy, torch.tensor(scipy_entropy(p, axis=-1)), atol=1e-12)
    assert torch.allclose(metrics.entropy(stats.mean), stats.predictive_entropy, atol=0)
    assert torch.allclose(stats.mutual_information, (stats.predictive_entropy - stats.expected_entropy).clamp_min(0))
    assert 0 <= float(stats.mutual_information.min()) and float(stats.variation_ratio.max()) < 1
    assert metrics.accuracy(stats, torch.zeros(4, dtype=torch.long)) in (0.0, 0.25, 0.5, 0.75, 1.0)
    with pytest.raises(ValueError, match="pairs, histogram_units and statistics are a DropoutMLP's"):
        monte_carlo(model, x, samples=4, pairs=[(1, 0, 1, 1)])
    values = predictive(model, x, samples=50, generator=_gen(2))
    assert values.output_kind == "values" and values.mutual_information is None and values.mean.shape == (4, 5)


def test_inputs_that_cannot_be_sampled_are_refused_with_the_fix():
    import numpy as np

    model = _cnn()
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, got numpy.ndarray.*torch.from_numpy"):
        monte_carlo(model, np.ones((2, 1, 6, 6)), samples=4)
    with pytest.raises(ValueError, match=r"x is float32 but the model's parameters are float64.*x.to\(torch.float64\)"):
        monte_carlo(model, torch.ones(2, 1, 6, 6), samples=4)
    with pytest.raises(ValueError, match="meta device"):
        monte_carlo(model, torch.ones(2, 1, 6, 6, device="meta", dtype=torch.float64), samples=4)
    with pytest.raises(ValueError, match=r"add the batch dimension"):
        monte_carlo(model, torch.ones(6, dtype=torch.float64), samples=4)
    scripted = torch.jit.script(nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)).eval())
    with pytest.raises(TypeError, match="TorchScript model cannot be sampled"):
        monte_carlo(scripted, torch.ones(2, 3), samples=4)
    with pytest.raises(TypeError, match="cannot reach a TorchScript model"):
        with modes.sample(scripted):
            pass
