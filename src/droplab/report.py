"""``droplab reproduce``: run every experiment into one folder and assemble ``report.html``.

Each experiment is a stage: its numbers go to ``stages/<name>.json`` and its figure to ``<name>.png``, both
written atomically, keyed by the settings that produced them. A repeated or interrupted run redoes only the
stages that are missing or were made with other settings; a deleted figure is redrawn from its stage's numbers.
``results.json`` gathers every number and verdict of the report, so each one can be traced to its stage file.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import _interrupt, host, train
from .checkpoint import atomic_save_figure, atomic_write_text, remove_stale_temporaries
from .ensemble import PRECISIONS as MC_PRECISIONS
from .experiments import EXPERIMENTS, STUDY_PRESETS, SUBSTITUTES, StudySettings
from .experiments._base import GROUPS, Context, Experiment, to_json
from .experiments.study import Study

__all__ = ["compare_runs", "default_out", "reproduce"]


def _stage_key(exp: Experiment, preset: str, settings: dict[str, Any], seed: int) -> str:
    from . import __version__

    blob = json.dumps({"experiment": exp.name, "preset": preset, "settings": settings, "seed": seed,
                       "droplab": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


FIGURE_STYLE = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11, "xtick.labelsize": 10,
                "ytick.labelsize": 10, "legend.fontsize": 9, "figure.dpi": 100}


def _save_figure(plot: Any, result: dict[str, Any], path: Path) -> None:
    """Draw with readable fonts and write the PNG atomically, readable by others (0644)."""
    import matplotlib

    with matplotlib.rc_context(FIGURE_STYLE):  # figures are pyplot-free (droplab._figures): no backend switched
        atomic_save_figure(plot(result), path, dpi=100)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _result_digest(result: dict[str, Any]) -> str:
    """A checksum of a stage's result, over its canonical JSON: a hand-edited stage no longer matches."""
    return _digest(json.dumps(result, sort_keys=True, allow_nan=True).encode())


def _cached(exp: Experiment, ctx: Context, out: Path) -> dict[str, Any] | None:
    """The stage's result when its settings key and its content checksum match what wrote it, else None (a
    missing, damaged, hand-edited or foreign stage is recomputed)."""
    key = _stage_key(exp, ctx.preset, ctx.settings.record(), ctx.seed)
    json_path = out / "stages" / f"{exp.name}.json"
    if json_path.is_file():
        try:
            saved = json.loads(json_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError):
            return None  # a damaged stage file is recomputed
        if (isinstance(saved, dict) and saved.get("key") == key and isinstance(saved.get("result"), dict)
                and saved.get("sha256") == _result_digest(saved["result"])):
            return saved["result"]
    return None


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _figure_ok(path: Path, stage: Path) -> bool:
    """Whether the figure is the one its stage drew (its checksum recorded beside the stage)."""
    try:
        data = path.read_bytes()
        recorded = json.loads(stage.with_suffix(".png.json").read_text(encoding="utf-8")).get("sha256")
    except (OSError, ValueError, AttributeError):
        return False
    return data[:8] == PNG_MAGIC and recorded == _digest(data)


def _draw(exp: Experiment, result: dict[str, Any], png_path: Path, stage: Path) -> None:
    _save_figure(exp.plot, result, png_path)
    atomic_write_text(stage.with_suffix(".png.json"), json.dumps({"sha256": _digest(png_path.read_bytes())}) + "\n")


def _readable(exp: Experiment, result: dict[str, Any]) -> bool:
    """Whether a cached result has what the stage's verdicts and numbers read (a stage whose checksum was
    forged over ``{"result": {}}`` has not)."""
    try:
        exp.verdicts(result)
        exp.numbers(result)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError):
        return False
    return True


