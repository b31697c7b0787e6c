"""TensorBoard logs of a training run: scalars every epoch, hyperparameters and final metrics at the end.

TensorBoard is an optional dependency (``pip install 'droplab[tensorboard]'``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["INSTALL", "TensorBoardLog"]

INSTALL = "--tensorboard needs TensorBoard: pip install 'droplab[tensorboard]' (or pip install tensorboard)"
SCALARS = ("train_loss", "val_loss", "train_error", "val_error", "test_error", "lr", "momentum", "seconds")


class TensorBoardLog:
    """``epoch(row)`` as ``train.fit``'s ``on_epoch``; ``close(final)`` writes the hyperparameters with ``final``."""

    def __init__(self, logdir: str | Path, hparams: dict[str, Any]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError(INSTALL) from None
        self.writer = SummaryWriter(str(logdir))
        self.hparams = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in hparams.items()
                        if v is not None}

    def epoch(self, row: dict[str, Any]) -> None:
        for key in SCALARS:
            value = row.get(key)
            if value is not None:
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def close(self, final: dict[str, float]) -> None:
        self.writer.add_hparams(self.hparams, {f"final/{k}": v for k, v in final.items()}, run_name=".")
        self.writer.close()
