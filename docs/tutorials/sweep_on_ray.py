# %% [markdown]
# # A dropout sweep on Ray
#
# The paper opens with the question a sweep answers (Section 1): how crucial are the keep rates? `droplab
# sweep` (or `droplab.sweep.run_sweep` from Python) runs one ordinary training per point of a grid as Ray Tune
# trials, on this machine or on a cluster (`address=`), and leaves a table and the plots the grid allows. Here:
# input keep x hidden keep, 3 x 3, on scikit-learn's digits, two seeds per cell, one CPU per trial.

# %%
import tempfile
from pathlib import Path

from droplab.sweep import load_sweep, run_sweep

sweep = load_sweep(
    {
        # 64-256-256-10 logistic, on digits
        "name": "keep-digits",
        "preset": "quick",
        "base": {"model": {"sizes": [64, 128, 128, 10]}, "train": {"epochs": 20}},
        "grid": {
            "model.keep_input": [0.5, 0.8, 1.0],
            "model.keep_hidden": [0.3, 0.5, 1.0],
            "train.seed": [0, 1],
        },
        "resources": {"cpus_per_trial": 1},
    }
)
print(f"{sweep.trials()} trials, varying {', '.join(sweep.varying)}")
out = Path(tempfile.mkdtemp()) / "keep-digits"
# a local Ray cluster of 2 CPUs
rows = run_sweep(sweep, out, cpus=2)

# %% [markdown]
# ## The table: one row per trial
#
# Each trial reports every epoch to Ray; its row holds the best validation error and the test error at that
# epoch (the `results.csv` of the sweep's folder).

# %%
import statistics

cells = {}
for row in rows:
    cells.setdefault((row["model.keep_input"], row["model.keep_hidden"]), []).append(
        row["test_error"]
    )
print(
    f"{'input keep':>10s} {'hidden keep':>12s} {'test error (%), mean of 2 seeds':>34s}"
)
for (keep_in, keep_hidden), errors in sorted(cells.items()):
    print(f"{keep_in:10.2f} {keep_hidden:12.2f} {statistics.mean(errors):34.2f}")
done = sum(r["status"] == "done" for r in rows)
print(
    f"{done} of {len(rows)} trials done, {sum(r['seconds'] or 0 for r in rows):.0f} s "
    "of training in all"
)

# %%
import shutil

# the heat map the sweep drew, onto this page
shutil.copy(out / "keep-grid.png", "keep-grid.png")

# %% [markdown]
# 360 test digits give each cell a binomial standard error of about 1 point at these error rates, so read the
# map for its large differences only: after 20 epochs the strongest dropout (input 0.5, hidden 0.3) costs most,
# and no dropout setting beats none by more than that noise on this small set and short schedule; `droplab sweep --preset keep-grid` runs the same question on 10,000 MNIST
# digits and the paper's network. On a cluster: `ray start --head` on one machine, `ray start --address
# <head>:6379` on the others, then `run_sweep(sweep, out, address="auto")` (or `droplab sweep --address auto`),
# with `out` on a file system every node sees.
