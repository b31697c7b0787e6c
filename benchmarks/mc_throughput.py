"""Monte Carlo dropout throughput: droplab against baal, side by side in one run.

    pip install baal   # benchmark-only dependency
    python benchmarks/mc_throughput.py [--inputs 10] [--samples 10000] [--device cpu]

The paper network (784-1200-1200-1200-1200-10 logistic, keep 0.8 input / 0.5 hidden), 10 inputs x 10,000
dropout samples. droplab's ``monte_carlo`` computes E, NWGM and Var for every unit of every layer; baal's
``mc_inference`` (replicate mode) computes the output layer's samples only, on an nn.Sequential with the
same weights (inverted dropout, weights scaled so the ensemble is identical). Each runs in its own
subprocess, so its peak resident memory is its own. Also measured: the float32 matrix-multiply peak, and two
exact estimators against the Monte Carlo run that reaches the same accuracy: ``exact`` over 2^20
configurations and ``linear_moments`` on the linear version of the paper network.

Targets (2-core CPU): droplab at least 2x faster than baal, at least 75% of the measured peak, peak memory
under 1.5 GB; a mode at least 8x baal in float32 whose E is within 0.5 Monte Carlo standard errors of float64
with the same masks. The table gives every mode (``--modes`` chooses): its time, its share of the matmul peak of
its precision, its speed-up over baal float32, and its largest |E - E_f64| / SE over all 4,810 units of the 10
inputs (``--accuracy-samples 100000`` checks that at 100,000 samples). The script ends with
``speed-up droplab bfloat16 / baal float32: N.NNx``, ``bfloat16 accuracy: max |E_bf16 - E_f64| / SE = N.NN``
and ``accurate-fast: MODE Sx baal float32, max |E - E_f64| / SE = A``, the fastest mode with A <= 0.5 (or the
most accurate if none is). The ``ceiling`` lines give the time of the products alone at the bfloat16 and at
the int8 matmul peak (int8c's products take the integer path); the ``floor int8c`` line times, at droplab's
chunk shapes, what int8c cannot drop with torch's kernels: the masks' random words (every precision's masks),
the int8 products and the transfer function on every hidden unit of every member. On a shared machine the rate
of identical runs varies by tens of percent, so each library runs ``--repeats`` times and the matmul rate is
sampled between droplab's runs: the best run is compared with the best product (the peak), and the median with
the median.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

SIZES = [784, 1200, 1200, 1200, 1200, 10]
KEEP = [0.8, 0.5, 0.5, 0.5, 0.5]
# the table's modes: name -> (monte_carlo's precision, fused)
MODES = {"float32": ("float32", False), "float32, fused": ("float32", True), "bfloat16": ("bfloat16", False),
         "bfloat16, fused": ("bfloat16", True), "bfloat16x3": ("bfloat16x3", False),
         "bfloat16c": ("bfloat16c", False), "bfloat16c, fused": ("bfloat16c", True), "int8c": ("int8c", False),
         "int8c, fused": ("int8c", True)}


def _net(device: torch.device, transfer: str = "logistic", output: str = "softmax"):
    from droplab import DropoutMLP

    torch.manual_seed(0)
    net = DropoutMLP(SIZES, keep=KEEP, transfer=transfer, output=output).to(device).eval()
    return net


def _inputs(n: int, device: torch.device) -> torch.Tensor:
    try:
        from droplab import data

        return data.load("mnist-10k", root="../shared/data/mnist-t10k", download=False).x_test[:n].to(device)
    except ValueError:
        return torch.rand(n, SIZES[0], generator=torch.Generator().manual_seed(0)).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def _seconds(on, fn, *args, **kwargs) -> float:
    """The wall time of one call fn(*args, **kwargs) on the device ``on``."""
    return _timed(lambda: fn(*args, **kwargs), on)[1]


def run_droplab(args, device) -> dict:
    from droplab import ensemble

    tile = int(args.tile_mib * 2**20) if args.tile_mib else None
    net, x = _net(device), _inputs(args.inputs, device)
    gen = torch.Generator(device=device).manual_seed(0)
    precision, fused = args.precision, args.fused
    wanted = ensemble.STATISTICS if args.all_statistics else ("E", "Var", "NWGM")
    _, warmup = _timed(lambda: ensemble.monte_carlo(net, x, samples=100, generator=gen, statistics=wanted,
                                                    precision=precision, fused=fused, tile=tile),
                       device)  # (bfloat16 weights made; compiled)
    times, peaks = [], []
    for _ in range(args.repeats):  # the machine's matmul rate is sampled between runs, under the same load
        peaks += matmul_rates(device, repeats=4)
        stats, seconds = _timed(lambda: ensemble.monte_carlo(net, x, samples=args.samples, generator=gen,
                                                             statistics=wanted, memory=args.memory,
                                                             precision=precision, fused=fused, tile=tile),
                                device)
        times.append(seconds)
        assert stats.layers[3].NWGM is not None and stats.layers[3].Var is not None
    peaks += matmul_rates(device, repeats=4)
    return {"seconds": min(times), "times": times, "peaks": peaks, "warmup_seconds": warmup}


def run_accuracy(args, device) -> dict:
    """Every mode against float64 with the same masks (the same generator seed: masks do not depend on the
    precision), on every unit of every layer: the largest |E - E_f64| in the float64 run's Monte Carlo standard
    errors, and the largest relative error of Var."""
    from droplab import ensemble

    samples = args.accuracy_samples or args.samples
    net, x = _net(device), _inputs(args.inputs, device)
    ref = ensemble.monte_carlo(net.double(), x.double(), samples=samples, statistics=("E", "Var"),
                               generator=torch.Generator(device=device).manual_seed(0))
    net.float()
    out = {}
    for name, (precision, fused) in MODES.items():
        if args.modes and name not in args.modes:
            continue
        stats = ensemble.monte_carlo(net, x, samples=samples, statistics=("E", "Var"), precision=precision,
                                     fused=fused, generator=torch.Generator(device=device).manual_seed(0))
        e = max(float(((a.E.double() - b.E).abs() / b.se_E.clamp_min(1e-300)).max())
                for a, b in zip(stats.layers[1:], ref.layers[1:], strict=True))
        v = max(float(((a.Var.double() - b.Var).abs() / b.Var.clamp_min(1e-300)).max())
                for a, b in zip(stats.layers[1:], ref.layers[1:], strict=True))
        out[name] = {"max_e_in_se": e, "max_var_relative": v, "samples": samples}
    return out


def run_breakdown(args, device) -> dict:
    """Where one Monte Carlo run's time goes: wall time inside gates, products, transfer functions and the
    statistics accumulator, by timers wrapped around each module (synchronous on CPU)."""
    from droplab import ensemble

    net, x = _net(device), _inputs(args.inputs, device)
    spent: dict[str, float] = {"gates": 0.0, "products": 0.0, "transfer functions": 0.0, "statistics": 0.0}

    def timed(part, fn):
        def wrapper(*a, **k):
            _sync(device)
            t0 = time.perf_counter()
            out = fn(*a, **k)
            _sync(device)
            spent[part] += time.perf_counter() - t0
            return out
        return wrapper

    for gate, linear, act in zip(net.gates, net.linears, net.activations, strict=True):
        gate.forward = timed("gates", gate.forward)
        linear.forward = timed("products", linear.forward)
        act.forward = timed("transfer functions", act.forward)
    ensemble.monte_carlo(net, x, samples=100, statistics=("E", "Var", "NWGM"))  # warm-up
    spent = dict.fromkeys(spent, 0.0)
    _, seconds = _timed(lambda: ensemble.monte_carlo(net, x, samples=args.samples, memory=args.memory,
                                                     statistics=("E", "Var", "NWGM"), timings=spent), device)
    return {"seconds": seconds, "parts": spent}


def run_baal(args, device) -> dict:
    from baal.modelwrapper import mc_inference
    from torch import nn

    net, x = _net(device), _inputs(args.inputs, device)
    layers: list[nn.Module] = []
    for h, (lin, keep) in enumerate(zip(net.linears, KEEP, strict=True)):
        inverted = nn.Linear(lin.in_features, lin.out_features).to(device)
        with torch.no_grad():  # inverted dropout divides by p; multiplying W by p gives the same ensemble
            inverted.weight.copy_(lin.weight * keep)
            inverted.bias.copy_(lin.bias)
        layers += [nn.Dropout(1 - keep), inverted] + ([nn.Sigmoid()] if h < len(KEEP) - 1 else [])
    model = nn.Sequential(*layers).to(device).train()  # baal keeps dropout active in train mode
    times = []
    with torch.no_grad():
        mc_inference(model, x, 100, True)  # warm-up
        for _ in range(args.repeats):
            out, seconds = _timed(lambda: mc_inference(model, x, args.samples, True), device)
            times.append(seconds)
    assert out.shape == (args.inputs, 10, args.samples)
    return {"seconds": min(times), "times": times}


def run_baal_autocast(args, device) -> dict:
    """baal under torch.autocast(bfloat16): its products in bfloat16, weights recast on every call."""
    with torch.autocast(device.type, dtype=torch.bfloat16):
        return run_baal(args, device)


def run_exact(args, device) -> dict:
    """2^20 configurations (8 input + 12 hidden gated units) against Monte Carlo at the same accuracy."""
    from droplab import DropoutMLP, ensemble

    torch.manual_seed(0)
    net = DropoutMLP([8, 12, 10], keep=[0.8, 0.5]).to(device).double().eval()
    x = torch.rand(args.inputs, 8, dtype=torch.float64, device=device)
    ex, t_exact = _timed(lambda: ensemble.exact(net, x, max_configurations=2**20), device)
    # Monte Carlo needs K = (4 sd / tol)^2 samples for its worst unit to be within tol with 4 standard errors
    tol = 1e-3
    worst_var = max(float(layer.Var.max()) for layer in ex.layers[1:])
    k = int((4 * worst_var**0.5 / tol) ** 2) + 1
    gen = torch.Generator(device=device).manual_seed(0)
    mc, t_mc = _timed(lambda: ensemble.monte_carlo(net, x, samples=k, generator=gen), device)
    err = max(float((m.E - e.E).abs().max()) for m, e in zip(mc.layers[1:], ex.layers[1:], strict=True))
    return {"exact_seconds": t_exact, "configurations": ex.samples, "mc_samples": k, "mc_seconds": t_mc,
            "tolerance": tol, "mc_max_error": err}


def run_linear(args, device) -> dict:
    """linear_moments on the linear paper network against Monte Carlo at a relative tolerance of 1%."""
    from droplab import ensemble

    net, x = _net(device, "linear", "linear"), _inputs(args.inputs, device)
    lm, t_lm = _timed(lambda: ensemble.linear_moments(net, x), device)
    out_e, out_sd = lm.output.E, lm.output.Var.sqrt()
    tol = 0.01 * float(out_e.abs().mean())
    k = int((4 * float(out_sd.max()) / tol) ** 2) + 1
    gen = torch.Generator(device=device).manual_seed(0)
    mc, t_mc = _timed(lambda: ensemble.monte_carlo(net, x, samples=k, generator=gen,
                                                   statistics=("E", "Var")), device)
    err = float((mc.output.E - out_e.to(mc.output.E.dtype)).abs().max())
    return {"linear_moments_seconds": t_lm, "mc_samples": k, "mc_seconds": t_mc, "tolerance": tol,
            "mc_max_error": err}


def run_floor(args, device) -> dict:
    """What int8c cannot go below with torch's own kernels, timed at droplab's chunk shapes over one run's chunks:
    the masks' random words (the words every gate draws; the masks are every precision's, so they stay), the int8
    products, and the transfer function on every member's every hidden unit (torch.sigmoid, written into a
    buffer). The gates, the quantization and dequantization, the corrections and the statistics come on top."""
    from droplab.ensemble import chunk_size
    from droplab.gates import bernoulli_words

    net, x = _net(device), _inputs(args.inputs, device)
    tile = int(args.tile_mib * 2**20) if args.tile_mib else None
    members = chunk_size(net, x, args.memory, args.samples, tile)
    gen = torch.Generator(device=device).manual_seed(0)
    weights = [torch.randint(-127, 128, (b, a), dtype=torch.int8, device=device)
               for a, b in zip(SIZES[:-2], SIZES[1:-1], strict=True)]
    rows = members * x.shape[0]
    levels = [torch.randint(-127, 128, (rows, n), dtype=torch.int8, device=device) for n in SIZES[:-2]]
    s = torch.randn(rows, SIZES[1], device=device)
    o = torch.empty_like(s)
    spent: dict[str, float] = {}
    for _ in range(2):  # the first round warms up; the second is timed
        spent = {"words": 0.0, "products": 0.0, "transfer": 0.0}
        done = 0
        while done < args.samples:
            k = min(members, args.samples - done)
            done += k
            r = k * x.shape[0]
            for h, keep in enumerate(KEEP):
                spent["words"] += _seconds(device, bernoulli_words, (r, SIZES[h]), keep, generator=gen, device=device)
                if h < len(KEEP) - 1:
                    spent["products"] += _seconds(device, torch._int_mm, levels[h][:r], weights[h].T)
                    spent["transfer"] += _seconds(device, torch.sigmoid, s[:r], out=o[:r])
    return {"members": members, **spent}


def matmul_rates(device: torch.device, n: int = 2048, repeats: int = 10,
                 dtype: torch.dtype = torch.float32) -> list[float]:
    """GFLOP/s of ``repeats`` n x n products in ``dtype`` (after one warm-up): the machine's matmul peak is the
    best."""
    if dtype == torch.int8:  # the integer path int8c's products take (int32 sums): GOP/s
        a, b = (torch.randint(-127, 128, (n, n), device=device, dtype=torch.int8) for _ in range(2))
        _timed(lambda: torch._int_mm(a, b), device)
        return [2 * n**3 / _timed(lambda: torch._int_mm(a, b), device)[1] / 1e9 for _ in range(repeats)]
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)
    _timed(lambda: torch.mm(a, b, out=c), device)
    return [2 * n**3 / _timed(lambda: torch.mm(a, b, out=c), device)[1] / 1e9 for _ in range(repeats)]


def _timing(run: dict, flops: float, peak: float, peak_name: str) -> str:
    """'best X s = R GFLOP/s = P% of the <peak_name> peak; median M s' for one library's timed runs."""
    rate = flops / min(run["times"]) / 1e9
    return (f"best {min(run['times']):.2f} s = {rate:.1f} GFLOP/s = {100 * rate / peak:.1f}% of the {peak_name} "
            f"peak; median {statistics.median(run['times']):.2f} s")


