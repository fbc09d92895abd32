"""Small pieces every task recipe shares: run start-up, parameter checks, the fit call.

Recipes stay readable top to bottom; what they have in common lives here as
plain functions, not a base class.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlforge.data.dataset import DatasetVersion
from dlforge.data.records import SampleRecord
from dlforge.errors import ConflictError, InputError


def engine_keys() -> frozenset[str]:
    from dlforge.engine.config import TrainConfig

    return frozenset(TrainConfig.model_fields)


def split_params(params: dict[str, Any], task_defaults: dict[str, Any], *, task: str) -> tuple[dict, dict]:
    """Separate engine hyperparameters from the task's own; unknown names are an error."""
    engine, own = {}, dict(task_defaults)
    keys = engine_keys()
    for k, v in params.items():
        if v is None:
            continue
        if k in keys:
            engine[k] = v
        elif k in task_defaults:
            own[k] = v
        else:
            known = sorted(keys | set(task_defaults))
            raise InputError(f"{task}: unknown parameter {k!r}; known: {', '.join(known)}")
    return engine, own


@dataclass
class Splits:
    train: list[SampleRecord]
    val: list[SampleRecord]
    test: list[SampleRecord]


def load_splits(version: DatasetVersion, *, task: str, media_type: str | None = None) -> Splits:
    """The version's train/val/test records, with the checks every task needs first."""
    if version.task not in (task, None) and not (task == "image_classification" and version.task is None):
        raise InputError(f"{version.ref} holds {version.task} data, not {task}; pick a matching task or dataset")
    records = version.records()
    if media_type is not None:
        wrong = {r.media_type for r in records} - {media_type}
        if wrong:
            raise InputError(f"{version.ref}: {task} needs {media_type} samples, found {', '.join(sorted(wrong))}")
    by: dict[str, list[SampleRecord]] = {"train": [], "val": [], "test": []}
    for r in records:
        if r.split in by:
            by[r.split].append(r)
    if not by["train"]:
        raise InputError(
            f"{version.ref} has no train split; run `dlforge data split {version.name} --val 0.1 --test 0.1` first"
        )
    return Splits(by["train"], by["val"], by["test"])


def classification_setup(
    ws: Any,
    run_params: dict[str, Any],
    data_ref: str,
    *,
    task: str,
    media_type: str,
    defaults: dict[str, Any],
    train_defaults: dict[str, Any],
) -> tuple[Any, dict[str, Any], DatasetVersion, Splits, list[str]]:
    """What every classification recipe checks and builds first: (config, hp, version, splits, classes)."""
    from dlforge.engine.config import TrainConfig

    engine_p, hp = split_params(run_params, defaults, task=task)
    engine_p = {**train_defaults, **engine_p}
    if hp["multilabel"] and engine_p.get("monitor") == "val/accuracy":
        engine_p["monitor"] = "val/micro_f1"
    config = TrainConfig.from_params(engine_p)
    version = ws.version(data_ref)
    splits = load_splits(version, task=task, media_type=media_type)
    classes = check_classes(version, splits.train, multilabel=hp["multilabel"])
    if not splits.val:
        raise InputError(f"{version.ref} has no val split; re-split with --val > 0 (it selects the best model)")
    return config, hp, version, splits, classes


def check_classes(version: DatasetVersion, train: list[SampleRecord], *, multilabel: bool) -> list[str]:
    """Class names in output order; a class without training samples is an error."""
    classes = version.classes
    if len(classes) < 2 and not multilabel:
        raise InputError(f"{version.ref}: classification needs at least 2 classes, found {classes}")
    seen = {lab for r in train for lab in r.labels()}
    empty = [c for c in classes if c not in seen]
    if empty:
        raise InputError(
            f"{version.ref}: class(es) {', '.join(map(repr, empty))} have no training samples; "
            "relabel, merge them (`dlforge data rename-classes`) or re-split"
        )
    return classes


def check_model(name: str, task: str, image_size: int | None = None) -> Any:
    """The registry entry of ``name``; an error if it belongs to another task or cannot take the size."""
    from dlforge.models import get_model_info

    info = get_model_info(name)
    if info.task != task:
        raise InputError(f"model {name!r} is a {info.task} model, not {task}")
    if image_size is not None and info.min_input_size and image_size < info.min_input_size:
        raise InputError(f"image_size {image_size}: model {name} needs at least {info.min_input_size} px")
    return info


def environment() -> dict[str, Any]:
    import torch

    import dlforge

    return {
        "dlforge": dlforge.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cuda": torch.cuda.is_available(),
        "platform": platform.platform(),
    }


