"""Monte Carlo dropout on any model: the predictive estimator and its result type.

``predictive(model, x, ...)`` samples K subnetworks of a model droplab did not build (its droplab gates and
torch's own dropout, answered by ``droplab.modes``) and returns ``PredictiveStatistics``: the mean, variance and
standard error of what the model returns and, for class outputs, the uncertainty scores (predictive and expected
entropy, mutual information, variation ratio) computed by ``droplab.metrics``. ``monte_carlo`` calls it for any
model that is not a ``DropoutMLP``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .. import metrics, modes, threads
from ..net import DropoutMLP
from ..statistics import OUTPUTS, PredictiveStatistics
from ._common import CPU_MODULE_CHUNK, DEFAULT_MEMORY, _check, per_example_masks

__all__ = ["OUTPUTS", "PredictiveStatistics", "predictive"]


class _Moments:
    """Unweighted streaming mean and variance in float64 about a shift (the first chunk's mean)."""

    def __init__(self) -> None:
        self.shift: Tensor | None = None
        self.a: Tensor | None = None
        self.q: Tensor | None = None

    def add(self, values: Tensor) -> None:  # values (k, ...): k members
        if self.shift is None:
            self.shift = values.mean(0)
            self.a = torch.zeros_like(self.shift)
            self.q = torch.zeros_like(self.shift)
        d = values - self.shift
        self.a += d.sum(0)
        self.q += d.square().sum(0)

    def mean_var(self, count: int) -> tuple[Tensor, Tensor]:
        assert self.shift is not None and self.a is not None and self.q is not None
        m = self.a / count
        return self.shift + m, (self.q / count - m.square()).clamp_min(0)


class _OutputStatistics:
    """The running sums over members of what the model returns, (k, B, ...) per chunk, in float64."""

    def __init__(self, kind: str, targets: Tensor | None = None, tau: float | None = None) -> None:
        self.kind = kind
        self.targets, self.tau = targets, tau
        self.log_max: Tensor | None = None  # running logsumexp over members of -tau/2 |y - y_k|^2, per input
        self.log_sum: Tensor | None = None
        self.moments = _Moments()  # of the values, or of the class probabilities
        self.logits_sum: Tensor | None = None
        self.entropy_sum: Tensor | None = None
        self.votes: Tensor | None = None
        self.binary = False  # a head of one logit or probability (the positive class's): read as two classes

    def add(self, out: Tensor) -> None:
        _check_finite(out)
        if self.kind != "values" and (out.dim() == 2 or out.shape[-1] == 1):
            self.binary = True
            out = _two_classes(out, self.kind)
        if self.kind == "values":
            self.moments.add(out)
            if self.targets is not None:
                self._add_log_density(out)
            return
        if self.kind == "logits":
            p, log_p = torch.softmax(out, -1), torch.log_softmax(out, -1)
            z = out[..., 1:] if self.binary else out  # a binary head's own logit, not the added zero
            self.logits_sum = z.sum(0) if self.logits_sum is None else self.logits_sum + z.sum(0)
        else:
            _check_probabilities(out)
            p, log_p = out, None
        self.moments.add(p)
        h = metrics.entropy(p, log_p=log_p).sum(0)
        self.entropy_sum = h if self.entropy_sum is None else self.entropy_sum + h
        won = torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).sum(0)
        self.votes = won if self.votes is None else self.votes + won

    def _add_log_density(self, out: Tensor) -> None:
        """Streamed logsumexp_k of -tau/2 sum_d (y_d - y_kd)^2: memory per input, whatever K."""
        assert self.targets is not None and self.tau is not None
        if self.targets.numel() != out[0].numel():
            raise ValueError(f"targets have {self.targets.numel()} values and one member's output has "
                             f"{out[0].numel()} (shape {tuple(out.shape[1:])}); give one target per output value")
        t = self.targets.reshape(out.shape[1:])
        a = -0.5 * self.tau * (out - t).square().flatten(2).sum(-1)  # (k, B)
        top = a.max(0).values
        if self.log_max is None:
            self.log_max, self.log_sum = top, torch.exp(a - top).sum(0)
            return
        assert self.log_sum is not None
        new = torch.maximum(self.log_max, top)
        self.log_sum = self.log_sum * torch.exp(self.log_max - new) + torch.exp(a - new).sum(0)
        self.log_max = new

    def log_likelihood(self, samples: int, dims: int) -> Tensor:
        """Gal & Ghahramani (2016): logsumexp_k(-tau/2 |y - y_k|^2) - log K - D/2 log 2 pi + D/2 log tau."""
        assert self.log_max is not None and self.log_sum is not None and self.tau is not None
        return (self.log_max + self.log_sum.log() - math.log(samples)
                + 0.5 * dims * (math.log(self.tau) - math.log(2 * math.pi)))

    def finalize(self, x: Tensor, samples: int) -> PredictiveStatistics:
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        e, var = self.moments.mean_var(samples)
        common = dict(output_kind=self.kind, samples=samples, inputs=x, mean=e.to(dtype), variance=var.to(dtype),
                      standard_error=(var / samples).sqrt().to(dtype))
        if self.kind == "values":
            if self.targets is None:
                return PredictiveStatistics(**common)
            dims = self.targets.numel() // len(x) if self.targets.dim() > 1 else 1
            return PredictiveStatistics(**common, log_likelihood=self.log_likelihood(samples, dims).to(dtype),
                                        tau=self.tau, targets=self.targets)
        assert self.entropy_sum is not None and self.votes is not None
        expected = self.entropy_sum / samples
        total = metrics.entropy(e)
        return PredictiveStatistics(
            **common, mean_logits=None if self.logits_sum is None else (self.logits_sum / samples).to(dtype),
            predictive_entropy=total.to(dtype), expected_entropy=expected.to(dtype),
            mutual_information=metrics.mutual_information(e, expected).to(dtype),
            variation_ratio=(1 - self.votes.max(-1).values.to(torch.float64) / samples).to(dtype))