def _child(which: str, argv: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", which, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{which} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mode_table(args, argv: list[str], device: torch.device, ours: dict, peak: float, theirs: dict | None) -> list[str]:
    """Every Monte Carlo mode timed (each in its own subprocess) and checked against float64 with the same masks:
    the table, and the lines a script reads."""
    low = {kind: max(matmul_rates(device, n=256, repeats=1, dtype=getattr(torch, kind)))
           for kind in ("bfloat16", "int8")}  # a small look first: on an AVX2-only CPU they run 25-40x slower
    slow = [kind for kind, rate in low.items() if rate < max(matmul_rates(device, n=256, repeats=1))]
    if slow:
        print(f"{' and '.join(slow)} products run slower than float32's on this host (256^3: "
              + ", ".join(f"{k} {v:.1f}" for k, v in low.items()) + " G/s): the table keeps the modes that use "
              "neither, and the ceiling, floor and autocast lines are skipped")
    bf16_peak = (max(matmul_rates(device, repeats=6, dtype=torch.bfloat16)) if "bfloat16" not in slow
                 else low["bfloat16"])
    print(f"bfloat16 2048x2048 matmul peak: {bf16_peak:.1f} GFLOP/s ({bf16_peak / peak:.1f}x the float32 peak)")
    int8_peak = max(matmul_rates(device, repeats=6, dtype=torch.int8)) if "int8" not in slow else low["int8"]
    print(f"int8 2048x2048 matmul peak (int32 sums): {int8_peak:.1f} GOP/s ({int8_peak / bf16_peak:.1f}x the bfloat16 "
          "peak)")
    peaks = {"float32": peak, "bfloat16": bf16_peak, "int8": int8_peak}
    flops = 2 * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)) * args.inputs * args.samples
    names = [n for n in MODES if (not args.modes or n in args.modes)
             and not any(kind in MODES[n][0] or (kind == "int8" and MODES[n][0] == "int8c") for kind in slow)]
    runs = {n: ours if MODES[n] == ("float32", False) else _child(
        "droplab", argv + ["--precision", MODES[n][0]] + (["--fused"] if MODES[n][1] else [])) for n in names}
    acc = _child("accuracy", argv + ["--modes", *names] + (
        ["--accuracy-samples", str(args.accuracy_samples)] if args.accuracy_samples else []))
    auto = _child("baal-autocast", argv) if theirs is not None and not slow else None
    baal = theirs["seconds"] if theirs is not None else float("nan")
    samples = next(iter(acc.values()))["samples"]
    versus = (lambda t: f"{baal / t:.2f}x") if theirs is not None else (lambda t: "(baal skipped)")
    print(f"\n| mode | time (best of {args.repeats}) | share of its peak | vs baal float32 ({baal:.2f} s) | "
          f"max \\|E - E_f64\\| / SE ({samples:,} samples) | max \\|Var - Var_f64\\| / Var_f64 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in names:
        t, p = min(runs[n]["times"]), MODES[n][0]
        kind = "float32" if p == "float32" else "int8" if p == "int8c" else "bfloat16"
        share = 100 * flops / t / 1e9 / peaks[kind]
        print(f"| {n} | {t:.2f} s | {share:.1f}% of the {kind} peak | "
              f"{versus(t)} | {acc[n]['max_e_in_se']:.3f} | {acc[n]['max_var_relative']:.1e} |")
    print()
    if theirs is not None and not slow:  # what the machine allows: every product at the bfloat16 peak, nothing else
        floor = flops / bf16_peak / 1e9
        print(f"ceiling: the products alone at the bfloat16 peak take {floor:.2f} s = {baal / floor:.2f}x baal "
              f"float32; 8x baal needs {100 * floor / (baal / 8):.0f}% of the bfloat16 peak on this host")
        floor8 = flops / int8_peak / 1e9
        print(f"ceiling int8: the products alone at the int8 peak take {floor8:.2f} s = {baal / floor8:.2f}x baal "
              f"float32; 8x baal needs {100 * floor8 / (baal / 8):.0f}% of the int8 peak on this host")
        low = _child("floor", argv)
        total = low["words"] + low["products"] + low["transfer"]
        print(f"floor int8c (torch's kernels, {low['members']} members a chunk): the masks' random words "
              f"{low['words']:.2f} s + the int8 products {low['products']:.2f} s + the transfer function "
              f"{low['transfer']:.2f} s = {total:.2f} s = {baal / total:.2f}x baal float32, before any gate, "
              f"rounding or statistic (8x: {baal / 8:.2f} s)")
    if auto is not None:
        print(f"baal mc_inference under torch.autocast(bfloat16): best {auto['seconds']:.2f} s, median "
              f"{statistics.median(auto['times']):.2f} s")
    lines = []
    if "bfloat16" in runs and theirs is not None:
        lines.append(f"speed-up droplab bfloat16 / baal float32: {baal / min(runs['bfloat16']['times']):.2f}x")
    if "bfloat16" in acc:
        lines.append(f"bfloat16 accuracy: max |E_bf16 - E_f64| / SE = {acc['bfloat16']['max_e_in_se']:.2f}")
    accurate = [n for n in names if acc[n]["max_e_in_se"] <= 0.5]
    best = min(accurate, key=lambda n: min(runs[n]["times"])) if accurate else min(
        names, key=lambda n: acc[n]["max_e_in_se"])
    lines.append(f"accurate-fast: {best} {versus(min(runs[best]['times']))} baal float32, max |E - E_f64| / SE = "
                 f"{acc[best]['max_e_in_se']:.3f}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--memory", type=int, default=256 * 2**20, help="droplab's activation budget (bytes)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tile-mib", type=float, default=None,
                        help="droplab's CPU chunk size per layer tensor (monte_carlo's tile; default 4 MiB)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each library (best and median shown)")
    parser.add_argument("--skip", nargs="*", default=[], choices=["baal", "exact", "linear", "breakdown", "modes"])
    parser.add_argument("--modes", nargs="*", default=[], choices=list(MODES),
                        help="the table's modes (default: all)")
    parser.add_argument("--accuracy-samples", type=int, default=None,
                        help="samples of the float64 comparison (default: --samples), e.g. 100000")
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--fused", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--all-statistics", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.child:
        result = {"droplab": run_droplab, "baal": run_baal, "exact": run_exact, "linear": run_linear,
                  "breakdown": run_breakdown, "baal-autocast": run_baal_autocast,
                  "accuracy": run_accuracy, "floor": run_floor}[args.child](args, device)
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20
        print(json.dumps(result))
        return
    from droplab import host

    print(host.benchmark_header(device))
    if "baal" not in args.skip and importlib.util.find_spec("baal") is None:
        print("baal is not installed (pip install baal, a benchmark-only dependency): its comparison is skipped")
        args.skip.append("baal")
    argv = ["--inputs", str(args.inputs), "--samples", str(args.samples), "--memory", str(args.memory),
            "--device", args.device, "--repeats", str(args.repeats)] + (
        ["--tile-mib", str(args.tile_mib)] if args.tile_mib else [])
    ours = _child("droplab", argv)
    flops = 2 * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)) * args.inputs * args.samples
    peak, typical = max(ours["peaks"]), statistics.median(ours["peaks"])
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; network "
          f"{'-'.join(map(str, SIZES))} logistic, keep {KEEP[0]}/{KEEP[1]}; {args.inputs} inputs x "
          f"{args.samples} samples; {args.repeats} timed runs each")
    print(f"float32 2048x2048 matmul, {len(ours['peaks'])} products sampled between droplab's runs: peak (best) "
          f"{peak:.1f} GFLOP/s, median {typical:.1f}")
    median = flops / statistics.median(ours["times"]) / 1e9
    print(f"droplab monte_carlo (E, NWGM, Var of all {sum(SIZES[1:])} units): {_timing(ours, flops, peak, 'float32')} "
          f"(target: best >= 75% of the peak); the median run at {100 * median / typical:.1f}% of the median "
          "matmul rate; "
          f"peak RSS {ours['peak_rss_mb']:.0f} MB")
    if "baal" not in args.skip:
        theirs = _child("baal", argv)
        print(f"baal mc_inference (replicate, output samples only): best {theirs['seconds']:.2f} s, median "
              f"{statistics.median(theirs['times']):.2f} s, peak RSS {theirs['peak_rss_mb']:.0f} MB")
        print(f"speed-up droplab / baal: {theirs['seconds'] / ours['seconds']:.2f}x best to best, "
              f"{statistics.median(theirs['times']) / statistics.median(ours['times']):.2f}x median to median "
              "(target >= 2)")
    if "breakdown" not in args.skip:
        parts = _child("breakdown", argv)
        shares = ", ".join(f"{name} {100 * t / parts['seconds']:.0f}%" for name, t in parts["parts"].items())
        print(f"droplab's time by part (one timed run): {shares}, the rest "
              f"{100 * (1 - sum(parts['parts'].values()) / parts['seconds']):.0f}%")
    lines: list[str] = []  # the lines a script reads, printed last
    if "modes" not in args.skip:
        lines += mode_table(args, argv, device, ours, peak, theirs if "baal" not in args.skip else None)
    if "exact" not in args.skip:
        ex = _child("exact", argv)
        print(f"exact over {ex['configurations']:,} configurations: {ex['exact_seconds']:.2f} s; monte_carlo to "
              f"within {ex['tolerance']:g} ({ex['mc_samples']:,} samples): {ex['mc_seconds']:.2f} s "
              f"(max error {ex['mc_max_error']:.1e})")
    if "linear" not in args.skip:
        lm = _child("linear", argv)
        print(f"linear_moments on the linear paper network: {lm['linear_moments_seconds']:.3f} s; monte_carlo to "
              f"within {lm['tolerance']:.3g} ({lm['mc_samples']:,} samples): {lm['mc_seconds']:.2f} s "
              f"(max error {lm['mc_max_error']:.2g})")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
