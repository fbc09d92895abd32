"""Learning-rate schedules, stepped once per optimizer step.

Every schedule is a factor of the peak ``lr`` computed by :class:`LrSchedule`,
a small callable holding only plain numbers. It is wrapped in ``LambdaLR``,
which stores such a callable's attributes in its ``state_dict``, so the
schedule (including a horizon shortened to fit a time budget) is saved in
checkpoints and restored on resume.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from dlforge.engine.config import TrainConfig

# One-cycle shape (Smith & Topin): start at lr/25, end at lr/(25 * 1e4).
_ONECYCLE_DIV = 25.0
_ONECYCLE_FINAL_DIV = 1e4
_ONECYCLE_DEFAULT_PCT = 0.3


def warmup_steps_for(config: TrainConfig, steps_per_epoch: int) -> int:
    """Warmup length in optimizer steps (``warmup_steps`` wins over ``warmup_epochs``)."""
    if config.warmup_steps is not None:
        return config.warmup_steps
    return int(round(config.warmup_epochs * steps_per_epoch))


class LrSchedule:
    """The LR factor as a function of the 0-based optimizer step.

    - warmup (all schedules but onecycle): linear, ``(step + 1) / warmup``.
    - ``cosine``: half-cosine from 1 to ``min_lr_ratio`` over the post-warmup steps.
    - ``step``: ``gamma ** (epoch // step_size)`` where the epoch is taken from the step.
    - ``onecycle``: linear from ``1/25`` to 1 over the warmup (30% of the run
      when no warmup is configured), then cosine down to ``1/(25 * 1e4)``.
    - ``constant``: 1 after warmup.

    Args:
        config: The run's config.
        steps_per_epoch: Optimizer steps per epoch (after accumulation).
    """

    def __init__(self, config: TrainConfig, steps_per_epoch: int) -> None:
        self.kind = config.scheduler
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total = max(1, config.epochs * self.steps_per_epoch)
        self.warmup = warmup_steps_for(config, self.steps_per_epoch)
        self.min_lr_ratio = config.min_lr_ratio
        self.gamma = config.gamma
        self.step_size = config.step_size
        # The one-cycle peak is placed once; shortening the run later does not move it.
        up = self.warmup if self.warmup > 0 else max(1, int(_ONECYCLE_DEFAULT_PCT * self.total))
        self.up = max(1, min(up, self.total - 1))

    def set_epochs(self, epochs: int) -> None:
        """Shorten (or lengthen) the horizon of the decaying schedules to ``epochs``."""
        self.total = max(1, epochs * self.steps_per_epoch)

    def __call__(self, step: int) -> float:
        total = self.total
        if self.kind == "onecycle":
            if total == 1:
                return 1.0
            low = 1.0 / _ONECYCLE_DIV
            up = min(self.up, total - 1)
            if step < up:
                return low + (1.0 - low) * step / up
            progress = min(1.0, (step - up) / max(1, total - up - 1))
            final = low / _ONECYCLE_FINAL_DIV
            return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "cosine":
            progress = min(1.0, (step - self.warmup) / max(1, total - self.warmup))
            floor = self.min_lr_ratio
            return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
        if self.kind == "step":
            epoch = step // self.steps_per_epoch
            return self.gamma ** (epoch // self.step_size)
        return 1.0


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of ``config.lr`` for the optimizer step with 0-based index ``step``
    (see :class:`LrSchedule` for the shapes)."""
    return LrSchedule(config, steps_per_epoch)(step)


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """A ``LambdaLR`` following :class:`LrSchedule`; call ``.step()`` after each optimizer step."""
    return LambdaLR(optimizer, LrSchedule(config, steps_per_epoch))
