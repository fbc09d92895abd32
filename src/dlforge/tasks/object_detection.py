"""Object detection recipe: records -> cached augmented dataset -> detector -> engine -> COCO metrics.

Read top to bottom:

1. :func:`build_datasets` turns SampleRecords into cached, box-aware augmented
   datasets (:mod:`dlforge.tasks.detection_data`).
2. :func:`create_detector` builds a registered detector (default ``det-tiny``,
   the one that learns from scratch on a CPU in minutes).
3. :func:`fit_detector` trains it with the engine's :class:`~dlforge.engine.Trainer`
   (``step_fn`` = the detector's own loss, ``eval_fn`` = COCO mAP on the val split).
   With a time budget and no epoch count, the engine fits the cosine schedule to the
   budget, so training ends annealed when the budget does.
4. :func:`evaluate_detector` computes COCO metrics (mAP@[.5:.95], mAP50, mAP75, by
   size, per class) in the images' original pixels.
5. The workspace functions :func:`train`, :func:`evaluate_run`, :func:`export_spec`
   and :func:`predict_images` wrap the above for the CLI and the web platform.

Inference settings (``score_threshold``, ``nms_iou``, ``max_detections``) are run
parameters; metrics always use a low threshold and 100 detections, as COCO does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlforge.data.records import SampleRecord
from dlforge.errors import InputError
from dlforge.tasks.detection_data import (
    AugmentConfig,
    DetectionDataset,
    MultiScaleCollate,
    collate_detection,
    load_rgb,
    prepare_records,
)

TASK = "object_detection"

DEFAULTS: dict[str, Any] = {
    "model": None,
    "image_size": None,
    "augment": "strong",
    "multiscale": True,
    "score_threshold": 0.3,
    "nms_iou": 0.5,
    "max_detections": 100,
    "model_kwargs": {},
}
"""Task hyperparameters (engine ones such as ``epochs``/``lr`` go to TrainConfig)."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "batch_size": 16,
    "lr": 2e-3,
    "optimizer": "adamw",
    "weight_decay": 5e-4,
    "scheduler": "cosine",
    "warmup_epochs": 1.0,
    "clip_grad_norm": 10.0,
    "monitor": "val/mAP50",
    "monitor_mode": "max",
    "log_every": 10,
}

EVAL_SCORE_THRESHOLD = 0.001
"""Scores kept for mAP: COCO evaluation ranks all detections, so none are cut early."""


def default_model() -> str:
    """The detector to use when none is named: the one that learns best in minutes on a CPU."""
    return "det-tiny" if not torch.cuda.is_available() else "det-tiny"


def augment_config(name: str) -> AugmentConfig:
    """``"strong"`` (mosaic + large scale jitter), ``"default"`` or ``"none"``."""
    if name == "strong":
        return AugmentConfig.strong()
    if name == "default":
        return AugmentConfig()
    if name == "none":
        return AugmentConfig.none()
    raise InputError(f"augment {name!r}: expected strong, default or none")


def build_datasets(
    train_records: Sequence[SampleRecord],
    val_records: Sequence[SampleRecord],
    classes: Sequence[str],
    image_size: int,
    *,
    augment: str | AugmentConfig = "strong",
    blob_resolver: Any = None,
) -> tuple[DetectionDataset, DetectionDataset]:
    """Cached train (augmented) and val (resize only) datasets."""
    aug = augment_config(augment) if isinstance(augment, str) else augment
    train_ds = DetectionDataset(
        train_records, classes, image_size, train=True, augment=aug, blob_resolver=blob_resolver
    )
    val_ds = DetectionDataset(val_records, classes, image_size, train=False, blob_resolver=blob_resolver)
    return train_ds, val_ds


def create_detector(name: str, num_classes: int, image_size: int, **kwargs: Any) -> nn.Module:
    """A registered detector for ``num_classes`` object classes (no background class)."""
    from dlforge.models import create_model
    from dlforge.tasks.common import check_model

    check_model(name, TASK, image_size)
    if name.startswith("fasterrcnn"):
        kwargs.setdefault("image_size", image_size)
    if name == "det-tiny" and image_size % 32:
        raise InputError(f"image_size {image_size}: det-tiny needs a multiple of 32")
    return create_model(name, num_classes, task=TASK, **kwargs)


# ---- step and eval functions for the engine ----------------------------------------------


