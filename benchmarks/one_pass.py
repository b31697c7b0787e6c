"""One pass against Monte Carlo on the same models (issue 36): ``ensemble.moments`` next to ``ensemble.predictive``.

Five models are trained briefly on MNIST's 10,000 t10k digits (8,000 to train, 2,000 to test; ``mnist-10k``): an
MLP with dropout after every layer, a CNN with dropout after every block, a residual CNN with a dropout head, a
small transformer encoder on 7x7 patches, and droplab's own DropoutMLP (whose one pass is ``gaussian_moments``).
For each: the one-pass class probabilities' error in Monte Carlo standard errors at K = 10,000 (50 test digits),
the variance ratio per output, NLL, ECE and the Brier score on the 2,000 test digits and the OOD AUROC against
Fashion-MNIST's test images (predictive entropy) next to Monte Carlo at K = 100 over three seeds (a model is within
when its NLL, ECE and AUROC all are; the Brier score is shown), and the time against one eval forward and against
Monte Carlo at K = 100. Each torch model's pass runs twice: with the diagonal (``covariance="diagonal"``, the
default) and with the full covariance of its (B, n) values (``covariance="full"``); a DropoutMLP's pass is diagonal
only. A model the one pass refuses is counted as not within. ``--figure PATH`` draws, for the MLP, the one pass
against Monte Carlo after each of its Linear layers and at its class probabilities (mean error in standard errors,
variance ratio), and prints those numbers.

    python benchmarks/one_pass.py --figure docs/one_pass_layers.png   # about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from torch import nn
from torch.nn import functional as F

from droplab import DropoutMLP, data, ensemble, host, metrics
from droplab.presets import preset
from droplab.train import build_model, fit


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, padding=1)
        self.a, self.b = nn.Conv2d(16, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.pool, self.drop, self.out = nn.AvgPool2d(4), nn.Dropout(0.5), nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = h + self.b(F.relu(self.a(h)))
        return self.out(self.drop(torch.flatten(self.pool(F.relu(h)), 1)))


class Patches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(49, 32)
        self.encoder = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True)
        self.drop, self.out = nn.Dropout(0.2), nn.Linear(32, 10)

    def forward(self, x):
        p = x.unfold(2, 7, 7).unfold(3, 7, 7).reshape(x.shape[0], 16, 49)
        return self.out(self.drop(self.encoder(self.embed(p)).mean(1)))


def _models() -> dict[str, nn.Module]:
    return {
        "MLP, dropout after every layer": nn.Sequential(
            nn.Flatten(), nn.Dropout(0.2), nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 256),
            nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10)),
        "CNN, dropout after every block": nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Dropout(0.2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Dropout(0.2), nn.Flatten(),
            nn.Linear(32 * 7 * 7, 10)),
        "residual CNN, dropout head": Residual(),
        "transformer encoder": Patches(),
    }


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            F.cross_entropy(model(x[i:i + 64]), y[i:i + 64]).backward()
            opt.step()
    return model.eval()


def _moments(model: nn.Module, x: torch.Tensor, output: str | None, covariance: str = "diagonal"):
    """moments' class probabilities and their variance (a DropoutMLP's output layer from its statistics)."""
    stats = ensemble.moments(model, x, output=output, covariance=covariance)
    return stats.output if isinstance(stats, ensemble.EnsembleStatistics) else stats


def _E(stats):  # noqa: N802  (the paper's E)
    return stats.E if hasattr(stats, "E") else stats.mean


def _V(stats):  # noqa: N802
    return stats.Var if hasattr(stats, "Var") else stats.variance


def _timed(fn, budget: float = 1.0):
    """The best of at least three runs, and of more while they take under ``budget`` seconds in all: an eval
    forward takes milliseconds, and the best of two of those moved the ratios by 2-3x between runs."""
    best, out, spent, runs = float("inf"), None, 0.0, 0
    while runs < 3 or (spent < budget and runs < 50):
        t0 = time.perf_counter()
        out = fn()
        took = time.perf_counter() - t0
        best, spent, runs = min(best, took), spent + took, runs + 1
    return best, out


def per_layer(model: nn.Sequential, x: torch.Tensor, reference: int) -> dict[str, list]:
    """Where the one pass departs from Monte Carlo, layer by layer: for the output of every Linear of a Sequential
    model, then for its class probabilities, the median |one-pass mean - Monte Carlo mean| in Monte Carlo standard
    errors and the median variance ratio, with the diagonal and with the full covariance (Monte Carlo at
    ``reference`` members)."""
    out: dict[str, list] = {"layer": []}
    cuts = [k + 1 for k, m in enumerate(model) if isinstance(m, nn.Linear)]
    stages = [(str(number), model[:cut], None) for number, cut in enumerate(cuts, 1)]
    for label, head, output in [*stages, ("softmax", model, "logits")]:
        mc = ensemble.predictive(head, x, samples=reference, output=output,
                                 generator=torch.Generator().manual_seed(5))
        out["layer"].append(label)
        for covariance in ("diagonal", "full"):
            one = ensemble.moments(head, x, output=output, covariance=covariance)
            z = ((one.mean - mc.mean) / mc.standard_error.clamp_min(1e-9)).abs()
            out.setdefault(f"error {covariance}", []).append(float(z.median()))
            ratio = one.variance / mc.variance.clamp_min(1e-12)
            out.setdefault(f"ratio {covariance}", []).append(float(ratio.median()))
    return out


def draw_per_layer(rows: dict[str, list[float]], path: str) -> None:
    from matplotlib import ticker

    from droplab._figures import subplots
    from droplab.checkpoint import atomic_save_figure

    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    where = "after the MLP's Linear layer (then its class probabilities)"
    for covariance, marker in (("diagonal", "o"), ("full", "s")):
        axes[0].plot(rows["layer"], rows[f"error {covariance}"], marker=marker, label=f"covariance='{covariance}'")
        axes[1].plot(rows["layer"], rows[f"ratio {covariance}"], marker=marker, label=f"covariance='{covariance}'")
    axes[0].axhline(0.674, color="k", ls=":", lw=1, label="0.674: an exact mean's median |error|")
    axes[0].set(title="mean: |one pass - Monte Carlo| (median)", xlabel=where,
                ylabel="Monte Carlo standard errors",
                ylim=(0, 1.15 * max(1.0, *rows["error diagonal"], *rows["error full"])))
    axes[1].axhline(1.0, color="k", ls=":", lw=1, label="equal to Monte Carlo")
    axes[1].set(title="variance: one pass / Monte Carlo (median)", xlabel=where,
                ylabel="ratio", yscale="log")
    axes[1].yaxis.set_major_formatter(ticker.FormatStrFormatter("%.2g"))
    ratios = [*rows["ratio diagonal"], *rows["ratio full"], 1.0]
    narrow = max(ratios) / max(min(ratios), 1e-12) < 10  # within a decade: label the minor ticks too
    axes[1].yaxis.set_minor_formatter(ticker.FormatStrFormatter("%.2g") if narrow else ticker.NullFormatter())
    for ax in axes:
        ax.legend(fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of each model (default 2)")
    parser.add_argument("--reference", type=int, default=10_000, help="Monte Carlo members of the reference")
    parser.add_argument("--figure", default=None,
                        help="write the per-layer figure of the MLP (one pass against Monte Carlo) to this PNG")
    args = parser.parse_args()
    if args.epochs < 1 or args.reference < 100:
        parser.error("--epochs must be >= 1 and --reference >= 100")
    print(host.benchmark_header(), flush=True)
    d = data.load("mnist-10k", download=False, validation=0.0)
    ood = data.load("fashion-mnist", download=False, validation=0.0).x_test[:2000]
    images = {"x": d.x_train.view(-1, 1, 28, 28), "test": d.x_test.view(-1, 1, 28, 28), "ood": ood.view(-1, 1, 28, 28)}
    torch.manual_seed(0)  # the models' initial weights: same seed, same table
    models = _models()
    for name, model in models.items():
        t0 = time.perf_counter()
        _train(model, images["x"], d.y_train, args.epochs)
        print(f"trained {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    cfg = preset("quick")
    net = build_model(replace(cfg.model, sizes=(784, 256, 256, 10)), seed=0)
    fit(net, d, replace(cfg.train, epochs=args.epochs, patience=None), progress=False)
    models["DropoutMLP (gaussian_moments)"] = net.eval()

    modes = ("diagonal", "full")
    within, refused = dict.fromkeys(modes, 0), dict.fromkeys(modes, 0)
    times: dict[str, list[float]] = {c: [] for c in modes}
    print(f"\n{'model':44s} {'mean err/SE':>12s} {'var ratio':>9s}  {'NLL one':>7s} {'NLL MC100':>15s}  "
          f"{'ECE one':>7s} {'ECE MC100':>15s}  {'Brier one':>9s} {'Brier MC100':>15s}  {'AUROC one':>9s} "
          f"{'AUROC MC100':>15s}  {'one/eval':>8s} "
          f"{'MC100/eval':>10s}", flush=True)
    for name, model in models.items():
        flat = isinstance(model, DropoutMLP)
        x, xo = (d.x_test, ood.view(len(ood), -1)) if flat else (images["test"], images["ood"])
        kind, one_kind = "logits", None if flat else "logits"  # a DropoutMLP returns its logits; its moments, p
        try:  # a model the pass refuses is refused in every mode: no Monte Carlo spent on it
            _moments(model, x[:2], one_kind)
        except ValueError as exc:
            for covariance in modes if not flat else ("diagonal",):
                refused[covariance] += 1
                print(f"{name + ', ' + covariance:44s} refused: {str(exc)[:150]}", flush=True)
            continue
        with torch.no_grad():
            t_eval, _ = _timed(lambda m=model, x=x: m(x))
        t_mc, _ = _timed(lambda m=model, x=x, k=kind: ensemble.predictive(
            m, x, samples=100, output=k, generator=torch.Generator().manual_seed(9)))
        ref = ensemble.predictive(model, x[:50], samples=args.reference, output=kind,
                                  generator=torch.Generator().manual_seed(1))
        mc = [ensemble.predictive(model, x, samples=100, output=kind, generator=torch.Generator().manual_seed(s))
              for s in range(3)]
        mco = [ensemble.predictive(model, xo, samples=100, output=kind, generator=torch.Generator().manual_seed(s))
               for s in range(3)]
        nll = [metrics.negative_log_likelihood(s.mean.float(), d.y_test) for s in mc]
        ece = [metrics.expected_calibration_error(s.mean.float(), d.y_test) for s in mc]
        brier = [metrics.brier_score(s.mean.float(), d.y_test) for s in mc]
        auroc = [metrics.ood_scores(metrics.entropy(a.mean), metrics.entropy(b.mean)).auroc
                 for a, b in zip(mc, mco, strict=True)]
        for covariance in modes if not flat else ("diagonal",):  # a DropoutMLP's pass carries variances only
            label = f"{name}, {covariance}"
            try:
                t_one, one = _timed(lambda m=model, x=x, k=one_kind, c=covariance: _moments(m, x, k, c))
            except ValueError as exc:
                refused[covariance] += 1
                print(f"{label:44s} refused: {str(exc)[:150]}", flush=True)
                continue
            z = ((_E(one)[:50] - ref.mean) / ref.standard_error.clamp_min(1e-9)).abs()
            ratio = float((_V(one)[:50] / ref.variance.clamp_min(1e-12)).median())
            one_o = _moments(model, xo, one_kind, covariance)
            nll1 = metrics.negative_log_likelihood(_E(one).float(), d.y_test)
            ece1 = metrics.expected_calibration_error(_E(one).float(), d.y_test)
            brier1 = metrics.brier_score(_E(one).float(), d.y_test)
            auroc1 = metrics.ood_scores(metrics.entropy(_E(one)), metrics.entropy(_E(one_o))).auroc
            inside = [min(v) <= w <= max(v) for w, v in ((nll1, nll), (ece1, ece), (auroc1, auroc))]
            within[covariance] += all(inside)
            missed = ", ".join(n for n, ok in zip(("NLL", "ECE", "AUROC"), inside, strict=True) if not ok)
            print(f"{label:44s} {float(z.median()):5.2f} ({float(z.max()):5.1f}) {ratio:9.2f}  {nll1:7.4f} "
                  f"{min(nll):7.4f}-{max(nll):7.4f}  {ece1:7.4f} {min(ece):7.4f}-{max(ece):7.4f}  "
                  f"{brier1:9.4f} {min(brier):7.4f}-{max(brier):7.4f}  {auroc1:9.4f} "
                  f"{min(auroc):7.4f}-{max(auroc):7.4f}  {t_one / t_eval:8.2f} {t_mc / t_eval:10.1f}"
                  + ("" if all(inside) else f"  (outside K=100's spread on {missed})"), flush=True)
            times[covariance].append(t_one / t_eval)
    if args.figure:
        mlp = models["MLP, dropout after every layer"]
        rows = per_layer(mlp, images["test"][:50], args.reference)
        print("\nthe MLP layer by layer (after each Linear, then the class probabilities; medians over 50 digits):")
        for k, where in enumerate(rows["layer"]):
            print(f"  {where:8s} mean error / MC SE: diagonal {rows['error diagonal'][k]:6.2f}, full "
                  f"{rows['error full'][k]:6.2f}; variance ratio: diagonal {rows['ratio diagonal'][k]:6.3f}, full "
                  f"{rows['ratio full'][k]:6.3f}")
        draw_per_layer(rows, args.figure)
        print(f"figure: {args.figure}", flush=True)
    for covariance in modes:
        spent = sorted(times[covariance]) or [float("nan")]
        counted = len(models) if covariance == "diagonal" else len(models) - 1  # (no full pass for a DropoutMLP)
        print(("\none-pass" if covariance == "diagonal" else "one-pass (covariance='full')")
              + f": {within[covariance]} of {counted} models within K=100's spread on NLL, ECE and AUROC "
              f"({refused[covariance]} refused); median time {spent[len(spent) // 2]:.2f} eval forwards", flush=True)


if __name__ == "__main__":
    main()
