"""``droplab reproduce``: run every experiment into one folder and assemble ``report.html``.

Each experiment is a stage: its numbers go to ``stages/<name>.json`` and its figure to ``<name>.png``, both
written atomically, keyed by the settings that produced them. A repeated or interrupted run redoes only the
stages that are missing or were made with other settings. ``results.json`` gathers every number and verdict
of the report, so each one can be traced to its stage file.
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_text
from .experiments import EXPERIMENTS, PRESETS
from .experiments._base import Context, Experiment, to_json
from .experiments.study import Study

__all__ = ["reproduce"]


def _stage_key(exp: Experiment, preset: str, settings: dict[str, Any], seed: int) -> str:
    from . import __version__

    blob = json.dumps({"experiment": exp.name, "preset": preset, "settings": settings, "seed": seed,
                       "droplab": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _save_figure(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)


def _cached(exp: Experiment, ctx: Context, out: Path) -> dict[str, Any] | None:
    key = _stage_key(exp, ctx.preset, ctx.settings, ctx.seed)
    json_path, png_path = out / "stages" / f"{exp.name}.json", out / f"{exp.name}.png"
    if json_path.is_file() and png_path.is_file():
        try:
            saved = json.loads(json_path.read_text())
        except json.JSONDecodeError:
            return None  # a damaged stage file is recomputed
        if saved.get("key") == key:
            return saved["result"]
    return None


def _run_stage(exp: Experiment, ctx: Context, out: Path) -> tuple[dict[str, Any], bool]:
    """(result, reused): the cached result when its key matches, else a fresh one saved atomically."""
    key = _stage_key(exp, ctx.preset, ctx.settings, ctx.seed)
    json_path, png_path = out / "stages" / f"{exp.name}.json", out / f"{exp.name}.png"
    cached = _cached(exp, ctx, out)
    if cached is not None:
        return cached, True
    result = to_json(exp.compute(ctx))
    _save_figure(exp.plot(result), png_path)
    atomic_write_text(json_path, json.dumps({"key": key, "result": result}) + "\n")
    return result, False


def reproduce(out: str | Path, *, preset: str = "quick", dataset: str | None = None, data_dir: str | None = None,
              device: str = "cpu", seed: int = 0, only: Sequence[str] | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Run the experiments (all, or the names in ``only``) and write the report; returns the summary."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    names = [e.name for e in EXPERIMENTS]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; expected some of {names}")
    settings = dict(PRESETS[preset])
    if dataset is not None:
        if dataset == "synthetic-linear":
            raise ValueError("the study network is a classifier; choose a classification dataset, not "
                             "'synthetic-linear'")
        settings["dataset"] = dataset
    out = Path(out)
    (out / "stages").mkdir(parents=True, exist_ok=True)
    study = Study(out, settings, seed=seed, device=device, data_dir=data_dir, progress=progress)
    ctx = Context(preset, settings, study, seed, device, progress)
    # with --only, the other sections still appear when their cached stage matches these settings
    chosen = [e for e in EXPERIMENTS if not only or e.name in only or _cached(e, ctx, out) is not None]
    rows: list[dict[str, Any]] = []
    bar = _bar(len(chosen), progress)
    for exp in chosen:
        t0 = time.perf_counter()
        if bar is not None:
            bar.set_description(exp.name)
        result, reused = _run_stage(exp, ctx, out)
        verdicts = exp.verdicts(result)
        rows.append({"name": exp.name, "section": exp.section, "title": exp.title, "claim": exp.claim,
                     "figure": f"{exp.name}.png", "numbers": exp.numbers(result), "reused": reused,
                     "seconds": time.perf_counter() - t0,
                     "verdicts": [{"text": v.text, "holds": v.holds} for v in verdicts]})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    held = sum(v["holds"] for r in rows for v in r["verdicts"])
    total = sum(len(r["verdicts"]) for r in rows)
    summary = {"preset": preset, "settings": settings, "seed": seed, "device": device, "sections": rows,
               "claims_held": held, "claims": total}
    atomic_write_text(out / "results.json", json.dumps(to_json(summary), indent=1) + "\n")
    atomic_write_text(out / "report.html", _html(summary))
    return summary


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="section", dynamic_ncols=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return html.escape(str(value))


def _html(summary: dict[str, Any]) -> str:
    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>droplab reproduction report</title><style>"
        "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}"
        "section{border-top:1px solid #ccc;margin-top:1.5em}img{max-width:100%}"
        "table{border-collapse:collapse;font-size:0.85em}td{border:1px solid #ddd;padding:2px 6px}"
        ".held{color:#176617}.failed{color:#a11}.claim{font-style:italic}</style></head><body>",
        "<h1>The dropout learning algorithm: reproduction report</h1>",
        f"<p>Baldi &amp; Sadowski (2014), with the CS/DS 541 lecture and the dropout article. Preset "
        f"<b>{e(summary['preset'])}</b> on <b>{e(str(summary['settings']['dataset']))}</b>, seed {summary['seed']}, "
        f"device {e(summary['device'])}. <b>{summary['claims_held']} of {summary['claims']}</b> measured claims "
        "hold here. Every number below is in <code>results.json</code> and its stage file.</p><ul>",
    ]
    parts += [f"<li><a href='#{e(r['name'])}'>{e(r['section'])}: {e(r['title'])}</a></li>" for r in summary["sections"]]
    parts.append("</ul>")
    for r in summary["sections"]:
        parts.append(f"<section id='{e(r['name'])}'><h2>{e(r['section'])}: {e(r['title'])}</h2>")
        parts.append(f"<p class='claim'>Claim: {e(r['claim'])}</p>")
        parts.append(f"<img src='{e(r['figure'])}' alt='{e(r['section'])}'>")
        parts.append("<ul>" + "".join(
            f"<li class='{'held' if v['holds'] else 'failed'}'>{'holds' if v['holds'] else 'does not hold'}: "
            f"{e(v['text'])}</li>" for v in r["verdicts"]) + "</ul>")
        if r["numbers"]:
            parts.append("<table>" + "".join(f"<tr><td>{e(str(k))}</td><td>{_fmt(v)}</td></tr>"
                                             for k, v in r["numbers"].items()) + "</table>")
        parts.append(f"<p><small>stage stages/{e(r['name'])}.json"
                     f"{' (reused)' if r['reused'] else ''}, {r['seconds']:.1f} s</small></p></section>")
    parts.append("</body></html>\n")
    return "\n".join(parts)

