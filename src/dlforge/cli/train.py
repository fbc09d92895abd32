"""``dlforge train`` and ``dlforge eval``: one call each into a task recipe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dlforge.cli.common import JSON_HELP, emit, err, parse_kv, workspace
from dlforge.errors import InputError
from dlforge.tasks import TASKS


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def train(
    task: str | None = typer.Argument(
        None,
        help=" | ".join(TASKS) + " (omit with --resume).",
    ),
    data: str | None = typer.Option(
        None, "--data", "-d", help="Dataset version NAME[@VERSION] (latest when no version)."
    ),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Architecture (`dlforge models`); default: the task's best for this hardware.",
    ),
    epochs: int | None = typer.Option(None, "--epochs", help="Training epochs."),
    time_budget: float | None = typer.Option(
        None, "--time-budget", help="Stop cleanly after this many seconds, keeping the best model."
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Batch size."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    optimizer: str | None = typer.Option(None, "--optimizer", help="sgd | adamw."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="cosine | step | onecycle | constant."),
    weight_decay: float | None = typer.Option(
        None, "--weight-decay", help="Weight decay (not applied to norms and biases)."
    ),
    precision: str | None = typer.Option(None, "--precision", help="fp32 | bf16 | fp16 (fp16 needs CUDA)."),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N."),
    image_size: int | None = typer.Option(None, "--image-size", help="Input size in pixels (image tasks)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
    weights: str | None = typer.Option(
        None, "--weights", help="Start from weights: a file, 'hub' (torch hub cache), or a run id"
        " (a text run also brings its tokenizer)."
    ),
    freeze_backbone: bool = typer.Option(
        False, "--freeze-backbone", help="Train only the head (transfer learning)."
    ),
    unfreeze_every: int | None = typer.Option(
        None,
        "--unfreeze-every",
        help="Gradual unfreezing: head only for N epochs, then one more layer group every N epochs.",
    ),
    target: str | None = typer.Option(None, "--target", help="Target column (tabular)."),
    set_: list[str] = typer.Option(
        None, "--set", help="Any other hyperparameter KEY=VALUE (JSON values), repeatable."
    ),
    resume: str | None = typer.Option(
        None, "--resume", help="Continue an interrupted run exactly where it stopped."
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Train a model on a frozen dataset version; prints the run id.

    Every hyperparameter, the data version, metrics, events and checkpoints are
    recorded in the run. Examples:

      dlforge train image_classification --data digits@3 --model cnn-small --epochs 10

      dlforge train text_classification --data reviews --model textcnn --time-budget 300
    """
    from dlforge.engine.progress import RichProgress
    from dlforge.tasks import get_task

    ws = workspace()
    progress = RichProgress() if not as_json or err.is_terminal else None
    if resume:
        run = ws.run(resume)
        recipe = get_task(run.task)
        run = recipe.resume(ws, run, progress=progress)
    else:
        if task is None or data is None:
            raise InputError("train needs TASK and --data NAME[@VERSION] (or --resume RUN)")
        params: dict[str, Any] = {
            k: v
            for k, v in {
                "model": model,
                "epochs": epochs,
                "time_budget": time_budget,
                "batch_size": batch_size,
                "lr": lr,
                "optimizer": optimizer,
                "scheduler": scheduler,
                "weight_decay": weight_decay,
                "precision": precision,
                "device": device,
                "image_size": image_size,
                "seed": seed,
                "weights": weights,
                "unfreeze_every": unfreeze_every,
                "target": target,
            }.items()
            if v is not None
        }
        if freeze_backbone:
            params["freeze_backbone"] = True
        params.update({k: _value(v) for k, v in parse_kv(set_, "--set").items()})
        recipe = get_task(task)
        run = recipe.train(ws, data, progress=progress, **params)
    info = run.info().to_dict()

    def human(d: dict[str, Any]) -> None:
        s = d["summary"]
        err.print(
            f"run [bold]{d['run']}[/] {d['status']}: {s.get('monitor')}={s.get('best_metric')} "
            f"(epoch {s.get('best_epoch')}, stop: {s.get('stop_reason')})"
        )
        err.print(
            f"next: dlforge eval {d['run']} --report report.html ; "
            f"dlforge export {d['run']} --format bundle --out bundle/"
        )

    emit(info, as_json, human)


def eval_(
    run_id: str = typer.Argument(..., help="Run id."),
    split: str = typer.Option("test", "--split", help="train | val | test."),
    report: Path | None = typer.Option(None, "--report", help="Write a self-contained HTML report here."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Evaluate a run's best model on a split of its dataset version; optional HTML report."""
    from dlforge.tasks import get_task

    ws = workspace()
    run = ws.run(run_id)
    metrics = get_task(run.task).evaluate_run(run, split=split, report_path=report)

    def human(d: dict[str, Any]) -> None:
        for k, v in d.items():
            if isinstance(v, (int, float)):
                err.print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
        if report:
            err.print(f"report: {report}")

    emit(metrics, as_json, human)


def models(
    task: str | None = typer.Option(None, "--task", help="Only models of this task."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """List the registered model architectures."""
    from dlforge.models import list_models

    rows = [
        {
            "name": m.name,
            "task": m.task,
            "default_input_size": m.default_input_size,
            "description": m.description,
        }
        for m in list_models(task)
    ]

    def human(d: dict[str, Any]) -> None:
        for m in d["models"]:
            err.print(f"{m['task']:<24} {m['name']:<34} {m['description']}")

    emit({"models": rows}, as_json, human)


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("eval")(eval_)
    app.command("models")(models)
