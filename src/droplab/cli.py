"""The ``droplab`` command: ``train``, ``evaluate``, ``reproduce``, ``compare``, ``sweep`` and ``info``.

Settings come from, in increasing priority: a preset (``--preset``), a TOML file (``--config``), flags.
Any bad input ends with one line on stderr, ``droplab: error: ...``, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, NoReturn

from . import _interrupt
from . import data as data_mod
from ._toml import read_toml
from .config import DataConfig, ModelConfig, to_toml
from .ensemble import PRECISIONS as MC_PRECISIONS
from .presets import PRESETS, resolve
from .train import TrainConfig, load_model, resolve_device, run

MODEL_KEYS = tuple(f.name for f in fields(ModelConfig))
DATA_KEYS = tuple(f.name for f in fields(DataConfig))
TOP_KEYS = ("preset", "out", "device", "model", "train", "data")


def _registry() -> dict[str, Any]:
    from .ensemble import ESTIMATORS

    return ESTIMATORS


def _eval_estimators() -> tuple[str, ...]:
    from .ensemble import ESTIMATORS

    return tuple(e.cli for e in ESTIMATORS.values())


class UsageError(Exception):
    """A problem with what the user asked for; reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _path(text: str) -> Path:
    """A path flag's value: not empty (an unset shell variable would otherwise mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a path, got {text!r}")
    return Path(text)


def _text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a value, got {text!r}")
    return text


def _floats(text: str) -> float | list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or comma-separated numbers, got {text!r}") from None
    return values[0] if len(values) == 1 else values


def _ints(text: str) -> list[int]:
    try:
        sizes = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 784,800,10, got {text!r}") from None
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError(f"expected at least two layer sizes (inputs ... outputs) like 784,800,10, "
                                         f"got {text!r}")
    return sizes


def _backward(text: str) -> str | float:
    if text == "derivative":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'derivative' or a probability, got {text!r}") from None


def _add_data_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=data_mod.DATASETS, help="dataset (default: the preset's)")
    p.add_argument("--data-dir", type=_text,
                   help="folder holding the IDX files (else $DROPLAB_DATA, the cache, /usr/share/datasets)")
    p.add_argument("--no-download", dest="download", action="store_false", default=None,
                   help="fail instead of downloading missing files")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: cpu)")


def _add_config_flags(group: Any, cls: type, prefix: str, shown: Any) -> None:
    """One flag per field of a config dataclass, with its help, type, choices and the shown preset's value."""
    parsers = {"int": int, "float": float, "str": str, "floats": _floats, "ints": _ints, "backward": _backward}
    for f in fields(cls):
        meta = f.metadata
        flag = "--" + f.name.replace("_", "-")
        value = getattr(shown, f.name)
        default = ",".join(map(str, value)) if isinstance(value, tuple) else ("none" if value is None else value)
        if meta.get("kind") == "bool":
            group.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f"{prefix}_{f.name}", action="store_false",
                               default=None, help=meta.get("off_help", f"do not: {meta['help']}"))
            continue
        group.add_argument(flag, dest=f"{prefix}_{f.name}", type=parsers.get(meta.get("kind") or "str", str),
                           choices=meta.get("choices"), default=None, metavar=None if meta.get("choices") else
                           f.name.upper(), help=f"{meta['help']} (quick: {default})".replace("%", "%%"))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="droplab", description="The dropout learning algorithm (Baldi & Sadowski, 2014).")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of any error (also DROPLAB_DEBUG=1); without it a mistake in "
                             "the input is one line, and an error raised outside droplab's own checks, which is a "
                             "bug, shows its traceback")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_train_parser, _evaluate_parser, _reproduce_parser, _sweep_parser, _compare_parser, _info_parser):
        add(sub)
    return parser