def _run_stage(exp: Experiment, ctx: Context, out: Path, *, force: bool = False) -> tuple[dict[str, Any], bool]:
    """(result, reused): the cached result when its key and checksum match (unless ``force``), else a fresh one
    saved atomically. A figure that is missing or is not the one the stage drew is redrawn from the numbers."""
    key = _stage_key(exp, ctx.preset, ctx.settings.record(), ctx.seed)
    json_path, png_path = out / "stages" / f"{exp.name}.json", out / f"{exp.name}.png"
    cached = None if force else _cached(exp, ctx, out)
    if cached is not None and not _readable(exp, cached):
        cached = None  # the checksum matches but the content is not a result of this stage: recomputed
    if cached is not None:
        if not _figure_ok(png_path, json_path):  # redrawn from the stage's numbers, not recomputed
            _draw(exp, cached, png_path, json_path)
        return cached, True
    result = to_json(exp.compute(ctx))
    _draw(exp, result, png_path, json_path)
    atomic_write_text(json_path, json.dumps({"key": key, "sha256": _result_digest(result), "result": result}) + "\n")
    return result, False


def default_out(preset: str) -> Path:
    """Where a preset's report goes unless told otherwise: ``reports/<preset>``.

    Args:
        preset: A study preset's name.

    Returns:
        Path: ``reports/<preset>``.
    """
    return Path("reports") / preset


def _claim_folder(out: Path, preset: str, seed: int, precision: str) -> None:
    """Make ``out`` the folder of this preset, seed and precision; refuse one that holds another run's results
    (they would be overwritten: keep runs side by side in their own folders)."""
    from . import __version__

    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder (default: {default_out(preset)})")
    marker, identity = out / "stages" / "preset.txt", out / "stages" / "run.json"
    if marker.is_file():
        other = marker.read_text(encoding="utf-8", errors="replace").strip()
        if other != preset:
            raise ValueError(f"{out} holds the results of the {other!r} preset; a {preset!r} run would write over "
                             f"them. Use --out {default_out(preset)} or another empty folder")
    wanted = {"preset": preset, "seed": seed, "precision": precision}
    if identity.is_file():
        try:
            held = json.loads(identity.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            held = None
        if not isinstance(held, dict):
            raise ValueError(f"{identity} is damaged; delete it (or the folder {out}) to run again")
        differ = [f"{k} {held.get(k)!r} (now {v!r})" for k, v in wanted.items() if held.get(k) != v]
        if differ:
            raise ValueError(f"{out} holds a run with {', '.join(differ)}; this run would write over its report. "
                             "Give each seed and precision its own --out folder (droplab compare reads them side by "
                             "side)")
    elif marker.is_file() and (out / "results.json").is_file():  # a folder of droplab 0.4: seed and precision there
        try:
            held = json.loads((out / "results.json").read_text(encoding="utf-8"))
            held = {"seed": held.get("seed"), "precision": held.get("settings", {}).get("precision", "float32")}
        except (ValueError, OSError, AttributeError):
            held = {}
        differ = [f"{k} {held.get(k)!r} (now {wanted[k]!r})" for k in ("seed", "precision")
                  if k in held and held[k] != wanted[k]]
        if differ:
            raise ValueError(f"{out} holds a run with {', '.join(differ)}; this run would write over its report. "
                             "Give each seed and precision its own --out folder")
    (out / "stages").mkdir(parents=True, exist_ok=True)
    if not marker.is_file():
        atomic_write_text(marker, preset + "\n")
    if not identity.is_file():
        atomic_write_text(identity, json.dumps({**wanted, "droplab": __version__}) + "\n")


def _study_settings(preset: str, dataset: str | None, precision: str, only: Sequence[str] | None) -> StudySettings:
    """The preset's study settings with ``dataset`` and ``precision``, the arguments checked."""
    if precision not in MC_PRECISIONS and precision != "auto":
        raise ValueError(f"precision must be 'auto' or one of {MC_PRECISIONS}, got {precision!r}")
    if preset not in STUDY_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(STUDY_PRESETS)}")
    names = [e.name for e in EXPERIMENTS]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}; expected some of {names}")
    settings = dataclasses.replace(STUDY_PRESETS[preset].settings(), precision=precision)
    if dataset is not None:
        if dataset == "synthetic-linear":
            raise ValueError("the study network is a classifier; choose a classification dataset, not "
                             "'synthetic-linear'")
        settings = dataclasses.replace(settings, data=dataclasses.replace(settings.data, dataset=dataset))
    return settings


