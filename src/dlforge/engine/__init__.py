"""The training engine: a plain loop with device, precision, accumulation, schedules,
checkpoints, exact resume and diagnostics around a task's ``step_fn``/``eval_fn``.

Typical use by a task recipe::

    from dlforge.engine import Trainer, TrainConfig, make_loader, to_device, load_best

    cfg = TrainConfig.from_params(params)
    train_loader = make_loader(train_ds, cfg.batch_size, shuffle=True, seed=cfg.seed)
    val_loader = make_loader(val_ds, cfg.batch_size, shuffle=False)

    def step_fn(model, batch, device):
        x, y = to_device(batch, device)
        return F.cross_entropy(model(x), y)

    def eval_fn(model, loader, device):
        ...
        return {"val/loss": loss, "val/accuracy": acc}

    result = Trainer(cfg, run.dir, logger=run).fit(model, train_loader, val_loader, step_fn, eval_fn)
    load_best(model, run.dir)
"""

from __future__ import annotations

from dlforge.engine.checkpoint import atomic_save, best_path, last_path, load_best, load_checkpoint
from dlforge.engine.config import TrainConfig
from dlforge.engine.diagnostics import Diagnostics, grad_norms, layer_groups
from dlforge.engine.loader import EpochSampler, batch_size_of, make_loader, set_loader_epoch, to_device
from dlforge.engine.loggers import MemoryLogger, RunLogger, TensorBoardLogger
from dlforge.engine.optim import build_optimizer, param_groups
from dlforge.engine.precision import Precision, resolve_device
from dlforge.engine.progress import ProgressCallback, RichProgress
from dlforge.engine.schedules import build_scheduler, lr_factor
from dlforge.engine.seeding import capture_rng_state, derive_seed, restore_rng_state, seed_everything
from dlforge.engine.trainer import STOP_REASONS, EvalFn, FitResult, StepFn, Trainer

__all__ = [
    "STOP_REASONS",
    "Diagnostics",
    "EpochSampler",
    "EvalFn",
    "FitResult",
    "MemoryLogger",
    "Precision",
    "ProgressCallback",
    "RichProgress",
    "RunLogger",
    "StepFn",
    "TensorBoardLogger",
    "TrainConfig",
    "Trainer",
    "atomic_save",
    "batch_size_of",
    "best_path",
    "build_optimizer",
    "build_scheduler",
    "capture_rng_state",
    "derive_seed",
    "grad_norms",
    "last_path",
    "layer_groups",
    "load_best",
    "load_checkpoint",
    "lr_factor",
    "make_loader",
    "param_groups",
    "resolve_device",
    "restore_rng_state",
    "seed_everything",
    "set_loader_epoch",
    "to_device",
]
