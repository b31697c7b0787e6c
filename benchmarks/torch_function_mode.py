"""What reaching torch's dropout through a ``TorchFunctionMode`` would cost a forward, beside droplab's function
replacements (docs/design.md, "Why torch's dropout is still reached by replacing functions").

For each model, in one run, interleaved, best of 5 rounds of 30 forwards: the eval forward; the same under an
empty ``TorchFunctionMode`` (every torch call of the forward goes through Python); under ``droplab.sample`` (masks
drawn); and with droplab's replacements open for another model (what an unrelated model's calls pay).

    python benchmarks/torch_function_mode.py
"""

from __future__ import annotations

import contextlib
import time

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

import droplab
from droplab import host


class _Pass(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        return func(*args, **(kwargs or {}))


def _best_ms(variants: dict, n: int = 30, rounds: int = 9) -> dict:  # noqa: ANN001
    """Each variant's best time a forward (ms) over ``rounds`` rounds of ``n``, the variants interleaved in every
    round (the machine's noise falls on all of them alike). A variant is (a context opened around its round, or
    None; the forward)."""
    best = {k: float("inf") for k in variants}
    for r in range(rounds + 1):
        for key in (list(variants) if r % 2 == 0 else list(variants)[::-1]):
            around, fn = variants[key]
            with around() if around is not None else contextlib.nullcontext():
                t0 = time.perf_counter()
                for _ in range(n):
                    fn()
                if r:  # round 0 warms up
                    best[key] = min(best[key], (time.perf_counter() - t0) / n * 1e3)
    return best


def main() -> None:
    print(host.benchmark_header())
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(64, 4, 128, dropout=0.1, batch_first=True)
    models = {
        "transformer encoder, 2 layers, d 64, 32 x 16 tokens": (nn.TransformerEncoder(layer, 2).eval(),
                                                               torch.randn(32, 16, 64)),
        "MLP 784-1200-1200-10, dropout after each, batch 100": (nn.Sequential(
            nn.Linear(784, 1200), nn.ReLU(), nn.Dropout(0.5), nn.Linear(1200, 1200), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(1200, 10)).eval(), torch.randn(100, 784)),
    }
    other = nn.Sequential(nn.Dropout(0.5))
    for name, (model, x) in models.items():
        g = torch.Generator().manual_seed(0)

        def eval_forward(model: nn.Module = model, x: torch.Tensor = x) -> None:
            model(x)

        def under_mode(model: nn.Module = model, x: torch.Tensor = x) -> None:
            with _Pass():
                model(x)

        def under_sample(model: nn.Module = model, x: torch.Tensor = x, g: torch.Generator = g) -> None:
            with droplab.sample(model, generator=g):
                model(x)

        def another(g: torch.Generator = g) -> contextlib.AbstractContextManager:
            return droplab.sample(other, generator=g)

        with torch.no_grad():
            t = _best_ms({"eval": (None, eval_forward), "mode": (None, under_mode), "sample": (None, under_sample),
                          "replaced": (another, eval_forward)})
        plain = t["eval"]
        print(f"{name}: eval {plain:.2f} ms; empty TorchFunctionMode {t['mode']:.2f} ms ({t['mode'] / plain:.2f}x); "
              f"droplab.sample {t['sample']:.2f} ms ({t['sample'] / plain:.2f}x); droplab's replacements open for "
              f"another model {t['replaced']:.2f} ms ({t['replaced'] / plain:.2f}x)")

if __name__ == "__main__":
    main()
