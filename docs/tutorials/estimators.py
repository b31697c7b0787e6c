# %% [markdown]
# # The paper's estimators compared on one network
#
# Baldi & Sadowski compare ways of averaging the dropout ensemble unit by unit: the deterministic network with
# every gate at its mean (weight scaling, W, Eq. 98: the propagated normalized geometric mean), sampling
# (Monte Carlo), and moment propagation that takes each input sum S as Gaussian (Eq. 242's logistic of a
# Gaussian). On a network small enough to enumerate every mask, all of them can be held against the exact
# ensemble average. This page does that for a 6-6-5-3 logistic network with 131,072 mask configurations.

# %%
import torch

from droplab import DropoutMLP, ensemble

torch.manual_seed(0)
net = DropoutMLP((6, 6, 5, 3), keep=(0.8, 0.5, 0.5), output="logistic").double().eval()
with torch.no_grad():
    for linear in net.linears:
        # larger weights than at initialization: the units reach their curved parts
        linear.weight.mul_(3.0)
x = torch.rand(8, 6, dtype=torch.float64)

# every mask, with its probability
exact = ensemble.exact(net, x)
estimates = {
    "weight scaling (W)": ensemble.weight_scaled(net, x),
    "Monte Carlo, K = 1,000": ensemble.monte_carlo(
        net, x, samples=1_000, generator=torch.Generator().manual_seed(0)
    ),
    "Monte Carlo, K = 100,000": ensemble.monte_carlo(
        net, x, samples=100_000, generator=torch.Generator().manual_seed(1)
    ),
    "Gaussian S, Eq. 242": ensemble.gaussian_moments(net, x, method="eq242"),
    "Gaussian S, quadrature": ensemble.gaussian_moments(net, x, method="quadrature"),
}
print(f"{exact.samples:,} configurations enumerated")

# %% [markdown]
# ## Their error against the exact ensemble, layer by layer
#
# The largest |E - E_exact| over the units and inputs of each layer, and, for the estimators that give one, the
# ratio of their Var(O) to the exact Var(O) (mean over units and inputs).

# %%
print(
    f"{'':26s}"
    + "".join(f"{'layer ' + str(h) + ' |dE|':>15s}" for h in (1, 2, 3))
    + f"{'Var ratio L3':>14s}"
)
for name, stats in estimates.items():
    errs = [
        float((stats.layers[h].E - exact.layers[h].E).abs().max()) for h in (1, 2, 3)
    ]
    var = stats.layers[3].Var
    ratio = (
        f"{float((var / exact.layers[3].Var).mean()):14.3f}"
        if var is not None
        else f"{'-':>14s}"
    )
    print(f"{name:26s}" + "".join(f"{e:15.2e}" for e in errs) + ratio)

# %% [markdown]
# ## The NWGM approximation and the paper's bound (Eq. 87)
#
# Weight scaling computes, layer after layer, the normalized weighted geometric mean of each unit; the paper
# bounds its distance to the mean E by |E - NWGM| <~ E(1 - E)|1 - 2E| / (1 - 2V) (Eq. 87). Against the
# exact ensemble:

# %%
from droplab import means

for h in (1, 2, 3):
    e, v, nwgm = exact.layers[h].E, exact.layers[h].Var, exact.layers[h].NWGM
    gap = (e - nwgm).abs()
    bound = means.bound_variance(e, v)
    print(
        f"layer {h}: max |E - NWGM| {float(gap.max()):.2e}, largest share of the Eq. "
        "87 bound "
        f"{float((gap / bound.clamp_min(1e-12)).max()):.2f}"
    )

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(12, 4.4), layout="constrained")
for ax, h in zip(axes, (1, 2, 3), strict=True):
    truth = exact.layers[h].E.flatten()
    for name in ("weight scaling (W)", "Gaussian S, Eq. 242", "Monte Carlo, K = 1,000"):
        ax.scatter(
            truth, estimates[name].layers[h].E.flatten() - truth, s=12, label=name
        )
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlabel("exact E(O)")
    ax.set_title(f"layer {h}")
axes[0].set_ylabel("estimate - exact E(O)")
handles, labels = axes[0].get_legend_handles_labels()
fig.legend(handles, labels, loc="outside lower center", ncol=3)
fig.suptitle("Each estimator's error, unit by unit (8 inputs)")
fig.savefig("estimators.png", dpi=110)

# %% [markdown]
# Every estimator is in one registry with one call signature (`ensemble.ESTIMATORS`, `ensemble.estimate(name,
# net, x)`), and `droplab evaluate --estimator` scores a trained network with any of them.
