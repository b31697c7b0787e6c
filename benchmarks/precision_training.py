"""Training in bfloat16 against float32 at equal epochs: test error on mnist-10k, 3 seeds each.

    python benchmarks/precision_training.py [--epochs 15] [--seeds 0 1 2]

The standard preset's schedule (lr 1.0 x0.98 per epoch, momentum 0.5 -> 0.9, batch 32, max-norm 15, Glorot
gain 2, keep 0.8 / 0.5) on two of the paper's 1200-unit logistic layers (784-1200-1200-10), the 10,000 MNIST
t10k digits split 7,200 / 800 / 2,000. The same seed gives both precisions the same weights, split and masks.
Target: the bfloat16 test error within 2 binomial standard errors of the float32 one (seed by seed and on the
mean). Prints seconds per run, so the speed-up of whole trainings is shown too.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

from droplab import data, host, train
from droplab.presets import preset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-dir", default="../shared/data/mnist-t10k")
    args = parser.parse_args()
    print(host.benchmark_header())
    base = preset("standard")
    model_cfg = dataclasses.replace(base.model, sizes=(784, 1200, 1200, 10), keep=(0.8, 0.5, 0.5))
    rows = []
    for seed in args.seeds:
        d = data.load("mnist-10k", root=args.data_dir, seed=seed)
        for precision in ("float32", "bfloat16"):
            config = dataclasses.replace(base.train, epochs=args.epochs, seed=seed, precision=precision)
            t0 = time.perf_counter()
            result = train.fit(train.build_model(model_cfg, seed=seed), d, config, progress=False)
            rows.append((seed, precision, result.test_error, time.perf_counter() - t0, len(d.y_test)))
            print(f"seed {seed} {precision:9s} test error {result.test_error:.2f}% (best epoch {result.best_epoch}), "
                  f"{rows[-1][3]:.0f} s", flush=True)
    n = rows[0][4]

    def se(p: float) -> float:
        return 100 * math.sqrt(max(p / 100 * (1 - p / 100), 1 / n) / n)

    worst = 0.0
    for seed in args.seeds:
        e32 = next(r[2] for r in rows if r[0] == seed and r[1] == "float32")
        e16 = next(r[2] for r in rows if r[0] == seed and r[1] == "bfloat16")
        gap = abs(e16 - e32) / math.hypot(se(e32), se(e16))
        worst = max(worst, gap)
        print(f"seed {seed}: bfloat16 - float32 = {e16 - e32:+.2f} points = {gap:.2f} binomial SE of the difference")
    m32 = sum(r[2] for r in rows if r[1] == "float32") / len(args.seeds)
    m16 = sum(r[2] for r in rows if r[1] == "bfloat16") / len(args.seeds)
    t32 = sum(r[3] for r in rows if r[1] == "float32")
    t16 = sum(r[3] for r in rows if r[1] == "bfloat16")
    print(f"mean test error: float32 {m32:.2f}%, bfloat16 {m16:.2f}% over {len(args.seeds)} seeds; largest gap "
          f"{worst:.2f} SE (target <= 2: {'met' if worst <= 2 else 'NOT met'}); whole trainings {t32 / t16:.2f}x "
          "faster in bfloat16")


if __name__ == "__main__":
    main()
