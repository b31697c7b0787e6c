"""The nn modules: drop-in for torch.nn.Dropout, connection dropout, backpercolation, modes."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import droplab
from droplab.nn import BackpercolatedActivation, ConnectionDropoutLinear, Dropin, Dropout, GaussianDropout, SpikingUnits
from droplab.transfer import logistic, make_transfer


def _z_two_proportions(k1, k2, n):
    p = (k1 + k2) / (2 * n)
    return abs(k1 - k2) / n / ((2 * p * (1 - p) / n) ** 0.5)


@pytest.mark.parametrize("keep", [0.5, 0.8])
def test_dropout_matches_torch_dropout_statistically(keep):
    x = torch.randn(200, 500)
    torch.manual_seed(0)
    ours = Dropout(keep=keep)(x)
    theirs = nn.Dropout(1 - keep)(x)
    # same support: 0 or x / keep
    for y in (ours, theirs):
        assert torch.all((y == 0) | torch.isclose(y, x / keep))
    n = x.numel()
    z = _z_two_proportions(int((ours == 0).sum()), int((theirs == 0).sum()), n)
    assert z < 4, z
    assert abs(float((ours == 0).float().mean()) - (1 - keep)) < 4 * ((keep * (1 - keep) / n) ** 0.5)


def test_dropout_state_dict_and_eval_like_torch():
    assert Dropout(p=0.2).state_dict().keys() == nn.Dropout(0.2).state_dict().keys()
    x = torch.randn(3, 4)
    assert torch.equal(Dropout(p=0.2).eval()(x), nn.Dropout(0.2).eval()(x))
    assert Dropout(p=0.2).keep == pytest.approx(Dropout(keep=0.8).keep)
    seq_ours = nn.Sequential(nn.Linear(4, 4), Dropout(keep=0.5))
    seq_theirs = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    assert seq_ours.state_dict().keys() == seq_theirs.state_dict().keys()
    seq_ours.load_state_dict(seq_theirs.state_dict())


def test_per_unit_keep_is_a_buffer_and_round_trips():
    gate = Dropout(torch.tensor([0.5, 0.9, 0.7]))
    assert list(gate.state_dict()) == ["keep"]
    other = Dropout(torch.ones(3) * 0.5)
    other.load_state_dict(gate.state_dict())
    assert torch.equal(other.keep, gate.keep)


def test_works_in_a_convolutional_model_with_per_channel_rates():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), Dropout(torch.tensor([0.2, 0.4, 0.6, 0.8]).view(4, 1, 1)),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with droplab.record(model, generator=torch.Generator().manual_seed(0)) as noise:
        y = model(torch.randn(2, 1, 8, 8))
    assert y.shape == (2, 3)
    assert noise["1"].shape == (2, 4, 6, 6)
    # per-channel rates: kept fraction grows with the channel's keep rate
    kept = noise["1"].mean(dim=(0, 2, 3))
    assert torch.all(kept[1:] >= kept[:-1] - 0.15)


def test_modes_are_restored_after_an_exception():
    gate = Dropout(keep=0.5)
    with pytest.raises(RuntimeError), droplab.expect(gate):
        assert gate.gate_mode == "expect"
        raise RuntimeError("boom")
    assert gate.gate_mode == "sample"
    assert "_droplab_mode" not in gate.__dict__


def test_nested_modes_restore_the_outer_one():
    gate = Dropout(keep=0.5)
    with droplab.expect(gate):
        with droplab.off(gate):
            assert gate.gate_mode == "off"
        assert gate.gate_mode == "expect"


def test_replay_rejects_unknown_names_and_wrong_shapes():
    model = nn.Sequential(nn.Linear(3, 3), Dropout(p=0.5))
    with pytest.raises(ValueError, match="not gates of this model"), droplab.replay(model, {"7": torch.ones(1, 3)}):
        pass
    with droplab.replay(model, {"1": torch.ones(5, 3)}), pytest.raises(ValueError, match="shape"):
        model(torch.ones(2, 3))
    with droplab.replay(model, {}), pytest.raises(ValueError, match="no noise"):
        model(torch.ones(2, 3))


# ------------------------------------------------------------------------------------------------ connections
@pytest.mark.parametrize("keep", [0.6, "tensor"])
@pytest.mark.parametrize("kind", ["bernoulli", "gaussian", "dropin"])
def test_connection_dropout_is_unbiased(keep, kind):
    torch.manual_seed(0)
    if keep == "tensor":
        keep = torch.rand(4, 5) * 0.8 + 0.15
    layer = ConnectionDropoutLinear(5, 4, keep, kind=kind).double()
    x = torch.rand(1, 5, dtype=torch.float64)
    n = 20_000
    with droplab.sample(layer, generator=torch.Generator().manual_seed(1)):
        samples = layer(x.expand(n, -1))
    with droplab.expect(layer):
        mean = layer(x)[0]
    keep_t = torch.as_tensor(keep, dtype=torch.float64).expand(4, 5)
    if kind == "dropin":
        var = (layer.weight * (x[0] - 1)).square() * keep_t * (1 - keep_t)
        expected_mean = (layer.weight * (keep_t * x[0] + 1 - keep_t)).sum(1) + layer.bias
    else:
        var = (layer.weight * x[0]).square() * keep_t * (1 - keep_t)
        expected_mean = (layer.weight * keep_t) @ x[0] + layer.bias
    assert torch.allclose(mean, expected_mean)
    se = (var.sum(1) / n).sqrt()
    assert torch.all((samples.mean(0) - mean).abs() < 4 * se)


def test_connection_masks_per_example_vs_per_batch():
    layer = ConnectionDropoutLinear(6, 3, 0.5)
    x = torch.ones(4, 6)
    with droplab.record(layer, generator=torch.Generator().manual_seed(0)) as noise:
        y = layer(x)
    assert noise[""].shape == (4, 3, 6)
    assert not torch.equal(y[0], y[1])  # different subnetworks per example
    shared = ConnectionDropoutLinear(6, 3, 0.5, mask_sharing="batch")
    with droplab.record(shared, generator=torch.Generator().manual_seed(0)) as noise:
        y = shared(x)
    assert noise[""].shape == (3, 6)
    assert torch.equal(y[0], y[1])  # one subnetwork for the whole batch
    with droplab.replay(shared, noise):
        assert torch.equal(shared(x), y)
    expected = F.linear(x, shared.weight * noise[""], shared.bias)
    assert torch.allclose(y, expected)


def test_connection_chunking_gives_the_same_result():
    layer = ConnectionDropoutLinear(7, 5, 0.5)
    x = torch.randn(33, 7)
    with droplab.record(layer, generator=torch.Generator().manual_seed(3)) as noise:
        y = layer(x)
    layer.max_chunk_elements = 35 * 2  # two examples per chunk
    with droplab.replay(layer, noise):
        assert torch.allclose(layer(x), y, atol=1e-6)


def test_connection_spiking_per_connection():
    layer = ConnectionDropoutLinear(3, 2, 1.0, kind="spiking")
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    o = torch.tensor([[0.2, 0.5, 0.9]]).expand(20_000, -1)
    with droplab.sample(layer, generator=torch.Generator().manual_seed(0)):
        s = layer(o)
    # E(S_i) = sum_j w_ij r E(Delta_ij) = sum_j O_j (Eq. 134)
    assert torch.allclose(s.mean(0), torch.full((2,), 1.6), atol=4 * (0.16 + 0.25 + 0.09) ** 0.5 / 20_000 ** 0.5)
    with pytest.raises(ValueError, match="mask_sharing='example'"):
        ConnectionDropoutLinear(3, 2, 1.0, kind="spiking", mask_sharing="batch")


def test_connection_keep_must_match_the_weight():
    with pytest.raises(ValueError, match="weight shape"):
        ConnectionDropoutLinear(5, 4, torch.full((5, 4), 0.5))


# ------------------------------------------------------------------------------------------------ spiking units
def test_spiking_units_average_to_r_times_o():
    gate = SpikingUnits(0.5)
    o = torch.tensor([0.1, 0.5, 0.8]).expand(40_000, -1)
    with droplab.sample(gate, generator=torch.Generator().manual_seed(0)):
        y = gate(o)
    se = (0.25 * o[0] * (1 - o[0]) / 40_000).sqrt()
    assert torch.all((y.mean(0) - 0.5 * o[0]).abs() < 4 * se)


# ------------------------------------------------------------------------------------------------ backpercolation
@pytest.mark.parametrize("transfer", [logistic(lam=1.0), logistic(lam=4.0), make_transfer("tanh"),
                                      make_transfer("relu")])
def test_backpercolation_is_unbiased_for_the_gradient(transfer):
    act = BackpercolatedActivation(transfer)
    s = torch.linspace(-2, 2, 9, dtype=torch.float64).repeat(20_000, 1).requires_grad_()
    grad_out = torch.linspace(-1, 1, 9, dtype=torch.float64).repeat(20_000, 1)
    with droplab.sample(act, generator=torch.Generator().manual_seed(0)):
        o = act(s)
    assert torch.allclose(o, transfer(s))  # the forward pass is unchanged
    o.backward(grad_out)
    g = s.grad
    assert torch.all((g == 0) | (g == grad_out))  # each error passes whole or not at all
    q = transfer.derivative(s[0].detach())
    exact = q * grad_out[0]
    se = (grad_out[0].square() * q * (1 - q) / 20_000).sqrt()
    assert torch.all((g.mean(0) - exact).abs() <= 4 * se + 1e-12)


def test_backpercolation_fixed_p_and_expect_mode():
    act = BackpercolatedActivation("logistic", keep=0.5)
    s = torch.zeros(10_000, 1, requires_grad=True)
    with droplab.sample(act, generator=torch.Generator().manual_seed(0)):
        act(s).sum().backward()
    assert set(s.grad.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(s.grad.mean()) - 0.5) < 4 * (0.25 / 10_000) ** 0.5
    s.grad = None
    with droplab.expect(act):
        act(s).sum().backward()
    assert torch.allclose(s.grad, torch.full_like(s, 0.25))  # ordinary gradient sigma'(0) = 1/4


def test_backpercolation_refuses_derivatives_above_one():
    with pytest.raises(ValueError, match="lambda <= 4"):
        BackpercolatedActivation(logistic(lam=5.0))


def test_a_bare_positional_rate_is_refused_naming_p_and_keep():
    for cls in (Dropout, GaussianDropout, Dropin):
        with pytest.raises(TypeError, match=rf"{cls.__name__}\(0.8\): is 0.8 the drop probability .*p=0.8.*keep=0.8"):
            cls(0.8)
        with pytest.raises(TypeError, match="not both"):
            cls(keep=0.8, p=0.2)
    assert Dropout(p=0.25).keep == 0.75 and Dropout().keep == 0.5
    assert torch.equal(Dropout(torch.tensor([0.5, 0.9])).keep, torch.tensor([0.5, 0.9]))  # a tensor: keep rates
    with pytest.raises(ValueError, match="keep"):
        Dropout(p=1.0)  # keep 0: drops everything
