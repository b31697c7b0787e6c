"""DropoutMLP: the lecture's worked example, weight scaling, traces, configuration, errors."""

import pytest
import torch

import droplab
from droplab import DropoutMLP


def _lecture_net(scaling="paper"):
    # CS/DS 541 Class 14 (seeds/001): weights [[1,2,3],[4,5,6],[7,8,9]] and [[1,2,3],[4,5,6]], linear units
    net = DropoutMLP((3, 3, 2), transfer="linear", output="linear", keep=0.5, scaling=scaling).double()
    with torch.no_grad():
        net.linears[0].weight.copy_(torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]))
        net.linears[1].weight.copy_(torch.tensor([[1.0, 2, 3], [4, 5, 6]]))
        for linear in net.linears:
            linear.bias.zero_()
    return net


def test_lecture_worked_example_output_60_132_with_replay():
    net = _lecture_net()
    x = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    drop_middle = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)  # middle input and middle hidden dropped
    with droplab.replay(net, {"gates.0": drop_middle, "gates.1": drop_middle}):
        y = net(x)
    assert torch.equal(y, torch.tensor([[60.0, 132.0]], dtype=torch.float64))
    # the full network (no dropout) gives W2 W1 x = [[1,2,3],[4,5,6]] @ [8, 17, 26] = [120, 273]
    with droplab.off(net):
        assert torch.equal(net(x), torch.tensor([[120.0, 273.0]], dtype=torch.float64))


def test_inverted_scaling_divides_kept_units_by_p():
    net = _lecture_net("inverted")
    x = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    m = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)
    with droplab.replay(net, {"gates.0": m, "gates.1": m}):
        assert torch.equal(net(x), torch.tensor([[240.0, 528.0]], dtype=torch.float64))  # [60,132] / 0.5 / 0.5


def test_weight_scaling_is_the_exact_ensemble_mean_of_a_linear_network():
    # for linear networks E over all 2^6 masks equals the weight-scaled pass (Section 3, Eq. 24)
    net = _lecture_net()
    x = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)
    total = torch.zeros(1, 2, dtype=torch.float64)
    for code in range(64):
        bits = torch.tensor([(code >> i) & 1 for i in range(6)], dtype=torch.float64)
        with droplab.replay(net, {"gates.0": bits[:3].view(1, 3), "gates.1": bits[3:].view(1, 3)}):
            total += net(x) / 64
    with droplab.expect(net):
        assert torch.allclose(net(x), total)


def test_both_scalings_give_the_same_ensemble_network():
    torch.manual_seed(0)
    paper = DropoutMLP((5, 7, 3), keep=(0.8, 0.5), scaling="paper")
    inverted = DropoutMLP((5, 7, 3), keep=(0.8, 0.5), scaling="inverted")
    inverted.load_state_dict(paper.state_dict())
    with torch.no_grad():  # inverted weights absorb the keep rate: w_inv = p w
        for lin, p in zip(inverted.linears, (0.8, 0.5), strict=True):
            lin.weight.mul_(p)
    x = torch.rand(4, 5)
    with droplab.expect(paper), droplab.expect(inverted):
        assert torch.allclose(paper(x), inverted(x), atol=1e-6)


def test_trace_has_every_layer_and_matches_forward():
    net = DropoutMLP((4, 6, 5, 3), keep=(0.8, 0.5, 0.5), transfer=("tanh", "relu")).eval()
    x = torch.rand(2, 4)
    t = net.trace(x)
    assert t.S[0] is None and torch.equal(t.O[0], x)
    assert [o.shape[1] for o in t.O] == [4, 6, 5, 3]
    assert torch.allclose(t.S[-1], net(x))
    assert torch.allclose(t.O[-1].sum(1), torch.ones(2))
    assert torch.all(t.O[2] >= 0)  # relu layer


def test_logistic_c_and_lambda():
    net = DropoutMLP((2, 3, 2), c=2.0, lam=3.0).eval()
    s = torch.randn(5, 3)
    expected = 1 / (1 + 2.0 * torch.exp(-3.0 * s))  # Eq. 27
    assert torch.allclose(net.transfers[0](s), expected)


@pytest.mark.parametrize("kind", ["bernoulli", "gaussian", "dropin", "spiking"])
def test_every_gate_kind_in_the_network_and_config_round_trip(kind):
    net = DropoutMLP((4, 6, 3), keep=(0.8, torch.linspace(0.3, 0.9, 6)), gate=kind,
                     connection_keep=(None, torch.full((3, 6), 0.7)))
    clone = DropoutMLP.from_config(net.config())
    clone.load_state_dict(net.state_dict())
    x = torch.rand(3, 4)
    with droplab.record(net, generator=torch.Generator().manual_seed(0)) as noise:
        y = net(x)
    with droplab.replay(clone, noise):
        assert torch.allclose(clone(x), y)
    assert set(noise) == {"gates.0", "gates.1", "linears.1"}


