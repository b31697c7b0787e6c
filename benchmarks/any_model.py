"""Monte Carlo dropout on models droplab did not build: droplab against baal and torch-uncertainty.

    pip install baal torch-uncertainty einops   # benchmark-only dependencies
    python benchmarks/any_model.py [--inputs 16] [--samples 1000] [--repeats 3] [--device cpu]

Three models, each in eval mode (BatchNorm on its running statistics):

* ``resnet``: a residual CNN, a stem and 8 residual blocks of two 3x3 convolutions with BatchNorm (16 to 128
  channels) on 32x32x3 inputs, global average pooling, ``nn.Dropout(0.5)`` before the linear classifier only:
  the model where the deterministic prefix (everything before the dropout) is nearly all of the work. Always run
  with K = 100 samples (``--prefix-samples``), and timed against one plain eval forward of the same inputs.

* ``cnn``: conv-BatchNorm-ReLU twice, max-pool, ``nn.Dropout2d(0.25)``, an ``F.dropout(p=0.5)`` call in its
  forward, a hidden layer with ``nn.Dropout(0.5)``, 10 logits. On MNIST test digits when they are found.
* ``transformer``: two ``nn.TransformerEncoderLayer`` (d 64, 4 heads, dropout 0.1, which torch applies to
  the attention weights through a functional call, and in two ``nn.Dropout`` modules), mean-pooled, 10 logits.

Each library averages the softmax over ``--samples`` dropout samples per input: droplab with
``ensemble.monte_carlo(model, x, output="logits")`` (its deterministic prefix run once, ``cache_prefix=True``);
baal with ``MCDropoutModule`` and ``mc_inference`` (input replicated in memory, in chunks of 100 samples); baal
``MCCachingModule`` around it (each Linear and Conv2d keeps its last output and answers a repeated input from it;
``mc_inference`` calls the model once per sample, as baal's caching example does); torch-uncertainty with
``mc_dropout(on_batch=True)``, 100
estimators per call; and, for the transformer (no BatchNorm), plain torch with the model in training mode.
Reported per library: seconds per 1,000 samples (best of ``--repeats``), peak resident
memory of its own subprocess (CUDA: peak allocated), and the largest |mean - droplab's mean| in standard
errors of the difference; ``droplab, no prefix`` is droplab with ``cache_prefix=False`` (every member runs the
whole model), and ``eval forward`` one plain forward of the inputs: the benchmark ends with the line
``prefix: MC K=100 / eval forward = R`` for the resnet. The module wrappers sample only dropout modules: they
miss the functional call of the CNN and the attention dropout of the transformer (a functional call inside
``nn.MultiheadAttention``, off in eval mode), which shows as a mean far outside the standard errors. They do less
work for the same reason.

torch-uncertainty's package import needs lightning and torchvision; where that import fails, its
``methods/mc_dropout.py`` (which needs only einops) is loaded from the installed package directly.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CHUNK = 100  # samples per call for the wrappers that replicate the input in memory


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                  nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.drop2d = nn.Dropout2d(0.25)
        self.hidden = nn.Linear(32 * 14 * 14, 128)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop2d(self.body(x)).flatten(1)
        h = F.dropout(h, 0.5, self.training)  # functional: module-swapping wrappers do not see it
        return self.out(self.drop(F.relu(self.hidden(h))))


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class ResNet(nn.Module):
    """8 residual blocks, dropout before the classifier only."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        widths, blocks, c_in = (16, 16, 32, 32, 64, 64, 128, 128), [], 16
        for i, c in enumerate(widths):
            blocks.append(Block(c_in, c, 2 if i in (2, 4, 6) else 1))
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.blocks(self.stem(x)).mean((2, 3))))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.out = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.encoder(x).mean(1))


def _model_and_inputs(which: str, n: int, device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    if which == "cnn":
        model: nn.Module = CNN()
        x = _digits(n)
    elif which == "resnet":
        model = ResNet()
        x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    else:
        model = Encoder()  # no BatchNorm: torch's training mode is a valid reference here
        x = torch.randn(n, 32, 64, generator=torch.Generator().manual_seed(0))
    model.train()
    with torch.no_grad():  # BatchNorm running statistics from a few batches
        for _ in range(3):
            model(x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)))
    return model.to(device).eval(), x.to(device)


