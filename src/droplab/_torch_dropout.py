"""droplab's modes for torch's own dropout: modules, functional calls and attention, with the model left in eval.

While a ``droplab.modes`` context is open on a model, every call the model's forward makes to torch's dropout
is answered by droplab instead:

* the modules ``nn.Dropout``, ``Dropout1d/2d/3d``, ``AlphaDropout`` and ``FeatureAlphaDropout``;
* the functional calls ``F.dropout``, ``F.dropout1d/2d/3d``, ``F.alpha_dropout`` and
  ``F.feature_alpha_dropout``, wherever they are made (a user's ``forward``, or torch's own code);
* the attention dropout of ``nn.MultiheadAttention`` (and so of ``nn.TransformerEncoderLayer`` and
  ``nn.TransformerDecoderLayer``), which torch drops in eval mode and on its fused inference fast path;
* the ATen entry points under them, however they were bound: ``torch.dropout``, ``torch.feature_dropout``,
  ``torch.alpha_dropout``, ``torch.feature_alpha_dropout``, their in-place forms (``torch.dropout_``...),
  ``torch.native_dropout``, and the same functions reached through ``torch._VF`` (which is how an
  ``F.dropout`` bound before the context, ``from torch.nn.functional import dropout``, reaches them);
* stochastic depth (drop path): ``torchvision.ops.StochasticDepth`` and timm's ``DropPath`` (recognised by
  class name and attributes: ``p`` and ``mode``, or ``drop_prob`` and ``scale_by_keep``), which read
  ``self.training`` and so return their input in eval mode: droplab draws their per-example (or per-batch)
  mask from the context's generator.

A module that looks like dropout but is none of these (its class name has ``Dropout``, ``DropPath``,
``DropBlock``, ``DropConnect`` or ``StochasticDepth`` in it, and it is not a droplab gate) and whose forward draws
no mask through the functions above is refused in the drawing modes with a ``ValueError`` that names it: droplab
does not know how it draws its mask (``bernoulli_`` on its own, when ``self.training``), and in eval mode it
would silently stay deterministic. Replace it with ``nn.Dropout`` or a droplab gate.

In ``sample`` (and ``record``) mode masks are drawn from the context's generator whatever the call's
``training`` argument says; in ``expect`` and ``off`` mode the call returns the eval output (its input, the
mean of inverted dropout); in ``replay`` mode the given masks are used. The model's ``training`` flag is never
read or changed, so BatchNorm and other modules keep their eval behaviour. Outside a context, or for another
model, torch's functions run unchanged.

How: while at least one context is open, the six functions, ``F.multi_head_attention_forward`` and
``F.scaled_dot_product_attention`` are replaced in ``torch.nn.functional`` by wrappers that pass straight to
torch unless the call comes from inside the forward of a model with an open context (forward hooks on the
model's modules keep that stack), and MHA's fast path is disabled so that attention runs through them.
``torch.dropout`` and its kin are replaced in ``torch`` and ``torch._VF`` the same way. A builtin bound before
the context from ``torch._C._VariableFunctions`` itself (``from torch import dropout`` at import time) cannot be
replaced (the attribute is read-only); it is the one way round droplab.

Noise names (the keys of ``record`` and ``replay``): the module's qualified name for a dropout module, else
``"<module>:<function>#<i>"`` for the i-th such call in one forward of the module that made it
(``"model"`` for the top-level module), e.g. ``"encoder.layers.0.self_attn:scaled_dot_product_attention#0"``.
A module called again in the same forward of the model (``self.d(self.a(self.d(x)))``) gets ``#<k>`` for its
k-th call after the first: ``"d"``, then ``"d#1"``; ``"block:dropout#0"``, then ``"block#1:dropout#0"``.
"""

from __future__ import annotations

import inspect
import math
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .gates import bernoulli_noise

__all__ = ["TORCH_DROPOUT_FUNCTIONS", "TORCH_DROPOUT_MODULES", "intercept", "torch_dropout_modules"]

