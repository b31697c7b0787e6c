"""The noise of dropout, as pure functions on tensors.

Notation follows Baldi & Sadowski (2014): a unit's output is ``O``; a gate multiplies (or replaces) it by a
random variable. ``keep`` is the keep probability ``p`` of the paper (``1 - p`` is the drop rate that
``torch.nn.Dropout`` takes). ``keep`` may be a Python float or a tensor that broadcasts against ``O``
(one rate per unit, or one per connection).

Every kind of gate is split in two steps so that the same noise can be drawn once and used twice
(``replay``) or enumerated exactly:

* ``draw(O, keep, generator)`` samples the gate's random variable (``noise``), shaped like ``O``;
* ``apply(O, noise, keep, scaling)`` turns noise into the gated output;
* ``mean(O, keep, scaling)`` and ``variance(O, keep, scaling)`` are the gated output's expectation and
  variance over the noise, for fixed ``O``. ``mean`` is what weight scaling (the network W of Eq. 98) uses.

| kind       | noise                  | gated value (paper scaling) | mean              | variance             |
|------------|------------------------|-----------------------------|-------------------|----------------------|
| bernoulli  | delta ~ B(p)           | delta O                     | p O               | p (1 - p) O^2        |
| gaussian   | xi ~ N(p, p(1 - p))    | xi O                        | p O               | p (1 - p) O^2        |
| dropin     | delta ~ B(p)           | delta O + (1 - delta)       | p O + 1 - p       | p (1 - p) (O - 1)^2  |
| spiking    | Delta ~ B(O)           | r Delta  (``keep`` is r)    | r O               | r^2 O (1 - O)        |

With ``scaling="inverted"`` (the convention of PyTorch and Keras) the gated value of the multiplicative
kinds is divided by p (by r for spiking), so that the mean is O itself; the ensemble network is the same.
Dropin is defined by the paper's form only.

References:
    P. Baldi and P. Sadowski, "The dropout learning algorithm", Artificial Intelligence 210 (2014):
    Sections 2-5 (Bernoulli gates), 10.1 (spiking units, Eqs. 135-138), 11.6 (dropin).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "GATES",
    "SCALINGS",
    "GateKind",
    "bernoulli_noise",
    "check_keep",
    "check_scaling",
    "gate_kind",
    "random_words",
]

SCALINGS = ("paper", "inverted")
Keep = float | Tensor


def check_keep(keep: Keep, *, where: str = "keep", allow_zero: bool = False) -> Keep:
    """Validate a keep probability (scalar or tensor) and return it unchanged.

    >>> check_keep(0.5)
    0.5

    Args:
        keep: A probability in (0, 1] (or [0, 1] with ``allow_zero``), or a tensor of them.
        where: The argument's name, for the error message.
        allow_zero: Whether 0 is allowed.

    Returns:
        Keep: ``keep``, unchanged.

    Raises:
        ValueError: A value outside the range, NaN, or an empty tensor.
        TypeError: Neither a number nor a floating tensor.
    """
    low = "[0, 1]" if allow_zero else "(0, 1]"
    if isinstance(keep, bool) or not isinstance(keep, (int, float, Tensor)):
        raise TypeError(f"{where} must be a float or a tensor of floats in {low}, got {type(keep).__name__}")
    if isinstance(keep, Tensor):
        if not keep.is_floating_point():
            raise TypeError(f"{where} must be a floating-point tensor, got dtype {keep.dtype}; use keep.float()")
        if keep.numel() == 0:
            raise ValueError(f"{where} must not be empty")
        lo, hi = float(keep.min()), float(keep.max())
    else:
        lo = hi = float(keep)
    if not (lo >= 0.0 and hi <= 1.0) or (not allow_zero and lo <= 0.0):
        bad = lo if (lo < 0 or (not allow_zero and lo <= 0)) else hi
        raise ValueError(f"{where} must be in {low}, got {bad:g}; a keep rate is the probability of keeping a unit")
    return float(keep) if not isinstance(keep, Tensor) else keep


def check_scaling(scaling: str) -> str:
    """Validate a scaling convention: ``"paper"`` (gated values are p O on average) or ``"inverted"`` (divided by
    p, so their mean is O, as torch does).

    Args:
        scaling: ``"paper"`` or ``"inverted"``.

    Returns:
        str: ``scaling``, unchanged.

    Raises:
        ValueError: Any other text.
    """
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    return scaling


SPLIT_WORDS = 2**16  # CPU draws of at least this many 64-bit words are split over two generators and threads
_pool: tuple[int, ThreadPoolExecutor] | None = None  # (pid, pool): a forked child makes its own


def _rng_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="droplab-rng"))
    return _pool[1]


def _shape(shape: Any) -> torch.Size:
    try:
        size = torch.Size(shape)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"shape must be a tuple of non-negative ints (or a torch.Size), got {shape!r}") from None
    if any(d < 0 for d in size):
        raise ValueError(f"shape must hold non-negative sizes, got {tuple(size)}")
    return size


def random_words(count: int, *, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``count`` uniformly random 64-bit words (int64), drawn from ``generator`` (torch's default if None).

    CPU torch draws from one Mersenne Twister, serially: on the 2-core benchmark machine that was 6% of a
    Monte Carlo run with one core idle. A large CPU draw is therefore split in two halves, the first from
    ``generator`` and the second from a child generator seeded by one draw from it, filled on two threads.
    The split depends only on ``count``, never on the machine or on ``torch.get_num_threads()`` (with one
    thread both halves are filled in the calling thread), so a seed gives the same words everywhere.

    >>> g = torch.Generator().manual_seed(0)
    >>> random_words(3, generator=g, device=torch.device("cpu")).dtype
    torch.int64

    Args:
        count: How many words.
        generator: The draws' generator (None: torch's default).
        device: Where they are drawn.

    Returns:
        Tensor: (count,) int64.
    """
    if count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count}")
    words = torch.empty(count, dtype=torch.int64, device=device)
    if device.type != "cpu" or count < SPLIT_WORDS:
        return words.random_(-2**63, None, generator=generator)
    seed = int(torch.empty((), dtype=torch.int64).random_(0, 2**62, generator=generator))
    child = torch.Generator().manual_seed(seed)
    half = count // 2
    if torch.get_num_threads() == 1:  # the caller asked torch for one thread: same words, filled serially
        words[half:].random_(-2**63, None, generator=child)
        words[:half].random_(-2**63, None, generator=generator)
        return words
    second = _rng_pool().submit(words[half:].random_, -2**63, None, generator=child)
    words[:half].random_(-2**63, None, generator=generator)
    second.result()
    return words