def _info_parser(sub: Any) -> None:
    i = sub.add_parser("info", help="the host as droplab sees it: CPU, peaks per precision, what 'auto' chooses",
                       description="The CPU's model and capability, cores and torch threads, the products' measured "
                                   "rates per precision (float32, bfloat16, int8 at 1024 x 1024 x 1024) and the "
                                   "precisions precision='auto' chooses for Monte Carlo and for training on the "
                                   "paper network (784-1200x4-10). The probe's timings are cached on disk.")
    i.add_argument("--json", action="store_true", help="one JSON object instead of lines")


def cmd_info(args: argparse.Namespace) -> int:
    from . import host

    d = host.describe()
    if args.json:
        print(json.dumps(d, indent=1))
        return 0
    p = d["peaks_gflops"]
    print(f"cpu: {d['cpu']} ({d['machine']}; {', '.join(d['flags']) or 'no flags read'})")
    print(f"capability: {d['capability']} (torch {d['torch']})")
    print(f"cores: {d['cores']}, torch threads: {d['torch_threads']}")
    print(f"peaks: float32 {p['float32']:.1f} GFLOP/s, bfloat16 {p['bfloat16']:.1f} GFLOP/s, "
          f"int8 {p['int8']:.1f} GOP/s (1024 x 1024 x 1024 products)")
    net = "-".join(map(str, d["network"]))
    print(f"monte carlo precision: {d['monte_carlo_precision']} ({net}, {d['mc_rows']} rows a chunk; "
          f"{d['monte_carlo_reason']})")
    print(f"training precision: {d['training_precision']} ({net}, batch {d['batch']}; {d['training_reason']})")
    if d["cuda"]:
        print(f"cuda: {d['cuda']}")
    print(f"probe cache: {d['cache']}")
    return 0


