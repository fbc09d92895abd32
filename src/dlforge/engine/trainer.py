"""The training loop: one readable ``fit`` that task recipes call.

A recipe supplies the model, its loaders, a ``step_fn`` (forward + loss of one
batch) and an ``eval_fn`` (metrics on the validation loader); the trainer owns
everything around them: device, precision, accumulation, clipping, schedules,
logging, diagnostics, checkpoints, early stopping, time budget and exact resume.

Checkpoints are written at epoch boundaries only. The RNG state saved there,
together with loaders whose order is a function of ``(seed, epoch)``
(:func:`dlforge.engine.loader.make_loader`), makes a resumed run on CPU
bitwise identical to one that never stopped.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlforge.engine.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    atomic_save,
    best_path,
    last_path,
    load_checkpoint,
    unwrap_model,
)
from dlforge.engine.config import TrainConfig
from dlforge.engine.diagnostics import Diagnostics, grad_norms, layer_groups
from dlforge.engine.loader import batch_size_of, set_loader_epoch
from dlforge.engine.loggers import RunLogger, TensorBoardLogger
from dlforge.engine.optim import build_optimizer
from dlforge.engine.precision import Precision, resolve_device
from dlforge.engine.progress import ProgressCallback
from dlforge.engine.schedules import LrSchedule, build_scheduler
from dlforge.engine.seeding import capture_rng_state, restore_rng_state, seed_everything
from dlforge.errors import ConflictError, InputError

StepOutput = torch.Tensor | tuple[torch.Tensor, int]
StepFn = Callable[[nn.Module, Any, torch.device], StepOutput]
EvalFn = Callable[[nn.Module, Any, torch.device], dict[str, float]]

STOP_REASONS = ("completed", "early_stopping", "time_budget", "nan")

# Config fields that may change between an interrupted run and its resumption
# without making the resumed run a different experiment.
_RESUME_FREE_FIELDS = {
    "fit_schedule_to_budget",
    "epochs",
    "time_budget",
    "device",
    "log_every",
    "num_workers",
    "early_stopping_patience",
}


@dataclass
class FitResult:
    """What ``Trainer.fit`` did.

    Attributes:
        stop_reason: ``"completed"``, ``"early_stopping"``, ``"time_budget"`` or ``"nan"``.
        message: One human-readable line about how the run ended.
        epochs_completed: Epochs finished (a time-budget stop counts its partial epoch).
        global_step: Optimizer steps taken.
        monitor: Name of the monitored metric.
        best_value: Best value of ``monitor`` (None if no epoch finished).
        best_epoch: 1-based epoch of ``best_value``.
        last_metrics: Metrics of the last finished epoch.
        history: Per-epoch metrics, one dict per epoch (``"epoch"`` included).
        wall_time_s: Seconds spent in this ``fit`` call.
        best_checkpoint: Path of ``best.pt`` when one exists.
        last_checkpoint: Path of ``last.pt`` when one exists.
    """

    stop_reason: str
    message: str
    epochs_completed: int
    global_step: int
    monitor: str
    best_value: float | None
    best_epoch: int | None
    last_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0
    best_checkpoint: Path | None = None
    last_checkpoint: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (paths as strings)."""
        d = asdict(self)
        d["best_checkpoint"] = str(self.best_checkpoint) if self.best_checkpoint else None
        d["last_checkpoint"] = str(self.last_checkpoint) if self.last_checkpoint else None
        return d


class _Sinks:
    """Fans metrics/events out to TensorBoard and the run logger."""

    def __init__(self, loggers: list[Any]) -> None:
        self.loggers = loggers

    def metrics(self, step: int, metrics: dict[str, float], epoch: int | None = None) -> None:
        for lg in self.loggers:
            lg.log_metrics(step, metrics, epoch=epoch)

    def event(self, kind: str, message: str, step: int | None = None, level: str = "warning") -> None:
        for lg in self.loggers:
            lg.log_event(kind, message, step=step, level=level)

    def close(self) -> None:
        for lg in self.loggers:
            close = getattr(lg, "close", None)
            if isinstance(lg, TensorBoardLogger) and callable(close):
                close()