def reproduce(out: str | Path | None = None, *, preset: str = "standard", dataset: str | None = None,
              data_dir: str | None = None,
              device: str = "cpu", seed: int = 0, only: Sequence[str] | None = None,
              progress: bool = True, precision: str = "auto", ray: str | None = None) -> dict[str, Any]:
    """Run the experiments (all, or the names in ``only``) and write the report; returns the summary.

    ``precision`` is that of the Monte Carlo products (``ensemble.monte_carlo``'s): ``"auto"`` by default, the
    fastest on this host of float32, bfloat16c and int8c at the study network's shapes (``droplab.host``; int8c on
    a CPU with VNNI: bfloat16c's estimator with the products in int8, within 0.006 Monte Carlo standard errors of
    float64 on the paper network at 10,000 samples; float32 on an AVX2-only CPU, where int8 and bfloat16 products
    run 25-40x slower), or one named: float32, bfloat16, bfloat16x3, bfloat16c, int8c, at the accuracy the README's
    speed table gives. The stages are cached per precision; the comparison arms train in ``"auto"`` precision
    (bfloat16 where it runs >= 1.25x faster). The summary's ``host`` and ``precisions`` say what ran.

    ``ray``: the address of a Ray cluster (``"auto"``: the running one) where the comparison arms train as tasks of
    one CPU each, side by side, with the same results as here (``droplab.experiments._remote``).

    Args:
        out: The report's folder (None: ``reports/<preset>``).
        preset: A study preset: ``"standard"``, ``"paper"``, ``"quick"``, ``"tiny"``.
        dataset: Another dataset of the same input size (None: the preset's).
        data_dir: Where the data's files are.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        seed: The run's seed.
        only: The sections to run (the others appear where their cached stage matches).
        progress: Show progress bars.
        precision: The Monte Carlo products' precision (above).
        ray: A Ray cluster's address for the comparison arms, or None.

    Returns:
        dict: The summary written to ``results.json``: the claims with their verdicts, the sections' seconds, the
            host and the precisions.
    """
    settings = _study_settings(preset, dataset, "float32" if precision == "auto" else precision, only)
    out = default_out(preset) if out is None else Path(out)
    study = Study(out, settings, seed=seed, device=device, data_dir=data_dir, progress=progress)  # (writes nothing)
    choices: dict[str, str] = {}
    if precision == "auto":  # chosen at the study network's shapes, before any stage reads the settings
        choices = _auto_precisions(study, device)
        precision = choices["monte_carlo"]
        study.settings = settings = _study_settings(preset, dataset, precision, only)
    _claim_folder(out, preset, seed, precision)
    remove_stale_temporaries(out)  # what a killed run left half-written
    ctx = Context(preset, settings, study, seed, device, progress, ray=ray)
    # with --only, the other sections still appear when their cached stage matches these settings
    chosen = [e for e in EXPERIMENTS if not only or e.name in only or _cached(e, ctx, out) is not None]
    rows: list[dict[str, Any]] = []
    bar = _bar(len(chosen), progress)
    for exp in chosen:
        t0 = time.perf_counter()
        if bar is not None:
            bar.set_description(exp.name)
        result, reused = _run_stage(exp, ctx, out, force=bool(only) and exp.name in only)  # --only recomputes
        verdicts = exp.verdicts(result)
        rows.append({"name": exp.name, "section": exp.section, "title": exp.title, "claim": exp.claim,
                     "figure": f"{exp.name}.png", "numbers": exp.numbers(result), "reused": reused,
                     "seconds": time.perf_counter() - t0,
                     "verdicts": [v.as_dict() for v in verdicts]})
        if bar is not None:
            bar.update(1)
        _interrupt.check()  # this stage is saved: a Ctrl-C a finalizer swallowed stops here
    if bar is not None:
        bar.close()
    held = sum(v["holds"] for r in rows for v in r["verdicts"])
    total = sum(len(r["verdicts"]) for r in rows)
    groups = {g: {"held": sum(v["holds"] for r in rows for v in r["verdicts"] if v["group"] == g),
                  "claims": sum(v["group"] == g for r in rows for v in r["verdicts"]),
                  "not_measured": sum(v["group"] == g and v["not_measured"] for r in rows for v in r["verdicts"])}
              for g in GROUPS}
    record = study.recorded()  # read from the study file when every stage was reused
    summary = {"preset": preset, "settings": settings.record(), "seed": seed, "device": device,
               "host": host.describe_briefly(device),
               "precisions": {"monte_carlo": settings.precision,
                              "training_study": "float32",
                              "training_arms": choices.get("training") or _arm_precision(study, device),
                              "chosen_by": "auto" if choices else "named"},
               "sections": rows,
               "claims_held": held, "claims": total, "groups": groups,
               "study_test_error": record["test_error"] if record else None,
               "training": [{k: row.get(k) for k in ("epoch", "train_loss", "val_error", "test_error")}
                            for row in (record["metrics"] if record else [])],
               "arms": _arms(out)}
    atomic_write_text(out / "results.json", json.dumps(to_json(summary), indent=1) + "\n")
    atomic_write_text(out / "report.html", _html(summary, out))
    return summary


