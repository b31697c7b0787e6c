"""Every gate kind in the registry through the same tests: shapes, determinism, unbiasedness, variance."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import droplab
from droplab.gates import GATES, bernoulli_noise, check_keep, gate_kind
from droplab.nn import UnitGate

# the design table (DESIGN.md): dropin is defined with the paper's scaling only
SCALINGS = {"bernoulli": ("paper", "inverted"), "gaussian": ("paper", "inverted"), "dropin": ("paper",),
            "spiking": ("paper", "inverted")}
CASES = [(k, s) for k in GATES for s in SCALINGS[k]]


def test_each_kind_states_its_scalings_enumerability_and_moments():
    assert {k: g.scalings for k, g in GATES.items()} == SCALINGS
    assert {k for k, g in GATES.items() if g.enumerable} == {"bernoulli", "dropin"}  # fixed-probability B(p) noise
    for kind in GATES.values():
        for scaling in ("paper", "inverted"):
            if scaling not in kind.scalings:
                with pytest.raises(ValueError, match=f"{kind.name} is defined with the paper scaling only"):
                    kind.check_scaling(scaling)
                continue
            assert kind.check_scaling(scaling) == scaling
            o = _outputs()
            # mean affine in O: mean(a O1 + b O2) = a mean(O1) + b mean(O2) for a + b = 1
            o2 = o.flip(0)
            assert torch.allclose(kind.mean(0.3 * o + 0.7 * o2, 0.6, scaling),
                                  0.3 * kind.mean(o, 0.6, scaling) + 0.7 * kind.mean(o2, 0.6, scaling))
            if kind.linear_moments is None:
                continue
            # (E(A), E(B), E(A^2), E(AB), E(B^2)) against the mean and variance given O: E(A O + B), Var(A O + B)
            keep = torch.full_like(o, 0.6)
            a, b, aa, ab, bb = kind.linear_moments(keep, scaling)
            assert torch.allclose(a * o + b, kind.mean(o, 0.6, scaling))
            assert torch.allclose(aa * o**2 + 2 * ab * o + bb - (a * o + b) ** 2, kind.variance(o, 0.6, scaling))


def _outputs(n=6, dtype=torch.float64):
    # values in (0, 1) so spiking's B(O) is defined; distinct per unit
    return torch.linspace(0.1, 0.9, n, dtype=dtype)


def _keeps(n=6):
    return [0.5, 0.8, torch.linspace(0.3, 0.95, n, dtype=torch.float64)]


def test_registry_covers_the_design_table():
    assert set(GATES) == {"bernoulli", "gaussian", "dropin", "spiking"}


@pytest.mark.parametrize("kind,scaling", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_and_dtype_kept(kind, scaling, dtype):
    o = torch.rand(4, 3, 5, dtype=dtype)
    gate = UnitGate(0.7, kind=kind, scaling=scaling)
    with droplab.sample(gate, generator=torch.Generator().manual_seed(0)):
        y = gate(o)
    assert y.shape == o.shape and y.dtype == dtype
    with droplab.expect(gate):
        assert gate(o).shape == o.shape


@pytest.mark.parametrize("kind,scaling", CASES)
def test_same_generator_same_noise(kind, scaling):
    o = torch.rand(8, 5)
    gate = UnitGate(torch.full((5,), 0.6), kind=kind, scaling=scaling)
    outs = []
    for _ in range(2):
        with droplab.sample(gate, generator=torch.Generator().manual_seed(1234)):
            outs.append(gate(o))
    assert torch.equal(outs[0], outs[1])
    with droplab.sample(gate, generator=torch.Generator().manual_seed(1235)):
        assert not torch.equal(gate(o), outs[0])


@pytest.mark.parametrize("kind,scaling", CASES)
@pytest.mark.parametrize("keep_index", [0, 1, 2])
def test_sample_mean_equals_expectation_within_4_standard_errors(kind, scaling, keep_index):
    keep = _keeps()[keep_index]
    o = _outputs()
    n = 40_000
    g = torch.Generator().manual_seed(7)
    kind_ = gate_kind(kind)
    samples = kind_.sample(o.expand(n, -1), keep, scaling=scaling, generator=g)
    mean = kind_.mean(o, keep, scaling)
    var = kind_.variance(o, keep, scaling)
    se = (var / n).sqrt()
    assert torch.all((samples.mean(0) - mean).abs() <= 4 * se + 1e-12), (samples.mean(0), mean)
    # the variance formula too: sample variance within 10% (n = 40,000 gives a relative SE of about 1%)
    assert torch.allclose(samples.var(0), var, rtol=0.1)


@pytest.mark.parametrize("kind,scaling", CASES)
def test_expect_mode_is_the_mean_and_off_mode_is_identity(kind, scaling):
    o = _outputs().expand(3, -1)
    keep = _keeps()[2]
    gate = UnitGate(keep, kind=kind, scaling=scaling)
    with droplab.expect(gate):
        assert torch.allclose(gate(o), gate_kind(kind).mean(o, keep, scaling))
    with droplab.off(gate):
        assert torch.equal(gate(o), o)


@pytest.mark.parametrize("kind,scaling", CASES)
def test_default_mode_follows_training(kind, scaling):
    gate = UnitGate(0.5, kind=kind, scaling=scaling)
    assert gate.gate_mode == "sample"
    gate.eval()
    assert gate.gate_mode == "expect"
    with droplab.sample(gate):
        assert gate.gate_mode == "sample"
    assert gate.gate_mode == "expect"


def test_weight_scaling_expectations_closed_form():
    o = torch.tensor([0.2, 0.7])
    assert torch.allclose(GATES["bernoulli"].mean(o, 0.8, "paper"), 0.8 * o)
    assert torch.allclose(GATES["bernoulli"].mean(o, 0.8, "inverted"), o)
    assert torch.allclose(GATES["dropin"].mean(o, 0.8, "paper"), 0.8 * o + 0.2)
    assert torch.allclose(GATES["spiking"].mean(o, 0.5, "paper"), 0.5 * o)


@settings(max_examples=50, deadline=None)
@given(keep=st.floats(0.05, 1.0), seed=st.integers(0, 2**31 - 1),
       values=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=20))
def test_bernoulli_output_is_zero_or_x_over_keep(keep, seed, values):
    x = torch.tensor(values, dtype=torch.float64)
    gate = droplab.nn.Dropout(keep=keep)
    with droplab.sample(gate, generator=torch.Generator().manual_seed(seed)):
        y = gate(x.unsqueeze(0))[0]
    kept = torch.isclose(y, x / keep)
    assert torch.all(kept | (y == 0))


@settings(max_examples=30, deadline=None)
@given(r=st.floats(0.1, 1.0), seed=st.integers(0, 2**31 - 1))
def test_spikes_are_zero_or_r(r, seed):
    o = torch.rand(50, generator=torch.Generator().manual_seed(seed))
    y = GATES["spiking"].sample(o, r, generator=torch.Generator().manual_seed(seed + 1))
    assert torch.all((y == 0) | torch.isclose(y, torch.tensor(r)))


def test_spiking_gradient_is_straight_through_r():
    o = torch.full((10,), 0.3, requires_grad=True)
    GATES["spiking"].sample(o, 0.5, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert torch.allclose(o.grad, torch.full((10,), 0.5))


def test_dropin_values_are_o_or_one():
    o = torch.rand(1000)
    y = GATES["dropin"].sample(o, 0.6, generator=torch.Generator().manual_seed(0))
    assert torch.all((y == o) | (y == 1))


def test_bernoulli_noise_per_unit_rates():
    keep = torch.tensor([0.1, 0.9])
    noise = bernoulli_noise((50_000, 2), keep, generator=torch.Generator().manual_seed(0), dtype=torch.float32,
                            device=torch.device("cpu"))
    se = (keep * (1 - keep) / 50_000).sqrt()
    assert torch.all((noise.mean(0) - keep).abs() < 4 * se)


@pytest.mark.parametrize("bad,error", [
    (1.5, "keep must be in \\(0, 1\\], got 1.5"),
    (0.0, "got 0"),
    (-0.2, "got -0.2"),
    (torch.tensor([0.5, 1.2]), "got 1.2"),
    (float("nan"), "keep must be in"),
])
def test_bad_keep_rates_are_value_errors(bad, error):
    with pytest.raises(ValueError, match=error):
        check_keep(bad)


def test_bad_keep_types():
    with pytest.raises(TypeError, match="float or a tensor"):
        check_keep("0.5")
    with pytest.raises(TypeError, match="floating-point"):
        check_keep(torch.tensor([1, 1]))


def test_unknown_kind_lists_known_ones():
    with pytest.raises(ValueError, match="expected one of"):
        gate_kind("bernouli")


def test_dropin_rejects_inverted_scaling_everywhere():
    from droplab.net import DropoutMLP
    from droplab.nn import ConnectionDropoutLinear

    with pytest.raises(ValueError, match="dropin is defined with the paper scaling only"):
        UnitGate(0.5, kind="dropin", scaling="inverted")
    with pytest.raises(ValueError, match="dropin is defined with the paper scaling only"):
        ConnectionDropoutLinear(3, 2, 0.5, kind="dropin", scaling="inverted")
    with pytest.raises(ValueError, match="dropin is defined with the paper scaling only"):  # no silent override
        DropoutMLP((3, 4, 2), keep=0.5, gate="dropin", scaling="inverted")


def test_per_unit_keep_that_does_not_broadcast():
    gate = UnitGate(torch.full((4,), 0.5))
    with pytest.raises(ValueError, match="does not broadcast"):
        gate(torch.ones(2, 5))


def test_standard_error_helper_sanity():
    assert math.isclose(float(GATES["bernoulli"].variance(torch.tensor(2.0), 0.5, "paper")), 1.0)


def test_bernoulli_noise_is_exact_at_probabilities_zero_and_one():
    prob = torch.tensor([0.0, 1.0, 0.5])
    noise = bernoulli_noise((10_000, 3), prob, generator=torch.Generator().manual_seed(0), dtype=torch.float32,
                            device=torch.device("cpu"))
    assert noise[:, 0].sum() == 0 and noise[:, 1].sum() == 10_000
    ones = bernoulli_noise((7, 3), 1.0, generator=None, dtype=torch.float64, device=torch.device("cpu"))
    assert torch.equal(ones, torch.ones(7, 3, dtype=torch.float64))


@pytest.mark.parametrize("n", [1, 2, 3, 1001])
def test_bernoulli_noise_odd_sizes_and_dtypes(n):
    for dtype in (torch.float16, torch.float32, torch.float64):
        noise = bernoulli_noise((n,), 0.3, generator=torch.Generator().manual_seed(n), dtype=dtype,
                                device=torch.device("cpu"))
        assert noise.shape == (n,) and noise.dtype == dtype
        assert set(noise.unique().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("keep,width", [(0.5, 8), (3 / 256, 8), (0.25, 8), (0.5 + 1 / 65536, 16), (7 / 65536, 16)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_bernoulli_noise_dyadic_rates_are_exact_byte_compares(keep, width, dtype):
    # Reference: the same random 64-bit words, split into unsigned `width`-bit integers u, and [u < keep 2^width]
    # by plain integer comparison in NumPy (the definition)
    n = 4001
    noise = bernoulli_noise((n,), keep, generator=torch.Generator().manual_seed(3), dtype=dtype,
                            device=torch.device("cpu"))
    per_draw = 64 // width
    words = torch.empty((n + per_draw - 1) // per_draw, dtype=torch.int64).random_(
        -2**63, None, generator=torch.Generator().manual_seed(3))
    raw = np.frombuffer(words.numpy().tobytes(), dtype=np.uint8 if width == 8 else np.int16)[:n].astype(np.int64)
    u = raw if width == 8 else raw + 2**15
    expected = (u < round(keep * 2**width)).astype(np.float64)
    assert noise.dtype == dtype
    np.testing.assert_array_equal(noise.double().numpy(), expected)


@pytest.mark.parametrize("keep", [0.8, 0.3, 1 / 3, 0.999])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_bernoulli_noise_other_rates_are_exact_32_bit_compares(keep, dtype):
    # Reference: the same random 64-bit words, split into signed 32-bit integers w (uniform on [-2^31, 2^31)),
    # and [w < round(keep 2^32) - 2^31] by plain integer comparison in NumPy: P = round(keep 2^32) / 2^32
    n = 4001
    noise = bernoulli_noise((n,), keep, generator=torch.Generator().manual_seed(5), dtype=dtype,
                            device=torch.device("cpu"))
    words = torch.empty((n + 1) // 2, dtype=torch.int64).random_(-2**63, None,
                                                                 generator=torch.Generator().manual_seed(5))
    w = np.frombuffer(words.numpy().tobytes(), dtype=np.int32)[:n].astype(np.int64)
    expected = (w < round(keep * 2**32) - 2**31).astype(np.float64)
    assert noise.dtype == dtype and 0 < expected.sum() < n
    np.testing.assert_array_equal(noise.double().numpy(), expected)


def test_random_words_split_is_two_seeded_streams_and_reproducible():
    from droplab.gates import SPLIT_WORDS, random_words

    count = 2 * SPLIT_WORDS + 3
    cpu = torch.device("cpu")
    words = random_words(count, generator=torch.Generator().manual_seed(11), device=cpu)
    assert torch.equal(words, random_words(count, generator=torch.Generator().manual_seed(11), device=cpu))
    # Reference: the documented construction, serially: one seed from the generator, the first half from it,
    # the second half from a generator seeded with that seed
    g = torch.Generator().manual_seed(11)
    seed = int(torch.empty((), dtype=torch.int64).random_(0, 2**62, generator=g))
    half = count // 2
    first = torch.empty(half, dtype=torch.int64).random_(-2**63, None, generator=g)
    second = torch.empty(count - half, dtype=torch.int64).random_(-2**63, None,
                                                                  generator=torch.Generator().manual_seed(seed))
    assert torch.equal(words, torch.cat([first, second]))
    threads = torch.get_num_threads()
    try:  # one torch thread: filled serially, the same words
        torch.set_num_threads(1)
        assert torch.equal(words, random_words(count, generator=torch.Generator().manual_seed(11), device=cpu))
    finally:
        torch.set_num_threads(threads)
    # every bit position is a fair coin in both halves (4 standard errors)
    bits = ((words[:, None] >> torch.arange(64)) & 1).double()
    for part in (bits[:half], bits[half:]):
        assert torch.all((part.mean(0) - 0.5).abs() < 4 * (0.25 / len(part)) ** 0.5)