def check_output(output: str | None, batch_dim: int) -> str:
    """The ``output`` and ``batch_dim`` of ``predictive``, checked; ``output`` defaults to ``"values"``."""
    output = "values" if output is None else output
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS} (what the model returns), got {output!r}")
    if not isinstance(batch_dim, int) or isinstance(batch_dim, bool) or batch_dim < 0:
        raise ValueError(f"batch_dim must be a non-negative integer (the inputs' batch dimension), got {batch_dim!r}")
    return output


@torch.no_grad()
def predictive(model: nn.Module, x: Tensor, *, samples: int = 1000, generator: torch.Generator | None = None,
               output: str | None = None, batch_dim: int = 0, memory: int = DEFAULT_MEMORY,
               cache_prefix: bool = True, targets: Tensor | None = None, tau: float | None = None,
               temperature: float = 1.0) -> PredictiveStatistics:
    """Monte Carlo dropout on any model: K = ``samples`` members, statistics of what it returns.

    Its droplab gates and torch's own dropout (see ``droplab.modes``) are sampled from ``generator`` with the
    model left in its train/eval state, so BatchNorm keeps its eval statistics. ``output`` says what the model
    returns: ``"values"`` (the default), ``"logits"`` or ``"probabilities"`` (classes along the last
    dimension); nothing is transformed unless asked. A ``DropoutMLP`` is sampled at its output layer O^L (class
    probabilities for a softmax output, read from its logits; leave ``output`` None).
    ``batch_dim`` is the inputs' and outputs' batch dimension (1 for ``batch_first=False`` sequence models).
    The members run in chunks of about ``memory`` bytes of module
    outputs (on a CPU at most ``CPU_MODULE_CHUNK``). A ``torch.compile``d model is sampled through its eager
    module. ``cache_prefix`` (default True): the module calls that finish before the forward's first draw (a
    convolutional or transformer backbone before a dropout head) run once per input instead of once per member,
    their outputs repeated for the members (``_Prefix``); the same masks and distribution, results equal to
    ``cache_prefix=False`` to rounding. It assumes, as eval mode gives, that those modules treat the examples of a
    batch independently and draw no random numbers of their own; pass False for a model where that does not hold.

    Regression (``output="values"``): with ``targets`` (one per input, shaped as one member's output) and the
    observation precision ``tau``, ``log_likelihood`` holds each input's Monte Carlo log-likelihood (Gal &
    Ghahramani, 2016), streamed over the members (memory does not grow with K); ``metrics.regression_scores``
    reads it. Classes (``output="logits"``): ``temperature`` divides every member's logits before the softmax
    (``metrics.temperature_scale`` fits it).

    Args:
        model: Any torch module (droplab's gates and torch's dropout are sampled), or a ``DropoutMLP``.
        x: Its inputs.
        samples: K, the members per input.
        generator: The masks' generator (None: torch's default); the same generator state gives the same result.
        output: ``"values"``, ``"logits"`` or ``"probabilities"``.
        batch_dim: The inputs' and outputs' batch dimension.
        memory: Bytes of module outputs per chunk of members.
        cache_prefix: Run the calls before the first draw once per input.
        targets: Regression targets, one per input, for the Monte Carlo log-likelihood.
        tau: The observation precision of that log-likelihood.
        temperature: Divides every member's logits (``output="logits"``).

    Returns:
        PredictiveStatistics: Mean, variance and standard error of the output; the class scores for classes.

    Raises:
        ValueError: A model whose dropout droplab cannot sample (named), outputs that are not what ``output`` says.
    """
    model = modes.compiled_original(model) or model
    _check(model, x)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    scale = 1.0
    if isinstance(model, DropoutMLP):
        model, output, scale = _dropout_mlp_output(model, output)
    output = check_output(output, batch_dim)
    if not isinstance(cache_prefix, bool):
        raise TypeError(f"cache_prefix must be True or False, got {cache_prefix!r}")
    if batch_dim >= x.dim():
        raise ValueError(f"batch_dim={batch_dim} but x has {x.dim()} dimensions (shape {tuple(x.shape)})")
    _check_modules(model)
    stats = _OutputStatistics(output, *_check_targets(output, targets, tau, x, batch_dim))
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    if temperature != 1.0 and output != "logits":
        raise ValueError(f"temperature scales logits: use it with output='logits', not {output!r}")
    temperature = temperature / scale  # a softmax DropoutMLP's lam: its probabilities are softmax(lam S)
    for out in _members(model, x, samples, generator, memory, batch_dim, cache_prefix):
        if output != "values" and 1 < out.dim() - 1 == batch_dim + 1:
            raise ValueError(f"output={output!r} reads classes along the model's last dimension, but that is its batch "
                             f"dimension (batch_dim={batch_dim}, output shape per member {tuple(out.shape[1:])} "
                             "with the batch first); put the classes last")
        stats.add(out / temperature if temperature != 1.0 else out)
    return stats.finalize(x, samples)


