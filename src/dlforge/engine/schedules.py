"""Learning-rate schedules, stepped once per optimizer step.

All schedules are written as a factor of the peak ``lr`` so that they are one
small pure function (:func:`lr_factor`) that tests and plots can call, wrapped
in ``LambdaLR`` whose state (the step counter) goes into checkpoints.
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


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of ``config.lr`` for the optimizer step with 0-based index ``step``.

    - warmup (all schedules but onecycle): linear, ``(step + 1) / warmup``.
    - ``cosine``: half-cosine from 1 to ``min_lr_ratio`` over the post-warmup steps.
    - ``step``: ``gamma ** (epoch // step_size)`` where the epoch is taken from the step.
    - ``onecycle``: linear from ``1/25`` to 1 over the warmup (30% when no
      warmup is configured), then cosine down to ``1/(25 * 1e4)``.
    - ``constant``: 1 after warmup.

    Args:
        config: The run's config.
        step: 0-based index of the optimizer step.
        steps_per_epoch: Optimizer steps per epoch (after accumulation).
    """
    steps_per_epoch = max(1, steps_per_epoch)
    total = max(1, config.epochs * steps_per_epoch)
    warmup = warmup_steps_for(config, steps_per_epoch)
    if config.scheduler == "onecycle":
        if total == 1:
            return 1.0
        up = warmup if warmup > 0 else max(1, int(_ONECYCLE_DEFAULT_PCT * total))
        up = min(up, total - 1)  # the peak must be reached inside the run
        low = 1.0 / _ONECYCLE_DIV
        if step < up:
            return low + (1.0 - low) * step / up
        progress = min(1.0, (step - up) / max(1, total - up - 1))
        final = low / _ONECYCLE_FINAL_DIV
        return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if step < warmup:
        return (step + 1) / warmup
    if config.scheduler == "cosine":
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        floor = config.min_lr_ratio
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if config.scheduler == "step":
        epoch = step // steps_per_epoch
        return config.gamma ** (epoch // config.step_size)
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> LambdaLR:
    """A ``LambdaLR`` following :func:`lr_factor`; call ``.step()`` after each optimizer step."""
    return LambdaLR(optimizer, lambda step: lr_factor(config, step, steps_per_epoch))