TORCH_DROPOUT_FUNCTIONS = ("dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
                           "feature_alpha_dropout")
TORCH_DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                         nn.FeatureAlphaDropout)
_ALPHA = 1.7580993408473766  # -SELU's lower limit, as torch's alpha_dropout (ATen Dropout.cpp)
_DRAWING = ("sample", "replay")


def torch_dropout_modules(model: nn.Module) -> dict[str, nn.Module]:
    """torch's dropout modules (and the stochastic depth modules droplab samples) inside ``model``, by qualified
    name."""
    return {name: m for name, m in model.named_modules()
            if isinstance(m, TORCH_DROPOUT_MODULES) or _stochastic_depth(m) is not None}


@dataclass
class _Session:
    """One open context on one model: its mode and where its masks come from and go."""

    mode: str
    generator: torch.Generator | None = None
    replay: Mapping[str, Tensor] | None = None
    sink: dict[str, Tensor] | None = None
    draws: int = 0  # masks drawn or replayed (Monte Carlo checks that the model drew any)
    visits: dict[str, int] = field(default_factory=dict)  # calls of each module in the current forward
    leaf_bytes: int = 0  # bytes of the outputs of leaf modules (Monte Carlo sizes its chunks from it)
    functional: dict[str, set[float]] = field(default_factory=dict)  # module -> rates of its own drawing calls


@dataclass
class _Frame:
    session: _Session
    name: str
    module: nn.Module
    visit: int = 0  # this module's how-many-th call in the current forward of the model (0: the first)
    calls: dict[str, int] = field(default_factory=dict)

    def key(self, function: str) -> str:
        i = self.calls.get(function, 0)
        self.calls[function] = i + 1
        base = self.name if self.visit == 0 else f"{self.name or 'model'}#{self.visit}"
        if i == 0 and (isinstance(self.module, TORCH_DROPOUT_MODULES) or _stochastic_depth(self.module) is not None):
            return base
        return f"{base or 'model'}:{function}#{i}"


_local = threading.local()  # .stack: the frames of the forwards running on this thread, innermost last
_lock = threading.Lock()
_installed: dict[str, Callable[..., Any]] = {}  # function name -> torch's original, while patched
_installed_aten: dict[str, Callable[..., Any]] = {}  # the same for torch.dropout & co. (and torch._VF's)
_open = 0
_fastpath: bool | None = None


def _stack() -> list[_Frame]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def _bind(original: Callable[..., Any], args: tuple, kwargs: dict) -> inspect.BoundArguments:
    bound = inspect.signature(original).bind(*args, **kwargs)
    bound.apply_defaults()
    return bound


def _mask_shape(function: str, x: Tensor) -> tuple[int, ...]:
    """One draw per element, or per example and channel for the feature (channel) variants, as torch does."""
    if function in ("dropout", "alpha_dropout"):
        return tuple(x.shape)
    batched = {"dropout1d": 3, "dropout2d": 4, "dropout3d": 5}.get(function)
    if function == "feature_alpha_dropout" or batched is None:
        channel_dims = 2
    elif function == "dropout2d" and x.dim() == 3:
        channel_dims = 2  # torch reads a 3-D input to dropout2d as (N, C, L), with a warning
    else:
        channel_dims = 2 if x.dim() == batched else 1
    if x.dim() < channel_dims:
        raise ValueError(f"F.{function} needs an input with a channel dimension, got shape {tuple(x.shape)}")
    return tuple(x.shape[:channel_dims]) + (1,) * (x.dim() - channel_dims)