def _auto_precisions(study: Study, device: str) -> dict[str, str]:
    """What ``precision="auto"`` runs this reproduction's Monte Carlo and arms in, chosen at the study network's
    shapes (its inputs x a Monte Carlo chunk of members; its training batch)."""
    from .ensemble import chunk_size
    from .ensemble._precision import auto_precision

    net = train.build_model(study.model_config(), seed=study.seed).to(device)
    sizes = study.settings.measurements
    x = torch.zeros(sizes.inputs, net.sizes[0], device=device)
    mc = auto_precision(net, x, chunk_size(net, x, samples=sizes.samples))
    return {"monte_carlo": mc, "training": _arm_precision(study, device)}


def _arm_precision(study: Study, device: str) -> str:
    """The precision ``"auto"`` trains the comparison arms in (``experiments.generalization.ARM_PRECISION``)."""
    from .experiments.generalization import ARM_PRECISION

    net = train.build_model(study.model_config(), seed=0)
    config = dataclasses.replace(study.train_config(), precision=ARM_PRECISION)
    return train.resolve_precision(config, net, device).precision


def _host_paragraph(summary: dict[str, Any]) -> str:
    """Where the run ran and in which precisions (absent from reports of droplab before 0.6)."""
    h, p = summary.get("host"), summary.get("precisions")
    if not h or not p:
        return ""
    e = html.escape
    return (f"<p>Host: {e(str(h['cpu']))}, torch capability {e(str(h['capability']))}, {h['cores']} cores, "
            f"{h['torch_threads']} torch threads, torch {e(str(h['torch']))}. Products: Monte Carlo in "
            f"{e(str(p['monte_carlo']))}, the study network's training in {e(str(p['training_study']))}, the "
            f"comparison arms' in {e(str(p['training_arms']))} ("
            + ("chosen for this host by <code>--precision auto</code>" if p.get("chosen_by") == "auto"
               else "Monte Carlo's named by <code>--precision</code>, the arms' chosen for this host")
            + "; <code>droplab info</code> shows why).</p>")