def _digits(n: int) -> torch.Tensor:
    try:
        from droplab import data

        images = data.load("mnist-10k", root="../shared/data/mnist-t10k", download=False).x_test[:n]
        return images.view(n, 1, 28, 28)
    except ValueError:
        return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _droplab(model, x, samples, seed, cache_prefix=True):
    from droplab import ensemble

    stats = ensemble.monte_carlo(model, x, samples=samples, output="logits", cache_prefix=cache_prefix,
                                 generator=torch.Generator(device=x.device).manual_seed(seed))
    return stats.output.E, stats.output.se_E


def _droplab_every_member(model, x, samples, seed):
    """droplab as before the prefix cache: the whole model per member."""
    return _droplab(model, x, samples, seed, cache_prefix=False)


def _summary(prob_sum, prob_sq, samples):
    mean = prob_sum / samples
    return mean, ((prob_sq / samples - mean.square()).clamp_min(0) / samples).sqrt()


def _baal(model, x, samples, seed):
    from baal.bayesian.dropout import MCDropoutModule
    from baal.modelwrapper import mc_inference

    torch.manual_seed(seed)
    wrapped = MCDropoutModule(copy.deepcopy(model)).eval()
    total = total_sq = 0
    for done in range(0, samples, CHUNK):
        out = mc_inference(wrapped, x, min(CHUNK, samples - done), True)  # (B, 10, k)
        p = torch.softmax(out.double(), 1)
        total, total_sq = total + p.sum(-1), total_sq + p.square().sum(-1)
    return _summary(total, total_sq, samples)


def _baal_caching(model, x, samples, seed):
    from baal.bayesian.caching_utils import MCCachingModule
    from baal.bayesian.dropout import MCDropoutModule
    from baal.modelwrapper import mc_inference

    torch.manual_seed(seed)
    wrapped = MCCachingModule(MCDropoutModule(copy.deepcopy(model))).eval()
    total = total_sq = 0
    for done in range(0, samples, CHUNK):
        out = mc_inference(wrapped, x, min(CHUNK, samples - done), False)  # one call per sample: the cache hits
        p = torch.softmax(out.double(), 1)
        total, total_sq = total + p.sum(-1), total_sq + p.square().sum(-1)
    return _summary(total, total_sq, samples)


def _eval_forward(model, x, samples, seed):
    """One plain eval forward of the inputs (no dropout): the unit the prefix target is measured in."""
    p = torch.softmax(model(x).double(), -1)
    return p, torch.zeros_like(p)