def test_backpercolation_network_trains_forward_identically():
    net = DropoutMLP((4, 6, 3), backward="derivative")
    plain = DropoutMLP((4, 6, 3))
    plain.load_state_dict(net.state_dict())
    x = torch.rand(3, 4)
    assert torch.allclose(net(x), plain(x))


@pytest.mark.parametrize("kwargs,error", [
    (dict(sizes=(4,)), "at least two positive integers"),
    (dict(sizes=(4, 0, 2)), "at least two positive integers"),
    (dict(sizes=(4, 5, 2), keep=(0.5,)), "keep needs 2 entries"),
    (dict(sizes=(4, 5, 2), keep=(0.5, 1.5)), "keep for layer 1 must be in \\(0, 1\\], got 1.5"),
    (dict(sizes=(4, 5, 2), keep=(0.5, torch.full((4,), 0.5))), "must have shape \\(5,\\)"),
    (dict(sizes=(4, 5, 2), transfer="sigmoid"), "hidden transfer must be one of"),
    (dict(sizes=(4, 5, 2), output="tanh"), "output must be"),
    (dict(sizes=(4, 5, 2), gate="bernouli"), "gate for layer 0 must be one of"),
    (dict(sizes=(4, 5, 2), gate="spiking", keep=0.5, transfer="relu"), "spiking units need outputs in"),
    (dict(sizes=(4, 5, 2), scaling="keras"), "scaling must be one of"),
    (dict(sizes=(4, 5, 2), mask_sharing="all"), "mask_sharing must be one of"),
    (dict(sizes=(4, 5, 2), lam=-1.0), "lam must be positive"),
])
def test_bad_network_arguments(kwargs, error):
    sizes = kwargs.pop("sizes")
    with pytest.raises(ValueError, match=error):
        DropoutMLP(sizes, **kwargs)


def test_bad_input_shape_says_how_to_fix():
    net = DropoutMLP((4, 5, 2))
    with pytest.raises(ValueError, match="expected input of shape \\(B, 4\\), got \\(2, 2, 2\\); flatten"):
        net(torch.ones(2, 2, 2))


def test_max_norm_constrains_incoming_weights():
    net = DropoutMLP((4, 5, 2))
    with torch.no_grad():
        net.linears[0].weight.mul_(100)
    expected = [torch.renorm(w.detach(), 2, 0, 1.5) for w in net.weights()]  # torch's own, as the reference
    untouched = net.linears[1].weight.detach().clone()
    net.max_norm_(1.5)
    for w, ref in zip(net.weights(), expected, strict=True):
        assert torch.all(w.norm(dim=1) <= 1.5 + 1e-5)
        assert torch.allclose(w, ref, atol=1e-6)
    if bool((untouched.norm(dim=1) <= 1.5).all()):
        assert torch.equal(net.linears[1].weight, untouched)  # rows under the bound are not rewritten


def test_glorot_init_bounds_and_round_trip():
    net = DropoutMLP((50, 30, 10), init="glorot")
    assert float(net.linears[0].weight.detach().abs().max()) <= 4 * (6 / 80) ** 0.5
    assert float(net.linears[1].weight.detach().abs().max()) <= (6 / 40) ** 0.5  # softmax output: gain 1
    assert float(net.linears[0].weight.detach().abs().max()) > (6 / 80) ** 0.5  # the logistic gain is used
    assert torch.all(net.linears[0].bias == 0)
    assert DropoutMLP.from_config(net.config()).config()["init"] == "glorot"
    with pytest.raises(ValueError, match="init must be"):
        DropoutMLP((3, 2), init="he")


def test_transfer_capabilities_are_asked_not_named(monkeypatch):
    # a transfer kind droplab has never seen, registered with its capabilities, works through the estimators
    import math as _math

    from droplab import ensemble, transfer

    softplus = transfer.TransferKind(
        "softplus", lambda s, f: torch.nn.functional.softplus(f.lam * s) / f.lam,
        lambda s, f: torch.sigmoid(f.lam * s), 1.0, unit_interval=False)
    monkeypatch.setitem(transfer.TRANSFER_KINDS, "softplus", softplus)
    net = DropoutMLP((3, 4, 2), transfer="softplus", output="linear", keep=(0.7, 0.6)).double().eval()
    x = torch.rand(2, 3, dtype=torch.float64)
    ex = ensemble.exact(net, x)
    mc = ensemble.monte_carlo(net, x, samples=20000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(mc.layers[1].E, ex.layers[1].E, atol=5 * float(mc.layers[1].se_E.max()))
    assert ex.layers[1].NWGM is None  # not in [0, 1]: no geometric means claimed
    assert net.transfers[0].max_derivative == 1.0 and not net.transfers[0].output_in_unit_interval
    with pytest.raises(ValueError, match="no logarithm"):
        net.transfers[0].log(x)
    assert _math.isclose(float(transfer.logistic(lam=2.0).max_derivative), 0.5)