class _OutputLayer(nn.Module):
    """A ``DropoutMLP`` whose forward returns O^L = f_L(S^L) (its own forward returns S^L)."""

    def __init__(self, net: DropoutMLP) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.output(x)


def _dropout_mlp_output(net: DropoutMLP, output: str | None) -> tuple[nn.Module, str, float]:
    """What ``predictive`` samples of a ``DropoutMLP``: its output layer O^L. A softmax output is read from its
    logits S^L (``output="logits"``, the softmax's lam returned as a scale of the logits); a linear output is S^L
    itself; any other output transfer is sampled through ``net.output``."""
    transfer = net.transfers[-1]
    if transfer.name == "softmax":
        if output not in (None, "logits", "probabilities"):
            raise ValueError(f"this DropoutMLP has a softmax output (class probabilities); leave output=None, not "
                             f"{output!r}")
        return net, "logits", float(transfer.lam)
    if output not in (None, "values"):
        raise ValueError(f"this DropoutMLP's output layer is {transfer.name}, not class probabilities; leave "
                         f"output=None (its values), not {output!r}")
    return (net if transfer.name == "linear" and float(transfer.lam) == 1.0 else _OutputLayer(net)), "values", 1.0


def _check_targets(output: str, targets: Any, tau: Any, x: Tensor, batch_dim: int) -> tuple[Tensor | None,
                                                                                              float | None]:
    if targets is None and tau is None:
        return None, None
    if targets is None or tau is None:
        raise ValueError("the Monte Carlo log-likelihood needs both targets and tau (the observation precision)")
    if output != "values":
        raise ValueError(f"targets and tau are for regression, output='values', not {output!r}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau (the observation precision) must be a positive number, got {tau!r}")
    if not isinstance(targets, Tensor) or targets.dim() == 0 or targets.shape[0] != x.shape[batch_dim]:
        raise ValueError(f"targets must be a tensor with one target per input ({x.shape[batch_dim]}), got "
                         f"{getattr(targets, 'shape', type(targets).__name__)}")
    if not bool(torch.isfinite(targets).all()):
        raise ValueError("targets hold NaN or inf")
    return targets.detach().to(x.device, torch.float64), float(tau)