def _torch_uncertainty_mc_dropout():
    try:
        from torch_uncertainty.methods import mc_dropout

        return mc_dropout, "package"
    except Exception:  # noqa: BLE001 - the package import needs lightning/torchvision; load the one file
        spec = importlib.util.find_spec("torch_uncertainty")
        if spec is None or not spec.submodule_search_locations:
            raise
        path = Path(next(iter(spec.submodule_search_locations))) / "methods" / "mc_dropout.py"
        module_spec = importlib.util.spec_from_file_location("tu_mc_dropout", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return module.mc_dropout, "methods/mc_dropout.py loaded directly"


def _torch_uncertainty(model, x, samples, seed):
    mc_dropout, _ = _torch_uncertainty_mc_dropout()
    torch.manual_seed(seed)
    wrapped = mc_dropout(copy.deepcopy(model), num_estimators=CHUNK, on_batch=True).eval()
    total = total_sq = 0
    calls = len(range(0, samples, CHUNK))  # whole calls of CHUNK estimators: at least ``samples``
    for _ in range(calls):
        out = wrapped(x).view(CHUNK, x.shape[0], -1)
        p = torch.softmax(out.double(), -1)
        total, total_sq = total + p.sum(0), total_sq + p.square().sum(0)
    return _summary(total, total_sq, calls * CHUNK)


def _torch_train_mode(model, x, samples, seed):
    """The reference without a library: the model in training mode, chunks of CHUNK samples."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise SystemExit("training mode would put BatchNorm on batch statistics: not the same model")
    torch.manual_seed(seed)
    model.train()
    total = total_sq = 0
    calls = len(range(0, samples, CHUNK))
    for _ in range(calls):
        p = torch.softmax(model(x.repeat(CHUNK, *[1] * (x.dim() - 1))).view(CHUNK, x.shape[0], -1).double(), -1)
        total, total_sq = total + p.sum(0), total_sq + p.square().sum(0)
    model.eval()
    return _summary(total, total_sq, calls * CHUNK)


LIBRARIES = {"droplab": _droplab, "droplab, no prefix": _droplab_every_member, "baal": _baal,
             "baal, caching": _baal_caching,
             "torch-uncertainty": _torch_uncertainty, "torch, train mode": _torch_train_mode,
             "eval forward": _eval_forward}


def child(args) -> dict:
    device = torch.device(args.device)
    model, x = _model_and_inputs(args.model, args.inputs, device)
    run = LIBRARIES[args.library]
    times = []
    with torch.no_grad():
        run(model, x, min(args.samples, 100), 99)  # warm-up
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for r in range(args.repeats):
            _sync(device)
            t0 = time.perf_counter()
            mean, se = run(model, x, args.samples, r)
            _sync(device)
            times.append(time.perf_counter() - t0)
    result = {"times": times, "mean": mean.double().cpu().tolist(), "se": se.double().cpu().tolist()}
    if device.type == "cuda":
        result["peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if args.library == "torch-uncertainty":
        result["how"] = _torch_uncertainty_mc_dropout()[1]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=16)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prefix-samples", type=int, default=100, help="samples for the resnet (K of the target)")
    parser.add_argument("--models", nargs="+", default=["resnet", "cnn", "transformer"],
                        choices=["resnet", "cnn", "transformer"])
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "LIBRARY"), help=argparse.SUPPRESS)
    parser.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=list(LIBRARIES))
    args = parser.parse_args()
    if args.child:
        args.model, args.library = args.child
        print(json.dumps(child(args)))
        return
    from droplab import host

    print(host.benchmark_header(args.device))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; {args.inputs} inputs x "
          f"{args.samples} samples, best of {args.repeats}")
    prefix_ratio = None
    for model in args.models:
        samples = args.prefix_samples if model == "resnet" else args.samples
        argv = ["--inputs", str(args.inputs), "--samples", str(samples), "--repeats", str(args.repeats),
                "--device", args.device]
        print(f"\n{model} ({samples} samples):")
        results = {}
        for library in args.libraries:
            proc = subprocess.run([sys.executable, __file__, "--child", model, library, *argv], capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"  {library:19s} did not run: {reason}")
                continue
            results[library] = json.loads(proc.stdout.strip().splitlines()[-1])
        ours = results.get("droplab")
        for library, r in results.items():
            if library == "eval forward":
                line = f"  {library:19s} {min(r['times']):7.4f} s per forward of the {args.inputs} inputs"
                if ours is not None:
                    ratio = min(ours["times"]) / min(r["times"])
                    line += f"; droplab's Monte Carlo ({samples} samples) costs {ratio:.2f} of them"
                    if model == "resnet":
                        prefix_ratio = ratio
                print(line)
                continue
            per_1000 = min(r["times"]) * 1000 / samples
            line = f"  {library:19s} {per_1000:7.3f} s per 1,000 samples, peak memory {r['peak_mb']:7.0f} MB"
            if ours is not None and library != "droplab":
                a, b = torch.tensor(ours["mean"]), torch.tensor(r["mean"])
                se = (torch.tensor(ours["se"]) ** 2 + torch.tensor(r["se"]) ** 2).sqrt().clamp_min(1e-12)
                z = float(((a - b).abs() / se).max())
                speed = min(r["times"]) / min(ours["times"])
                line += f", speed-up droplab / {library}: {speed:.2f}x, max |mean - droplab| = {z:.1f} SE"
            if max(max(row) for row in r["se"]) == 0:
                line += " [its outputs never varied: it sampled no dropout at all]"
            if "how" in r:
                line += f" ({r['how']})"
            print(line)
    print("\nA max |mean - droplab| above about 4.5 SE (the largest of 160 normal deviations) means the library "
          "samples a different ensemble: it misses dropout that droplab applies.")
    if prefix_ratio is not None:
        print(f"prefix: MC K={args.prefix_samples} / eval forward = {prefix_ratio:.2f}")


if __name__ == "__main__":
    main()