def fit_prepared(
    run: Any,
    p: dict[str, Any],
    *,
    task: str,
    model_kwargs: dict[str, Any],
    input_spec: dict[str, Any],
    progress: Any,
    resume: bool,
) -> Any:
    """Write the run's ``run.json`` and train what a recipe's ``_prepare`` built.

    ``p`` holds ``config``, ``hp``, ``version``, ``classes``, ``model_name``, ``model``, ``loaders``,
    ``step_fn`` and ``eval_fn``.
    """
    run.write_manifest(
        {
            "id": run.id,
            "task": task,
            "model": p["model_name"],
            "model_kwargs": model_kwargs,
            "classes": p["classes"],
            "data": p["version"].ref,
            "params": run.params,
            "input": input_spec,
            "multilabel": p["hp"]["multilabel"],
            "config": p["config"].model_dump(),
            "environment": environment(),
        }
    )
    return run_fit(
        run,
        config=p["config"],
        model=p["model"],
        train_loader=p["loaders"]["train"],
        val_loader=p["loaders"]["val"],
        step_fn=p["step_fn"],
        eval_fn=p["eval_fn"],
        progress=progress,
        resume=resume,
    )


def run_fit(
    run: Any,
    *,
    config: Any,
    model: Any,
    train_loader: Any,
    val_loader: Any,
    step_fn: Callable[..., Any],
    eval_fn: Callable[..., dict[str, float]] | None,
    progress: Any = None,
    resume: bool = False,
) -> Any:
    """Train through the engine, keeping the run's status and summary in step with it."""
    from dlforge.engine import Trainer

    run.set_status("running")
    trainer = Trainer(config, run.dir, logger=run, progress=progress)
    started = time.time()
    try:
        result = trainer.fit(model, train_loader, val_loader, step_fn, eval_fn, resume=resume)
    except BaseException as exc:
        run.log_event("failed", f"{type(exc).__name__}: {exc}", level="error")
        run.finish("stopped" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    finally:
        close = getattr(progress, "close", None)
        if callable(close):
            close()
    summary = {
        "monitor": result.monitor,
        "best_metric": result.best_value,
        "best_epoch": result.best_epoch,
        "epochs_done": result.epochs_completed,
        "steps": result.global_step,
        "stop_reason": result.stop_reason,
        "message": result.message,
        "last_metrics": result.last_metrics,
        "train_seconds": round(time.time() - started, 2),
    }
    status = "failed" if result.stop_reason == "nan" else "completed"
    run.finish(status, summary)
    return result


def record_fit(
    run: Any,
    manifest: dict[str, Any],
    monitor: str,
    fit: Callable[[], Any],
    val_metrics: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Any:
    """Run a recipe's own fit function and keep the run's status, summary and manifest in step.

    For the detection and segmentation recipes, whose fit functions return an object with
    ``result`` (the engine's :class:`FitResult`) and ``metrics`` (the final validation).

    Args:
        run: The run (its manifest is written already).
        manifest: The run's manifest; gains ``metrics`` (the ``val/`` figures) and is rewritten.
        monitor: The metric the engine monitored.
        fit: Trains and returns the fit object.
        val_metrics: Maps the fit's metrics to the ``val/...`` summary entries; default: every
            float metric ``k`` as ``val/k``.

    Returns:
        The run, finished (``failed`` after a NaN stop, else ``completed``).
    """
    run.set_status("running")
    started = time.time()
    try:
        done = fit()
    except BaseException as exc:
        run.log_event("failed", f"{type(exc).__name__}: {exc}", level="error")
        run.finish("stopped" if isinstance(exc, KeyboardInterrupt) else "failed")
        raise
    val = (
        val_metrics(done.metrics)
        if val_metrics is not None
        else {f"val/{k}": v for k, v in done.metrics.items() if isinstance(v, float)}
    )
    summary = {
        "monitor": monitor,
        "best_metric": done.result.best_value,
        "best_epoch": done.result.best_epoch,
        "epochs_done": done.result.epochs_completed,
        "stop_reason": done.result.stop_reason,
        "train_seconds": round(time.time() - started, 2),
        **val,
    }
    manifest["metrics"] = val
    run.write_manifest(manifest)
    run.finish("failed" if done.result.stop_reason == "nan" else "completed", summary)
    return run


def val_metrics(probs: np.ndarray, y: np.ndarray, multilabel: bool) -> dict[str, float]:
    """The per-epoch validation metrics of classification tasks (cheap, numpy only)."""
    if multilabel:
        p = np.clip(probs, 1e-7, 1 - 1e-7)
        loss = float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
        pred, truth = probs >= 0.5, y > 0.5
        f1 = 2 * (pred & truth).sum() / max(1, pred.sum() + truth.sum())
        return {"val/loss": loss, "val/micro_f1": float(f1), "val/accuracy": float((pred == truth).all(1).mean())}
    loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    return {"val/loss": loss, "val/accuracy": float((probs.argmax(1) == y).mean())}


def ensure_resumable(run: Any, task: str) -> None:
    info = run.info()
    if info.task != task:
        raise InputError(f"run {run.id} is a {info.task} run, not {task}")
    if info.status == "completed":
        raise ConflictError(f"run {run.id} already finished; start a new run (e.g. with --weights {run.id})")
