"""Longer checks, outside the default run (``make test-slow`` / ``pytest -m slow``)."""

import json

import pytest

from droplab import data, presets, train
from droplab.report import reproduce

pytestmark = pytest.mark.slow


def test_quick_preset_trains_digits_to_a_few_percent():
    p = presets.preset("quick")
    result = train.fit(train.build_model(p.model, seed=0), data.load(p.dataset, normalize=p.normalize), p.train,
                       progress=False)
    assert result.test_error < 3.0  # measured 1.39% (droplab train --preset quick); chance is 90%


def test_quick_reproduce_report(tmp_path):
    summary = reproduce(tmp_path, preset="quick", progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["claims"] == summary["claims"] == sum(len(r["verdicts"]) for r in summary["sections"])
    # the claims that are exact identities hold whatever the training did (the sampling section's claims are
    # statistical tests of the paper's words since 0.5, and two of them fail on the quick preset's numbers: the
    # 19.8% NWGM bias of uniform [0, 0.5], and C2 ~ C1 at 10.1% against a 10% tolerance)
    by_name = {r["name"]: r for r in summary["sections"]}
    for name in ("bounds", "gradients", "exact"):
        assert all(v["holds"] for v in by_name[name]["verdicts"]), by_name[name]["verdicts"]
    assert any(v["holds"] for v in by_name["sampling"]["verdicts"])
    assert sum(g["claims"] for g in summary["groups"].values()) == summary["claims"]