class Trainer:
    """Runs training for one run directory.

    Args:
        config: Hyperparameters and run controls.
        run_dir: The run's directory; checkpoints go to ``run_dir/checkpoints``,
            TensorBoard files to ``run_dir/tb``.
        logger: Receiver of metrics and events (the workspace ``Run``), optional.
        progress: Progress callback (for example :class:`RichProgress`), optional.
        tensorboard: Write TensorBoard event files.

    Example:
        >>> trainer = Trainer(TrainConfig(epochs=3, lr=0.1), run_dir)
        >>> result = trainer.fit(model, train_loader, val_loader, step_fn, eval_fn)
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        logger: RunLogger | None = None,
        progress: ProgressCallback | None = None,
        tensorboard: bool = True,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.logger = logger
        self.progress = progress
        self.tensorboard = tensorboard
        self.device: torch.device | None = None

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        model: nn.Module,
        train_loader: Any,
        val_loader: Any | None,
        step_fn: StepFn,
        eval_fn: EvalFn | None = None,
        resume: bool = False,
    ) -> FitResult:
        """Train ``model`` and return what happened.

        Args:
            model: The model (moved to the configured device in place).
            train_loader: Iterable of batches with ``__len__`` (a DataLoader).
            val_loader: Validation batches for ``eval_fn``, or None.
            step_fn: ``step_fn(model, batch, device)`` returns the scalar loss
                of the batch, or ``(loss, n_samples)``. It runs under autocast
                and moves the batch to ``device`` itself (see ``to_device``).
            eval_fn: ``eval_fn(model, val_loader, device)`` returns metrics such
                as ``{"val/loss": .., "val/accuracy": ..}``; it runs in eval
                mode under ``torch.no_grad``.
            resume: Continue from ``run_dir/checkpoints/last.pt``.

        Returns:
            A :class:`FitResult`. The model holds the weights of the last step
            taken; :func:`dlforge.engine.load_best` loads the best epoch's.

        Raises:
            InputError: Bad config for this machine (fp16 on CPU, missing CUDA),
                a loader without length, a step function that returns no scalar
                loss, an unknown monitor metric, or resuming a finished run.
            NotFoundError: ``resume=True`` without a ``last.pt``.
            ConflictError: ``resume=False`` but the run directory already holds checkpoints.
        """
        t_start = time.monotonic()
        cfg = self.config
        device = resolve_device(cfg.device)
        self.device = device
        precision = Precision(cfg.precision, device)
        ckpt_last, ckpt_best = last_path(self.run_dir), best_path(self.run_dir)

        state: dict[str, Any] | None = None
        if resume:
            state = load_checkpoint(ckpt_last)
            if state.get("finished"):
                raise InputError(
                    f"run in {self.run_dir} already finished ({state.get('stop_reason')} after epoch "
                    f"{state.get('epoch')}); start a new run instead of resuming"
                )
        elif ckpt_last.exists():
            raise ConflictError(f"{ckpt_last} already exists; pass resume=True or train into a new run directory")

        try:
            n_batches = len(train_loader)
        except TypeError:
            raise InputError("train_loader must have a length (use a DataLoader over a map-style dataset)") from None
        if n_batches == 0:
            raise InputError("train_loader yields no batches (empty dataset or batch_size > size with drop_last)")
        steps_per_epoch = math.ceil(n_batches / cfg.grad_accum)
        total_steps = cfg.epochs * steps_per_epoch

        seed_everything(cfg.seed, cfg.deterministic)
        if device.type == "cuda" and not cfg.deterministic:
            # Fixed input shapes are the common case; let cuDNN pick the fastest kernels.
            torch.backends.cudnn.benchmark = True
        model.to(device)
        optimizer = build_optimizer(model, cfg)
        ema = _make_ema(unwrap_model(model), cfg.ema_decay) if cfg.ema_decay is not None else None
        scheduler = build_scheduler(optimizer, cfg, steps_per_epoch)
        schedule: LrSchedule = scheduler.lr_lambdas[0]
        groups = layer_groups(model)

        monitor, mode = cfg.monitor, cfg.monitor_mode
        has_eval = eval_fn is not None and val_loader is not None
        if not has_eval and not monitor.startswith("train/"):
            monitor, mode = "train/epoch_loss", "min"

        start_epoch, global_step, bad_epochs = 0, 0, 0
        best_value: float | None = None
        best_epoch: int | None = None
        history: list[dict[str, float]] = []
        if state is not None:
            try:
                unwrap_model(model).load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                # The saved horizon belongs to the interrupted plan; this call plans afresh.
                schedule.steps_per_epoch = steps_per_epoch
                schedule.set_epochs(cfg.epochs)
                precision.load_state_dict(state.get("scaler"))
                if ema is not None:
                    ema.load_state_dict(state["ema"])
            except (RuntimeError, ValueError, KeyError) as exc:
                first = (str(exc).strip().splitlines() or ["state mismatch"])[0]
                raise InputError(f"cannot resume from {ckpt_last}: it does not fit this model: {first}") from None
            restore_rng_state(state["rng"])
            start_epoch = int(state["epoch"])
            global_step = int(state["global_step"])
            bad_epochs = int(state.get("bad_epochs", 0))
            best_value = state.get("best_value")
            best_epoch = state.get("best_epoch")
            history = list(state.get("history", []))
            changed = sorted(
                k
                for k, v in (state.get("config") or {}).items()
                if k not in _RESUME_FREE_FIELDS and _jsonish(getattr(cfg, k, None)) != _jsonish(v)
            )
            resume_msg = f"resumed after epoch {start_epoch} (step {global_step})"
            if changed:
                resume_msg += "; config changed since the checkpoint: " + ", ".join(changed)

        loggers: list[Any] = []
        if self.tensorboard:
            loggers.append(TensorBoardLogger(self.run_dir / "tb"))
        if self.logger is not None:
            loggers.append(self.logger)
        sinks = _Sinks(loggers)
        diag = Diagnostics(
            emit=lambda kind, msg, step, level: sinks.event(kind, msg, step=step, level=level),
            explode_threshold=cfg.explode_threshold,
            vanish_threshold=cfg.vanish_threshold,
            spike_factor=cfg.spike_factor,
            spike_window=cfg.spike_window,
            clip_grad_norm=cfg.clip_grad_norm,
        )

        stop_reason, message = "completed", ""
        last_metrics: dict[str, float] = history[-1] if history else {}
        epochs_completed = start_epoch
        self._checked_step_output = False
        try:
            if state is not None:
                sinks.event("resumed", resume_msg, step=global_step, level="warning" if changed else "info")
            planned_epochs = cfg.epochs  # shortened when a time budget cannot hold them all
            announced_plan = float(planned_epochs)
            loop_t0 = time.monotonic()
            # The budget is training time: it starts here, after the one-off setup (imports,
            # optimizer construction, checkpoint loading), so a cold process is not penalised.
            deadline = None if cfg.time_budget is None else loop_t0 + cfg.time_budget
            for epoch in itertools.count(start_epoch):
                if epoch >= planned_epochs:
                    break
                set_loader_epoch(train_loader, epoch)
                if cfg.unfreeze_every is not None:
                    opened = _unfreeze_for_epoch(model, epoch, cfg.unfreeze_every)
                    if opened is not None:
                        sinks.event("unfreeze", opened, step=global_step, level="info")
                epoch_t0 = time.monotonic()
                model.train()
                out = self._train_epoch(
                    model=model,
                    loader=train_loader,
                    n_batches=n_batches,
                    step_fn=step_fn,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    precision=precision,
                    device=device,
                    groups=groups,
                    diag=diag,
                    sinks=sinks,
                    epoch=epoch,
                    global_step=global_step,
                    total_steps=total_steps,
                    deadline=deadline,
                    ema=ema,
                )
                global_step = out.global_step
                if out.nan_step is not None:
                    stop_reason = "nan"
                    kept = (
                        f"weights of epoch {epochs_completed} are kept in {ckpt_last}"
                        if ckpt_last.exists()
                        else "no checkpoint had been written yet"
                    )
                    message = (
                        f"loss became NaN/Inf at step {out.nan_step} (epoch {epoch + 1}); training stopped, "
                        f"{kept}; lower the learning rate, enable clip_grad_norm or check the data"
                    )
                    sinks.event("nan_loss", message, step=out.nan_step, level="error")
                    break

                metrics: dict[str, float] = {
                    "train/epoch_loss": out.loss_sum / max(1, out.samples),
                    "time/epoch_s": time.monotonic() - epoch_t0,
                }
                if has_eval:
                    assert eval_fn is not None
                    evaluated = ema.module if ema is not None else model
                    metrics.update(self._evaluate(evaluated, val_loader, eval_fn, precision, device))
                    metrics["time/epoch_s"] = time.monotonic() - epoch_t0
                if monitor not in metrics:
                    raise InputError(
                        f"monitor metric {monitor!r} is not among the epoch metrics {sorted(metrics)}; "
                        "set monitor to one of them"
                    )
                epochs_completed = epoch + 1
                metrics["epoch"] = float(epochs_completed)
                history.append(dict(metrics))
                last_metrics = metrics
                sinks.metrics(global_step, metrics, epoch=epochs_completed)

                value = metrics[monitor]
                if _improved(value, best_value, mode, cfg.early_stopping_min_delta):
                    best_value, best_epoch, bad_epochs = float(value), epochs_completed, 0
                    atomic_save(
                        {
                            "format": CHECKPOINT_FORMAT,
                            "version": CHECKPOINT_VERSION,
                            "kind": "best",
                            "model": (ema.module if ema is not None else unwrap_model(model)).state_dict(),
                            "epoch": epochs_completed,
                            "metric": monitor,
                            "value": best_value,
                            "metrics": dict(metrics),
                            "config": cfg.model_dump(mode="json"),
                        },
                        ckpt_best,
                    )
                else:
                    bad_epochs += 1

                if out.budget_hit:
                    stop_reason = "time_budget"
                    message = (
                        f"time budget of {cfg.time_budget:g}s reached during epoch {epochs_completed} "
                        f"(step {global_step}); best {monitor}={_fmt(best_value)} at epoch {best_epoch}"
                    )
                elif cfg.early_stopping_patience is not None and bad_epochs >= cfg.early_stopping_patience:
                    stop_reason = "early_stopping"
                    message = (
                        f"early stopping after epoch {epochs_completed}: no {monitor} improvement for "
                        f"{bad_epochs} epoch(s); best {_fmt(best_value)} at epoch {best_epoch}"
                    )
                elif deadline is not None and epochs_completed < cfg.epochs:
                    now = time.monotonic()
                    remaining = deadline - now
                    # The last epoch predicts the next best: the first one also pays for decoding into
                    # caches and warming up, so an average since the start would under-plan.
                    per_epoch = now - epoch_t0
                    fit_schedule = cfg.fit_schedule_to_budget
                    if remaining <= 0 or (fit_schedule and remaining < per_epoch):
                        # Out of time at an epoch boundary (often during evaluation): stop here,
                        # where the checkpoint resumes exactly, rather than cut the next epoch.
                        stop_reason = "time_budget"
                        message = (
                            f"time budget of {cfg.time_budget:g}s reached after epoch {epochs_completed} "
                            f"(step {global_step}); best {monitor}={_fmt(best_value)} at epoch {best_epoch}"
                        )
                    elif fit_schedule:
                        # Re-plan both ways: epochs that got faster give the schedule back its length.
                        new_plan = min(cfg.epochs, epochs_completed + int(remaining // per_epoch))
                        if new_plan != planned_epochs:
                            planned_epochs = new_plan
                            _shorten_schedule(scheduler, schedule, planned_epochs)
                            if planned_epochs < 0.9 * announced_plan:  # no event for every small re-plan
                                announced_plan = planned_epochs
                                sinks.event(
                                    "schedule_shortened",
                                    f"epochs take ~{per_epoch:.3g}s and {remaining:.3g}s of the time budget "
                                    f"remain: LR schedule now ends after epoch {planned_epochs} instead of "
                                    f"{cfg.epochs}",
                                    step=global_step,
                                    level="info",
                                )
                finished = stop_reason == "early_stopping" or (
                    stop_reason == "completed" and epochs_completed >= cfg.epochs
                )
                atomic_save(
                    {
                        "format": CHECKPOINT_FORMAT,
                        "version": CHECKPOINT_VERSION,
                        "kind": "last",
                        "model": unwrap_model(model).state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "scaler": precision.state_dict(),
                        **({"ema": ema.state_dict()} if ema is not None else {}),
                        "rng": capture_rng_state(),
                        "epoch": epochs_completed,
                        "global_step": global_step,
                        "best_value": best_value,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "monitor": monitor,
                        "history": history,
                        "finished": finished,
                        "stop_reason": stop_reason,
                        "partial_epoch": out.budget_hit,
                        "config": cfg.model_dump(mode="json"),
                    },
                    ckpt_last,
                )
                if self.progress is not None:
                    self.progress(epochs_completed, global_step, total_steps, metrics)
                if stop_reason != "completed":
                    sinks.event(stop_reason, message, step=global_step, level="info")
                    break
            if stop_reason == "completed":
                message = (
                    f"completed {epochs_completed} epoch(s), {global_step} steps; "
                    f"best {monitor}={_fmt(best_value)} at epoch {best_epoch}"
                )
        finally:
            sinks.close()
            close = getattr(self.progress, "close", None)
            if callable(close):
                close()

        return FitResult(
            stop_reason=stop_reason,
            message=message,
            epochs_completed=epochs_completed,
            global_step=global_step,
            monitor=monitor,
            best_value=best_value,
            best_epoch=best_epoch,
            last_metrics=last_metrics,
            history=history,
            wall_time_s=time.monotonic() - t_start,
            best_checkpoint=ckpt_best if ckpt_best.exists() else None,
            last_checkpoint=ckpt_last if ckpt_last.exists() else None,
        )

    # ---------------------------------------------------------- one epoch
    def _train_epoch(
        self,
        *,
        model: nn.Module,
        loader: Any,
        n_batches: int,
        step_fn: StepFn,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        precision: Precision,
        device: torch.device,
        groups: dict[str, list[nn.Parameter]],
        diag: Diagnostics,
        sinks: _Sinks,
        epoch: int,
        global_step: int,
        total_steps: int,
        deadline: float | None,
        ema: torch.optim.swa_utils.AveragedModel | None = None,
    ) -> _EpochResult:
        cfg = self.config
        k = cfg.grad_accum
        # On CPU reading the loss costs nothing, so every micro-batch is checked and a NaN
        # never reaches the weights. On accelerators a per-step .item() would stall the
        # pipeline; losses accumulate on the device and are checked at logging steps.
        sync_each_step = cfg.nan_check_every_step
        if sync_each_step is None:
            sync_each_step = device.type == "cpu"
        params = [p for g in optimizer.param_groups for p in g["params"]]
        res = _EpochResult(global_step=global_step)

        epoch_loss_f = 0.0
        win_loss_f = 0.0
        win_loss_t: torch.Tensor | None = None
        win_samples = 0
        win_t0 = time.perf_counter()
        micro = 0
        optimizer.zero_grad(set_to_none=True)

        for i, batch in enumerate(loader):
            window = min(k, n_batches - (i // k) * k) if i < n_batches else k
            with precision.autocast():
                output = step_fn(model, batch, device)
            loss, n = self._unpack(output, batch)
            if sync_each_step:
                value = float(loss.detach())
                if not math.isfinite(value):
                    res.nan_step = res.global_step + 1
                    return res
                win_loss_f += value * n
            else:
                d = loss.detach().float() * n
                win_loss_t = d if win_loss_t is None else win_loss_t + d
            win_samples += n
            res.samples += n
            precision.backward(loss / window if window != 1 else loss)
            micro += 1
            if micro < window:
                continue

            # ---- optimizer step
            micro = 0
            is_log = (res.global_step + 1) % cfg.log_every == 0
            step_metrics: dict[str, float] = {}
            if is_log or cfg.clip_grad_norm is not None:
                precision.unscale(optimizer)
            if is_log:
                total_norm, per_group = grad_norms(groups)
                step_metrics["train/grad_norm"] = total_norm
                for name, v in per_group.items():
                    step_metrics[f"grad_norm/{name}"] = v
            if cfg.clip_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
            lr = optimizer.param_groups[0]["lr"] if is_log else 0.0
            precision.step(optimizer)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update_parameters(unwrap_model(model))
            res.global_step += 1

            if is_log:
                if win_loss_t is not None:
                    win_loss_f += float(win_loss_t)  # the one sync per logging window
                    win_loss_t = None
                mean_loss = win_loss_f / max(1, win_samples)
                if not math.isfinite(mean_loss):
                    res.nan_step = res.global_step
                    return res
                now = time.perf_counter()
                step_metrics["train/loss"] = mean_loss
                step_metrics["lr"] = lr
                step_metrics["train/samples_per_s"] = win_samples / max(now - win_t0, 1e-9)
                sinks.metrics(res.global_step, step_metrics)
                diag.check_grads(res.global_step, step_metrics["train/grad_norm"], per_group)
                diag.check_loss(res.global_step, mean_loss)
                epoch_loss_f += win_loss_f
                win_loss_f, win_samples, win_t0 = 0.0, 0, now
            if self.progress is not None:
                self.progress(epoch + 1, res.global_step, total_steps, step_metrics)
            if deadline is not None and time.monotonic() >= deadline:
                res.budget_hit = True
                break

        # Fold the unlogged tail of the epoch into the epoch loss (one sync per epoch).
        if win_loss_t is not None:
            win_loss_f += float(win_loss_t)
        epoch_loss_f += win_loss_f
        if not math.isfinite(epoch_loss_f):
            res.nan_step = res.global_step
            return res
        res.loss_sum = epoch_loss_f
        return res

    def _unpack(self, output: StepOutput, batch: Any) -> tuple[torch.Tensor, int]:
        if isinstance(output, tuple):
            loss, n = output[0], int(output[1])
        else:
            loss, n = output, -1
        if not self._checked_step_output:
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
                raise InputError(f"step_fn must return a scalar loss tensor (or (loss, n_samples)), got {shape}")
            if not loss.requires_grad:
                raise InputError("step_fn returned a loss that does not require grad (was it computed under no_grad?)")
            self._checked_step_output = True
        if n < 0:
            n = batch_size_of(batch)
        return loss, n

    def _evaluate(
        self, model: nn.Module, val_loader: Any, eval_fn: EvalFn, precision: Precision, device: torch.device
    ) -> dict[str, float]:
        model.eval()
        try:
            with torch.no_grad(), precision.autocast():
                raw = eval_fn(model, val_loader, device)
        finally:
            model.train()
        if not isinstance(raw, dict):
            raise InputError(f"eval_fn must return a dict of metric name -> number, got {type(raw).__name__}")
        metrics: dict[str, float] = {}
        for name, value in raw.items():
            try:
                metrics[str(name)] = float(value)
            except (TypeError, ValueError):
                raise InputError(f"eval_fn metric {name!r} is not a number: {value!r}") from None
        return metrics


@dataclass
class _EpochResult:
    global_step: int
    loss_sum: float = 0.0
    samples: int = 0
    nan_step: int | None = None
    budget_hit: bool = False


def _shorten_schedule(scheduler: Any, schedule: LrSchedule, epochs: int) -> None:
    """Give the schedule a new horizon and apply it to the very next step's LR too."""
    schedule.set_epochs(epochs)
    factor = schedule(scheduler.last_epoch)
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs):
        group["lr"] = base * factor
    scheduler._last_lr = [g["lr"] for g in scheduler.optimizer.param_groups]


def _improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    if not math.isfinite(value):
        return False
    if best is None:
        return True
    return value > best + min_delta if mode == "max" else value < best - min_delta


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _jsonish(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _unfreeze_for_epoch(model: nn.Module, epoch: int, every: int) -> str | None:
    """Set the trainable groups for ``epoch`` of a gradual unfreeze; a message when they change.

    Derived from the epoch number alone, so a resumed run gets the same flags.
    """
    from dlforge.models.weights import gradual_unfreeze, layer_groups

    stage = epoch // every
    total = len(layer_groups(model))
    opened = gradual_unfreeze(model, stage)
    if epoch % every:  # mid-stage (a resumed run): flags restored, nothing new to report
        return None
    if stage == 0:
        return f"gradual unfreezing: head only, one more of {total} layer groups every {every} epoch(s)"
    if stage > total:
        return None
    return f"unfroze layer group {opened} of {total}" + (" (whole model trains)" if opened == total else "")


def _make_ema(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of ``model``'s weights and buffers (BatchNorm statistics too)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.eval()  # the copy is only evaluated and saved, never trained
    return ema