def _noise(frame: _Frame, function: str, shape: tuple[int, ...], keep: float, like: Tensor) -> Tensor:
    session = frame.session
    key = frame.key(function)
    if session.mode == "replay":
        noise = (session.replay or {}).get(key)
        if noise is None:
            raise ValueError(f"replay mode has no mask for torch dropout {key!r}; pass it in the mapping given to "
                             "droplab.modes.replay (droplab.modes.record yields one)")
        if tuple(noise.shape) != shape:
            raise ValueError(f"replayed mask for {key!r} has shape {tuple(noise.shape)}, this call needs {shape}")
        if not bool(((noise == 0) | (noise == 1)).all()):
            raise ValueError(f"replayed mask for {key!r} holds values other than 0 and 1; a Bernoulli mask is "
                             "0 (dropped) or 1 (kept)")
        noise = noise.to(device=like.device, dtype=like.dtype)
    else:
        generator = session.generator
        device = like.device if generator is None else generator.device
        noise = bernoulli_noise(shape, keep, generator=generator, dtype=like.dtype, device=device).to(like.device)
    session.draws += 1
    if frame.module is not None and not isinstance(frame.module, TORCH_DROPOUT_MODULES):
        session.functional.setdefault(frame.name, set()).add(round(1.0 - keep, 9))
    if session.sink is not None:
        session.sink[key] = noise
    return noise


