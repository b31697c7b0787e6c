"""Test error with and without dropout, same network, same optimizer, same number of epochs.

    python benchmarks/generalization.py [--only quick mnist-10k fashion-mnist] [--out results/generalization.json]

Rows (each trained twice: keep 0.8 input / 0.5 hidden, and keep 1 everywhere):
    quick          the quick preset (64-256-256-10 logistic) on scikit-learn's digits
    mnist-10k      784-1200-1200-10 logistic on the MNIST test set split 8,000 / 2,000 (small-data regime)
    fashion-mnist  784-1200-1200-10 logistic on Fashion-MNIST (60,000 / 10,000)
The reported test error is the weight-scaled network's at the epoch of lowest validation error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from droplab import data, host, train
from droplab.checkpoint import atomic_write_text
from droplab.config import ModelConfig
from droplab.presets import preset

# the network settings of every row (logistic, softmax, paper scaling, PyTorch's default initialisation): fixed
# here, so that the table does not move when a preset changes
BASE = ModelConfig(sizes=(64, 256, 256, 10), keep=(0.8, 0.5, 0.5), init="default")

BIG = train.TrainConfig(epochs=1, batch_size=100, lr=0.5, lr_decay=0.98, momentum_start=0.5,
                        momentum_end=0.95, momentum_epochs=20, max_norm=3.0)
ROWS = {
    "quick": ("digits", None, [64, 256, 256, 10], preset("quick").train),
    "mnist-10k": ("mnist-10k", "../shared/data/mnist-t10k", [784, 1200, 1200, 10],
                  dataclasses.replace(BIG, epochs=100)),
    "fashion-mnist": ("fashion-mnist", None, [784, 1200, 1200, 10], dataclasses.replace(BIG, epochs=30)),
}


def run_row(name: str, data_dir: str | None) -> list[dict]:
    dataset, default_dir, sizes, config = ROWS[name]
    d = data.load(dataset, root=data_dir or default_dir)
    out = []
    for label, keep in (("dropout", [0.8] + [0.5] * (len(sizes) - 2)), ("no dropout", 1.0)):
        model = train.build_model(dataclasses.replace(BASE, sizes=tuple(sizes), keep=keep), seed=config.seed)
        t0 = time.perf_counter()
        result = train.fit(model, d, config, progress=False)
        out.append(dict(row=name, dataset=dataset, network="-".join(map(str, sizes)), gates=label,
                        epochs=config.epochs, best_epoch=result.best_epoch, val_error=result.best_val_error,
                        test_error=result.test_error, minutes=(time.perf_counter() - t0) / 60))
        print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(ROWS), default=list(ROWS))
    parser.add_argument("--data-dir", help="folder of the IDX files (mnist-10k defaults to ../shared/data/mnist-t10k)")
    parser.add_argument("--out", type=Path, default=Path("results/generalization.json"))
    args = parser.parse_args()
    print(host.benchmark_header())
    rows = [r for name in args.only for r in run_row(name, args.data_dir)]
    atomic_write_text(args.out, json.dumps(rows, indent=2) + "\n")
    print("\n| dataset | network | gates | epochs | best epoch | test error % |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['network']} | {r['gates']} | {r['epochs']} | {r['best_epoch']} | "
              f"{r['test_error']:.2f} |")


if __name__ == "__main__":
    main()