def bernoulli_words(shape: torch.Size | tuple[int, ...], keep: float, *, generator: torch.Generator | None,
                    device: torch.device) -> tuple[Tensor, int] | None:
    """The random integers a scalar-``keep`` Bernoulli mask of ``shape`` is cut from, and the limit: the mask is
    ``words < limit``. None where no words are drawn (keep >= 1, or keep rounds to 0 on the 32-bit grid).

    Each 64-bit draw gives 8 byte words when 256p is an integer (0.5, 0.25, 0.75, ...), 4 16-bit words when
    65536p is, and otherwise 2 32-bit words with B(p) = [w < round(p 2^32) - 2^31], exact to 2^-32 in p (finer
    than float32 rand's 2^-24). CPU torch's bernoulli_ and rand draw one mt19937 number per element and made
    masks cost as much as the matrix products. ``bernoulli_noise`` and the fused Monte Carlo gate
    (``droplab.ensemble``) both cut their masks from these words, so they are the same masks.
    """
    shape = torch.Size(shape)
    n = shape.numel()
    if keep >= 1.0:
        return None
    for width, dtype_w in ((8, torch.uint8), (16, torch.int16)):
        count = keep * 2**width
        if count == int(count):  # p = k / 2^width exactly: 64/width masks per draw
            per_draw = 64 // width
            bits = random_words((n + per_draw - 1) // per_draw, generator=generator, device=device)
            offset = 0 if width == 8 else 2**15  # uint8 words are on [0, 256), int16 on [-2^15, 2^15)
            return bits.view(dtype_w)[:n].view(shape), int(count) - offset
    count = round(keep * 2**32)  # P(w <= count - 2^31 - 1) = count / 2^32
    if count == 0:
        return None
    words = random_words((n + 1) // 2, generator=generator, device=device).view(torch.int32)[:n].view(shape)
    return words, count - 2**31  # words uniform on [-2^31, 2^31)


def bernoulli_noise(shape: torch.Size | tuple[int, ...], keep: Keep, *, generator: torch.Generator | None,
                    dtype: torch.dtype, device: torch.device) -> Tensor:
    """Independent B(keep) draws of the given shape, as 0.0/1.0 in ``dtype``.

    >>> g = torch.Generator().manual_seed(0)
    >>> bernoulli_noise((2, 3), 0.5, generator=g, dtype=torch.float32, device=torch.device("cpu")).shape
    torch.Size([2, 3])

    Args:
        shape: The noise's shape.
        keep: The keep probability: a number, or a tensor that broadcasts to ``shape`` (a rate per unit).
        generator: The draws' generator (None: torch's default).
        dtype: The noise's floating dtype.
        device: Where it is drawn.

    Returns:
        Tensor: 0.0 / 1.0 values, 1 with probability ``keep``.
    """
    shape = _shape(shape)
    if not isinstance(keep, Tensor):
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 <= keep <= 1:
            raise ValueError(f"keep must be a probability in [0, 1] or a tensor of them, got {keep!r}")
        drawn = bernoulli_words(shape, keep, generator=generator, device=device)
        if drawn is None:
            return (torch.ones if keep >= 1.0 else torch.zeros)(shape, dtype=dtype, device=device)
        words, limit = drawn
        # the compare writes 0.0 / 1.0 straight into the mask: one pass (torch 2.13 on the 2-core CPU: 11-16 us
        # for 100 x 1200, where a float clamp of the converted words, or a bool mask then converted, took 29-44)
        return torch.lt(words, limit, out=torch.empty(shape, dtype=dtype, device=device))
    # per-element probabilities (per-unit or per-connection rates, or spiking's O)
    try:
        fits = keep.is_floating_point() and torch.broadcast_shapes(keep.shape, shape) == shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(f"keep must be floating-point probabilities of shape {tuple(shape)} (or broadcast to it), "
                         f"got a {keep.dtype} tensor of shape {tuple(keep.shape)}")
    if not bool(((keep >= 0) & (keep <= 1)).all()):  # NaN fails too
        raise ValueError("keep must hold probabilities in [0, 1] (no NaN)")
    n = shape.numel()
    words = random_words((n + 1) // 2, generator=generator, device=device).view(torch.int32)[:n].view(shape)
    count = (keep.detach().to(device=device, dtype=torch.float64).clamp(0, 1) * 2**32).round().to(torch.int64)
    return torch.le(words.to(torch.int64), count - 2**31 - 1, out=torch.empty(shape, dtype=dtype, device=device))


def _scale(value: Tensor, keep: Keep, scaling: str) -> Tensor:
    return value / keep if scaling == "inverted" else value


# ----------------------------------------------------------------------------------------------------
# bernoulli: delta O with delta ~ B(p)
def _bernoulli_draw(o: Tensor, keep: Keep, generator: torch.Generator | None) -> Tensor:
    return bernoulli_noise(o.shape, keep, generator=generator, dtype=o.dtype, device=o.device)


def _bernoulli_apply(o: Tensor, noise: Tensor, keep: Keep, scaling: str) -> Tensor:
    return _scale(o * noise, keep, scaling)


def _multiplicative_mean(o: Tensor, keep: Keep, scaling: str) -> Tensor:
    return o if scaling == "inverted" else o * keep


def _multiplicative_variance(o: Tensor, keep: Keep, scaling: str) -> Tensor:
    # Var(delta O) = p(1-p) O^2; divided by p^2 under inverted scaling
    var = o.square() * (keep * (1 - keep))
    return var / (keep * keep) if scaling == "inverted" else var


# ----------------------------------------------------------------------------------------------------
# gaussian: xi O with xi ~ N(p, p(1-p)), the variance matched to Bernoulli
def _gaussian_draw(o: Tensor, keep: Keep, generator: torch.Generator | None) -> Tensor:
    z = torch.randn(o.shape, generator=generator, dtype=o.dtype, device=o.device)
    keep_t = keep.to(o) if isinstance(keep, Tensor) else keep
    return keep_t + z * ((keep_t * (1 - keep_t)) ** 0.5)  # xi = p + sqrt(p(1-p)) z


# ----------------------------------------------------------------------------------------------------
# dropin: O if kept, 1 otherwise (Section 11.6)
def _dropin_apply(o: Tensor, noise: Tensor, keep: Keep, scaling: str) -> Tensor:
    GATES["dropin"].check_scaling(scaling)
    return o * noise + (1 - noise)  # delta O + (1 - delta)


def _dropin_mean(o: Tensor, keep: Keep, scaling: str) -> Tensor:
    GATES["dropin"].check_scaling(scaling)
    return o * keep + (1 - keep)


def _dropin_variance(o: Tensor, keep: Keep, scaling: str) -> Tensor:
    return (o - 1).square() * (keep * (1 - keep))


# ----------------------------------------------------------------------------------------------------
# spiking: a spike of size r with probability O (Section 10.1); ``keep`` plays the role of r
def _spiking_draw(o: Tensor, keep: Keep, generator: torch.Generator | None) -> Tensor:
    # Delta ~ B(O), one draw per unit (or per connection); O outside [0, 1] is clipped to a probability
    return bernoulli_noise(o.shape, o.detach(), generator=generator, dtype=o.dtype, device=o.device)


def _spiking_apply(o: Tensor, noise: Tensor, keep: Keep, scaling: str) -> Tensor:
    rate = o if scaling == "inverted" else o * keep
    spikes = noise if scaling == "inverted" else noise * keep
    # value r Delta, gradient of r O (straight-through): the spike is not differentiable, its mean is
    return rate + (spikes - rate).detach()


def _spiking_variance(o: Tensor, keep: Keep, scaling: str) -> Tensor:
    var = o * (1 - o)  # Var(Delta) = O(1-O); times r^2 under paper scaling (Eq. 135)
    return var if scaling == "inverted" else var * (keep * keep)


Moments = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


def _multiplicative_moments(keep: Tensor, scaling: str) -> Moments:
    # gated value A O with A = s delta (or s xi), s = 1 or 1/p: E(A) = s p, E(A^2) = s^2 p (E(delta^2) = E(xi^2) = p)
    s = 1 / keep if scaling == "inverted" else torch.ones_like(keep)
    zero = torch.zeros_like(keep)
    return s * keep, zero, s.square() * keep, zero, zero


def _dropin_moments(keep: Tensor, scaling: str) -> Moments:
    # gated value delta O + (1 - delta): A = delta, B = 1 - delta, AB = 0
    return keep, 1 - keep, keep, torch.zeros_like(keep), 1 - keep


@dataclass(frozen=True)
class GateKind:
    """One kind of gate: its noise, how the noise is applied, and what the estimators may assume of it.

    ``draw``/``apply`` sample; ``mean``/``variance`` are the gated value's moments given O. ``scalings`` lists the
    conventions the kind is defined for; ``enumerable`` says whether its noise is a Bernoulli variable with
    probability ``keep`` (so ``exact`` can list every configuration); ``affine_mean`` that its mean is affine in O
    (the Monte Carlo estimator's E(S) from E(O) relies on it); ``linear_moments``, where the gated value is
    A O + B with noise A, B independent of O, gives (E(A), E(B), E(A^2), E(AB), E(B^2)) for moment propagation.

    Attributes:
        name: Its name in ``GATES``.
        draw: (O, keep, generator) -> the noise.
        apply: (O, noise, keep, scaling) -> the gated value.
        mean: (O, keep, scaling) -> E(gated value | O).
        variance: (O, keep, scaling) -> Var(gated value | O).
        needs_probability_input: Its input must lie in [0, 1] (spiking units).
        scalings: The scaling conventions it is defined for.
        enumerable: Its noise is a Bernoulli variable with probability ``keep`` (``exact`` can list it).
        affine_mean: Its mean is affine in O.
        linear_moments: The moments ``linear_moments`` propagates, or None.
        binary_noise: Its noise takes two values.
    """

    name: str
    draw: Callable[[Tensor, Keep, torch.Generator | None], Tensor]
    apply: Callable[[Tensor, Tensor, Keep, str], Tensor]
    mean: Callable[[Tensor, Keep, str], Tensor]
    variance: Callable[[Tensor, Keep, str], Tensor]
    needs_probability_input: bool = False  # spiking: O must lie in [0, 1]
    scalings: tuple[str, ...] = SCALINGS
    enumerable: bool = False
    affine_mean: bool = True
    linear_moments: Callable[[Tensor, str], Moments] | None = None
    binary_noise: bool = True  # the noise is 0 or 1 (a replayed mask with another value is refused)

    def check_scaling(self, scaling: str) -> str:
        """``scaling`` if this kind is defined with it, else a ValueError that says which it is defined with."""
        check_scaling(scaling)
        if scaling not in self.scalings:
            raise ValueError(f"{self.name} is defined with the {' or '.join(self.scalings)} scaling only, got "
                             f"scaling={scaling!r}; use scaling={self.scalings[0]!r}")
        return scaling

    def sample(self, o: Tensor, keep: Keep, *, scaling: str = "paper",
               generator: torch.Generator | None = None) -> Tensor:
        """Draw the noise and apply it: one sampled gated output, shaped like ``o``."""
        return self.apply(o, self.draw(o, keep, generator), keep, scaling)


GATES: dict[str, GateKind] = {
    "bernoulli": GateKind("bernoulli", _bernoulli_draw, _bernoulli_apply, _multiplicative_mean,
                          _multiplicative_variance, enumerable=True, linear_moments=_multiplicative_moments),
    "gaussian": GateKind("gaussian", _gaussian_draw, _bernoulli_apply, _multiplicative_mean,
                         _multiplicative_variance, linear_moments=_multiplicative_moments, binary_noise=False),
    "dropin": GateKind("dropin", _bernoulli_draw, _dropin_apply, _dropin_mean, _dropin_variance, scalings=("paper",),
                       enumerable=True, linear_moments=_dropin_moments),
    # a spike's probability is O itself: not a fixed-probability Bernoulli, not of the form A O + B
    "spiking": GateKind("spiking", _spiking_draw, _spiking_apply, _multiplicative_mean, _spiking_variance,
                        needs_probability_input=True),
}


def gate_kind(name: str) -> GateKind:
    """Look a gate kind up by name, with an error that lists the known ones.

    Args:
        name: A gate kind's name: one of ``GATES``.

    Returns:
        GateKind: The kind.

    Raises:
        ValueError: An unknown name (the message lists the known ones).
    """
    try:
        return GATES[name]
    except KeyError:
        raise ValueError(f"unknown gate kind name={name!r}; expected one of {sorted(GATES)}") from None


from ._contract import checked as _checked  # noqa: E402  (every public function checks its arguments first)

for _name in __all__:
    globals()[_name] = _checked(globals()[_name])