def _dropout_wrapper(function: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack = _stack()
        if not stack:
            return original(*args, **kwargs)
        frame = stack[-1]
        bound = _bind(original, args, kwargs)
        x, p = bound.arguments["input"], float(bound.arguments["p"])
        if not 0.0 <= p <= 1.0:
            return original(*args, **kwargs)  # torch's own error
        if frame.session.mode not in _DRAWING or p == 0.0:
            return x  # the eval output: inverted dropout's mean (and alpha dropout's at standardized inputs)
        noise = _noise(frame, function, _mask_shape(function, x), 1.0 - p, x)
        return _gate(x, noise, p, "alpha" in function, inplace=False)
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__doc__ = original.__doc__
    return wrapper


# ATen's dropout functions (torch.dropout, torch._VF.dropout, ...): (input, p, train) -> output
ATEN_DROPOUT_FUNCTIONS = ("dropout", "dropout_", "feature_dropout", "feature_dropout_", "alpha_dropout",
                          "alpha_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_", "native_dropout")


def _gate(x: Tensor, noise: Tensor, p: float, alpha: bool, inplace: bool) -> Tensor:
    """Inverted dropout (or alpha dropout, torch's affine form) of ``x`` with the 0/1 ``noise``."""
    keep = 1.0 - p
    if not alpha:
        if keep == 0:
            return x.zero_() if inplace else x * 0.0
        return x.mul_(noise).div_(keep) if inplace else torch.mul(x, noise).div_(keep)
    a = 1.0 / math.sqrt((_ALPHA * _ALPHA * p + 1) * keep)
    b = (noise - 1) * (_ALPHA * a) + _ALPHA * a * p
    return x.mul_(noise * a).add_(b) if inplace else x * (noise * a) + b


def _aten_wrapper(function: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """torch.<function>(input, p, train) answered by droplab inside a model with an open context."""
    base = function.rstrip("_")
    alpha, feature, inplace = "alpha" in base, base.startswith("feature"), function.endswith("_")

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack = _stack()
        if not stack:
            return original(*args, **kwargs)
        names = ("input", "p", "train")
        bound = dict(zip(names, args, strict=False)) | kwargs
        if set(bound) != set(names):
            return original(*args, **kwargs)  # torch's own error for a call it would not take
        x, p = bound["input"], float(bound["p"])
        frame = stack[-1]
        if not 0.0 <= p <= 1.0 or not isinstance(x, Tensor):
            return original(*args, **kwargs)
        if frame.session.mode not in _DRAWING or p == 0.0:
            out, noise = x, None  # the eval output, as the module functions give it
        else:
            if feature and x.dim() < 2:
                raise ValueError(f"torch.{function} needs an input with a channel dimension, got shape "
                                 f"{tuple(x.shape)}")
            shape = tuple(x.shape[:2]) + (1,) * (x.dim() - 2) if feature else tuple(x.shape)
            noise = _noise(frame, base, shape, 1.0 - p, x)
            out = _gate(x, noise, p, alpha, inplace)
        if function != "native_dropout":
            return out
        mask = torch.ones_like(x, dtype=torch.bool) if noise is None else noise.expand_as(x).bool()
        return out, mask
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__doc__ = original.__doc__
    return wrapper


# stochastic depth: (class name, rate attribute, how the mask is shaped, whether the kept rows are scaled)
def _stochastic_depth(module: nn.Module) -> tuple[float, bool, bool] | None:
    """(drop rate, one draw per example (else one per batch), scaled by 1/keep) of torchvision's
    ``StochasticDepth``, timm's ``DropPath`` or a transformers ``<Model>DropPath``; None for any other module."""
    kind = type(module).__name__
    if kind == "StochasticDepth" and hasattr(module, "p") and getattr(module, "mode", None) in ("row", "batch"):
        return float(module.p), module.mode == "row", True
    if kind.endswith("DropPath") and hasattr(module, "drop_prob"):  # timm's, and transformers' <Model>DropPath
        return float(module.drop_prob or 0.0), True, bool(getattr(module, "scale_by_keep", True))
    return None


_LOOKS_LIKE_DROPOUT = ("dropout", "droppath", "dropblock", "dropconnect", "stochasticdepth")


def unknown_dropout_modules(model: nn.Module) -> dict[str, str]:
    """Modules of ``model`` whose class name says dropout but that droplab cannot sample: not torch's dropout
    modules, not stochastic depth droplab knows, not a droplab gate. By qualified name: the class name."""
    out = {}
    for name, module in model.named_modules():
        kind = type(module).__name__
        if (isinstance(module, TORCH_DROPOUT_MODULES) or _stochastic_depth(module) is not None
                or type(module).__module__.startswith("droplab.")):
            continue
        if any(word in kind.lower() for word in _LOOKS_LIKE_DROPOUT):
            out[name or "model"] = f"{type(module).__module__}.{kind}"
    return out


def _mha_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack = _stack()
        if not stack:
            return original(*args, **kwargs)
        bound = _bind(original, args, kwargs)
        bound.arguments["training"] = stack[-1].session.mode in _DRAWING  # eval otherwise, whatever the flag
        return original(*bound.args, **bound.kwargs)
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    return wrapper


def _sdpa_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    """Scaled dot-product attention with droplab's mask on the attention weights (torch's reference code)."""
    def wrapper(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> Tensor:
        stack = _stack()
        if not stack or dropout_p == 0.0:
            return original(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
        frame = stack[-1]
        if frame.session.mode not in _DRAWING:
            return original(query, key, value, attn_mask, 0.0, is_causal, scale=scale, enable_gqa=enable_gqa)
        length, source = query.size(-2), key.size(-2)
        factor = 1 / math.sqrt(query.size(-1)) if scale is None else scale
        bias = torch.zeros(length, source, dtype=query.dtype, device=query.device)
        if is_causal:
            causal = torch.ones(length, source, dtype=torch.bool, device=query.device).tril()
            bias = bias.masked_fill(~causal, float("-inf"))
        if attn_mask is not None:
            bias = bias.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else attn_mask + bias
        if enable_gqa:
            key = key.repeat_interleave(query.size(-3) // key.size(-3), -3)
            value = value.repeat_interleave(query.size(-3) // value.size(-3), -3)
        weights = torch.softmax(query @ key.transpose(-2, -1) * factor + bias, dim=-1)
        keep = 1.0 - dropout_p
        noise = _noise(frame, "scaled_dot_product_attention", tuple(weights.shape), keep, weights)
        return (torch.mul(weights, noise).div_(keep) if keep > 0 else weights * 0.0) @ value
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    return wrapper


def _eager_only(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run eagerly even inside a graph torch.compile traces (a graph break), so that a model compiled
    while a context is open calls droplab's wrappers and hooks at run time, and no graph bakes a mask in.
    Only where torch's compiler has been imported: otherwise nothing can be compiling."""
    if "torch._dynamo" not in sys.modules:
        return fn
    return sys.modules["torch._dynamo"].disable(fn)


def _patch() -> None:
    global _open, _fastpath
    with _lock:
        _open += 1
        if _open > 1:
            return
        for function in TORCH_DROPOUT_FUNCTIONS:
            _installed[function] = getattr(F, function)
            setattr(F, function, _eager_only(_dropout_wrapper(function, _installed[function])))
        _installed["multi_head_attention_forward"] = F.multi_head_attention_forward
        F.multi_head_attention_forward = _eager_only(_mha_wrapper(_installed["multi_head_attention_forward"]))
        _installed["scaled_dot_product_attention"] = F.scaled_dot_product_attention
        F.scaled_dot_product_attention = _eager_only(_sdpa_wrapper(_installed["scaled_dot_product_attention"]))
        for function in ATEN_DROPOUT_FUNCTIONS:  # torch.dropout & co., and torch._VF's (what F.dropout calls)
            original = getattr(torch._C._VariableFunctions, function)
            _installed_aten[function] = original
            wrapped = _eager_only(_aten_wrapper(function, original))
            setattr(torch, function, wrapped)
            setattr(torch._VF, function, wrapped)
        _fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)  # the fused inference path skips dropout altogether


def _unpatch() -> None:
    global _open
    with _lock:
        _open -= 1
        if _open > 0:
            return
        for function, original in _installed.items():
            setattr(F, function, original)
        _installed.clear()
        for function, original in _installed_aten.items():
            setattr(torch, function, original)
            delattr(torch._VF, function)  # back to torch._VF's own lookup
        _installed_aten.clear()
        if _fastpath is not None:
            torch.backends.mha.set_fastpath_enabled(_fastpath)


def _check_called(idle: dict[str, nn.Module], visits: dict[str, int], modules: dict[str, nn.Module],
                  functional: dict[str, set[float]] | None = None) -> None:
    """Refuse a forward that never called some of the model's dropout modules while their owners were in eval:
    an owner that reads the module's rate only when training (``dropout=0.0 if not self.training else
    self.dropout.p``, as Hugging Face attention does) passed 0 in eval, so that dropout stayed deterministic.
    An owner that drew at the module's rate itself (``F.dropout(x, self.drop.p)``: ``functional``, the rates of
    each module's own drawing calls) used the rate, not the module: nothing was left out."""
    unused = []
    functional = functional or {}
    for name in idle:
        owner = name.rsplit(".", 1)[0] if "." in name else ""
        if round(float(idle[name].p), 9) in functional.get(owner, set()):
            continue
        if name not in visits and not modules[owner].training:
            unused.append((name, owner or "model", type(modules[owner]).__name__, float(idle[name].p)))
    if unused:
        listed = "; ".join(f"{name} (p={p:g}, in {owner}, a {kind})" for name, owner, kind, p in unused)
        first = unused[0][1]
        raise ValueError(
            f"droplab cannot sample {listed}: this forward never called {'it' if len(unused) == 1 else 'them'}. "
            "Its owner reads the rate only when training and passes 0 in eval (Hugging Face attention does: "
            "dropout=0.0 if not self.training else self.dropout.p), so with the model in eval that dropout stays "
            f"deterministic. To sample it, set the owner's own flag: model.get_submodule({first!r}).training = True "
            "(that module only; droplab keeps everything else, BatchNorm included, as it is). For a module the "
            "model never uses, the flag changes nothing")


class _Suspects:
    """The modules that look like dropout but are not torch's: each forward of one must draw through torch's
    dropout functions, else it is refused by name (left alone it would stay deterministic in eval mode)."""

    def __init__(self, session: _Session, names: dict[str, str]) -> None:
        self.session, self.names = session, names
        self.draws_before: dict[str, list[int]] = {}

    def enter(self, name: str) -> None:
        self.draws_before.setdefault(name, []).append(self.session.draws)

    def leave(self, name: str) -> None:
        if self.session.draws == self.draws_before[name].pop():
            raise ValueError(
                f"droplab cannot sample {name} ({self.names[name]}): it looks like dropout, but its forward drew no "
                "mask through torch's dropout functions, so droplab does not know how it draws one, and with the "
                "model in eval mode it stayed deterministic. Replace it with nn.Dropout (or F.dropout in its "
                "forward) or a droplab gate")


def _stochastic_depth_output(session: _Session, name: str, module: nn.Module, args: Any) -> Any:
    """A stochastic-depth module's sampled output (its per-example or whole-batch keep mask drawn by droplab),
    or None where it returned its input (eval, rate 0)."""
    rate, per_example, scaled = _stochastic_depth(module)  # type: ignore[misc]
    if session.mode not in _DRAWING or rate == 0.0 or not args or not isinstance(args[0], Tensor):
        return None  # eval: the module returned its input
    x = args[0]
    frame = _Frame(session, name, module, session.visits.get(name, 1) - 1)
    shape = (x.shape[0],) + (1,) * (x.dim() - 1) if per_example else (1,) * x.dim()
    noise = _noise(frame, "stochastic_depth", shape, 1.0 - rate, x)
    return x * noise / (1.0 - rate) if scaled and rate < 1.0 else x * noise


@contextmanager
def intercept(model: nn.Module, mode: str, *, generator: torch.Generator | None = None,
              replay: Mapping[str, Tensor] | None = None,
              sink: dict[str, Tensor] | None = None) -> Iterator[_Session]:
    """Answer the torch dropout calls made inside ``model``'s forward in droplab's ``mode`` (see the module doc)."""
    session = _Session(mode, generator, replay, sink)
    handles = []

    def enter(name: str, module: nn.Module, _args: Any) -> None:
        if module is model:  # a new forward of the model: every module's calls are counted afresh
            session.visits.clear()
            session.functional.clear()
        visit = session.visits.get(name, 0)
        session.visits[name] = visit + 1
        _stack().append(_Frame(session, name, module, visit))

    def leave(name: str, module: nn.Module, _args: Any, output: Any) -> None:
        stack = _stack()
        for i in range(len(stack) - 1, -1, -1):  # this session's frame (an outer session's hooks run first)
            if stack[i].session is session and stack[i].module is module:
                del stack[i]
                break
        if isinstance(output, Tensor) and not any(True for _ in module.children()):
            session.leaf_bytes += output.numel() * output.element_size()
        if module is model and idle and sys.exc_info()[0] is None:
            _check_called(idle, session.visits, modules, session.functional)

    # torch dropout modules with p > 0 whose owner is in eval: each must be called in a drawing forward
    modules = dict(model.named_modules())
    idle = {name: m for name, m in modules.items() if mode in _DRAWING and isinstance(m, TORCH_DROPOUT_MODULES)
            and float(m.p) > 0}

    suspects = _Suspects(session, unknown_dropout_modules(model) if mode in _DRAWING else {})

    _patch()
    enter_, leave_ = _eager_only(enter), _eager_only(leave)
    depth_ = _eager_only(lambda name, m, a, o: _stochastic_depth_output(session, name, m, a))
    suspect_enter_, suspect_leave_ = _eager_only(suspects.enter), _eager_only(suspects.leave)
    try:
        for name, module in model.named_modules():
            if (name or "model") in suspects.names:
                handles.append(module.register_forward_pre_hook(
                    lambda m, a, name=name or "model": suspect_enter_(name)))
                handles.append(module.register_forward_hook(
                    lambda m, a, o, name=name or "model": suspect_leave_(name)))
            if _stochastic_depth(module) is not None:
                handles.append(module.register_forward_hook(lambda m, a, o, name=name: depth_(name, m, a, o)))
            handles.append(module.register_forward_pre_hook(lambda m, a, name=name: enter_(name, m, a)))
            handles.append(module.register_forward_hook(lambda m, a, o, name=name: leave_(name, m, a, o),
                                                        always_call=True))
        yield session
    finally:
        for handle in handles:
            handle.remove()
        # a forward stopped by a BaseException (Ctrl-C: torch runs always_call hooks for Exceptions only) leaves
        # this session's frames on the thread; without them gone, a later context would sample unrelated models
        _local.stack = [frame for frame in _stack() if frame.session is not session]
        _unpatch()