def step_fn(model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int]:
    """Detector loss of one batch ``(images (B,3,S,S), targets)``."""
    images, targets = batch
    images = images.to(device)
    targets = [{"boxes": t["boxes"].to(device), "labels": t["labels"].to(device)} for t in targets]
    return model.compute_loss(images, targets)["loss"], images.shape[0]


@torch.no_grad()
def predict_dataset(
    model: nn.Module,
    dataset: DetectionDataset,
    device: torch.device | str = "cpu",
    *,
    score_threshold: float = EVAL_SCORE_THRESHOLD,
    nms_iou: float = 0.5,
    max_detections: int = 100,
    batch_size: int = 16,
) -> list[dict[str, np.ndarray]]:
    """Detections for every item of a (non-augmented) dataset, in the original images' pixels."""
    model.eval()
    out: list[dict[str, np.ndarray]] = []
    s = dataset.image_size
    for start in range(0, len(dataset), batch_size):
        idx = list(range(start, min(start + batch_size, len(dataset))))
        images = torch.stack([dataset.items[i].image for i in idx]).float().div(255).to(device)
        boxes, scores, labels = model.predict(
            images, score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections
        )
        for k, i in enumerate(idx):
            h, w = dataset.items[i].orig_size
            keep = scores[k] > 0
            b = boxes[k][keep].cpu().numpy() * np.array([w / s, h / s, w / s, h / s], dtype=np.float32)
            out.append({"boxes": b, "scores": scores[k][keep].cpu().numpy(), "labels": labels[k][keep].cpu().numpy()})
    return out


def evaluate_detector(
    model: nn.Module, dataset: DetectionDataset, device: torch.device | str = "cpu", *, nms_iou: float = 0.5
) -> tuple[dict[str, Any], list[dict[str, np.ndarray]]]:
    """COCO metrics of ``model`` on ``dataset`` (original pixels); also returns the predictions."""
    from dlforge.evaluate.detection import DetectionEvaluator

    preds = predict_dataset(model, dataset, device, nms_iou=nms_iou)
    ev = DetectionEvaluator(dataset.classes)
    for i, (item, p) in enumerate(zip(dataset.items, preds)):
        h, w = item.orig_size
        ev.add(i, item.orig_boxes, item.labels.numpy(), p["boxes"], p["scores"], p["labels"], image_size=(w, h))
    return ev.compute(), preds