def _train_parser(sub: Any) -> None:
    t = sub.add_parser("train", help="train a DropoutMLP",
                       description="Train a DropoutMLP and save checkpoints. Settings come from the preset, then "
                                   "the --config TOML file, then the flags; --show prints the result as TOML.")
    t.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="starting configuration: " + "; ".join(f"{k}: {v.description}" for k, v in
                                                             sorted(PRESETS.items())) + " (default: quick)")
    t.add_argument("--config", type=_path, help="TOML file with [model], [train], [data] tables (keys as the flags)")
    t.add_argument("--show", action="store_true", help="print the settings as TOML (preset, file and flags "
                                                       "resolved) and exit without training")
    t.add_argument("--out", type=_path, help="output folder for checkpoints and metrics (default: runs/<preset>)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                                                         "(a larger --epochs extends a finished run)")
    t.add_argument("--force", action="store_true", help="start afresh in an --out that holds an earlier run "
                                                        "(its checkpoints and metrics are replaced)")
    t.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    t.add_argument("--tensorboard", type=_path, metavar="DIR", help="also log to TensorBoard in DIR: scalars every "
                                                                     "epoch, hyperparameters and final metrics at the "
                                                                     "end (pip install 'droplab[tensorboard]')")
    t.add_argument("--device", default=None, help="cpu, cuda, cuda:N or auto (default: cpu)")
    quick = PRESETS["quick"]
    _add_config_flags(t.add_argument_group("data (defaults: the preset's; quick's shown)"), DataConfig, "data",
                      DataConfig(dataset=quick.dataset, normalize=quick.normalize))
    _add_config_flags(t.add_argument_group("model (defaults: the preset's; quick's shown)"), ModelConfig, "model",
                      quick.model)
    _add_config_flags(t.add_argument_group("training (defaults: the preset's; quick's shown)"), TrainConfig,
                      "train", quick.train)


def _evaluate_parser(sub: Any) -> None:
    e = sub.add_parser("evaluate", help="test error and calibration of a checkpoint",
                       description="Test error, negative log-likelihood, Brier score and expected calibration error "
                                   "of a checkpoint with one or more ensemble estimators.")
    e.add_argument("checkpoint", type=_path, help="a .safetensors checkpoint (e.g. runs/quick/best.safetensors)")
    e.add_argument("--estimator", nargs="+", choices=_eval_estimators(), default=["weight-scaled"],
                   help="how the ensemble is averaged (several may be given): " + "; ".join(
                       f"{est.cli}: {est.summary}" for est in _registry().values()))
    e.add_argument("--samples", type=int, default=100, help="Monte Carlo samples per input (default 100)")
    e.add_argument("--seed", type=_seed, default=0, help="seed of the Monte Carlo masks")
    _add_data_flags(e)
    e.add_argument("--reliability", type=_path, metavar="DIR",
                   help="also write a reliability diagram per estimator into DIR (reliability-<estimator>.png)")
    e.add_argument("--ood", choices=data_mod.DATASETS, metavar="DATASET",
                   help="also score out-of-distribution detection against DATASET's test inputs (same input size, "
                        "e.g. fashion-mnist for an mnist network): AUROC, AUPR and FPR at 95%% TPR of the "
                        "predictive entropy")
    e.add_argument("--json", action="store_true", help="print the result as JSON")


def _reproduce_parser(sub: Any) -> None:
    from .experiments import EXPERIMENTS
    from .experiments import PRESETS as STUDY_PRESETS

    r = sub.add_parser("reproduce", help="run the paper's and the lecture's simulations into one report",
                       description="Reproduce every simulation of the paper and the lecture into report.html, "
                                   "figures and results.json. Stages are cached in --out.")
    r.add_argument("--preset", choices=sorted(STUDY_PRESETS), default="standard",
                   help="standard (the default: the paper's network on 10,000 MNIST digits), paper (the same on "
                        "MNIST's own 60,000 + 10,000 digits; about an hour on 2 cores), quick (a no-download "
                        "substitute on 8x8 digits), tiny (seconds, for tests)")
    r.add_argument("--dataset", choices=[d for d in data_mod.DATASETS if d != "synthetic-linear"],
                   help="classification dataset of the study network (default: the preset's)")
    r.add_argument("--data-dir", type=_text, help="folder holding the IDX files")
    r.add_argument("--out", type=_path, default=None, help="output folder (default: reports/<preset>)")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    r.add_argument("--seed", type=_seed, default=0, help="seed of the study network, the inputs and the masks")
    r.add_argument("--precision", choices=("auto", *MC_PRECISIONS), default="auto",
                   help="Monte Carlo products: auto (default: the fastest of float32, bfloat16c and int8c on this "
                        "host, never one slower than float32; `droplab info` says which), int8c (int8 products, "
                        "stochastically rounded weights and inputs, each chunk's mean made exact; 0.006 Monte Carlo "
                        "SE from float64 at 10,000 samples), bfloat16c (the same in bfloat16: 0.025 SE), float32, "
                        "bfloat16 (a bias of about 1.7 SE) or bfloat16x3 (0.03 SE, slower)")
    r.add_argument("--only", nargs="+", choices=[e.name for e in EXPERIMENTS], metavar="SECTION",
                   help=f"run only these sections: {', '.join(e.name for e in EXPERIMENTS)}")
    r.add_argument("--ray", type=_text, metavar="ADDRESS", default=None,
                   help="train the comparison arms as Ray tasks on the cluster at ADDRESS (auto: the running one; "
                        "host:port), one CPU each, with the same results as a local run (pip install "
                        "'droplab[sweep]')")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _sweep_parser(sub: Any) -> None:
    w = sub.add_parser("sweep", help="many trainings over keep rates, sizes, data and seeds, on Ray Tune",
                       description="Run a sweep of trainings on Ray Tune (pip install 'droplab[sweep]'): locally, or "
                                   "on a cluster with --address. Writes results.csv, plots and each trial's "
                                   "checkpoints into --out; --resume finishes an interrupted sweep.")
    source = w.add_mutually_exclusive_group()
    from .sweep import PRESETS as SWEEPS

    source.add_argument("--preset", help="a sweep preset: " + "; ".join(
        f"{name} ({sweep.get('about', ', '.join(sweep.get('grid', {})))})" for name, sweep in SWEEPS.items()))
    source.add_argument("--config", type=_path, help="a sweep TOML file (see droplab.sweep for its keys)")
    w.add_argument("--out", type=_path, help="the sweep's folder (default: sweeps/<name>)")
    w.add_argument("--resume", action="store_true", help="finish the sweep in --out: only trials that had not "
                                                         "finished run")
    w.add_argument("--address", type=_text, help="join an existing Ray cluster (e.g. 10.0.0.1:6379 or auto); "
                                                 "default: a local Ray on this machine")
    w.add_argument("--cpus", type=int, help="CPUs a local Ray may use (default: all)")
    w.add_argument("--progress", action="store_true", help="show Ray Tune's progress tables")


def _compare_parser(sub: Any) -> None:
    c = sub.add_parser("compare", help="compare reproduction reports (e.g. seeds) claim by claim",
                       description="Print a Markdown table of every claim across report folders: the spread of "
                                   "its measured number and whether its verdict flips.")
    c.add_argument("folders", nargs="+", type=_path, help="report folders, each with a results.json")
    c.add_argument("--across", action="append", choices=("precision", "preset"), default=[],
                   help="also compare runs that differ in these (precision: the Monte Carlo and training precisions, "
                        "and the host; preset: e.g. standard against paper, with their settings); each run is "
                        "named, and the claims whose verdicts differ are listed with each run's number")


def _seed(text: str) -> int:
    """A seed torch's generators take: an integer in [0, 2^63 - 1)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**63 - 1:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2^63 - 1), got {text}")
    return value


# ----------------------------------------------------------------------------------------------------
def _read_toml(path: Path) -> dict[str, Any]:
    cfg = read_toml(path, "config file")
    sizes = cfg.get("model", {}).get("sizes") if isinstance(cfg.get("model"), dict) else None
    if sizes is not None and not (isinstance(sizes, list) and all(isinstance(n, int) for n in sizes)):
        raise UsageError(f"{path} [model] sizes must be a list of layer sizes like [784, 1200, 10], got {sizes!r}")
    _check_keys(cfg, TOP_KEYS, f"{path}")
    _check_keys(cfg.get("model", {}), MODEL_KEYS, f"{path} [model]")
    _check_keys(cfg.get("train", {}), TrainConfig.field_names(), f"{path} [train]")
    _check_keys(cfg.get("data", {}), DATA_KEYS, f"{path} [data]")
    return cfg


def _check_keys(table: Any, allowed: Any, where: str) -> None:
    if not isinstance(table, dict):
        raise UsageError(f"{where} must be a table")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise UsageError(f"unknown key(s) {unknown} in {where}; expected some of {sorted(allowed)}")


def _train_settings(args: argparse.Namespace) -> dict[str, Any]:
    cfg = _read_toml(args.config) if args.config else {}
    name = args.preset or cfg.get("preset", "quick")
    if name not in PRESETS:
        raise UsageError(f"unknown preset {name!r} in {args.config}; expected one of {sorted(PRESETS)}")

    def flags(prefix: str, cls: type) -> dict[str, Any]:
        return {f.name: getattr(args, f"{prefix}_{f.name}") for f in fields(cls)
                if getattr(args, f"{prefix}_{f.name}", None) is not None}

    tables = {table: {**cfg.get(table, {}), **flags(table, cls)}
              for table, cls in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))}
    try:
        settings = resolve(name, tables, where=f"{args.config}" if args.config else "the flags")
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from None
    for key in ("out", "device"):
        if key in cfg and not (isinstance(cfg[key], str) and cfg[key].strip()):
            raise UsageError(f"{key} in {args.config} must be text ({'a folder' if key == 'out' else 'cpu, cuda, '}"
                             f"{'' if key == 'out' else 'cuda:N or auto'}), got {cfg[key]!r}")
    out = args.out or (Path(cfg["out"]) if "out" in cfg else Path("runs") / name)
    device = args.device or cfg.get("device", "cpu")
    return dict(preset=name, data=settings.data.as_dict(), model=settings.model, train=settings.train, out=out,
                device=device, settings=settings)


def _show(s: dict[str, Any]) -> str:
    return to_toml({"preset": s["preset"], "out": str(s["out"]), "device": s["device"], "data": s["data"],
                    "model": s["model"].as_dict(), "train": asdict(s["train"])})


def _load_data(cfg: dict[str, Any], seed: int) -> data_mod.Dataset:
    return DataConfig.from_run(cfg).load(seed=seed)


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume and args.force:
        raise UsageError("--resume continues the run in --out and --force replaces it; give one of them")
    s = _train_settings(args)
    if args.show:
        print(_show(s), end="")
        return 0
    out = Path(s["out"])
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the run")
    if (out / "last.safetensors").exists() and not (args.resume or args.force):
        raise UsageError(f"{out} holds an earlier run; add --resume to continue it, --force to replace it, or "
                         "give another --out")
    device = resolve_device(s["device"])
    settings = s["settings"]
    data = settings.data.load(seed=settings.train.seed)
    model_cfg = s["model"].with_sizes(data.input_size, data.output_size)  # the data decides the outer layers
    sizes = model_cfg.sizes
    board = None
    if args.tensorboard is not None:
        from ._tensorboard import INSTALL, TensorBoardLog

        try:
            board = TensorBoardLog(args.tensorboard, {"preset": s["preset"], **{f"data.{k}": v for k, v in
                                                      s["data"].items()}, **{f"model.{k}": v for k, v in
                                                      model_cfg.as_dict().items()}, **{f"train.{k}": v for k, v in
                                                      asdict(s["train"]).items()}})
        except ImportError:
            raise UsageError(INSTALL) from None
    print(f"droplab train: {data.summary()}; network {'-'.join(map(str, sizes))}; device {device}; out {s['out']}")
    result = run(settings, s["out"], data=data, resume=args.resume, progress=args.progress, device=device,
                 on_epoch=board.epoch if board is not None else None)
    if board is not None:
        board.close({"test_error": result.test_error, "best_epoch": result.best_epoch,
                     **({"best_val_error": result.best_val_error} if result.best_val_error != float("inf") else {})})
    name, unit = ("error", "%") if data.num_classes else ("MSE", "")
    val = ("no validation set" if result.best_val_error == float("inf")
           else f"validation {name} {result.best_val_error:.4g}{unit}" if not unit
           else f"validation {name} {result.best_val_error:.2f}{unit}")
    test = f"{result.test_error:.2f}{unit}" if unit else f"{result.test_error:.4g}"
    chosen = " (chosen by auto)" if s["train"].precision == "auto" else ""
    print(f"best epoch {result.best_epoch}: {val}, test {name} {test} (weight scaling); trained in "
          f"{result.precision}{chosen}; checkpoint {s['out'] / 'best.safetensors'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, meta = load_model(args.checkpoint)
    data_cfg = dict(meta.get("data", {}))
    # where data is read from or downloaded to is the user's choice, never the file's: a checkpoint is a file
    # from anywhere, and its data_dir / download would make evaluate create folders (or download) where it says
    data_cfg.pop("data_dir", None)
    data_cfg.pop("download", None)
    for key in ("dataset", "data_dir", "download"):
        if getattr(args, key, None) is not None:
            data_cfg[key] = getattr(args, key)
    if "dataset" not in data_cfg:
        raise UsageError(f"{args.checkpoint} does not say which dataset it was trained on; pass --dataset")
    data = _load_data(data_cfg, meta.get("train", {}).get("seed", 0))  # the split the checkpoint was trained with
    if data.input_size != model.sizes[0]:
        raise UsageError(f"the checkpoint's network takes {model.sizes[0]} inputs, {data.name} has "
                         f"{data.input_size}; pass the --dataset it was trained on")
    device = resolve_device(args.device or "cpu")
    model.to(device)
    data = data.to(device)
    if args.samples < 1:
        raise UsageError(f"--samples must be a positive integer, got {args.samples}")
    if args.reliability is not None and not data.num_classes:
        raise UsageError(f"--reliability draws a classifier's reliability diagram; {data.name} is a regression "
                         "dataset. Drop --reliability")
    if args.reliability is not None and args.reliability.exists() and not args.reliability.is_dir():
        raise UsageError(f"--reliability {args.reliability} is a file; give a folder for the diagrams")
    # probability scores (NLL, Brier, ECE) need class probabilities: a softmax output, or logistic outputs, which
    # are per-class probabilities that droplab normalizes (and says so); a linear output has none
    probabilistic = model.output_name in ("softmax", "logistic")
    ood = _ood_inputs(args, data, data_cfg, model, probabilistic)
    result: dict[str, Any] = {"checkpoint": str(args.checkpoint), "dataset": data.name,
                              "test_examples": len(data.x_test)}
    for name in args.estimator:
        result[name] = _evaluate_one(args, model, data, name, device, probabilistic, ood)
    if args.json:
        print(json.dumps(result))
        return 0
    _print_evaluation(args, model, data, result, probabilistic)
    return 0


def _evaluate_one(args: argparse.Namespace, model: Any, data: Any, name: str, device: Any, probabilistic: bool,
                  ood: Any) -> dict[str, Any]:
    """One estimator's scores for ``droplab evaluate`` (``droplab.evaluation.evaluate``)."""
    from .evaluation import evaluate

    figures = args.reliability if probabilistic and data.num_classes else None
    return evaluate(model, data, name, samples=args.samples, seed=args.seed, ood=ood, figures=figures)


def _print_evaluation(args: argparse.Namespace, model: Any, data: Any, result: dict[str, Any],
                      probabilistic: bool) -> None:
    print(f"{data.name}, {len(data.x_test)} test examples:")
    if data.num_classes and not probabilistic:
        print(f"  (a {model.output_name} output gives no class probabilities: NLL, Brier and ECE are not computed)")
    elif data.num_classes and model.output_name == "logistic":
        print("  (logistic outputs, one probability per class, normalized to sum to 1 for NLL, Brier and ECE)")
    for name in args.estimator:
        label = name + (f" ({args.samples} samples)" if name == "monte-carlo" else "")
        row = result[name]
        if "nll" not in row and "test_error" in row:
            print(f"  {label:28s} test error {row['test_error']:.2f}%")
        elif "test_error" in row:
            print(f"  {label:28s} test error {row['test_error']:.2f}%  NLL {row['nll']:.4f}  Brier {row['brier']:.4f}"
                  f"  ECE {row['ece']:.4f}  AURC {row['aurc']:.4f}"
                  + (f"  (diagrams in {Path(row['reliability']).parent})" if "reliability" in row else ""))
            if "ood" in row:
                o = row["ood"]
                print(f"  {'':28s} against {o['dataset']} (predictive entropy): AUROC {o['auroc']:.4f}  AUPR in "
                      f"{o['aupr_in']:.4f}  AUPR out {o['aupr_out']:.4f}  FPR at 95% TPR {o['fpr_at_95_tpr']:.4f}")
        else:
            print(f"  {label:28s} test mse {row['test_mse']:.4f}")


def _ood_inputs(args: argparse.Namespace, data: Any, data_cfg: dict[str, Any], model: Any,
                probabilistic: bool) -> Any:
    """The out-of-distribution dataset of ``--ood`` (its test inputs are used), checked against the network."""
    if args.ood is None:
        return None
    if not data.num_classes or not probabilistic:
        raise UsageError(f"--ood scores a classifier's predictive entropy; this network's {model.output_name} "
                         f"output on {data.name} gives no class probabilities. Drop --ood")
    if args.ood == data.name:
        raise UsageError(f"--ood {args.ood} is the dataset the network is evaluated on; give another one")
    if DataConfig.from_run(data_cfg).normalize == "standard":
        raise UsageError("--ood needs inputs on one fixed scale; this network was trained on standardized inputs "
                         "(statistics of its own training split, which another dataset does not share). Train with "
                         "--normalize unit to score out-of-distribution inputs")
    cfg = {**data_cfg, "dataset": args.ood, "limit": None}
    if args.ood not in data_mod.SOURCES:  # digits and synthetic data come from no folder
        cfg.pop("data_dir", None)
    ood = _load_data(cfg, 0).to(data.x_test.device)
    if ood.input_size == data.input_size:  # mnist and mnist-10k share the t10k digits: scored against themselves
        seen = {bytes(row.cpu().numpy().tobytes()) for row in data.x_test}
        shared = sum(bytes(row.cpu().numpy().tobytes()) in seen for row in ood.x_test)
        if shared:
            raise UsageError(f"--ood {args.ood}: {shared} of its {len(ood.x_test)} test inputs are also test inputs of "
                             f"{data.name} (the same files); out-of-distribution scores need other data, e.g. "
                             "--ood fashion-mnist")
    if ood.input_size != data.input_size:
        raise UsageError(f"--ood {args.ood} has {ood.input_size} inputs and the network takes {data.input_size}; "
                         "give a dataset of the same input size (fashion-mnist against mnist)")
    return ood


def cmd_reproduce(args: argparse.Namespace) -> int:
    import time

    from .report import reproduce

    device = str(resolve_device(args.device))
    if args.ray is not None:
        import importlib.util

        from .experiments._remote import INSTALL
        if importlib.util.find_spec("ray") is None:
            raise ValueError(INSTALL)
        if device != "cpu":
            raise ValueError(f"--ray trains the arms on the workers' CPUs, so the run must be on the CPU too; got "
                             f"--device {args.device} (run without --ray on a GPU)")
    t0 = time.perf_counter()
    from .report import default_out

    out = args.out or default_out(args.preset)
    summary = reproduce(out, preset=args.preset, dataset=args.dataset, data_dir=args.data_dir, device=device,
                        precision=args.precision,
                        seed=args.seed, only=args.only, progress=args.progress, ray=args.ray)
    reused = sum(r["reused"] for r in summary["sections"])
    groups = "; ".join(f"{g}: {c['held']} of {c['claims']}"
                       + (f" ({c['not_measured']} not measured)" if c.get("not_measured") else "")
                       for g, c in summary["groups"].items())
    print(f"droplab reproduce: {summary['claims_held']} of {summary['claims']} claims hold ({groups}); "
          f"{len(summary['sections'])} sections ({reused} reused) in {time.perf_counter() - t0:.0f} s; "
          f"report: {out / 'report.html'}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    import importlib.util

    from . import sweep as sweep_mod

    if importlib.util.find_spec("ray") is None:
        raise UsageError(sweep_mod.INSTALL)
    if args.resume:
        if args.out is None:
            raise UsageError("--resume needs the --out folder of the sweep to finish")
        spec = None
    else:
        if args.preset is None and args.config is None:
            raise UsageError(f"give --preset ({', '.join(sweep_mod.PRESETS)}) or --config sweep.toml")
        if args.preset is not None and args.preset not in sweep_mod.PRESETS:
            raise UsageError(f"unknown sweep preset {args.preset!r}; expected one of {sorted(sweep_mod.PRESETS)}")
        spec = sweep_mod.load_sweep(args.preset if args.preset is not None else args.config)
    if args.cpus is not None and args.cpus < 1:
        raise UsageError(f"--cpus must be a positive integer, got {args.cpus}")
    out = args.out or Path("sweeps") / spec.name
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the sweep")
    rows = sweep_mod.run_sweep(spec if spec is not None else "", out, resume=args.resume, address=args.address,
                               cpus=args.cpus, progress=args.progress)
    done = [r for r in rows if r["status"] in ("done", "stopped") and r["test_error"] is not None]
    failed = [r for r in rows if r["status"] == "error"]
    unfinished = [r for r in rows if r["status"] in ("interrupted", "not run")]
    print(f"droplab sweep: {len(rows)} trials, {len(done)} finished or stopped early, {len(failed)} failed"
          + (f", {len(unfinished)} unfinished" if unfinished else "") + f"; results in {out / 'results.csv'}")
    for r in failed:
        print(f"  failed: {r['trial']}: {r['error']}")
    if done:
        best = min(done, key=lambda r: r["best_val_error"])
        varying = ", ".join(f"{k} {best[k]}" for k in best if "." in k)
        unit = "%" if best.get("task") == "classification" else " (MSE)"
        print(f"  best by validation error: {varying or best['trial']}: validation {best['best_val_error']:.4g}{unit}, "
              f"test {best['test_error']:.4g}{unit}")
    if unfinished:
        print(f"droplab sweep: interrupted before {len(unfinished)} trials finished; `droplab sweep --out {out} "
              "--resume` finishes them", file=sys.stderr)
        return 130
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .report import compare_runs

    print(compare_runs(args.folders, across=args.across), end="")
    return 0


def _interrupted(args: argparse.Namespace | None) -> str:
    """What Ctrl-C leaves behind, in one line."""
    if args is None or args.command not in ("train", "reproduce"):
        return "droplab: interrupted"
    if args.command == "reproduce":
        return "droplab: interrupted; finished sections are kept and a rerun with the same --out reuses them"
    out = args.out
    if out is not None and (Path(out) / "last.safetensors").is_file():
        return f"droplab: interrupted; the last checkpoint in {out} is intact (add --resume to continue)"
    return "droplab: interrupted before the first epoch ended; no checkpoint was written"


def _debug(args: Any) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("DROPLAB_DEBUG", "0") not in ("", "0")


_PACKAGE = str(Path(__file__).resolve().parent)


def _raised_by_droplab(exc: BaseException) -> bool:
    """Whether ``exc`` was raised by droplab's own code (its checks of the input), not inside torch, NumPy or the
    standard library: the innermost frame of its traceback is in the droplab package."""
    tb = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(_PACKAGE)


def main(argv: list[str] | None = None) -> int:
    args = None
    _interrupt.install()  # a Ctrl-C swallowed by a finalizer still stops the command (see droplab._interrupt)
    try:
        args = build_parser().parse_args(argv)
        if args.command in ("train", "evaluate", "reproduce", "sweep"):
            from . import threads

            threads.reproducible_products()  # the same bits whatever the thread count (before the first product)
        if args.command in ("train", "evaluate", "reproduce"):
            import torch

            from . import threads

            threads_before = torch.get_num_threads()
            if os.environ.get("DROPLAB_ADAPT_THREADS", "1") != "0":
                threads.enable()  # fewer threads while other processes hold cores (see droplab.threads)
        commands = {"train": cmd_train, "evaluate": cmd_evaluate, "reproduce": cmd_reproduce, "compare": cmd_compare,
                    "sweep": cmd_sweep, "info": cmd_info}
        code = commands[args.command](args)
        _interrupt.check()  # a Ctrl-C a finalizer swallowed in the last stretch
        return code
    except (UsageError, ValueError, TypeError) as exc:
        if _debug(args) or not (isinstance(exc, UsageError) or _raised_by_droplab(exc)):
            traceback.print_exc()
            if not _debug(args):
                print("droplab: internal error: this was raised outside droplab's input checks, so it is likely a "
                      "bug in droplab; please report it with the traceback above", file=sys.stderr)
            return 1 if not isinstance(exc, UsageError) and not _raised_by_droplab(exc) else 2
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"droplab: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted(args), file=sys.stderr)
        return 130
    except OSError as exc:  # a read-only folder, a full disk, a path that is not what it should be
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"droplab: error: {exc.strerror or exc}{where}; check that the folder exists, is writable and has "
              "space (files written so far are complete: every write is atomic)", file=sys.stderr)
        return 2
    finally:
        _interrupt.uninstall()
        if args is not None and args.command in ("train", "evaluate", "reproduce"):
            import torch

            from . import threads

            threads.disable()
            torch.set_num_threads(threads_before)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


__all__ = ["build_parser", "main"]
