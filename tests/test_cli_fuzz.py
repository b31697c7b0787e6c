"""The command-line fuzz test (issue 35's harness): every subcommand, every flag that takes a value, given
generated bad values (wrong types, empty, NaN, inf, huge, negative, unknown choices, paths that do not exist or
climb out) and bad combinations. Every run ends with exit 0, or exit 2 and one line of error (argparse's own
usage line may come before it); never a traceback, never "internal error".

The default run tries each flag with ``PER_FLAG`` of its values, drawn with a fixed seed; ``-m slow`` tries them
all (docs/reliability.md gives the counts)."""

from __future__ import annotations

import argparse
import random

import pytest

from droplab.cli import build_parser, main

PER_FLAG = 2  # values per flag in the default run; the slow run tries every value

INTS = ["-1", "0", "1e308", "nan", "x", "", "99999999999999999999", "2.5"]
FLOATS = ["nan", "inf", "-inf", "-1", "0", "1e308", "x", "", "1e-320"]
LISTS = ["", ",", "1,,2", "a,b", "-1,5", "nan,0.5", "inf", "0.5,0.5,0.5,0.5,0.5,0.5,0.5"]
TEXT = ["", " ", "/nonexistent/folder/x", "../x", "-", "x" * 300]
DEVICES = ["tpu", "cuda:99", "", "cpu:0:1", "mps"]


WORK_FLAGS = {"--epochs", "--samples", "--momentum-epochs", "--patience", "--limit", "--batch-size", "--cpus"}


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _values(action: argparse.Action) -> list[str]:
    if action.choices is not None:
        return ["bogus", "", "NONE"]
    name = getattr(action.type, "__name__", "") if action.type is not None else ""
    flag = action.option_strings[-1] if action.option_strings else action.dest
    if "device" in flag:
        return DEVICES
    if name == "int" or name == "_seed":
        # a huge amount of work is valid and would run for ever: not a value to fuzz these with
        return [v for v in INTS if v != "99999999999999999999"] if flag in WORK_FLAGS else INTS
    if name == "float":
        return FLOATS
    if name in ("_ints", "_floats", "_backward"):
        return LISTS
    return TEXT


# subcommand -> the cheap valid command each bad value is put into ({out}: a fresh folder, {ckpt}: a checkpoint)
BASE = {
    "train": ["train", "--preset", "tiny", "--epochs", "1", "--out", "{out}", "--no-progress"],
    "evaluate": ["evaluate", "{ckpt}", "--estimator", "weight-scaled"],
    "reproduce": ["reproduce", "--preset", "tiny", "--only", "exact", "--out", "{out}", "--no-progress"],
    "compare": ["compare", "{report}"],
    "info": ["info"],
    "sweep": ["sweep", "--config", "{sweep}", "--out", "{out}"],
}
# flags whose bad values are tried where a valid value would start long work (a sweep on Ray): only values that are
# refused before any work starts are generated for them (see _cases)
NO_VALID_RUN = {"sweep"}


def _cases() -> list[tuple[str, str, str]]:
    out = []
    for command, parser in _subcommands().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction) or action.nargs == 0:
                continue
            flag = action.option_strings[-1] if action.option_strings else None
            if flag is None or flag in ("--config", "--out"):
                continue  # positional arguments and the folders the base fills are fuzzed as paths below
            for value in _values(action):
                if command in NO_VALID_RUN and value not in ("bogus", "", "x", "-1", "nan", "NONE", "tpu"):
                    continue
                out.append((command, flag, value))
    return out


