"""Where the engine sends metrics and events: the ``RunLogger`` protocol and two sinks.

The workspace's ``Run`` implements :class:`RunLogger` (it stores rows in the
database); :class:`TensorBoardLogger` writes event files under ``run_dir/tb``;
:class:`MemoryLogger` keeps everything in lists for notebooks and tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class RunLogger(Protocol):
    """Receiver of a run's metrics and diagnostic events."""

    def log_metrics(self, step: int, metrics: dict[str, float], *, epoch: int | None = None) -> None:
        """Record metric values at optimizer step ``step`` (``epoch`` set for per-epoch metrics)."""

    def log_event(self, kind: str, message: str, *, step: int | None = None, level: str = "warning") -> None:
        """Record a diagnostic event (``kind`` like ``"nan_loss"``, ``"exploding_gradients"``)."""


@dataclass
class MemoryLogger:
    """A :class:`RunLogger` that keeps metrics and events in memory."""

    metrics: list[tuple[int, dict[str, float], int | None]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)

    def log_metrics(self, step: int, metrics: dict[str, float], *, epoch: int | None = None) -> None:
        self.metrics.append((step, dict(metrics), epoch))

    def log_event(self, kind: str, message: str, *, step: int | None = None, level: str = "warning") -> None:
        self.events.append({"kind": kind, "message": message, "step": step, "level": level})

    def series(self, name: str) -> list[tuple[int, float]]:
        """``(step, value)`` pairs of one metric."""
        return [(s, m[name]) for s, m, _ in self.metrics if name in m]

    def event_kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]


class TensorBoardLogger:
    """Writes metrics as scalars and events as text into TensorBoard event files.

    Args:
        log_dir: Directory of the event files (the engine uses ``run_dir/tb``).
    """

    def __init__(self, log_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported lazily: tensorboard is slow to import

        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def log_metrics(self, step: int, metrics: dict[str, float], *, epoch: int | None = None) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, global_step=step)

    def log_event(self, kind: str, message: str, *, step: int | None = None, level: str = "warning") -> None:
        self.writer.add_text(f"events/{kind}", f"[{level}] {message}", global_step=step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