def _members(net: nn.Module, x: Tensor, samples: int, generator: torch.Generator | None, memory: int,
             batch_dim: int, cache_prefix: bool) -> Iterator[Tensor]:
    """The model's outputs for all members, chunk by chunk, each (k, B, ...) in float64."""
    batch, reps = x.shape[batch_dim], [1] * x.dim()
    done, chunk = 0, 1  # the first chunk is one member: it measures the activations a member needs
    with modes.sampling(net, generator=generator) as session, per_example_masks(net), ExitStack() as stack:
        guard = _BatchAxisGuard(net, batch_dim)
        stack.callback(guard.remove)
        prefix = _Prefix(net, session, batch_dim, batch) if cache_prefix else None
        while done < samples:
            threads.maybe_adapt()
            k = reps[batch_dim] = min(chunk, samples - done)
            guard.rows = k * batch
            if prefix is not None and done == 0:
                with prefix.probe():
                    out = net(x.repeat(*reps))
                measured = session.leaf_bytes if session is not None else 0
                guard.rows = batch
                prefix.capture(x)
                if session is not None:
                    session.leaf_bytes = measured  # one member's activations, as the probe measured them
                if prefix.kept:
                    stack.enter_context(prefix.reuse())
            else:
                if prefix is not None:
                    prefix.k = k
                out = net(x.repeat(*reps))
            out = _member_major(out, k, batch, batch_dim)
            if done == 0:
                if session is not None and session.draws == 0 and not modes.gates_of(net):
                    raise ValueError(f"{type(net).__name__} drew no dropout mask in its forward: it has no droplab "
                                     "gate, no torch dropout module and made no F.dropout call with p > 0. Monte "
                                     "Carlo would repeat one network")
                per_member = max(1, _member_bytes(net, session, out, batch, x.element_size()))
                budget = memory if x.device.type != "cpu" else min(memory, CPU_MODULE_CHUNK)
                chunk = max(1, min(samples, budget // per_member))
            yield out
            done += k


def _member_bytes(net: nn.Module, session: Any, out: Tensor, batch: int, element: int) -> int:
    """Bytes of activations one member needs: what the leaf modules returned (torch models), or, for a
    ``DropoutMLP`` (it draws through its own gates, no session), every layer's pre-activation, transfer and gated
    output. Not the member's output alone: a one-output regression net on many inputs would then run thousands of
    members at once, its hidden layers hundreds of times the budget."""
    if session is not None:
        return session.leaf_bytes
    sizes = getattr(net, "sizes", None)
    if sizes is not None:
        return batch * sum(sizes) * element * 3
    return out[0].numel() * 8


def _member_major(out: Any, k: int, batch: int, batch_dim: int) -> Tensor:
    if not isinstance(out, Tensor):
        raise TypeError(f"Monte Carlo needs a model that returns one tensor, got {type(out).__name__}; "
                        "wrap the model so that forward returns the tensor to average")
    if out.dim() <= batch_dim or out.shape[batch_dim] != k * batch:
        raise ValueError(f"the model's output has shape {tuple(out.shape)}; expected {k * batch} rows along "
                         f"batch_dim={batch_dim} (members x inputs). Monte Carlo repeats the batch along "
                         "batch_dim: pass the batch dimension your model uses")
    return out.unflatten(batch_dim, (k, batch)).movedim(batch_dim, 0).to(torch.float64)  # (k, B, ...)


def _check_finite(out: Tensor) -> None:
    """Members' outputs (k, B, ...) must be finite: a NaN mean with entropy 0 and mutual information 0 would read as
    a certain prediction, and feed OOD scores without a word."""
    bad = ~torch.isfinite(out)
    if bool(bad.any()):
        inputs = bad.flatten(2).any(-1).any(0) if out.dim() > 2 else bad.any(0)
        first = inputs.nonzero().flatten()[:5].tolist()
        raise ValueError(f"the model returned NaN or inf for {int(inputs.sum())} of {inputs.numel()} inputs (the first "
                         f"at {first}) under dropout: Monte Carlo statistics of such outputs are undefined. Check "
                         "those inputs and the model's numerics (an overflow in float16, a log of 0)")


def _two_classes(out: Tensor, kind: str) -> Tensor:
    """A binary head, (k, B) or (k, B, 1), as two classes [negative, positive]: one logit z gives logits [0, z]
    (softmax: [1 - sigmoid(z), sigmoid(z)]), one probability p gives [1 - p, p]. A softmax over a single class
    would give p = 1 and mutual information 0 for every input."""
    z = out.unsqueeze(-1) if out.dim() == 2 else out
    if kind == "logits":
        return torch.cat([torch.zeros_like(z), z], -1)
    if float(z.min()) < 0 or float(z.max()) > 1:
        raise ValueError(f"output='probabilities' with one value per input (a binary head) needs values in [0, 1], "
                         f"got [{float(z.min()):.3g}, {float(z.max()):.3g}]; if it returns a logit, pass "
                         "output='logits'")
    return torch.cat([1 - z, z], -1)


def _check_modules(model: nn.Module) -> None:
    """Refuse, by name, what Monte Carlo would sample wrong without a word."""
    for name, m in model.named_modules():
        where = f"{type(m).__name__} at {name!r}" if name else type(m).__name__
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training:
            raise ValueError(f"{where} is in training mode: it would normalize with the statistics of the members' "
                             "batch (mixing them) and change its running statistics with every chunk. Call "
                             "model.eval() first: droplab samples the dropout of an eval model")
        if isinstance(m, nn.RNNBase) and m.num_layers > 1 and float(m.dropout) > 0:
            raise ValueError(f"{where} has dropout={m.dropout} between its {m.num_layers} layers, which runs inside "
                             "torch's fused kernel where droplab cannot sample it (it would be left out of the "
                             f"ensemble). Build it as {m.num_layers} one-layer {type(m).__name__}s with nn.Dropout "
                             "between them, or set its dropout to 0 to sample the model's other dropout only")


class _BatchAxisGuard:
    """Checks that attention and recurrent modules see the members x inputs along their own batch axis: with
    ``batch_first=False`` modules fed (rows, ...) under ``batch_dim=0``, the members would attend to each other."""

    def __init__(self, net: nn.Module, batch_dim: int) -> None:
        self.rows = 0
        self.batch_dim = batch_dim
        self.handles = []
        for name, m in net.named_modules():
            if isinstance(m, (nn.MultiheadAttention, nn.RNNBase)):
                self.handles.append(m.register_forward_pre_hook(
                    lambda mod, args, kwargs, name=name: self._check(name, mod, args, kwargs), with_kwargs=True))

    def _check(self, name: str, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs.get("query", kwargs.get("input"))
        if not isinstance(x, Tensor) or x.dim() != 3 or self.rows <= 1:
            return
        axis = 0 if module.batch_first else 1
        if x.shape[axis] % self.rows:
            raise ValueError(f"{type(module).__name__} at {name!r} (batch_first={module.batch_first}) gets "
                             f"{x.shape[axis]} along its batch axis (dim {axis}, input shape {tuple(x.shape)}), not "
                             f"the {self.rows} rows (members x inputs) Monte Carlo passes: the members would attend to "
                             f"each other. Pass the dimension of the model's inputs that holds the batch (batch_dim="
                             f"{axis} if the inputs reach this module as they come; now batch_dim={self.batch_dim})")

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _check_probabilities(p: Tensor) -> None:
    low, total = float(p.min()), p.sum(-1)
    worst = float((total - 1).abs().max())
    if low < 0 or worst > 1e-3:
        raise ValueError(f"output='probabilities' but the model's outputs are not probabilities over the last "
                         f"dimension (min {low:.3g}, sums off 1 by up to {worst:.3g}); if it returns logits, pass "
                         "output='logits'")


def _rng_states() -> list[Tensor]:
    """The states of torch's default generators: the CPU's and each initialized CUDA device's."""
    states = [torch.random.get_rng_state()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states += torch.cuda.get_rng_state_all()
    return states


class _Captured(Exception):  # noqa: N818  (control flow: the prefix's outputs are all in)
    """Raised after the last call of the prefix, to stop the capture forward before anything is drawn."""


class _Prefix:
    """The deterministic prefix of a model's forward: the module calls that finish before its first draw (a torch
    dropout mask or a droplab gate), run once on the inputs and reused by every member.

    ``probe()`` watches one forward (the first chunk, one member) and finds the outermost such calls that return a
    tensor with one row per input along ``batch_dim``; ``capture(x)`` runs the forward again on the inputs up to
    the end of the last of them (then stops it: nothing is drawn, so the masks are those of ``cache_prefix=False``)
    and keeps their outputs, and only theirs, so memory holds no more than the prefix's outputs; ``reuse()`` then
    answers those calls, for a chunk of ``k`` members, with the kept output repeated ``k`` times (member-major, as
    the inputs are) without running them. Exact when those modules treat the examples of a batch independently,
    as every module does in eval mode (BatchNorm on its running statistics included), and draw no random numbers
    of their own. A model that draws first (dropout on the inputs) caches nothing."""

    def __init__(self, net: nn.Module, session: Any, batch_dim: int, batch: int) -> None:
        self.net, self.session, self.batch_dim, self.batch = net, session, batch_dim, batch
        self.gates_entered = False
        self.wanted: dict[tuple[nn.Module, int], int] = {}  # (module, visit) -> its place in the call order
        self.kept: dict[nn.Module, dict[int, Tensor]] = {}
        self.k = 1
        self.rng: list[Tensor] | None = None

    def _drawn(self) -> bool:
        return (self.gates_entered or (self.session is not None and self.session.draws > 0)
                or self._random_moved())

    def _random_moved(self) -> bool:
        """Whether torch's default generators moved since the probe began: a module that draws random numbers of
        its own (noise injection, a random crop) is not deterministic, and its output must not be reused."""
        return self.rng is not None and any(not torch.equal(a, b) for a, b in zip(self.rng, _rng_states(),
                                                                                   strict=True))

    def _hooks(self, enter: Any, leave: Any) -> list[Any]:
        """Hooks on every module but the model and what a ``torch.compile``d part holds: the compiled part is one
        call (its inside runs as a graph, where a hook would be traced: dynamo refuses the prefix's bookkeeping)."""
        handles = []
        inside = {id(m) for c in self.net.modules() if modes.compiled_original(c) is not None
                  for m in c.modules() if m is not c}
        for module in self.net.modules():
            if module is not self.net and id(module) not in inside:
                handles.append(module.register_forward_pre_hook(enter))
                handles.append(module.register_forward_hook(leave))
        return handles

    @contextmanager
    def probe(self) -> Iterator[None]:
        stack: list[int] = []  # the calls open now
        calls: list[dict[str, Any]] = []
        visits: dict[nn.Module, int] = {}

        def enter(module: nn.Module, _args: Any) -> None:
            if isinstance(module, modes.Stochastic):
                self.gates_entered = True
            visit = visits.get(module, 0)
            visits[module] = visit + 1
            calls.append({"module": module, "visit": visit, "parent": stack[-1] if stack else None, "clean": False,
                          "fits": False})
            stack.append(len(calls) - 1)

        def leave(module: nn.Module, _args: Any, output: Any) -> None:
            call = calls[stack.pop()]
            call["clean"] = not self._drawn()
            call["fits"] = (isinstance(output, Tensor) and output.dim() > self.batch_dim
                            and output.shape[self.batch_dim] == self.batch)
            if call["clean"] and call["fits"] and call["parent"] is None:
                # a call of the model's own forward, clean: outermost whatever follows, so kept now (a copy: the
                # caller may change it in place); deeper ones wait for capture()
                call["copy"] = output.detach().clone()

        handles = self._hooks(enter, leave)
        self.rng = _rng_states()
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        for order, call in enumerate(calls):
            outer = call["parent"] is None or not calls[call["parent"]]["clean"]
            if call["clean"] and outer and call["fits"]:
                self.wanted[(call["module"], call["visit"])] = order
        if all("copy" in calls[order] for order in self.wanted.values()):  # no second pass needed
            for (module, visit), order in self.wanted.items():
                self.kept.setdefault(module, {})[visit] = calls[order]["copy"]

    def capture(self, x: Tensor) -> None:
        if not self.wanted or self.kept:  # nothing to keep, or kept by the probe already
            return
        last = max(self.wanted.values())
        order, visits = [0], {}

        def enter(module: nn.Module, _args: Any) -> None:
            visit = visits.get(module, 0)
            visits[module] = visit + 1
            module.__dict__.setdefault("_droplab_prefix_calls", []).append((order[0], visit))
            order[0] += 1

        def leave(module: nn.Module, _args: Any, output: Any) -> None:
            place, visit = module.__dict__["_droplab_prefix_calls"].pop()
            if (module, visit) in self.wanted and isinstance(output, Tensor):
                self.kept.setdefault(module, {})[visit] = output.detach().clone()  # the caller may change it
            if place == last:
                raise _Captured

        handles = self._hooks(enter, leave)
        try:
            self.net(x.clone())  # a copy: a module of the prefix may change its input in place (ReLU(inplace=True))
        except _Captured:
            pass
        finally:
            for handle in handles:
                handle.remove()
            for module in self.net.modules():
                module.__dict__.pop("_droplab_prefix_calls", None)
        if sum(len(v) for v in self.kept.values()) != len(self.wanted):  # the forward took another path: no reuse
            self.kept.clear()

    @contextmanager
    def reuse(self) -> Iterator[None]:
        counts: dict[nn.Module, int] = {}
        saved: list[tuple[nn.Module, Any]] = []

        def answer(module: nn.Module, original: Any) -> Any:
            def forward(*args: Any, **kwargs: Any) -> Any:
                visit = counts.get(module, 0)
                counts[module] = visit + 1
                kept = self.kept[module].get(visit)
                if kept is None:
                    return original(*args, **kwargs)
                reps = [1] * kept.dim()
                reps[self.batch_dim] = self.k
                return kept.repeat(*reps)  # a fresh tensor: the caller may change it in place
            return forward

        handle = self.net.register_forward_pre_hook(lambda m, a: counts.clear())
        try:
            for module in self.kept:
                saved.append((module, module.__dict__.get("forward")))
                module.forward = answer(module, module.forward)
            yield
        finally:
            handle.remove()
            for module, own in saved:
                if own is None:
                    del module.forward
                else:
                    module.forward = own
