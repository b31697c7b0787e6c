"""Figs. 9.1-9.2: sampling distributions of E and NWGM, and their correlation as the sample size grows."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import means
from ._base import Context, Experiment, Numbers, Verdict, draw_hist, hist

DISTRIBUTIONS = {
    "uniform [0, 1]": lambda rng, shape: rng.uniform(0, 1, shape),
    "uniform [0, 0.5]": lambda rng, shape: rng.uniform(0, 0.5, shape),
    "normal (0.5, 0.1)": lambda rng, shape: rng.normal(0.5, 0.1, shape),
    "normal (0.25, 0.05)": lambda rng, shape: rng.normal(0.25, 0.05, shape),
}
# "centred": a relative gap |E - NWGM| / E of at most 1% at mu_O = 0.5; "relatively small" away from it: 10%
CENTRED_TOLERANCE, AWAY_TOLERANCE = 0.01, 0.10
# Section 9.3's C1 ~ C2 "if sigma_O^2 is small": the normal distributions (sd 0.1 and 0.05), within 10%
SMALL_VARIANCE, C_TOLERANCE = 0.02, 0.10
EPS = 1e-6  # a normal draw outside (0, 1) is clipped: O is a probability


def compute(ctx: Context) -> dict[str, Any]:
    rng = np.random.default_rng(ctx.seed)
    repeats, sizes = ctx.settings.measurements.sampling_repeats, ctx.settings.measurements.sampling_sizes
    out: dict[str, Any] = {"hist": {}, "sizes": sizes, "correlation": {}, "covariance": {}, "repeats": repeats}
    n = Numbers()
    for name, draw in DISTRIBUTIONS.items():
        o = np.clip(draw(rng, (repeats, 100)), EPS, 1 - EPS)
        e, nwgm = means.weighted_mean(o), means.normalized_geometric_mean(o)
        out["hist"][name] = {"NWGM": hist(nwgm, 40), "E": hist(e, 40)}
        n.add("mean_e", float(e.mean()), "mean E", distribution=name, m=100)
        n.add("mean_nwgm", float(nwgm.mean()), "mean NWGM", distribution=name, m=100)
        n.add("sd_nwgm", float(nwgm.std()), "sd NWGM", distribution=name, m=100)
        n.add("sd_nwgm_minus_e", float((nwgm - e).std()), "sd of NWGM - E", distribution=name, m=100)
        n.add("fraction_nwgm_le_e", float(np.mean(nwgm <= e + 1e-12)), "fraction of samples with NWGM <= E",
              distribution=name, m=100)
        corr, cov, se_mcov = [], [], []
        for m in sizes:
            o = np.clip(draw(rng, (repeats, m)), EPS, 1 - EPS)
            e, nwgm = means.weighted_mean(o), means.normalized_geometric_mean(o)
            c = np.cov(e, nwgm)
            corr.append(float(np.corrcoef(e, nwgm)[0, 1]))
            cov.append(float(c[0, 1]))
            n.add("m_var_e", m * float(c[0, 0]), "m x Var(E) (C1)", distribution=name, m=m)
            n.add("m_var_nwgm", m * float(c[1, 1]), "m x Var(NWGM) (C2)", distribution=name, m=m)
            # standard error of a sample covariance of near-Gaussian pairs: sqrt((var_x var_y + cov^2) / (n - 1))
            se_mcov.append(float(m * np.sqrt((c[0, 0] * c[1, 1] + c[0, 1] ** 2) / (repeats - 1))))
        out["correlation"][name], out["covariance"][name] = corr, cov
        n.add("correlation", corr[-1], "correlation(E, NWGM)", distribution=name, m=sizes[-1])
        n.add("variance_o", float(np.var(np.clip(draw(rng, 1_000_000), EPS, 1 - EPS))), "sigma_O^2 of the distribution",
              distribution=name)
        # the paper's 1/m law is asymptotic (m -> infinity): compare from the middle sample size up
        mid = len(sizes) // 2
        for i in sorted({mid, len(sizes) - 1}):  # one size when there are only two
            n.add("m_covariance", sizes[i] * cov[i], "m x covariance(E, NWGM)", distribution=name, m=sizes[i])
        n.add("se_m_covariance_difference", float(np.hypot(se_mcov[mid], se_mcov[-1])),
              f"SE of the difference of m x covariance at m={sizes[mid]} and m={sizes[-1]}", distribution=name)
    out["numbers"] = n.records()
    return out


def plot(r: dict[str, Any]) -> Any:
    from .._figures import subplots

    fig, axes = subplots(2, 3, figsize=(15, 8))
    for ax, name in zip(axes[:, :2].ravel(), DISTRIBUTIONS, strict=True):
        draw_hist(ax, r["hist"][name]["NWGM"], label="NWGM")
        draw_hist(ax, r["hist"][name]["E"], label="E", linestyle="--")
        ax.set(title=f"Fig. 9.1: {name}, m = 100", xlabel="value over a sample of m = 100", ylabel="density")
        ax.legend(fontsize=9)
    for name in DISTRIBUTIONS:
        axes[0, 2].semilogx(r["sizes"], r["correlation"][name], marker="o", label=name)
        axes[1, 2].loglog(r["sizes"], np.abs(r["covariance"][name]), marker="o", label=name)
    axes[0, 2].set(title="Fig. 9.2: correlation(E, NWGM)", xlabel="sample size m", ylabel="Pearson correlation")
    axes[1, 2].set(title="Fig. 9.2: covariance(E, NWGM)", xlabel="sample size m", ylabel="covariance")
    axes[1, 2].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def _constants_verdict(n: Numbers, r: dict[str, Any], first: int, last: int) -> Verdict:
    """Section 9.3: Var(E) ~ C1/m, Var(NWGM) ~ C2/m, and C1 = sigma_O^2 ~ C2 where sigma_O^2 is small."""
    small = [k for k in DISTRIBUTIONS if n.get("variance_o", distribution=k) < SMALL_VARIANCE]
    c_ratio, c_flat = {}, {}
    for k in small:
        c1, c2 = n.get("m_var_e", distribution=k, m=last), n.get("m_var_nwgm", distribution=k, m=last)
        c_ratio[k] = abs(c2 - c1) / c1
        c2_mid = n.get("m_var_nwgm", distribution=k, m=first)
        c_flat[k] = abs(c2 - c2_mid) / c2
    c_worst = max(max(c_ratio.values()), max(c_flat.values())) if small else float("inf")
    return Verdict(f"Var(E) ~ C1/m and Var(NWGM) ~ C2/m with C1 ~ C2 where sigma_O^2 is small: |C2 - C1| / C1 at m = "
            f"{last} is " + ", ".join(f"{100 * c_ratio[k]:.1f}% ({k})" for k in small) + f"; m Var(NWGM) "
            f"changes by at most {100 * max(c_flat.values(), default=0):.1f}% from m = {first}",
            c_worst <= C_TOLERANCE, source="Section 9.3", measurable=bool(small),
            words="the variance of E(O_S) and NWGM(O_S) are of the same order and behave like C1/m and C2/m "
                  "respectively as m -> infinity. Furthermore sigma_O^2 = C1 ~ C2 if sigma_O^2 is small",
            measured=c_worst, threshold=C_TOLERANCE, noise=2 * (2 / r["repeats"]) ** 0.5,
            basis=f"C2 within {100 * C_TOLERANCE:g}% of C1, and m Var(NWGM) constant within {100 * C_TOLERANCE:g}%"
                  f", for the distributions with sigma_O^2 < {SMALL_VARIANCE:g} (the sampling error of a variance "
                  "from 5,000 repeats is about 2%)")


def verdicts(r: dict[str, Any]) -> list[Verdict]:
    n, first, last = Numbers.of(r), r["sizes"][len(r["sizes"]) // 2], r["sizes"][-1]
    gaps = {k: abs(n.get("mean_e", distribution=k) - n.get("mean_nwgm", distribution=k)) for k in DISTRIBUTIONS}
    means_e = {k: n.get("mean_e", distribution=k) for k in DISTRIBUTIONS}
    se_gap = {k: n.get("sd_nwgm_minus_e", distribution=k) / r["repeats"] ** 0.5 for k in DISTRIBUTIONS}
    # relative gaps, less 4 standard errors of the measured mean gap (estimated from r["repeats"] samples)
    rel = {k: max(0.0, gaps[k] - 4 * se_gap[k]) / means_e[k] for k in DISTRIBUTIONS}
    centred = [k for k in DISTRIBUTIONS if abs(means_e[k] - 0.5) < 0.05]
    away = [k for k in DISTRIBUTIONS if k not in centred]
    corr = {k: n.get("correlation", distribution=k, m=last) for k in DISTRIBUTIONS}
    z = {}
    for k in DISTRIBUTIONS:
        a, b = n.get("m_covariance", distribution=k, m=first), n.get("m_covariance", distribution=k, m=last)
        se = n.get("se_m_covariance_difference", distribution=k)
        z[k] = abs(a - b) / se if se > 0 else 0.0
    kyfan = n.get("fraction_nwgm_le_e", distribution="uniform [0, 0.5]", m=100)
    return [
        Verdict("for distributions centred at 0.5, NWGM is centred on E: relative gaps |E - NWGM| / E of "
                + ", ".join(f"{100 * gaps[k] / means_e[k]:.2f}% ({k})" for k in centred),
                all(rel[k] <= CENTRED_TOLERANCE for k in centred), source="Section 9.3, Fig. 9.1",
                words="Very often, sigma(mu_S) ~ mu_O. This is particularly true if mu_O = 0.5",
                measured=max(rel[k] for k in centred), threshold=CENTRED_TOLERANCE,
                basis=f"a relative gap of at most {100 * CENTRED_TOLERANCE:g}% of E, after 4 standard errors of the "
                      "measured mean gap"),
        Verdict("away from 0.5 the bias of NWGM is relatively small: relative gaps "
                + ", ".join(f"{100 * gaps[k] / means_e[k]:.1f}% ({k})" for k in away),
                all(rel[k] <= AWAY_TOLERANCE for k in away), source="Section 9.3, Fig. 9.1",
                words="Away from 0.5, a bias can appear ... but this bias is relatively small",
                measured=max(rel[k] for k in away), threshold=AWAY_TOLERANCE,
                basis=f"relatively small: at most {100 * AWAY_TOLERANCE:g}% of E, after 4 standard errors"),
        Verdict(f"E and NWGM are strongly correlated: correlation at m = {last} is at least {min(corr.values()):.3f}",
                min(corr.values()) > 0.9, source="Section 9.4, Fig. 9.2",
                words="the Pearson correlation is constant and close to 1", measured=min(corr.values()), threshold=0.9,
                basis="close to 1: above 0.9, the usual 'very strong' band"),
        Verdict(f"the covariance falls like 1/m: m x covariance at m = {first} and m = {last} differ by at most "
                f"{max(z.values()):.1f} standard errors", max(z.values()) < 3.0, source="Section 9.4, Fig. 9.2",
                words="the covariance between NWGM and E goes to 0 ... of order V/m", measured=max(z.values()),
                threshold=3.0, basis="m x covariance constant within 3 standard errors (4 distributions), from the "
                                     "middle sample size up: the law is asymptotic"),
        _constants_verdict(n, r, first, last),
        Verdict(f"for consistently low values (uniform on [0, 0.5]) NWGM <= E in {100 * kyfan:.2f}% of the "
                f"{r['repeats']} samples", kyfan >= 1.0, source="Eq. 81 (Ky Fan)",
                words="if all the O_i < 0.5 then NWGM < E", measured=kyfan, threshold=1.0,
                basis="every sample (an inequality)"),
    ]


EXPERIMENT = Experiment("sampling", "Figs. 9.1-9.2", "Sampling distributions of E and NWGM",
                        "For samples of m values O, NWGM is approximately normally distributed close to E, the two "
                        "are strongly correlated, and their covariance decreases like 1/m.", compute, plot, verdicts)