CASES = _cases()
rng = random.Random(35)
DEFAULT = {case for flag in {(c, f) for c, f, _ in CASES}
           for case in rng.sample([x for x in CASES if (x[0], x[1]) == flag],
                                  min(PER_FLAG, sum(1 for x in CASES if (x[0], x[1]) == flag)))}


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A checkpoint, a report and a sweep TOML for the commands that read them."""
    root = tmp_path_factory.mktemp("fuzz")
    assert main(["train", "--preset", "tiny", "--epochs", "1", "--out", str(root / "run"), "--no-progress"]) == 0
    assert main(["reproduce", "--preset", "tiny", "--only", "exact", "--out", str(root / "report"),
                 "--no-progress"]) == 0
    sweep = root / "sweep.toml"
    sweep.write_text('name = "fuzz"\npreset = "tiny"\n[grid]\n"train.seed" = [0]\n')
    return {"ckpt": str(root / "run" / "best.safetensors"), "report": str(root / "report"), "sweep": str(sweep)}


def _check(argv: list[str], capsys) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: usage, then "droplab ...: error: ..."
        code = exc.code
        err = capsys.readouterr().err
        assert code == 2 and err.strip().splitlines()[-1].split(": error: ", 1)[1], (argv, err)
        return
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, (argv, err[-3000:])
    assert code in (0, 2), (argv, code, err[-2000:])
    if code == 2:
        lines = [line for line in err.strip().splitlines() if not line.startswith(("epochs:", "\r"))]
        assert len(lines) == 1 and lines[0].startswith("droplab: error: "), (argv, err[-2000:])


def _argv(command: str, flag: str, value: str, made: dict[str, str], out: str) -> list[str]:
    base = [part.format(out=out, **made) for part in BASE[command]]
    if flag in base:  # the flag the base sets: the bad value replaces the good one
        i = base.index(flag)
        return base[:i + 1] + [value] + base[i + 2:]
    return base + [flag, value]


@pytest.mark.parametrize("command, flag, value", sorted(DEFAULT), ids=[f"{c} {f} {v!r}" for c, f, v in sorted(DEFAULT)])
def test_a_bad_value_of_any_flag_is_one_line_and_exit_2_or_works(command, flag, value, made, tmp_path, capsys,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths ("../..", "-") land in the test's folder
    _check(_argv(command, flag, value, made, str(tmp_path / "out")), capsys)


@pytest.mark.slow
@pytest.mark.parametrize("command, flag, value", sorted(set(CASES) - DEFAULT))
def test_every_bad_value_of_every_flag(command, flag, value, made, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _check(_argv(command, flag, value, made, str(tmp_path / "out")), capsys)


COMBINATIONS = [
    ["train", "--preset", "tiny", "--epochs", "1", "--resume", "--force", "--out", "{out}"],
    ["train", "--preset", "tiny", "--epochs", "1", "--resume", "--out", "{out}"],
    ["train", "--preset", "tiny", "--config", "/nonexistent.toml", "--out", "{out}"],
    ["train", "--preset", "tiny", "--config", "{report}", "--out", "{out}"],  # a folder, not a file
    ["train", "--preset", "tiny", "--out", "{ckpt}"],  # a file, not a folder
    ["train", "--preset", "tiny", "--sizes", "64,16,10", "--keep", "0.8", "--out", "{out}"],
    ["train", "--preset", "tiny", "--init", "default", "--init-gain", "2", "--out", "{out}"],
    ["evaluate", "/nonexistent.safetensors"],
    ["evaluate", "{report}"],  # a folder
    ["evaluate", "{sweep}"],  # a text file
    ["evaluate", "{ckpt}", "--ood", "digits"],  # 64 inputs against 64: the same data
    ["evaluate", "{ckpt}", "--estimator", "exact", "--samples", "5"],
    ["evaluate", "{ckpt}", "--reliability", "{ckpt}"],  # a file where a folder goes
    ["reproduce", "--preset", "tiny", "--only", "exact", "--out", "{ckpt}", "--no-progress"],
    ["compare", "{report}", "{report}"],
    ["compare", "{ckpt}"],
    ["compare", "/nonexistent"],
    ["compare", "{report}", "--across", "preset"],
    ["sweep", "--config", "/nonexistent.toml", "--out", "{out}"],
    ["sweep", "--config", "{ckpt}", "--out", "{out}"],  # binary, not TOML
    ["sweep", "--resume", "--out", "{out}"],  # nothing to resume
    ["sweep", "--preset", "bogus", "--out", "{out}"],
    ["sweep", "--config", "{sweep}", "--cpus", "0", "--out", "{out}"],
    [],
    ["bogus"],
]


@pytest.mark.parametrize("argv", COMBINATIONS, ids=[" ".join(a) or "nothing" for a in COMBINATIONS])
def test_bad_combinations_are_one_line_and_exit_2_or_work(argv, made, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _check([part.format(out=str(tmp_path / "out"), **made) for part in argv], capsys)


def test_the_fuzz_reaches_every_subcommand_and_flag():
    flags = {(c, f) for c, f, _ in CASES}
    for command, parser in _subcommands().items():
        for action in parser._actions:
            if action.option_strings and action.nargs != 0 and not isinstance(action, argparse._HelpAction) \
                    and action.option_strings[-1] not in ("--config", "--out"):
                assert (command, action.option_strings[-1]) in flags
    assert {c for c, _ in flags} >= {"train", "evaluate", "reproduce", "compare", "sweep"}
    assert len(CASES) > 300 and len(DEFAULT) >= 2 * len(flags) - 5
