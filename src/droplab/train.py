"""Training: minibatch SGD with a momentum schedule, learning-rate decay, max-norm, L2 and early stopping.

Every epoch appends one JSON line to ``metrics.jsonl`` (losses, train/validation/test error, learning rate,
momentum, seconds) and writes ``last.safetensors`` (everything needed to resume: weights, momentum
buffers, the states of both random generators, the early-stopping counters); ``best.safetensors`` holds
the weights with the lowest validation error. ``fit(..., resume=True)`` continues an interrupted run and
reaches the same weights as an uninterrupted one.

Randomness is explicit: the shuffling generator (CPU) and the dropout generator (on the device) are both
seeded from ``TrainConfig.seed``; weight initialisation is seeded by ``build_model``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import _interrupt, host, modes, threads
from .checkpoint import atomic_write_text, load_checkpoint_file, remove_stale_temporaries, save_checkpoint_file
from .config import ModelConfig
from .data import Dataset
from .net import DropoutMLP

__all__ = ["Diverged", "FitResult", "TrainConfig", "Trainer", "build_model", "evaluate", "fit", "load_model",
           "resolve_device", "resolve_precision", "run"]

LOSSES = ("cross_entropy", "squared")
OPTIMIZERS = ("sgd", "adam")
LR_SCHEDULES = ("exponential", "cosine")
PRECISIONS = ("auto", "float32", "bfloat16")  # of the training steps' products


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of ``fit``. Momentum rises linearly from ``momentum_start`` to ``momentum_end`` over
    ``momentum_epochs`` epochs; the learning rate is ``lr * lr_decay ** epoch`` (``lr_schedule="exponential"``) or
    ``lr * lr_decay ** epoch * (1 + cos(pi * epoch / epochs)) / 2`` (``"cosine"``: annealed towards zero by the last
    epoch, so that the weights settle before training ends).

    Attributes:
        epochs: Training epochs.
        batch_size: Examples per step.
        lr: The learning rate of the first epoch.
        lr_decay: The learning-rate factor per epoch, in (0, 1].
        lr_schedule: ``"exponential"`` or ``"cosine"``.
        momentum_start: The momentum (Adam's beta1) of the first epoch.
        momentum_end: The momentum after ``momentum_epochs``.
        momentum_epochs: Epochs over which the momentum rises linearly.
        max_norm: The largest L2 norm of a unit's incoming weights (None: no constraint).
        l2: L2 weight decay.
        patience: Stop after this many epochs without a better validation error (None: never).
        loss: ``"cross_entropy"`` or ``"squared"``.
        seed: The seed of the shuffling and of the dropout masks.
        optimizer: ``"sgd"`` (momentum SGD) or ``"adam"``.
        precision: The training steps' products: ``"auto"``, ``"float32"`` or ``"bfloat16"``.
    """

    epochs: int = field(default=50, metadata={"help": "training epochs", "kind": "int"})
    batch_size: int = field(default=100, metadata={"help": "examples per step", "kind": "int"})
    lr: float = field(default=0.1, metadata={"help": "learning rate of the first epoch", "kind": "float"})
    lr_decay: float = field(default=1.0, metadata={"help": "learning-rate factor per epoch, in (0, 1]",
                                                   "kind": "float"})
    lr_schedule: str = field(default="exponential", metadata={
        "help": "exponential (lr * lr_decay^epoch) or cosine (that, times (1 + cos(pi epoch / epochs)) / 2)",
        "choices": LR_SCHEDULES})
    momentum_start: float = field(default=0.5, metadata={"help": "momentum of the first epoch", "kind": "float"})
    momentum_end: float = field(default=0.99, metadata={"help": "momentum after momentum_epochs", "kind": "float"})
    momentum_epochs: int = field(default=10, metadata={"help": "epochs over which momentum rises linearly",
                                                       "kind": "int"})
    max_norm: float | None = field(default=None, metadata={
        "help": "largest L2 norm of a unit's incoming weights (none: no constraint)", "kind": "float"})
    l2: float = field(default=0.0, metadata={"help": "L2 weight decay", "kind": "float"})
    patience: int | None = field(default=None, metadata={
        "help": "stop after this many epochs without a better validation error (none: never)", "kind": "int"})
    loss: str = field(default="cross_entropy", metadata={"help": "training loss", "choices": ("cross_entropy",
                                                                                              "squared")})
    seed: int = field(default=0, metadata={"help": "seed of the weights, the split and the masks", "kind": "int"})
    optimizer: str = field(default="sgd", metadata={
        "help": "sgd (momentum SGD) or adam (Adam; its beta1 follows the momentum schedule, beta2 0.999): from small "
                "weights, deep logistic networks sit at chance for many epochs under SGD, not under Adam",
        "choices": OPTIMIZERS})
    precision: str = field(default="auto", metadata={
        "help": "products of the training steps: auto (bfloat16 where this host runs the network's products at "
                "least 1.25x faster in it, else float32; see droplab.host), float32, or bfloat16 on the matrix "
                "engine (weights kept in bfloat16 between products, float32 master weights, optimizer state and "
                "elementwise work)",
        "choices": PRECISIONS})

    def __post_init__(self) -> None:
        _positive_int(self.epochs, "epochs")
        _positive_int(self.batch_size, "batch_size")
        _positive_int(self.momentum_epochs, "momentum_epochs")
        if not (_number(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (_number(self.lr_decay) and 0 < self.lr_decay <= 1):
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        for name in ("momentum_start", "momentum_end"):
            value = getattr(self, name)
            if not (_number(value) and 0 <= value < 1):
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.max_norm is not None and not (_number(self.max_norm) and self.max_norm > 0):
            raise ValueError(f"max_norm must be a positive finite number or None, got {self.max_norm!r}")
        if not (_number(self.l2) and self.l2 >= 0):
            raise ValueError(f"l2 must be a non-negative finite number, got {self.l2!r}")
        if self.patience is not None:
            _positive_int(self.patience, "patience")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed < 2**63 - 1:
            raise ValueError(f"seed must be an integer in [0, 2^63 - 1), got {self.seed!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def momentum(self, epoch: int) -> float:
        frac = min(1.0, epoch / self.momentum_epochs)
        return self.momentum_start + frac * (self.momentum_end - self.momentum_start)

    def learning_rate(self, epoch: int) -> float:
        rate = self.lr * self.lr_decay ** epoch
        if self.lr_schedule == "cosine":
            rate *= 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        return rate

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _number(value: Any) -> bool:
    """A finite int or float, not a bool (True would read as 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: Any, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class Diverged(ValueError):
    """Training stopped because the training loss was not finite (a ``ValueError`` that says what to lower)."""


@dataclass
class FitResult:
    """What ``fit`` returns: the trained model (weights of the best validation epoch) and its history.

    Attributes:
        model: The trained model, holding the weights of the best validation epoch.
        history: One row of ``metrics.jsonl`` per epoch.
        best_epoch: The epoch of the lowest validation error (1-based).
        best_val_error: That error (inf without a validation set).
        test_error: The test error of the best weights; None when the dataset has no test examples.
        precision: The training steps' products (``"auto"`` resolved).
    """

    model: DropoutMLP
    history: list[dict[str, Any]]
    best_epoch: int
    best_val_error: float
    test_error: float | None  # None when the dataset has no test examples
    precision: str = "float32"  # the training steps' products ("auto" resolved)


def resolve_device(device: str | torch.device) -> torch.device:
    """``cpu``, ``cuda`` (or ``cuda:N``) or ``auto`` (CUDA when available).

    Args:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` or a ``torch.device``.

    Returns:
        torch.device: The device.

    Raises:
        ValueError: CUDA asked for where it is not available, or an unknown name.
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {name!r}") from None
    if dev.type not in ("cpu", "cuda"):  # mps, meta, xpu...: droplab's kernels and generators are CPU or CUDA
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {name!r}; droplab runs on CPU or CUDA")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return dev


def build_model(model_config: ModelConfig, *, seed: int) -> DropoutMLP:
    """Build a DropoutMLP from a ``ModelConfig`` with weights initialised from ``seed`` (independently of the global
    RNG).

    Args:
        model_config: The network (``ModelConfig(sizes=..., keep=...)``; a preset's is ``presets.preset(name).model``).
        seed: The weights' seed.

    Returns:
        DropoutMLP: The network, in training mode.

    Raises:
        TypeError: Anything but a ``ModelConfig`` (a dict of its fields is refused: build it with
            ``ModelConfig(**fields)``, which checks them).
    """
    if isinstance(model_config, dict):
        raise TypeError(f"build_model takes a ModelConfig, got a dict ({sorted(model_config)}); build one with "
                        "droplab.ModelConfig(**fields), which checks each field")
    if not isinstance(model_config, ModelConfig):
        raise TypeError(f"model_config must be a droplab.ModelConfig, got {type(model_config).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DropoutMLP.from_config(model_config.as_dict())


# ----------------------------------------------------------------------------------------------------
def _loss(model: DropoutMLP, logits: Tensor, y: Tensor, loss: str) -> Tensor:
    if loss == "cross_entropy":
        if model.output_name != "softmax":
            raise ValueError(f"loss 'cross_entropy' needs output='softmax', the model has {model.output_name!r}")
        return F.cross_entropy(logits, y)
    out = model.transfers[-1](logits)
    target = F.one_hot(y, out.shape[1]).to(out.dtype) if y.dtype == torch.int64 else y
    return 0.5 * (out - target).square().sum(1).mean()  # E = 1/2 sum_i (t_i - O_i)^2, batch mean


def _batches(x: Tensor, y: Tensor, size: int) -> Iterator[tuple[Tensor, Tensor]]:
    for start in range(0, len(x), size):
        yield x[start:start + size], y[start:start + size]


@torch.no_grad()
def evaluate(model: DropoutMLP, x: Tensor, y: Tensor, *, loss: str = "cross_entropy",
             chunk: int = 8192) -> tuple[float, float]:
    """(loss, error) of the weight-scaled network (``expect`` mode). Error: % misclassified, or MSE.

    Args:
        model: A ``DropoutMLP``.
        x: Inputs, (B, n_0).
        y: Class labels (B,) or regression targets.
        loss: ``"cross_entropy"`` or ``"squared"``, as it was trained.
        chunk: Inputs per forward.

    Returns:
        tuple[float, float]: The mean loss and the error (percent misclassified, or the MSE).
    """
    total_loss, wrong, n = 0.0, 0.0, len(x)
    if n == 0:
        raise ValueError("evaluate needs at least one example, got an empty x (0 rows); pass the examples to score")
    with modes.expect(model):
        for xb, yb in _batches(x, y, chunk):
            logits = model(xb)
            total_loss += float(_loss(model, logits, yb, loss)) * len(xb)
            if yb.dtype == torch.int64:
                wrong += float((logits.argmax(1) != yb).sum())
            else:
                wrong += float((model.transfers[-1](logits) - yb).square().mean(1).sum())
    error = 100.0 * wrong / n if y.dtype == torch.int64 else wrong / n
    return total_loss / n, error


# ----------------------------------------------------------------------------------------------------
class _State:
    """Everything that changes during training and must survive a resume."""

    def __init__(self, model: DropoutMLP, config: TrainConfig, device: torch.device) -> None:
        self.model = model
        decay = [p for n, p in model.named_parameters() if n.endswith("weight")]
        other = [p for n, p in model.named_parameters() if not n.endswith("weight")]
        groups = [{"params": decay, "weight_decay": config.l2}, {"params": other, "weight_decay": 0.0}]
        self.optimizer: torch.optim.Optimizer
        if config.optimizer == "adam":  # L2 as weight decay added to the gradient, as SGD's (not AdamW's)
            self.optimizer = torch.optim.Adam(groups, lr=config.lr, betas=(config.momentum_start, 0.999),
                                              fused=True)  # one kernel per step: 6x faster than foreach here
        else:
            # fused: one kernel per step instead of three passes per parameter (2.15 against 3.48 ms a step for the
            # paper network's 5.3 million weights on the 2-core CPU), the same bits as the for-loop (checked)
            self.optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum_start, fused=True)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.noise = torch.Generator(device=device).manual_seed(config.seed + 1)
        self.epoch = 0  # epochs completed
        self.best_val, self.best_epoch, self.bad_epochs = math.inf, 0, 0
        self.best_weights: dict[str, Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def tensors(self) -> dict[str, Tensor]:
        out = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        out.update({f"best.{k}": v for k, v in self.best_weights.items()})
        names = {id(p): n for n, p in self.model.named_parameters()}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                for slot, buf in self.optimizer.state.get(p, {}).items():
                    if slot == "momentum_buffer":  # (the name of SGD's slot before Adam was added)
                        out[f"optim.{names[id(p)]}"] = buf
                    elif isinstance(buf, Tensor):
                        out[f"optim_{slot}.{names[id(p)]}"] = buf
        out["rng.shuffle"] = self.shuffle.get_state()
        out["rng.noise"] = self.noise.get_state()
        return out

    def counters(self) -> dict[str, Any]:
        return dict(epoch=self.epoch, best_val_error=self.best_val, best_epoch=self.best_epoch,
                    bad_epochs=self.bad_epochs)

    def restore(self, tensors: dict[str, Tensor], counters: dict[str, Any], device: torch.device) -> None:
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        self.best_weights = {k[5:]: v.to(device) for k, v in tensors.items() if k.startswith("best.")}
        params = dict(self.model.named_parameters())
        for key, value in tensors.items():
            if key.startswith("optim."):
                self.optimizer.state[params[key[6:]]]["momentum_buffer"] = value.to(device)
            elif key.startswith("optim_"):  # Adam's slots: step, exp_avg, exp_avg_sq
                slot, name = key[6:].split(".", 1)
                self.optimizer.state[params[name]][slot] = value if slot == "step" else value.to(device)
        self.shuffle.set_state(tensors["rng.shuffle"])
        self.noise.set_state(tensors["rng.noise"])
        self.epoch, self.best_val = counters["epoch"], counters["best_val_error"]
        self.best_epoch, self.bad_epochs = counters["best_epoch"], counters["bad_epochs"]


class _LowPrecisionLinear(torch.autograd.Function):
    """S = O W^T + b with O and W in bfloat16 (the matrix engine) and S, dO, dW, db in float32: the three
    products of a linear layer's step (forward, input gradient, weight gradient) in bfloat16, the master weight
    and its gradient in float32."""

    @staticmethod
    def forward(ctx: Any, o: Tensor, weight: Tensor, bias: Tensor | None, w16: Tensor) -> Tensor:
        o16 = o.to(torch.bfloat16)
        ctx.save_for_backward(o16, w16)
        ctx.has_bias = bias is not None
        s = torch.mm(o16, w16.T)
        return s.float() if bias is None else torch.add(s, bias)  # bf16 + f32: one pass into float32

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        o16, w16 = ctx.saved_tensors
        g16 = grad.to(torch.bfloat16)
        grad_o = torch.mm(g16, w16).float() if ctx.needs_input_grad[0] else None
        grad_w = torch.mm(g16.T, o16).float() if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_o, grad_w, grad_b, None


class _Precision:
    """Trains the plain linear layers' products in bfloat16 (connection-dropout layers stay in float32): each
    layer's weight is cast to bfloat16 once per optimizer step. The copies are held here, not on the user's
    modules, and made again after ``refresh()``, which the training loop calls after every step: a weight's
    version counter cannot tell (torch's fused Adam updates weights without bumping it)."""

    def __init__(self, model: DropoutMLP, precision: str) -> None:
        self.layers = [m for m in model.linears if type(m) is nn.Linear] if precision == "bfloat16" else []
        self.copies: dict[int, Tensor] = {}

    def weight(self, index: int) -> Tensor:
        w16 = self.copies.get(index)
        if w16 is None:
            w16 = self.copies[index] = self.layers[index].weight.detach().to(torch.bfloat16)
        return w16

    def refresh(self) -> None:
        self.copies.clear()

    def __enter__(self) -> _Precision:
        for i, linear in enumerate(self.layers):
            linear.forward = (lambda o, linear=linear, i=i: _LowPrecisionLinear.apply(  # type: ignore[method-assign]
                o, linear.weight, linear.bias, self.weight(i)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for linear in self.layers:
            del linear.forward
        self.copies.clear()


def _train_epoch(state: _State, data: Dataset, config: TrainConfig) -> float:
    model, opt = state.model, state.optimizer
    lr, momentum = config.learning_rate(state.epoch), config.momentum(state.epoch)
    for group in opt.param_groups:
        group["lr"] = lr
        if config.optimizer == "adam":
            group["betas"] = (momentum, group["betas"][1])
        else:
            group["momentum"] = momentum
    perm = torch.randperm(len(data.x_train), generator=state.shuffle).to(data.x_train.device)
    model.train()
    total, count = torch.zeros((), device=data.x_train.device), 0
    with modes.sample(model, generator=state.noise), _Precision(model, config.precision) as low:
        for start in range(0, len(perm), config.batch_size):
            threads.maybe_adapt()
            idx = perm[start:start + config.batch_size]
            loss = _loss(model, model(data.x_train[idx]), data.y_train[idx], config.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if config.max_norm is not None:
                model.max_norm_(config.max_norm)
            low.refresh()
            total += loss.detach() * len(idx)
            count += len(idx)
    model.eval()
    return float(total) / count


class Trainer:
    """The training step of ``fit`` without its epoch loop: the optimizer, its schedule and the precision, for code
    that times or drives epochs itself (``benchmarks/train_throughput.py``). ``fit`` is the way to train.

    Args:
        model: The ``DropoutMLP`` to train, on ``device``.
        config: Its ``TrainConfig``: optimizer, learning-rate and momentum schedules, batch size, max-norm, L2,
            precision.
        device: Where the model and the data are.
    """

    def __init__(self, model: DropoutMLP, config: TrainConfig, device: str | torch.device = "cpu") -> None:
        if not isinstance(model, DropoutMLP):
            raise TypeError(f"model must be a DropoutMLP, got {type(model).__name__}")
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config
        self._state = _State(model, config, resolve_device(device))

    @property
    def model(self) -> DropoutMLP:
        return self._state.model

    @property
    def epochs(self) -> int:
        """Epochs run so far (the schedules' position)."""
        return self._state.epoch

    def epoch(self, data: Dataset) -> float:
        """One epoch of minibatch steps over ``data``'s training split (shuffled from the config's seed), the
        schedules advanced by one epoch.

        Returns:
            float: The mean training loss of the epoch's steps.
        """
        loss = _train_epoch(self._state, data, self.config)
        self._state.epoch += 1
        return loss


def _check_fit_arguments(model: DropoutMLP, data: Dataset, config: TrainConfig) -> None:
    if not isinstance(model, DropoutMLP):
        raise TypeError(f"fit trains a droplab DropoutMLP, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}; build one with "
                        f"TrainConfig(**{config!r})" if isinstance(config, dict) else
                        f"config must be a TrainConfig, got {type(config).__name__}")
    if model.sizes[0] != data.input_size or model.sizes[-1] != data.output_size:
        raise ValueError(f"model sizes {model.sizes} do not fit {data.name}: it has {data.input_size} inputs and "
                         f"{data.output_size} outputs; set the first and last layer sizes to match")


def _resume(state: _State, out: Path | None, config: TrainConfig, device: torch.device) -> list[dict[str, Any]]:
    """Restores ``state`` from ``out``'s last checkpoint (the same settings, only more epochs); its history."""
    if out is None or not (out / "last.safetensors").is_file():
        raise ValueError(f"--resume needs an earlier run's last.safetensors in {out}; none found, drop --resume")
    tensors, saved = load_checkpoint_file(out / "last.safetensors")
    differ = _differences(saved, asdict(config), state.model.config())
    if differ:
        raise ValueError(f"cannot resume {out}: its checkpoint was made with {'; '.join(differ)}. Use the "
                         "same settings (only --epochs may grow), or a new --out")
    state.restore(tensors, saved["counters"], device)
    if state.epoch > config.epochs:
        raise ValueError(f"cannot resume {out} with epochs={config.epochs}: it has already trained "
                         f"{state.epoch} epochs; give --epochs {state.epoch + 1} or more to extend it")
    return _read_history(out / "metrics.jsonl", state.epoch)


def _end_epoch(state: _State, model: DropoutMLP, val_error: float | None, row: dict[str, Any], out: Path | None,
               record: dict[str, Any]) -> None:
    """Counts the epoch, keeps the best weights, and writes the metrics line and the checkpoints."""
    state.epoch += 1
    improved = val_error is None or val_error < state.best_val
    if improved:
        state.best_val = val_error if val_error is not None else math.inf
        state.best_epoch, state.bad_epochs = state.epoch, 0
        state.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    else:
        state.bad_epochs += 1
    if out is not None:
        _append_line(out / "metrics.jsonl", row)
        ckpt_meta = {**record, "counters": state.counters()}
        if improved:  # best before last: a kill between them leaves last one epoch behind, and resuming
            # redoes that epoch (and rewrites best); the other order could leave best behind for good
            save_checkpoint_file(out / "best.safetensors",
                                 {f"model.{k}": v for k, v in state.best_weights.items()}, ckpt_meta)
        save_checkpoint_file(out / "last.safetensors", state.tensors(), ckpt_meta)


def fit(model: DropoutMLP, data: Dataset, config: TrainConfig, *, out_dir: str | Path | None = None,
        resume: bool = False, progress: bool = True, device: str | torch.device = "cpu",
        meta: dict[str, Any] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None, monitor: bool = True) -> FitResult:
    """Train ``model`` on ``data``; see the module docstring for what is written to ``out_dir``.

    ``meta`` (JSON) is stored in every checkpoint, e.g. the dataset's name, so a checkpoint is self-contained.
    ``monitor=False`` evaluates only the validation set each epoch (what early stopping and the best epoch need):
    the per-epoch ``train_error`` and ``test_error`` are None, and the test error of the best weights is measured
    once at the end. It saves two of the three evaluation passes per epoch (a third of an epoch's time on the
    standard preset in bfloat16).

    Args:
        model: The ``DropoutMLP`` to train (trained in place).
        data: The dataset: its training split trains, its validation split picks the best epoch and early stopping.
        config: The ``TrainConfig``.
        out_dir: The run's folder (checkpoints, ``metrics.jsonl``), or None to write nothing.
        resume: Continue the run in ``out_dir`` from its ``last.safetensors``.
        progress: Show a progress bar.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        meta: JSON stored in every checkpoint.
        on_epoch: Called with each epoch's row.
        monitor: Also measure the training and test error every epoch.

    Returns:
        FitResult: The model with the best validation epoch's weights, and the history.

    Raises:
        Diverged: The training loss stopped being finite.
        ValueError: A resume whose settings differ from the checkpoint's, or data the network does not fit.
    """
    _check_fit_arguments(model, data, config)
    device = resolve_device(device)
    model.to(device)
    data = data.to(device)
    out = Path(out_dir) if out_dir is not None else None
    config = resolve_precision(config, model, device, out if resume else None)
    state = _State(model, config, device)
    history: list[dict[str, Any]] = []
    if resume:
        history = _resume(state, out, config, device)
    record = {"model": model.config(), "train": asdict(config), **(meta or {})}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # what a killed run left half-written
        atomic_write_text(out / "config.json", json.dumps(record, indent=2) + "\n")
        atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))
    bar = _progress(config.epochs, state.epoch, progress)
    while state.epoch < config.epochs:
        t0 = time.perf_counter()
        train_loss = _train_epoch(state, data, config)
        if not math.isfinite(train_loss):
            raise Diverged(f"training diverged in epoch {state.epoch + 1}: the training loss is {train_loss}; "
                             f"lower the learning rate (now {config.learning_rate(state.epoch):g}) or the momentum"
                             + (f"; the last good checkpoint is in {out}" if out is not None and state.epoch else ""))
        if len(data.x_val):
            val_loss, val_error = evaluate(model, data.x_val, data.y_val, loss=config.loss)
        else:  # no validation set: every epoch counts as the best so far, and the log says None
            val_loss = val_error = None
        test_error = train_error = None
        if monitor:
            test_error = evaluate(model, data.x_test, data.y_test, loss=config.loss)[1] if len(data.x_test) else None
            # train error of the weight-scaled net on a fixed subset, so large sets do not pay a full pass
            _, train_error = evaluate(model, data.x_train[:10000], data.y_train[:10000], loss=config.loss)
        row = dict(epoch=state.epoch + 1, train_loss=train_loss, val_loss=val_loss, train_error=train_error,
                   val_error=val_error, test_error=test_error, lr=config.learning_rate(state.epoch),
                   momentum=config.momentum(state.epoch), seconds=time.perf_counter() - t0)
        _end_epoch(state, model, val_error, row, out, record)
        history.append(row)
        _interrupt.check()  # the checkpoint of this epoch is written: a swallowed Ctrl-C stops here
        if on_epoch is not None:
            on_epoch(row)
        _show_epoch(bar, row)
        if config.patience is not None and state.bad_epochs >= config.patience:
            break
    if bar is not None:
        bar.close()
    model.load_state_dict(state.best_weights)
    test_error = evaluate(model, data.x_test, data.y_test, loss=config.loss)[1] if len(data.x_test) else None
    return FitResult(model, history, state.best_epoch, state.best_val, test_error, config.precision)


def run(settings: Any, out: str | Path | None, *, data: Dataset | None = None, resume: bool = False,
        progress: bool = True, device: str | torch.device = "cpu", meta: dict[str, Any] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """One training run from its settings: load the data, size the network to it, build it, ``fit`` it into ``out``.

    What ``droplab train`` and every sweep trial run, in one place.

    Args:
        settings: A ``droplab.presets.Settings`` (``presets.resolve(name, tables)``): the preset's name and its typed
            ``data``, ``model`` and ``train`` configs. The data decide the network's outer layers
            (``ModelConfig.with_sizes``); ``train.seed`` seeds the weights, the shuffling and the dropout masks.
        out: The run's folder (checkpoints, ``metrics.jsonl``), or None to write nothing.
        data: The dataset, where the caller has loaded it already (``settings.data.load(seed=settings.train.seed)``
            otherwise).
        resume: As ``fit``'s: continue the run in ``out``.
        progress: As ``fit``'s: show a progress bar.
        device: As ``fit``'s: where to train.
        on_epoch: As ``fit``'s: called with each epoch's row of ``metrics.jsonl``.
        meta: Stored in every checkpoint beside the preset's name and the data's settings (which ``droplab evaluate``
            reads to find the data again).

    Returns:
        FitResult: The trained model (the weights of the best validation epoch) and its history.
    """
    for part in ("preset", "data", "model", "train"):
        if not hasattr(settings, part):
            raise TypeError(f"settings must be a droplab.presets.Settings (presets.resolve(name, tables)), got "
                            f"{type(settings).__name__} without .{part}")
    if data is None:
        data = settings.data.load(seed=settings.train.seed)
    model = build_model(settings.model.with_sizes(data.input_size, data.output_size), seed=settings.train.seed)
    return fit(model, data, settings.train, out_dir=out, resume=resume, progress=progress, device=device,
               meta={"preset": settings.preset, "data": settings.data.as_dict(), **(meta or {})}, on_epoch=on_epoch)


def resolve_precision(config: TrainConfig, model: DropoutMLP, device: torch.device | str = "cpu",
                      resuming: Path | None = None) -> TrainConfig:
    """``config`` with ``precision="auto"`` replaced by what this host runs ``model``'s training steps fastest in
    (``droplab.host.choose``: bfloat16 only where its products run >= 1.25x float32's at the batch's shapes).
    Resuming (``resuming``, the run's folder), the precision the checkpoint was made in, so a resumed run is the
    uninterrupted one bit for bit whatever a new probe would say. A named bfloat16 slower than float32 here warns.

    Args:
        config: The ``TrainConfig``.
        model: The network it trains.
        device: Where it trains.
        resuming: The run's folder when resuming, else None.

    Returns:
        TrainConfig: ``config`` with its precision ``"float32"`` or ``"bfloat16"``.
    """
    device = torch.device(device)
    args = {"sizes": list(model.sizes), "rows": config.batch_size, "device": str(device),
            "low_layers": [type(m) is nn.Linear for m in model.linears]}
    if config.precision == "bfloat16":
        host.check_named("bfloat16", args)
    if config.precision != "auto":
        return config
    if resuming is not None and (resuming / "last.safetensors").is_file():
        saved = load_checkpoint_file(resuming / "last.safetensors")[1].get("train", {})
        precision = saved.get("precision", "float32") if isinstance(saved, dict) else None
        if precision not in PRECISIONS or precision == "auto":
            raise ValueError(f"{resuming / 'last.safetensors'} records the precision {precision!r}, not one of "
                             f"{[p for p in PRECISIONS if p != 'auto']}; the file is damaged (train afresh)")
        return replace(config, precision=precision)
    return replace(config, precision=host.choose("training", **args).precision)


def _show_epoch(bar: Any, row: dict[str, Any]) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{row['train_loss']:.4f}",
                        val="-" if row["val_error"] is None else f"{row['val_error']:.2f}",
                        test="-" if row["test_error"] is None else f"{row['test_error']:.2f}")


def _progress(total: int, done: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="epochs", unit="epoch", dynamic_ncols=True)


def _append_line(path: Path, row: dict[str, Any]) -> None:
    # append-only log; the checkpoint written right after is the source of truth on resume
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


_TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


def _differences(saved: dict[str, Any], train: dict[str, Any], model: dict[str, Any]) -> list[str]:
    """The settings that differ between a checkpoint and this run, named ("lr 0.5 there, 0.1 now"); the
    number of epochs may differ (a resume may extend a finished run)."""
    out = []
    for table, now in (("train", train), ("model", model)):
        then = saved.get(table, {})
        for key in sorted(set(then) | set(now)):
            if table == "train" and key == "epochs":
                continue
            if key not in then and table == "train" and now.get(key) == _TRAIN_DEFAULTS.get(key):
                continue  # a setting added since the checkpoint was made, at its default
            if then.get(key) != now.get(key):
                out.append(f"{table} {key} = {then.get(key)!r} (now {now.get(key)!r})")
    return out


def _read_history(path: Path, epochs: int) -> list[dict[str, Any]]:
    """The metrics of the epochs the checkpoint holds. A torn last line (a kill while it was written) is
    dropped, since the checkpoint written after it is the source of truth; a damaged line before it is an
    error that names the file."""
    if not path.is_file():
        return []
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text; delete it to resume without the earlier epochs' metrics") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
                raise ValueError("not a metrics row")
        except ValueError:
            if number == len(lines):
                break  # torn by a kill mid-write
            raise ValueError(f"{path} line {number} is damaged ({line[:40]!r}); delete the file to resume "
                             "without the earlier epochs' metrics") from None
        rows.append(row)
    return [r for r in rows if r["epoch"] <= epochs]


def load_model(path: str | Path, *, which: str = "model") -> tuple[DropoutMLP, dict[str, Any]]:
    """Load the model stored in a checkpoint (``best.safetensors`` or ``last.safetensors``) and its meta.

    Args:
        path: A checkpoint file.
        which: ``"model"`` (the weights it holds) or ``"best"`` (the best epoch's, from ``last.safetensors``).

    Returns:
        tuple[DropoutMLP, dict]: The network, in eval mode, and the checkpoint's meta.

    Raises:
        ValueError: A file that is not a droplab checkpoint, or a damaged one (named).
    """
    tensors, meta = load_checkpoint_file(path)
    if not isinstance(meta.get("train", {}), dict) or not isinstance(meta.get("data", {}), dict):
        raise ValueError(f"{path}: its metadata's 'train' and 'data' must be tables (JSON objects); the file was not "
                         "written by droplab train, or it is damaged")
    if not isinstance(meta.get("model"), dict):
        raise ValueError(f"{path} has no network description (its metadata lacks 'model'); it was not written by "
                         "droplab train, or it is damaged")
    prefix = f"{which}."
    sizes = meta["model"].get("sizes")
    if isinstance(sizes, list) and len(sizes) >= 2 and all(isinstance(v, int) and v > 0 for v in sizes):
        described = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
        held = sum(v.numel() for k, v in tensors.items() if k.startswith(prefix))
        if described > max(held, 10**7):  # refused before building: a damaged size must not allocate gigabytes
            # (smaller gaps are named tensor by tensor below)
            raise ValueError(f"{path} describes a network {sizes} of {described:,} weights and biases but holds "
                             f"{held:,} values for it; the file is damaged")
    try:
        model = DropoutMLP.from_config(meta["model"])
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{path} describes a network droplab cannot build: {exc}") from None
    state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise ValueError(f"{path} lacks the tensors {missing[:4]}{' ...' if len(missing) > 4 else ''} of the network "
                         "it describes; the file is incomplete or damaged")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(f"{path}: tensor {key} has shape {tuple(state[key].shape)}, but the network it "
                             f"describes ({meta['model'].get('sizes')}) needs {tuple(value.shape)}; the file is "
                             "damaged")
        if state[key].dtype != value.dtype:  # an int64 weight loaded into a float network would predict at chance
            raise ValueError(f"{path}: tensor {key} is {str(state[key].dtype).removeprefix('torch.')}, the network "
                             f"needs {str(value.dtype).removeprefix('torch.')}; the file was not written by droplab "
                             "train, or it is damaged")
        if state[key].is_floating_point() and not bool(torch.isfinite(state[key]).all()):
            raise ValueError(f"{path}: tensor {key} holds NaN or infinite values; the training that wrote it "
                             "diverged, or the file is damaged (train again, or use an earlier checkpoint)")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise ValueError(f"{path} holds tensors {unexpected[:4]} that the network it describes has no place for")
    model.load_state_dict(state)
    model.eval()
    return model, meta
