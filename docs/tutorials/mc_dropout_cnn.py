# %% [markdown]
# # MC dropout on your CNN: NLL, ECE, a reliability diagram, OOD AUROC
#
# A plain torch CNN, trained the usual way, with `nn.Dropout` in its head. droplab samples that dropout with the
# model left in eval mode (`ensemble.predictive`), scores the ensemble the way the field does (NLL, Brier, ECE,
# a reliability diagram) and checks what the uncertainty is for: telling MNIST digits from Fashion-MNIST
# clothes, which the network never saw (AUROC of the predictive entropy and of the mutual information).

# %%
import torch
import torch.nn.functional as F
from torch import nn

from droplab import data, ensemble, metrics

# 60,000 training and 10,000 test digits
mnist = data.load("mnist", validation=0.0)
fashion = data.load("fashion-mnist", validation=0.0)  # the out-of-distribution inputs
print(mnist.summary())
print(fashion.summary())

# %% [markdown]
# ## Train a CNN, as anyone would
#
# Two convolutions with max pooling, then a dropout head. 12,000 training digits and two epochs keep the page
# quick to build on a CPU; nothing here is droplab's yet.

# %%
torch.manual_seed(0)
cnn = nn.Sequential(
    nn.Unflatten(1, (1, 28, 28)),
    nn.Conv2d(1, 16, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Flatten(),
    nn.Dropout(0.25),
    nn.Linear(32 * 7 * 7, 128),
    nn.ReLU(),
    nn.Dropout(0.5),
    nn.Linear(128, 10),
)
optimizer = torch.optim.Adam(cnn.parameters(), lr=1e-3)
x, y = mnist.x_train[:12_000], mnist.y_train[:12_000]
for epoch in range(2):
    order = torch.randperm(len(x))
    for i in range(0, len(x), 64):
        batch = order[i : i + 64]
        loss = F.cross_entropy(cnn(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}: last batch loss {loss.item():.3f}")
cnn.eval()

# %% [markdown]
# ## One deterministic network against the Monte Carlo ensemble
#
# `ensemble.predictive` draws K = 50 dropout masks per input from its generator; the convolutions before the
# first dropout run once per input, not once per sample (`cache_prefix`, on by default). The deterministic
# network is the same model in eval mode: torch's inverted dropout makes it the weight-scaled network (Eq. 98).

# %%
test_x, test_y = mnist.x_test[:5_000], mnist.y_test[:5_000]
with torch.no_grad():
    single = torch.softmax(cnn(test_x), dim=1)
mc = ensemble.predictive(
    cnn, test_x, samples=50, output="logits", generator=torch.Generator().manual_seed(0)
)
rows = {
    "eval network (weight scaling)": metrics.scores(single, test_y),
    "MC dropout, K = 50": metrics.scores(mc, test_y),
}
print(f"{'':32s} {'accuracy':>9s} {'NLL':>8s} {'Brier':>8s} {'ECE':>8s}")
for name, s in rows.items():
    print(
        f"{name:32s} {s['accuracy']:9.4f} {s['nll']:8.4f} {s['brier']:8.4f} "
        f"{s['ece']:8.4f}"
    )

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), constrained_layout=True)
metrics.reliability_diagram(single, test_y, ax=axes[0], title="eval network")
metrics.reliability_diagram(mc, test_y, ax=axes[1], title="MC dropout, K = 50")
fig.savefig("reliability.png", dpi=110)

# %% [markdown]
# ## Calibrating the ensemble: one temperature
#
# Averaging members whose heads each lose half their units can leave the ensemble less confident than it should
# be. `metrics.temperature_scale` fits one temperature T on held-out inputs (here 2,000 other test digits, never
# scored) from the members' logits, which `droplab.sample` lets a plain loop collect; `predictive` then divides
# every member's logits by T.

# %%
import droplab

val_x, val_y = mnist.x_test[5_000:7_000], mnist.y_test[5_000:7_000]
with torch.no_grad(), droplab.sample(cnn, generator=torch.Generator().manual_seed(2)):
    members = torch.stack([cnn(val_x) for _ in range(50)])  # (K, B, classes)
fit = metrics.temperature_scale(members, val_y)
print(f"T = {fit.temperature:.3f}: validation NLL {fit.nll_before:.4f} -> {fit.nll_after:.4f}")
mc_t = ensemble.predictive(
    cnn,
    test_x,
    samples=50,
    output="logits",
    temperature=fit.temperature,
    generator=torch.Generator().manual_seed(0),
)
s = metrics.scores(mc_t, test_y)
print(
    f"MC dropout, K = 50, T = {fit.temperature:.2f}: accuracy {s['accuracy']:.4f}, NLL {s['nll']:.4f}, "
    f"Brier {s['brier']:.4f}, ECE {s['ece']:.4f}"
)

# %% [markdown]
# ## What the uncertainty is for: inputs the model never saw
#
# The same number of Fashion-MNIST images, scored by the predictive entropy H(E(p)) and by the mutual
# information H(E(p)) - E(H(p)) (the BALD score: the members' disagreement), which only the ensemble has.

# %%
other = ensemble.predictive(
    cnn,
    fashion.x_test[:5_000],
    samples=50,
    output="logits",
    generator=torch.Generator().manual_seed(1),
)
with torch.no_grad():
    single_other = torch.softmax(cnn(fashion.x_test[:5_000]), dim=1)
for name, inside, outside in (
    ("entropy, eval network", metrics.entropy(single), metrics.entropy(single_other)),
    ("predictive entropy, MC", mc.predictive_entropy, other.predictive_entropy),
    ("mutual information, MC", mc.mutual_information, other.mutual_information),
):
    s = metrics.ood_scores(inside, outside)
    print(
        f"{name:26s} AUROC {s.auroc:.4f}  AUPR-out {s.aupr_out:.4f}  FPR at 95% TPR "
        f"{s.fpr_at_95_tpr:.4f}"
    )

# %%
fig, ax = plt.subplots(figsize=(6.5, 4), constrained_layout=True)
bins = torch.linspace(0, float(other.mutual_information.max()), 40)
for scores, label in (
    (mc.mutual_information, "MNIST test digits"),
    (other.mutual_information, "Fashion-MNIST images"),
):
    ax.hist(scores.numpy(), bins=bins.numpy(), alpha=0.6, label=label, density=True)
ax.set_xlabel("mutual information (nats)")
ax.set_ylabel("density")
ax.set_yscale("log")
ax.set_title("Mutual information, MNIST test digits against Fashion-MNIST")
ax.legend()
fig.savefig("mutual-information.png", dpi=110)

# %% [markdown]
# Read the tables above before trusting a score: after two epochs the ensemble is *less* calibrated than the eval
# network here, and one fitted temperature is what repairs it; the mutual information (the members'
# disagreement) is higher on the clothes than on the digits, but on this network the predictive entropy, which
# also counts the confusion every member shares, separates the two datasets better. Selective prediction from
# the same statistics: `metrics.risk_coverage(mc.mean.max(1).values, correct)`.
