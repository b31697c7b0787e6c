"""Is droplab's MC dropout right? Gal & Ghahramani's UCI regression protocol with droplab's training and Monte Carlo.

    python benchmarks/uci.py [--datasets yacht boston ...] [--splits 20] [--samples 10000]

The protocol of ``../shared/data/uci-gal2016/README.md`` (their repository's ``experiment.py`` and ``net.py``),
per split: the training split cut 80 / 20 (first rows / last rows) into train / validation; for every dropout rate
p and precision tau of the set's grid, a network trained on the 80% and scored by validation log-likelihood; the
best (p, tau) retrained on the whole training split and scored on the test split. The network: dropout p on the
inputs, one hidden layer of ReLU units (50; protein 100), dropout p, a linear output (``droplab.DropoutMLP``,
inverted dropout as Keras's), Glorot-uniform weights, Adam (lr 1e-3, beta1 0.9), batch 128, 10x the set's base
epochs, the squared error, L2 on the weight matrices with reg = l^2 (1 - p) / (2 N tau), l = 1e-2 (droplab's loss
is half Keras's mean squared error, so its weight decay is reg itself: the same gradients up to Adam's scale
invariance); inputs and targets standardized by the training data. Test scores with T = ``--samples`` Monte Carlo
samples (``ensemble.predictive`` with ``targets`` and ``tau``: the log-likelihood streamed over the members), on
the original scale: RMSE of the Monte Carlo mean, and the mean log-likelihood. Each row: the mean over splits +-
its standard error, the published grid-search numbers, and the difference in combined standard errors.

Every network is trained one after another with ``train.fit``; the protocol's hundreds of networks per set are
not yet trained together (batched), so the whole protocol for the nine sets does not fit 15 minutes on two cores:
``--datasets`` and ``--splits`` choose a subset, and the last line counts the sets within 2 SE on both scores.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from droplab import data, ensemble, train

# the repository's README, grid search ("new") column: (RMSE, its SE, LL, its SE)
PUBLISHED = {"boston": (2.90, 0.18, -2.40, 0.04), "concrete": (4.82, 0.16, -2.93, 0.02),
             "energy": (0.54, 0.06, -1.21, 0.01), "kin8nm": (0.08, 0.00, 1.14, 0.01),
             "naval": (0.00, 0.00, 4.45, 0.00), "power": (4.01, 0.04, -2.80, 0.01),
             "protein": (4.27, 0.02, -2.87, 0.00), "wine": (0.62, 0.01, -0.93, 0.01),
             "yacht": (0.67, 0.05, -1.25, 0.01)}
LENGTH_SCALE = 1e-2


def _standardize(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    mean, sd = x.mean(0), x.std(0)
    return mean, torch.where(sd == 0, torch.ones_like(sd), sd), float(y.mean()), float(y.std()) or 1.0


def fit_and_score(x: torch.Tensor, y: torch.Tensor, x_eval: torch.Tensor, y_eval: torch.Tensor, *, p: float,
                  tau: float, hidden: int, epochs: int, samples: int, seed: int) -> tuple[float, float]:
    """Train the protocol's network on (x, y) and return (RMSE, mean log-likelihood) on (x_eval, y_eval),
    original scale."""
    mean, sd, y_mean, y_sd = _standardize(x, y)
    xs, xe = ((x - mean) / sd).float(), ((x_eval - mean) / sd).float()
    ys = ((y - y_mean) / y_sd).float()[:, None]
    empty = xs[:0]
    dataset = data.Dataset("uci", xs, ys, empty, ys[:0], xe, ((y_eval - y_mean) / y_sd).float()[:, None], 0)
    model = train.build_model({"sizes": [x.shape[1], hidden, 1], "transfer": "relu", "output": "linear",
                               "keep": [1 - p, 1 - p], "scaling": "inverted", "init": "glorot"}, seed=seed)
    reg = LENGTH_SCALE**2 * (1 - p) / (2 * len(x) * tau)
    config = train.TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, optimizer="adam", momentum_start=0.9,
                               momentum_end=0.9, momentum_epochs=1, loss="squared", l2=reg, seed=seed)
    result = train.fit(model, dataset, config, progress=False, monitor=False)
    targets = ((y_eval - y_mean) / y_sd).double()
    stats = ensemble.predictive(result.model.double().eval(), xe.double(), samples=samples,
                                generator=torch.Generator().manual_seed(seed + 1), targets=targets,
                                tau=tau * y_sd**2)  # tau on the original scale, in standardized units
    prediction = stats.mean.flatten() * y_sd + y_mean
    rmse = float((prediction - y_eval).square().mean().sqrt())
    ll = float(stats.log_likelihood.mean()) - math.log(y_sd)  # the density on the original scale
    return rmse, ll


def run_split(name: str, split: int, samples: int, epochs_factor: int) -> tuple[float, float, float, float]:
    s = data.uci(name, split=split)
    n = int(0.8 * len(s.x_train))
    epochs = s.n_epochs * epochs_factor
    best = None
    for p in s.dropout_rates:
        for tau in s.tau_values:
            _, ll = fit_and_score(s.x_train[:n], s.y_train[:n], s.x_train[n:], s.y_train[n:], p=p, tau=tau,
                                  hidden=s.n_hidden, epochs=epochs, samples=samples, seed=split)
            if best is None or ll > best[0]:
                best = (ll, p, tau)
    assert best is not None
    rmse, ll = fit_and_score(s.x_train, s.y_train, s.x_test, s.y_test, p=best[1], tau=best[2], hidden=s.n_hidden,
                             epochs=epochs, samples=samples, seed=split)
    return rmse, ll, best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=list(PUBLISHED), choices=list(PUBLISHED))
    parser.add_argument("--splits", type=int, default=None, help="the first N splits (default: all of each set)")
    parser.add_argument("--samples", type=int, default=10_000, help="Monte Carlo samples T (the protocol: 10,000)")
    parser.add_argument("--epochs-factor", type=int, default=10, help="epochs = factor x the set's base epochs")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    start, within = time.perf_counter(), 0
    print(f"{'dataset':8s} {'splits':>6s}  {'RMSE droplab':>16s} {'published':>13s} {'diff/SE':>7s}   "
          f"{'LL droplab':>15s} {'published':>14s} {'diff/SE':>7s}  {'seconds':>7s}")
    for name in args.datasets:
        t0 = time.perf_counter()
        n_splits = data.uci(name).n_splits if args.splits is None else min(args.splits, data.uci(name).n_splits)
        rows = [run_split(name, k, args.samples, args.epochs_factor) for k in range(n_splits)]
        rmse = torch.tensor([r[0] for r in rows], dtype=torch.float64)
        ll = torch.tensor([r[1] for r in rows], dtype=torch.float64)
        se = (lambda v: float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan"))  # noqa: E731
        pr, pr_se, pl, pl_se = PUBLISHED[name]
        d_rmse = (float(rmse.mean()) - pr) / max(math.hypot(se(rmse), pr_se), 1e-12)
        d_ll = (float(ll.mean()) - pl) / max(math.hypot(se(ll), pl_se), 1e-12)
        ok = abs(d_rmse) <= 2 and abs(d_ll) <= 2
        within += ok
        print(f"{name:8s} {n_splits:6d}  {float(rmse.mean()):8.3f} +- {se(rmse):5.3f} {pr:6.2f} +- {pr_se:4.2f} "
              f"{d_rmse:7.2f}   {float(ll.mean()):7.3f} +- {se(ll):5.3f} {pl:6.2f} +- {pl_se:4.2f} {d_ll:7.2f}  "
              f"{time.perf_counter() - t0:7.0f}" + ("" if ok else "  (outside 2 SE)"))
    print(f"uci: {within} of {len(args.datasets)} datasets within 2 SE on both RMSE and LL "
          f"({time.perf_counter() - start:.0f} s; splits {'all' if args.splits is None else args.splits}, "
          f"T = {args.samples}, {args.epochs_factor}x epochs)")


if __name__ == "__main__":
    main()