def make_eval_fn(dataset: DetectionDataset, nms_iou: float, every: int = 1):
    """Engine ``eval_fn``: COCO mAP on the val split (every ``every`` epochs; cached in between)."""
    state: dict[str, Any] = {"calls": 0, "last": None}

    def eval_fn(model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        state["calls"] += 1
        if state["last"] is None or (state["calls"] - 1) % every == 0 or state["calls"] == state.get("final"):
            m, _ = evaluate_detector(model, dataset, device, nms_iou=nms_iou)
            state["last"] = {
                "val/mAP": m["map"] or 0.0,
                "val/mAP50": m["map_50"] or 0.0,
                "val/mAP75": m["map_75"] or 0.0,
            }
        return dict(state["last"])

    eval_fn.state = state  # type: ignore[attr-defined]
    return eval_fn


@dataclass
class DetectorFit:
    """Outcome of :func:`fit_detector`."""

    model: nn.Module
    result: Any
    metrics: dict[str, Any]
    epochs: int
    train_stats: dict[str, Any] = field(default_factory=dict)
    val_stats: dict[str, Any] = field(default_factory=dict)


def fit_detector(
    model: nn.Module,
    train_ds: DetectionDataset,
    val_ds: DetectionDataset,
    config: Any,
    run_dir: Path,
    *,
    logger: Any = None,
    progress: Any = None,
    multiscale: bool = True,
    nms_iou: float = 0.5,
    epochs_from_budget: bool = False,
) -> DetectorFit:
    """Train a detector through the engine and return its best weights and val metrics.

    Args:
        model: a detector (``compute_loss``/``predict``).
        train_ds: augmented training dataset.
        val_ds: validation dataset (selects the best epoch by mAP50).
        config: :class:`~dlforge.engine.TrainConfig`.
        run_dir: where checkpoints and TensorBoard logs go.
        logger: a ``RunLogger`` (the workspace Run), optional.
        progress: progress callback, optional.
        multiscale: train each batch at a random size in ``S +- 64`` (steps of 32).
        nms_iou: NMS IoU for evaluation.
        epochs_from_budget: train as many epochs as ``config.time_budget`` holds (the engine
            fits the LR schedule to the budget).
    """
    if len(train_ds) == 0:
        raise InputError("object_detection: no usable training images")
    s = train_ds.image_size
    collate = collate_detection
    if multiscale:
        sizes = [v for v in range(s - 64, s + 65, 32) if v >= 64]
        collate = MultiScaleCollate(sizes)

    def make_eval(cfg: Any) -> Any:
        eval_fn = make_eval_fn(val_ds, nms_iou, 1)
        eval_fn.state["final"] = cfg.epochs  # type: ignore[attr-defined]
        return eval_fn

    result, config = fit_with_engine(
        model, train_ds, val_ds, config, run_dir, step_fn, make_eval, collate, logger, progress, epochs_from_budget
    )
    metrics = evaluate_detector(model, val_ds, nms_iou=nms_iou)[0] if len(val_ds) else {}
    return DetectorFit(
        model=model,
        result=result,
        metrics=metrics,
        epochs=config.epochs,
        train_stats=train_ds.stats.to_dict(),
        val_stats=val_ds.stats.to_dict(),
    )


def fit_with_engine(
    model: nn.Module,
    train_ds: Any,
    val_ds: Any,
    config: Any,
    run_dir: Path,
    step: Any,
    make_eval: Any,
    collate: Any,
    logger: Any = None,
    progress: Any = None,
    epochs_from_budget: bool = False,
) -> tuple[Any, Any]:
    """The engine part of every box/mask detector fit: loaders, budget planning, fit, best weights.

    Args:
        step: the recipe's ``step_fn``.
        make_eval: ``make_eval(final_config)`` returns the epoch eval function (called only
            when there is a validation set; without one the run monitors the train loss).
        collate: the training batches' collate function (validation uses
            :func:`collate_detection`).

    Returns:
        ``(FitResult, the config actually used)``; the model holds its best epoch's weights.
    """
    from dlforge.engine import Trainer, load_best, make_loader

    train_loader = make_loader(
        train_ds,
        config.batch_size,
        True,
        config.num_workers,
        config.seed,
        collate_fn=collate,
        drop_last=len(train_ds) > config.batch_size,
    )
    val_loader = make_loader(val_ds, config.batch_size, False, 0, config.seed, collate_fn=collate_detection)
    if epochs_from_budget and config.time_budget:
        # the engine shortens the schedule to the budget after every epoch; give it room to plan
        config = config.model_copy(update={"epochs": max(config.epochs, 1000), "fit_schedule_to_budget": True})
    eval_fn = make_eval(config) if len(val_ds) else None
    if eval_fn is None:
        config = config.model_copy(update={"monitor": "train/loss", "monitor_mode": "min"})
    result = Trainer(config, run_dir, logger=logger, progress=progress).fit(
        model, train_loader, val_loader if eval_fn else None, step, eval_fn
    )
    # no best checkpoint exists when a budget stops the run before its first epoch ends
    with contextlib.suppress(Exception):
        load_best(model, run_dir)
    return result, config


# ---- workspace glue -------------------------------------------------------------------------


def train(ws: Any, data_ref: str, *, progress: Any = None, **params: Any) -> Any:
    """Train a detector on a dataset version; returns the finished :class:`~dlforge.runs.Run`.

    Parameters are the engine's (``epochs``, ``time_budget``, ``batch_size``, ``lr``,
    ``seed``, ...) and this task's :data:`DEFAULTS` (``model``, ``image_size``,
    ``augment``, ``multiscale``, ``score_threshold``, ``nms_iou``, ``max_detections``).
    """
    from dlforge.engine.config import TrainConfig
    from dlforge.models import get_model_info
    from dlforge.tasks.common import environment, load_splits, record_fit, split_params

    engine_p, hp = split_params(params, DEFAULTS, task=TASK)
    budget_only = "time_budget" in engine_p and "epochs" not in engine_p
    engine_p = {**TRAIN_DEFAULTS, **engine_p}
    config = TrainConfig.from_params(engine_p)
    version = ws.version(data_ref)
    splits = load_splits(version, task=TASK, media_type="image")
    classes = list(version.classes)
    if not classes:
        raise InputError(f"{version.ref}: no classes; object detection needs labelled boxes")
    if not splits.val:
        raise InputError(f"{version.ref} has no val split; re-split with --val > 0 (it selects the best model)")
    name = hp["model"] or default_model()
    size = int(hp["image_size"] or get_model_info(name).default_input_size or 320)
    torch.manual_seed(config.seed)
    model = create_detector(name, len(classes), size, **(hp["model_kwargs"] or {}))
    train_ds, val_ds = build_datasets(
        splits.train, splits.val, classes, size, augment=hp["augment"], blob_resolver=ws.blobs.path
    )
    run_params = {
        **params,
        "model": name,
        "image_size": size,
        "score_threshold": hp["score_threshold"],
        "nms_iou": hp["nms_iou"],
        "max_detections": hp["max_detections"],
    }
    run = ws.create_run(TASK, run_params, version.ref)
    for what, st in (("train", train_ds.stats), ("val", val_ds.stats)):
        if st.clipped_boxes or st.dropped_boxes or st.skipped:
            run.log_event(
                "data",
                f"{what}: {st.clipped_boxes} boxes clipped to the image, "
                f"{st.dropped_boxes} degenerate boxes dropped, {len(st.skipped)} items skipped",
            )
    manifest = {
        "id": run.id,
        "task": TASK,
        "model": name,
        "model_kwargs": dict(getattr(model, "config", {})),
        "classes": classes,
        "data": version.ref,
        "params": run_params,
        "input": {"size": [size, size], "resize": "stretch", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "postprocess": {
            "score_threshold": hp["score_threshold"],
            "iou_threshold": hp["nms_iou"],
            "max_detections": hp["max_detections"],
        },
        "config": config.model_dump(),
        "environment": environment(),
    }
    manifest["model_kwargs"].pop("arch", None)
    run.write_manifest(manifest)
    return record_fit(
        run,
        manifest,
        config.monitor,
        lambda: fit_detector(
            model,
            train_ds,
            val_ds,
            config,
            run.dir,
            logger=run,
            progress=progress,
            multiscale=bool(hp["multiscale"]),
            nms_iou=hp["nms_iou"],
            epochs_from_budget=budget_only,
        ),
    )


def load_model(run: Any) -> nn.Module:
    """The run's best detector in eval mode on the CPU."""
    from dlforge.engine.checkpoint import load_best

    m = run.manifest()
    kwargs = dict(m.get("model_kwargs", {}))
    kwargs.pop("image_size", None)  # Faster R-CNN records it in its config; the input size rules
    model = create_detector(m["model"], len(m["classes"]), m["input"]["size"][0], **kwargs)
    load_best(model, run.dir)
    return model.eval()


def evaluate_run(run: Any, split: str = "test", report_path: Path | None = None) -> dict[str, Any]:
    """COCO metrics of the run's best model on a split of its dataset version (+ optional HTML report)."""
    m = run.manifest()
    version = run.ws.version(m["data"])
    records = version.records(split=split)
    if not records:
        raise InputError(f"{version.ref} has no {split} split to evaluate on")
    ds = DetectionDataset(records, m["classes"], m["input"]["size"][0], blob_resolver=run.ws.blobs.path)
    metrics, preds = evaluate_detector(load_model(run), ds, nms_iou=m["postprocess"]["iou_threshold"])
    out = {"run": run.id, "split": split, "data": version.ref, "n": len(ds), **metrics}
    if report_path is not None:
        write_detection_report(
            out, ds, preds, m["classes"], Path(report_path), min_score=m["postprocess"]["score_threshold"]
        )
    return out


def write_detection_report(
    metrics: dict[str, Any],
    ds: DetectionDataset,
    preds: list[dict[str, np.ndarray]],
    classes: Sequence[str],
    path: Path,
    *,
    min_score: float = 0.3,
    n_images: int = 8,
) -> Path:
    """HTML report: summary metrics, per-class AP, PR curves, and the worst images drawn."""
    from dlforge.evaluate import html as report_html
    from dlforge.evaluate.detection import DetectionEvaluator, draw_detections

    rep = report_html.Report(f"Object detection: {metrics.get('run', '')} on {metrics.get('split', '')}")
    rep.add_metrics(
        {
            k: metrics[k]
            for k in ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100")
            if k in metrics
        }
    )
    rep.add_table(metrics.get("per_class", []), "Per class")
    # worst images first: lowest per-image AP50
    scored = []
    for i, (item, p) in enumerate(zip(ds.items, preds)):
        ev = DetectionEvaluator(list(classes))
        ev.add(i, item.orig_boxes, item.labels.numpy(), p["boxes"], p["scores"], p["labels"])
        scored.append((ev.compute()["map_50"] or 0.0, i))
    scored.sort()
    for ap50, i in scored[:n_images]:
        item, p = ds.items[i], preds[i]
        rec_img = Image_from_item(item)
        img = draw_detections(
            rec_img,
            p["boxes"],
            p["labels"],
            p["scores"],
            classes,
            gt_boxes=item.orig_boxes,
            gt_labels=item.labels.numpy(),
            min_score=min_score,
        )
        rep.add_image(img, f"{item.name} (AP50 {ap50:.2f})")
    path.parent.mkdir(parents=True, exist_ok=True)
    rep.save(path)
    return path


def Image_from_item(item: Any):  # noqa: N802 - the detection and instance reports draw on it
    from PIL import Image

    h, w = item.orig_size
    return Image.fromarray(item.image.permute(1, 2, 0).numpy()).resize((w, h))


def export_spec(run: Any) -> Any:
    """Deployment spec: the model wrapped to output ``boxes``/``scores``/``labels`` of fixed shape."""
    from dlforge.deploy.spec import ExportSpec, ImageInput
    from dlforge.models.detection import DetectionExport

    m = run.manifest()
    version = run.ws.version(m["data"])
    size = m["input"]["size"][0]
    pp = m["postprocess"]

    def batch(split: str, n: int) -> torch.Tensor | None:
        recs = version.records(split=split)[:n]
        if not recs:
            return None
        items, _ = prepare_records(recs, m["classes"], size, blob_resolver=run.ws.blobs.path)
        return torch.stack([it.image for it in items]).float().div(255) if items else None

    wrapper = DetectionExport(load_model(run), pp["score_threshold"], pp["iou_threshold"], pp["max_detections"])
    return ExportSpec(
        model=wrapper.eval(),
        task=TASK,
        labels=m["classes"],
        input=ImageInput(size=(size, size), resize="stretch", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)),
        example_inputs=batch("val", 4),
        calibration_inputs=batch("train", 32),
        validation_inputs=batch("val", 64),
        metrics=m.get("metrics", {}),
        data_version=m["data"],
        run_id=run.id,
        postprocess=dict(pp),
        input_names=["image"],
        output_names=["boxes", "scores", "labels"],
        name=m["data"].split("@")[0],
        max_batch=16,
    )


def predict_images(run: Any, paths: Sequence[str | Path], draw_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Detect objects in image files with the run's best model; optionally draw them to ``draw_dir``."""
    m = run.manifest()
    model = load_model(run)
    return predict_files_with(model, m["classes"], m["input"]["size"][0], paths, m["postprocess"], draw_dir)


def predict_files_with(
    model: nn.Module,
    classes: Sequence[str],
    size: int,
    paths: Sequence[str | Path],
    postprocess: dict[str, Any],
    draw_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Detections per file as ``{"path", "detections": [{"label", "score", "box"}], "drawn"?}``."""
    from PIL import Image

    from dlforge.evaluate.detection import draw_detections

    out = []
    model.eval()
    for p in paths:
        p = Path(p)
        img = load_rgb(p)
        w, h = img.size
        x = torch.from_numpy(np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255)
        with torch.no_grad():
            boxes, scores, labels = model.predict(
                x.permute(2, 0, 1)[None],
                score_threshold=postprocess["score_threshold"],
                nms_iou=postprocess["iou_threshold"],
                max_detections=postprocess["max_detections"],
            )
        keep = scores[0] > 0
        b = boxes[0][keep].numpy() * np.array([w / size, h / size, w / size, h / size])
        dets = [
            {"label": classes[int(lab)], "score": round(float(s), 4), "box": [round(float(v), 1) for v in bb]}
            for bb, s, lab in zip(b, scores[0][keep], labels[0][keep])
        ]
        entry: dict[str, Any] = {"path": str(p), "detections": dets}
        if draw_dir is not None:
            d = Path(draw_dir)
            d.mkdir(parents=True, exist_ok=True)
            drawn = draw_detections(img, b, labels[0][keep].numpy(), scores[0][keep].numpy(), classes)
            target = d / f"{p.stem}.det.png"
            tmp = target.with_suffix(".tmp.png")
            drawn.save(tmp)
            tmp.replace(target)
            entry["drawn"] = str(target)
        out.append(entry)
    return out
