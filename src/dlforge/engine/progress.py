"""Progress reporting: the callback protocol the trainer calls and a rich progress bar.

The trainer calls the callback after every optimizer step (``metrics`` empty
except on logging steps, so nothing forces a device sync) and once more at the
end of each epoch with the epoch's metrics. ``close()`` is called when ``fit``
returns or fails.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, runtime_checkable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@runtime_checkable
class ProgressCallback(Protocol):
    """Receives training progress: 1-based ``epoch``, global optimizer ``step``, ``total_steps``."""

    def __call__(self, epoch: int, step: int, total_steps: int, metrics: dict[str, float]) -> None: ...


def _fmt(metrics: dict[str, float], keys: tuple[str, ...]) -> str:
    parts = []
    for k, v in metrics.items():
        if k in keys or k.startswith("val/"):
            parts.append(f"{k}={v:.4g}")
    return "  ".join(parts)


class RichProgress:
    """A rich progress bar on stderr (so ``--json`` output on stdout stays clean).

    Args:
        epochs: Total epochs, shown as ``epoch e/E``.
        console: Console to draw on; default a stderr console.
    """

    _SHOWN = ("train/loss", "lr", "train/epoch_loss")

    def __init__(self, epochs: int | None = None, console: Console | None = None) -> None:
        self.epochs = epochs
        self.console = console or Console(file=sys.stderr)
        self._progress: Progress | None = None
        self._task: Any = None
        self._epoch = 0
        self._last_metrics = ""

    def _start(self, total_steps: int) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[metrics]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("training", total=total_steps, metrics="")

    def __call__(self, epoch: int, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        if self._progress is None:
            self._start(total_steps)
        assert self._progress is not None
        if metrics:
            self._last_metrics = _fmt(metrics, self._SHOWN)
        desc = f"epoch {epoch}/{self.epochs}" if self.epochs else f"epoch {epoch}"
        self._progress.update(
            self._task, completed=step, total=total_steps, description=desc, metrics=self._last_metrics
        )
        if "train/epoch_loss" in metrics:  # the end-of-epoch call: keep a summary line
            self._progress.console.print(f"{desc}  {_fmt(metrics, self._SHOWN)}")
        self._epoch = epoch

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
