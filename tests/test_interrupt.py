"""A Ctrl-C that lands in a finalizer (a weakref callback, a ``__del__``) is swallowed by CPython ("Exception ignored
in ...") and the program runs on; droplab's command line still stops at the next epoch or stage with its one-line
message and exit status 130 (droplab._interrupt)."""

import json
import sys

import pytest

from droplab import _interrupt
from droplab import train as train_mod
from droplab.cli import main


class _RaisesOnCollection:
    def __del__(self):
        raise KeyboardInterrupt  # what SIGINT does when it arrives while a finalizer runs


def _swallowed_ctrl_c():
    _RaisesOnCollection()  # collected at once: CPython hands the exception to sys.unraisablehook


def test_a_swallowed_interrupt_is_kept_for_the_next_check_and_only_once(capsys):
    _interrupt.install()
    try:
        _interrupt.check()  # nothing pending: no raise
        _swallowed_ctrl_c()
        assert "Exception ignored" not in capsys.readouterr().err
        with pytest.raises(KeyboardInterrupt):
            _interrupt.check()
        _interrupt.check()  # delivered once
    finally:
        _interrupt.uninstall()


def test_other_unraisable_exceptions_still_reach_the_previous_hook(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: seen.append(u.exc_type))
    _interrupt.install()

    class RaisesValueError:
        def __del__(self):
            raise ValueError("from a finalizer")

    try:
        RaisesValueError()
    finally:
        _interrupt.uninstall()
    assert seen == [ValueError]
    _swallowed_ctrl_c()  # uninstalled: the previous hook again, and nothing pending
    assert seen == [ValueError, KeyboardInterrupt]
    _interrupt.check()


def test_training_stops_after_the_epoch_a_swallowed_ctrl_c_came_in(tmp_path, monkeypatch, capsys):
    end_epoch = train_mod._end_epoch

    def end_epoch_then_ctrl_c(state, *args, **kwargs):
        end_epoch(state, *args, **kwargs)
        if state.epoch == 1:
            _swallowed_ctrl_c()

    monkeypatch.setattr(train_mod, "_end_epoch", end_epoch_then_ctrl_c)
    out = tmp_path / "run"
    code = main(["train", "--preset", "tiny", "--epochs", "3", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 130, err
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err, err
    epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]  # stopped at the first check, with that epoch's checkpoint written
    assert (out / "last.safetensors").is_file()
    assert main(["train", "--preset", "tiny", "--epochs", "3", "--out", str(out), "--no-progress",
                 "--resume"]) == 0  # and it resumes
    assert sys.unraisablehook is not _interrupt._hook  # main puts the hook back
