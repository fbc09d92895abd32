"""The flat, typed configuration of one training run.

Every knob the engine reads lives here, once. Task recipes build a
:class:`TrainConfig` from user parameters (``TrainConfig.from_params``) and
hand it to :class:`dlforge.engine.Trainer`; the dumped config is stored in
every checkpoint so a run can be read back and replayed exactly.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dlforge.errors import InputError

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class TrainConfig(BaseModel):
    """Hyperparameters and run controls of the training engine.

    Attributes:
        epochs: Number of passes over the training loader.
        batch_size: Batch size the task uses to build its loaders (the engine
            itself never re-batches).
        num_workers: DataLoader worker processes the task should use.
        lr: Peak learning rate (after warmup).
        optimizer: ``"sgd"`` or ``"adamw"``.
        momentum: SGD momentum.
        nesterov: Nesterov momentum for SGD (needs ``momentum > 0``).
        betas: AdamW betas.
        weight_decay: Decay applied to weight matrices and kernels only; biases
            and normalisation parameters are kept in a group without decay.
        scheduler: ``"cosine"``, ``"step"``, ``"onecycle"`` or ``"constant"``.
        warmup_epochs: Linear warmup length in (possibly fractional) epochs.
        warmup_steps: Linear warmup length in optimizer steps; overrides
            ``warmup_epochs`` when set.
        min_lr_ratio: Floor of the cosine schedule as a fraction of ``lr``.
        step_size: Epochs between decays of the ``"step"`` schedule.
        gamma: Decay factor of the ``"step"`` schedule.
        grad_accum: Micro-batches accumulated per optimizer step.
        clip_grad_norm: Max global gradient L2 norm, or None for no clipping.
        precision: ``"fp32"``, ``"bf16"`` (autocast on CPU and CUDA) or
            ``"fp16"`` (autocast + GradScaler, CUDA only).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        early_stopping_patience: Epochs without improvement of ``monitor``
            before stopping; None disables early stopping.
        early_stopping_min_delta: Smallest change that counts as improvement.
        monitor: Epoch metric that selects the best checkpoint (for example
            ``"val/accuracy"``). Without an eval function the engine monitors
            ``"train/epoch_loss"`` (min).
        monitor_mode: ``"max"`` or ``"min"``.
        time_budget: Wall-clock seconds of training and evaluation (counted
            from the first epoch's start, after setup); the run stops
            cleanly after the optimizer step that crosses it, is evaluated and
            keeps its best model.
        fit_schedule_to_budget: With a time budget, re-plan after every epoch:
            when the remaining epochs will not fit, shorten the LR schedule so it
            still decays fully, and stop at the epoch boundary where the next
            epoch would not fit.
        ema_decay: Keep an exponential moving average of the weights (decay per
            optimizer step, e.g. 0.999; None: off). Validation, the best checkpoint and
            so every export use the averaged weights, which are usually smoother and a
            little more accurate than the last step's.
        unfreeze_every: Gradual unfreezing (ULMFiT-style transfer learning): the
            first N epochs train the head only, then every N epochs one more layer
            group opens, from the output side, until the whole model trains.
            None (default) leaves the model's trainable flags as the task set them.
        seed: Seed of every random generator the run uses.
        deterministic: Ask PyTorch for deterministic algorithms (warn-only).
        log_every: Optimizer steps between step-level metric records (also
            the cadence of gradient-norm diagnostics).
        nan_check_every_step: Read the loss after every micro-batch so a NaN/Inf
            stops the run before it reaches the weights. None (default): on CPU,
            where it is free; on accelerators losses are checked on logging steps
            only, avoiding a device sync per step.
        explode_threshold: Global gradient norm above which an
            ``exploding_gradients`` event is recorded.
        vanish_threshold: Gradient norm (global or per layer group) below
            which a ``vanishing_gradients`` event is recorded.
        spike_factor: A logged loss above ``spike_factor`` times the running
            median of the last ``spike_window`` logged losses is a spike.
        spike_window: Window of the loss-spike median.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    num_workers: int = Field(0, ge=0)
    lr: float = Field(1e-3, gt=0)
    optimizer: Literal["sgd", "adamw"] = "adamw"
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    scheduler: Literal["cosine", "step", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    warmup_steps: int | None = Field(None, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0, le=1)
    step_size: int = Field(30, ge=1)
    gamma: float = Field(0.1, gt=0, le=1)
    grad_accum: int = Field(1, ge=1)
    clip_grad_norm: float | None = Field(None, gt=0)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    device: str = "auto"
    early_stopping_patience: int | None = Field(None, ge=1)
    early_stopping_min_delta: float = Field(0.0, ge=0)
    monitor: str = "val/loss"
    monitor_mode: Literal["max", "min"] = "min"
    time_budget: float | None = Field(None, gt=0)
    fit_schedule_to_budget: bool = True
    unfreeze_every: int | None = Field(None, ge=1)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    seed: int = Field(0, ge=0)
    deterministic: bool = False
    log_every: int = Field(50, ge=1)
    nan_check_every_step: bool | None = None
    explode_threshold: float = Field(1e3, gt=0)
    vanish_threshold: float = Field(1e-7, ge=0)
    spike_factor: float = Field(10.0, gt=1)
    spike_window: int = Field(50, ge=3)

    @model_validator(mode="after")
    def _check_combinations(self) -> TrainConfig:
        if not _DEVICE_RE.match(self.device):
            raise ValueError(f"device must be auto, cpu, mps, cuda or cuda:N, got {self.device!r}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov needs optimizer='sgd' and momentum > 0")
        return self

    @classmethod
    def from_params(cls, params: dict[str, Any] | None = None, **overrides: Any) -> TrainConfig:
        """Build a config from user parameters, turning validation errors into one line.

        Args:
            params: Parameter names and values (unknown names are an error).
            **overrides: Values that win over ``params``.

        Returns:
            The validated config.

        Raises:
            InputError: A parameter is unknown or has a bad value; the message
                names the parameter.
        """
        data = {**(params or {}), **overrides}
        try:
            return cls(**data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err.get("loc", ())) or "config"
            msg = err.get("msg", "invalid value")
            if err.get("type") == "extra_forbidden":
                raise InputError(f"unknown training parameter {field!r}") from None
            raise InputError(f"invalid training parameter {field!r}: {msg}") from None