def _arms(out: Path) -> dict[str, Any]:
    """Every compared regularizer's test error, whether it trained, and its learning rate, from the
    generalization stage (empty when that stage has not run)."""
    from .experiments._base import Numbers

    try:
        result = json.loads((out / "stages" / "generalization.json").read_text(encoding="utf-8"))["result"]
        numbers = Numbers.of(result)
        return {label: {"test_error": numbers.get("test_error", regularizer=label),
                        "trained": bool(numbers.get("trained", regularizer=label)),
                        "lr": numbers.get("lr", regularizer=label),
                        **({"l2": numbers.get("l2", regularizer=label)} if label == "L2" else {})}
                for label in result["errors"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="section", dynamic_ncols=True)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return html.escape(str(value))


def _image(out: Path, name: str) -> str:
    """The figure inline (a data URI), so report.html is one file that can be sent."""
    data = base64.b64encode((out / name).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


CSS = ("body{font-family:sans-serif;max-width:1250px;margin:auto;padding:1em;color:#222;line-height:1.4}"
       "section{border-top:1px solid #ccc;margin-top:1.5em}img{max-width:100%}"
       "table{border-collapse:collapse;font-size:0.9em;margin:0.5em 0}td,th{border:1px solid #ddd;padding:3px 6px;"
       "vertical-align:top;text-align:left}th{background:#f3f3f3}.held{color:#176617;font-weight:bold}"
       ".failed{color:#a11;font-weight:bold}.noise{color:#a60}.claim{font-style:italic}"
       ".banner{background:#fff3cd;border:1px solid #e0c36a;padding:0.6em 1em}.words{color:#555}")


def _claims_table(r: dict[str, Any]) -> str:
    e = html.escape
    rows = ["<table><tr><th>verdict</th><th>measured</th><th>paper's words (source)</th><th>paper's number</th>"
            "<th>threshold (basis)</th><th>group</th></tr>"]
    for v in r["verdicts"]:
        if v.get("not_measured"):
            verdict = "<span class='noise'>not measured</span>"
        else:
            verdict = (f"<span class='{'held' if v['holds'] else 'failed'}'>"
                       f"{'holds' if v['holds'] else 'does not hold'}</span>")
        verdict += " <span class='noise'>(at its noise)</span>" if v.get("at_noise") else ""
        threshold = "" if v.get("threshold") is None else _fmt(v["threshold"])
        rows.append(f"<tr><td>{verdict}</td><td>{e(v['text'])}</td><td class='words'>&ldquo;{e(v.get('words', ''))}"
                    f"&rdquo; ({e(v.get('source', ''))})</td><td>{e(v.get('paper', '') or '-')}</td>"
                    f"<td>{threshold} ({e(v.get('basis', ''))})</td><td>{e(v.get('group', ''))}</td></tr>")
    rows.append("</table>")
    return "".join(rows)


def _html(summary: dict[str, Any], out: Path) -> str:
    e = html.escape
    groups = summary["groups"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>droplab reproduction report</title>"
        f"<style>{CSS}</style></head><body>",
        "<h1>The dropout learning algorithm: reproduction report</h1>",
    ]
    if summary["preset"] in SUBSTITUTES:
        parts.append(f"<p class='banner'><b>Substitute setting.</b> {e(SUBSTITUTES[summary['preset']])}</p>")
    s = summary["settings"]
    parts.append(
        f"<p>Baldi &amp; Sadowski (2014), with the CS/DS 541 lecture and the dropout article. Preset "
        f"<b>{e(summary['preset'])}</b>: {e(str(s['dataset']))}, hidden layers {e(str(s['hidden']))}, keep "
        f"{s['keep_input']} (input) / {s['keep_hidden']} (hidden), {s['epochs']} epochs, {s['inputs']} inputs x "
        f"{s['samples']:,} dropout samples; seed {summary['seed']}, device {e(summary['device'])}"
        + (f", Monte Carlo products in {e(s['precision'])}" if s.get("precision") else "") + ".</p>"
        + _host_paragraph(summary) +
        "<table><tr><th>claims of</th><th>hold</th></tr>"
        + "".join(f"<tr><td>{e(GROUPS[g])}</td><td><b>{c['held']} of {c['claims']}</b>"
                  + (f" ({c['not_measured']} not measured)" if c.get("not_measured") else "") + "</td></tr>"
                  for g, c in groups.items())
        + "</table><p>A verdict marked <span class='noise'>at its noise</span> lies within two standard errors of its "
          "threshold and may flip with the seed. Every number is in <code>results.json</code> and its stage file.</p>"
          "<ul>")
    parts += [f"<li><a href='#{e(r['name'])}'>{e(r['section'])}: {e(r['title'])}</a> "
              f"({sum(v['holds'] for v in r['verdicts'])} of {len(r['verdicts'])})</li>" for r in summary["sections"]]
    parts.append("</ul>")
    for r in summary["sections"]:
        parts.append(f"<section id='{e(r['name'])}'><h2>{e(r['section'])}: {e(r['title'])}</h2>")
        parts.append(f"<p class='claim'>Claim: {e(r['claim'])}</p>")
        parts.append(f"<img src='{_image(out, r['figure'])}' alt='{e(r['section'])}: {e(r['title'])}'>")
        parts.append(_claims_table(r))
        if r["numbers"]:
            parts.append(f"<details><summary>all measured numbers ({len(r['numbers'])})</summary><table>"
                         + "".join(f"<tr><td>{e(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in r["numbers"].items())
                         + "</table></details>")
        parts.append(f"<p><small>stage stages/{e(r['name'])}.json, figure {e(r['figure'])}"
                     f"{' (reused)' if r['reused'] else ''}, {r['seconds']:.1f} s</small></p></section>")
    parts += _sweep_sections(out)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _sweep_sections(out: Path) -> list[str]:
    """Sweeps run next to the report (``droplab sweep --out <report>/sweeps/<name>``): their plots and results."""
    import csv

    e = html.escape
    parts = []
    for folder in sorted(p.parent for p in (out / "sweeps").glob("*/results.csv")):
        with (folder / "results.csv").open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            continue
        parts.append(f"<section id='sweep-{e(folder.name)}'><h2>Sweep: {e(folder.name)}</h2>"
                     f"<p>{len(rows)} trials (droplab sweep, results in sweeps/{e(folder.name)}/results.csv).</p>")
        for png in sorted(folder.glob("*.png")):
            parts.append(f"<img src='{_image(folder, png.name)}' alt='sweep {e(folder.name)}: {e(png.stem)}'>")
        shown = [c for c in rows[0] if c not in ("trial", "checkpoint", "error")]
        parts.append("<details><summary>every trial</summary><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in shown)
                     + "</tr>" + "".join("<tr>" + "".join(f"<td>{e(r[c])}</td>" for c in shown) + "</tr>"
                                         for r in rows) + "</table></details></section>")
    return parts


def _results_problem(run: dict[str, Any]) -> str | None:
    """What is wrong with the structure ``compare`` reads from a results.json, or None."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    for key, kind in (("settings", dict), ("host", dict), ("precisions", dict)):
        if key in run and run[key] is not None and not isinstance(run[key], kind):
            return f"'{key}' is {type(run[key]).__name__}, not an object"
    if "seed" in run and not (isinstance(run["seed"], int) and not isinstance(run["seed"], bool)):
        return f"'seed' is {run['seed']!r}, not an integer"
    groups = run.get("groups")
    for g in GROUPS:
        entry = groups.get(g) if isinstance(groups, dict) else None
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool)
                                                  for k in ("held", "claims")):
            return f"'groups' lacks the counts ('held', 'claims') of the group {g!r}"
    for s, section in enumerate(run["sections"]):
        if not isinstance(section, dict) or not isinstance(section.get("name"), str) \
                or not isinstance(section.get("verdicts"), list):
            return f"section {s} lacks its name or its list of verdicts"
        for i, v in enumerate(section["verdicts"]):
            where = f"section {section['name']!r}, claim {i}"
            if not isinstance(v, dict):
                return f"{where} is not an object"
            for key in ("group", "text"):
                if not isinstance(v.get(key), str):
                    return f"{where}: '{key}' is {v.get(key)!r}, not text"
            if v.get("paper") is not None and not isinstance(v["paper"], str):
                return f"{where}: 'paper' is {v['paper']!r}, not text"
            if not isinstance(v.get("holds"), bool):
                return f"{where}: 'holds' is {v.get('holds')!r}, not true or false"
            if v.get("threshold") is not None and not number(v["threshold"]):
                return f"{where}: 'threshold' is {v['threshold']!r}, not a number"
            if "measured" not in v:
                return f"{where} has no 'measured'"
    return None


def _comparable_runs(folders: list[Path], across: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Each folder's ``results.json``, refused unless the runs differ only in their seed (and in what ``across``
    names: ``"precision"``, ``"preset"``)."""
    runs = []
    for folder in folders:
        path = Path(folder) / "results.json"
        try:
            runs.append(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ValueError(f"{path} does not exist; run droplab reproduce --out {folder} first") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a droplab results file ({exc}); run droplab reproduce again") from None
    if not runs:
        raise ValueError("give at least one report folder")
    resolved = [Path(f).resolve() for f in folders]
    if len(set(resolved)) != len(resolved):
        raise ValueError("a folder is given twice; give each run once")
    for folder, run in zip(folders, runs, strict=True):
        if not isinstance(run, dict) or not isinstance(run.get("sections"), list) or "groups" not in run:
            raise ValueError(f"{Path(folder) / 'results.json'} is not a droplab results file (no sections); run "
                             f"droplab reproduce --out {folder} again")
        problem = _results_problem(run)
        if problem:
            raise ValueError(f"{Path(folder) / 'results.json'} is damaged: {problem}; run droplab reproduce --out "
                             f"{folder} again")

    def setting(run: dict[str, Any]) -> dict[str, Any]:
        if "preset" in across:
            return {} if "precision" in across else {"precision": run.get("settings", {}).get("precision", "float32")}
        return {**({} if "precision" in across else
                   {"precision": run.get("settings", {}).get("precision", "float32")}),
                "preset": run.get("preset"), **{k: v for k, v in run.get("settings", {}).items() if k != "precision"}}

    first = setting(runs[0])
    for folder, run in zip(folders[1:], runs[1:], strict=True):
        other = setting(run)
        differ = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
        if differ:
            shown = ", ".join(f"{k} {first.get(k)!r} against {other.get(k)!r}" for k in differ[:4])
            raise ValueError(f"{folder} is not comparable with {folders[0]}: {shown}. Compare runs of one preset "
                             "and precision that differ only in their seed, or name what may differ with "
                             "--across precision / preset")
    return runs


def _run_label(run: dict[str, Any]) -> str:
    """A run named by what may differ between compared runs: preset, seed, precisions, host capability."""
    p = run.get("precisions") or {}
    mc = p.get("monte_carlo", run.get("settings", {}).get("precision", "float32"))
    where = (run.get("host") or {}).get("capability")
    return (f"{run.get('preset')} seed {run.get('seed')}, Monte Carlo {mc}"
            + (f", arms {p['training_arms']}" if p.get("training_arms") else "") + (f", {where}" if where else ""))


def _claims(run: dict[str, Any]) -> dict[tuple[str, str, str, int], tuple[dict[str, Any], dict[str, Any]]]:
    """A run's claims keyed by what they claim (section, source, the paper's words, and which of that section's
    claims with the same source and words), not by position: a preset that makes a claim more (the paper preset's
    published numbers) leaves the others matched."""
    out: dict[tuple[str, str, str, int], tuple[dict[str, Any], dict[str, Any]]] = {}
    for section in run["sections"]:
        seen: dict[tuple[str, str], int] = {}
        for v in section["verdicts"]:
            base = (v.get("source", ""), v.get("words", ""))
            out[(section["name"], *base, seen.get(base, 0))] = (section, v)
            seen[base] = seen.get(base, 0) + 1
    return out


def compare_runs(folders: Sequence[str | Path], across: Sequence[str] = ()) -> str:
    """A Markdown table of every claim across runs (e.g. seeds): the measured number's range, the verdicts,
    and whether the verdict flips. Each folder holds a ``results.json`` from ``reproduce``. ``across``
    (``"precision"``, ``"preset"``) admits runs that differ in those too: each run is named, and the claims whose
    verdicts differ are listed after the table with every run's number.

    Args:
        folders: Report folders, each with its ``results.json``.
        across: What the runs may differ in besides the seed: ``"precision"``, ``"preset"``.

    Returns:
        str: The Markdown table, and the claims whose verdicts differ.

    Raises:
        ValueError: A folder without a report, or runs that differ in what ``across`` does not admit.
    """
    unknown = sorted(set(across) - {"precision", "preset"})
    if unknown:
        raise ValueError(f"across takes 'precision' and/or 'preset', got {unknown}")
    folders = [Path(f).parent if Path(f).name == "results.json" and Path(f).is_file() else Path(f) for f in folders]
    runs = _comparable_runs(folders, across)
    claims = [_claims(run) for run in runs]  # per run: claim key -> (section, verdict)
    if "preset" not in across and any(list(c) != list(claims[0]) for c in claims):
        raise ValueError("the runs have different sections or claims; compare runs of the same droplab version")
    order: list[tuple[str, str, str, int]] = []  # every claim of any run, in the first run's section order
    for c in claims:
        for key in c:
            if key not in order:
                later = [k for k in order if k[0] == key[0]]
                order.insert(order.index(later[-1]) + 1 if later else len(order), key)
    seeds = ", ".join(str(run["seed"]) for run in runs)
    lines = [f"| group | section | claim (seed {runs[0]['seed']}) | paper | measured (seeds {seeds}) | threshold | "
             "holds |", "|---|---|---|---|---|---|---|"]
    differ, partial = [], []
    for key in order:
        present = [(k, c[key]) for k, c in enumerate(claims) if key in c]
        section, v = present[0][1]
        vs = [x for _, (_, x) in present]
        values = [x["measured"] for x in vs if isinstance(x["measured"], (int, float))]
        measured = (f"{min(values):.4g}" if len(set(values)) <= 1 else f"{min(values):.4g} to {max(values):.4g}"
                    ) if values else "-"
        held = sum(x["holds"] for x in vs)
        unmeasured = sum(bool(x.get("not_measured")) for x in vs)
        verdict = ("not measured" if unmeasured == len(vs) else "yes" if held == len(vs) else "no" if held == 0
                   else f"{held} of {len(vs)} (flips: at its noise)")
        if unmeasured and unmeasured < len(vs):
            verdict += f"; not measured in {unmeasured}"
        if len(present) < len(runs):
            verdict += f"; only in run{'s' if len(present) > 1 else ''} {', '.join(str(k + 1) for k, _ in present)}"
            partial.append(f"- {section['section']}: {v['text']} (only in run "
                           f"{', '.join(str(k + 1) for k, _ in present)})")
        threshold = "-" if v["threshold"] is None else f"{v['threshold']:.4g}"
        text = v["text"].replace("|", "\\|")
        lines.append(f"| {v['group']} | {section['section']} | {text} | {v['paper'] or '-'} | {measured} | "
                     f"{threshold} | {verdict} |")
        if len({bool(x["holds"]) for x in vs}) > 1:
            shown = ", ".join(f"({k + 1}) {x['measured']:.4g} {'holds' if x['holds'] else 'does not hold'}"
                              if isinstance(x["measured"], (int, float)) else
                              f"({k + 1}) {'holds' if x['holds'] else 'does not hold'}" for k, (_, x) in present)
            differ.append(f"- {section['section']}: {v['text']}: {shown}")
    lines.append("")
    for g in GROUPS:
        if len({run["groups"][g]["claims"] for run in runs}) == 1:
            held = ", ".join(str(run["groups"][g]["held"]) for run in runs)
            lines.append(f"- {GROUPS[g]}: {held} of {runs[0]['groups'][g]['claims']} hold (seeds {seeds})")
        else:  # presets that make different numbers of claims
            held = ", ".join(f"{run['groups'][g]['held']} of {run['groups'][g]['claims']}" for run in runs)
            lines.append(f"- {GROUPS[g]}: {held} hold (runs 1-{len(runs)})")
    if across:
        lines += ["", "Runs: " + "; ".join(f"({k + 1}) {_run_label(run)}" for k, run in enumerate(runs)), ""]
        lines += [f"Claims whose verdict differs between the runs: {len(differ)}"] + differ
        if partial:
            lines += ["", f"Claims only some runs make: {len(partial)}"] + partial
    return "\n".join(lines) + "\n"
