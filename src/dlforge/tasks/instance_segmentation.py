"""Instance segmentation recipe: polygon/mask records -> Mask R-CNN -> engine -> COCO mask and box AP.

A thin layer over the object detection pieces, read top to bottom:

1. :func:`instance_records` keeps each record's ``polygon``/``mask`` annotations: one
   instance each, its box derived from its mask (records with only boxes are skipped).
2. :func:`build_datasets` caches them in the detection pipeline
   (:class:`~dlforge.tasks.detection_data.DetectionDataset` with masks), so the same
   box/mask-aware augmentation (mosaic, scale jitter, flips) moves masks with pixels.
3. :func:`create_segmenter` builds a registered Mask R-CNN (default ``maskrcnn-tiny``,
   the one that learns from scratch on a CPU).
4. :func:`fit_segmenter` trains it with the engine (loss = Mask R-CNN's own, val metric =
   COCO mask mAP50).
5. :func:`evaluate_segmenter` computes COCO mask AP (``segm``) and box AP in the images'
   original pixels against the original-resolution masks.
6. :func:`train`, :func:`evaluate_run`, :func:`predict_images` and :func:`export_spec`
   (which refuses, one line saying why and what works) wrap them for the CLI.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlforge.data.records import SampleRecord, Skip
from dlforge.errors import InputError
from dlforge.tasks.detection_data import (
    AugmentConfig,
    DetectionDataset,
    collate_detection,
    load_rgb,
    record_targets,
)
from dlforge.tasks.object_detection import Image_from_item, augment_config, fit_with_engine

TASK = "instance_segmentation"
SHAPE_KINDS = ("polygon", "mask")

DEFAULTS: dict[str, Any] = {
    "model": None,
    "image_size": None,
    "augment": "default",
    "multiscale": True,
    "score_threshold": 0.3,
    "nms_iou": 0.5,
    "max_detections": 100,
    "mask_threshold": 0.5,
    "weights": None,
    "model_kwargs": {},
}
"""Task hyperparameters (engine ones such as ``epochs``/``lr`` go to TrainConfig)."""

TRAIN_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "batch_size": 8,
    "lr": 1e-3,
    "optimizer": "adamw",
    "weight_decay": 1e-4,
    "scheduler": "cosine",
    "warmup_epochs": 1.0,
    "clip_grad_norm": 10.0,
    "monitor": "val/mask_mAP50",
    "monitor_mode": "max",
    "log_every": 10,
}

EVAL_SCORE_THRESHOLD = 0.001
"""Scores kept for AP: COCO ranks all detections, so none are cut early."""


def default_model() -> str:
    """The Mask R-CNN to use when none is named: the one that learns from scratch in CPU minutes."""
    return "maskrcnn-tiny"


# ---- data -------------------------------------------------------------------------------


def instance_records(records: Sequence[SampleRecord]) -> tuple[list[SampleRecord], list[Skip]]:
    """Records reduced to their instances: ``polygon``/``mask`` annotations only.

    Boxes are dropped (each instance's box is derived from its mask, so it fits it
    exactly). A record that has boxes but no polygon or mask cannot say where its
    objects' pixels are; it is skipped rather than trained as background. Records
    without any annotation stay (background images).
    """
    out: list[SampleRecord] = []
    skipped: list[Skip] = []
    for r in records:
        shapes = [a for a in r.annotations if a.kind in SHAPE_KINDS]
        if not shapes and any(a.kind == "box" for a in r.annotations):
            skipped.append(Skip(r.name, "boxes without polygons or masks"))
            continue
        out.append(dataclasses.replace(r, annotations=shapes))
    return out, skipped


def check_instances(ref: str, records: Sequence[SampleRecord]) -> None:
    """An error unless some record has a polygon or mask annotation."""
    if not any(a.kind in SHAPE_KINDS for r in records for a in r.annotations):
        kinds = sorted({a.kind for r in records for a in r.annotations}) or ["none"]
        raise InputError(
            f"{ref}: no polygon or mask annotations in the train split (found: {', '.join(kinds)}); "
            "instance_segmentation needs instance masks, e.g. a COCO import with segmentation"
        )


def build_datasets(
    train_records: Sequence[SampleRecord],
    val_records: Sequence[SampleRecord],
    classes: Sequence[str],
    image_size: int,
    *,
    augment: str | AugmentConfig = "default",
    blob_resolver: Any = None,
) -> tuple[DetectionDataset, DetectionDataset]:
    """Cached train (augmented) and val (resize only) datasets carrying instance masks."""
    aug = augment_config(augment) if isinstance(augment, str) else augment
    train_ds = DetectionDataset(
        train_records, classes, image_size, train=True, augment=aug, with_masks=True, blob_resolver=blob_resolver
    )
    val_ds = DetectionDataset(val_records, classes, image_size, with_masks=True, blob_resolver=blob_resolver)
    return train_ds, val_ds


@dataclass
class InstanceTruth:
    """One image's ground truth in its original pixels (for evaluation)."""

    rles: list[dict[str, Any]]
    labels: np.ndarray  # (N,) int64
    boxes: np.ndarray  # (N, 4) xyxy


def original_truth(
    records: Sequence[SampleRecord], dataset: DetectionDataset, blob_resolver: Any = None
) -> list[InstanceTruth]:
    """Original-resolution instance masks for every item of ``dataset`` (built from ``records``).

    The dataset caches masks at the model size; COCO metrics are computed on the
    images' own pixels, so the masks are decoded again here (as RLEs, to keep them small).
    """
    from dlforge.evaluate.instance_segmentation import encode_masks

    by_order = iter(records)
    out: list[InstanceTruth] = []
    for item in dataset.items:
        # items keep the records' order, minus the ones that could not be read
        rec = next(r for r in by_order if r.name == item.name)
        tg = record_targets(rec, dataset.classes, item.orig_size, want_masks=True, blob_resolver=blob_resolver)
        h, w = item.orig_size
        masks = tg.masks if tg.masks is not None else np.zeros((0, h, w), dtype=bool)
        out.append(InstanceTruth(encode_masks(masks), tg.labels, tg.boxes))
    return out


class MaskMultiScaleCollate:
    """Collate that resizes each batch, its boxes and its masks to a random side from ``sizes``."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)

    def __call__(self, batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
        images, targets = collate_detection(batch)
        s = random.choice(self.sizes)
        cur = images.shape[-1]
        if s == cur:
            return images, targets
        images = nn.functional.interpolate(images, size=(s, s), mode="bilinear", align_corners=False, antialias=s < cur)
        out = []
        for t in targets:
            m = t["masks"]
            if len(m):
                m = nn.functional.interpolate(m[:, None].float(), size=(s, s), mode="nearest")[:, 0] > 0.5
            else:
                m = torch.zeros((0, s, s), dtype=torch.bool)
            out.append({**t, "boxes": t["boxes"] * (s / cur), "masks": m})
        return images, out


# ---- model ------------------------------------------------------------------------------


def create_segmenter(
    name: str, num_classes: int, image_size: int, *, weights: str | Path | None = None, **kwargs: Any
) -> nn.Module:
    """A registered Mask R-CNN for ``num_classes`` classes; ``weights`` is a local file or ``"hub"``."""
    from dlforge.models import create_model
    from dlforge.tasks.common import check_model

    check_model(name, TASK, image_size)
    kwargs.setdefault("image_size", image_size)
    model = create_model(name, num_classes, task=TASK, **kwargs)
    if weights:
        model.load_weights(weights)
    return model


def step_fn(model: nn.Module, batch: Any, device: torch.device) -> tuple[torch.Tensor, int]:
    """Mask R-CNN loss of one batch ``(images (B,3,S,S), targets with masks)``."""
    images, targets = batch
    images = images.to(device)
    targets = [
        {"boxes": t["boxes"].to(device), "labels": t["labels"].to(device), "masks": t["masks"].to(device)}
        for t in targets
    ]
    return model.compute_loss(images, targets)["loss"], images.shape[0]


# ---- prediction and metrics -------------------------------------------------------------


def _to_original(
    boxes: torch.Tensor, masks: torch.Tensor, s: int, h: int, w: int, mask_threshold: float
) -> tuple[np.ndarray, torch.Tensor]:
    """Boxes from the ``s x s`` input to ``(h, w)`` pixels and their 28x28 masks pasted there."""
    from dlforge.models.instance_segmentation import paste_masks

    scaled = boxes * torch.tensor([w / s, h / s, w / s, h / s], dtype=boxes.dtype)
    return scaled.numpy(), paste_masks(masks, scaled, h, w, mask_threshold)


@torch.no_grad()
def predict_dataset(
    model: nn.Module,
    dataset: DetectionDataset,
    device: torch.device | str = "cpu",
    *,
    score_threshold: float = EVAL_SCORE_THRESHOLD,
    nms_iou: float = 0.5,
    max_detections: int = 100,
    mask_threshold: float = 0.5,
    batch_size: int = 8,
) -> list[dict[str, Any]]:
    """Instances for every item of a (non-augmented) dataset in the original images' pixels.

    Each entry has ``boxes (K, 4)``, ``scores (K,)``, ``labels (K,)`` and ``rles`` (K COCO RLEs).
    """
    from dlforge.evaluate.instance_segmentation import encode_masks

    model.eval()
    out: list[dict[str, Any]] = []
    s = dataset.image_size
    for start in range(0, len(dataset), batch_size):
        idx = list(range(start, min(start + batch_size, len(dataset))))
        images = torch.stack([dataset.items[i].image for i in idx]).float().div(255).to(device)
        boxes, scores, labels, masks = model.predict_with_masks(
            images, score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections
        )
        for k, i in enumerate(idx):
            h, w = dataset.items[i].orig_size
            keep = scores[k] > 0
            b, m = _to_original(boxes[k][keep].cpu(), masks[k][keep].cpu(), s, h, w, mask_threshold)
            out.append(
                {
                    "boxes": b,
                    "scores": scores[k][keep].cpu().numpy(),
                    "labels": labels[k][keep].cpu().numpy(),
                    "rles": encode_masks(m.numpy()),
                }
            )
    return out


def instance_metrics(
    classes: Sequence[str], truth: Sequence[InstanceTruth], preds: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """COCO mask AP (``mask_map``, ``mask_map_50``, ...) and box AP (``box_map``, ...) of predictions.

    ``per_class`` and ``pr_curves`` are the mask ones, with each class's box AP50 added.
    """
    from dlforge.evaluate.detection import DetectionEvaluator
    from dlforge.evaluate.instance_segmentation import MaskEvaluator

    mask_ev, box_ev = MaskEvaluator(classes), DetectionEvaluator(classes)
    for i, (gt, p) in enumerate(zip(truth, preds)):
        mask_ev.add(i, gt.rles, gt.labels, p["rles"], p["scores"], p["labels"])
        box_ev.add(i, gt.boxes, gt.labels, p["boxes"], p["scores"], p["labels"])
    mask, box = mask_ev.compute(), box_ev.compute()
    keys = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large", "mar_100")
    out: dict[str, Any] = {f"mask_{k}": mask[k] for k in keys}
    out.update({f"box_{k}": box[k] for k in keys})
    out["per_class"] = [{**row, "box_ap50": brow["ap50"]} for row, brow in zip(mask["per_class"], box["per_class"])]
    out["pr_curves"] = mask["pr_curves"]
    out.update({k: mask[k] for k in ("num_images", "num_gt", "num_pred")})
    return out


def evaluate_segmenter(
    model: nn.Module,
    dataset: DetectionDataset,
    truth: Sequence[InstanceTruth],
    device: torch.device | str = "cpu",
    *,
    nms_iou: float = 0.5,
    mask_threshold: float = 0.5,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """COCO mask and box metrics of ``model`` on ``dataset`` (original pixels); also the predictions."""
    preds = predict_dataset(model, dataset, device, nms_iou=nms_iou, mask_threshold=mask_threshold)
    return instance_metrics(dataset.classes, truth, preds), preds


def make_eval_fn(dataset: DetectionDataset, truth: Sequence[InstanceTruth], nms_iou: float, mask_threshold: float):
    """Engine ``eval_fn``: COCO mask and box AP on the val split."""

    def eval_fn(model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        m, _ = evaluate_segmenter(model, dataset, truth, device, nms_iou=nms_iou, mask_threshold=mask_threshold)
        return {
            "val/mask_mAP": m["mask_map"] or 0.0,
            "val/mask_mAP50": m["mask_map_50"] or 0.0,
            "val/box_mAP50": m["box_map_50"] or 0.0,
        }

    return eval_fn


@dataclass
class SegmenterFit:
    """Outcome of :func:`fit_segmenter`."""

    model: nn.Module
    result: Any
    metrics: dict[str, Any]
    train_stats: dict[str, Any] = field(default_factory=dict)
    val_stats: dict[str, Any] = field(default_factory=dict)


def fit_segmenter(
    model: nn.Module,
    train_ds: DetectionDataset,
    val_ds: DetectionDataset,
    val_truth: Sequence[InstanceTruth],
    config: Any,
    run_dir: Path,
    *,
    logger: Any = None,
    progress: Any = None,
    multiscale: bool = True,
    nms_iou: float = 0.5,
    mask_threshold: float = 0.5,
    epochs_from_budget: bool = False,
) -> SegmenterFit:
    """Train a Mask R-CNN through the engine; returns its best weights and val metrics.

    Args:
        model: a :class:`~dlforge.models.instance_segmentation.MaskRCNNSegmenter`.
        train_ds: augmented training dataset with masks.
        val_ds: validation dataset with masks (selects the best epoch by mask mAP50).
        val_truth: :func:`original_truth` of ``val_ds``.
        config: :class:`~dlforge.engine.TrainConfig`.
        run_dir: where checkpoints and TensorBoard logs go.
        logger: a ``RunLogger`` (the workspace Run), optional.
        progress: progress callback, optional.
        multiscale: train each batch at a random size in ``S +- 64`` (steps of 32).
        nms_iou: NMS IoU for evaluation.
        mask_threshold: probability above which a pixel belongs to a predicted mask.
        epochs_from_budget: train as many epochs as ``config.time_budget`` holds.
    """
    if len(train_ds) == 0:
        raise InputError(f"{TASK}: no usable training images")
    s = train_ds.image_size
    collate: Any = collate_detection
    if multiscale:
        collate = MaskMultiScaleCollate([v for v in range(s - 64, s + 65, 32) if v >= 64])
    result, config = fit_with_engine(
        model,
        train_ds,
        val_ds,
        config,
        run_dir,
        step_fn,
        lambda cfg: make_eval_fn(val_ds, val_truth, nms_iou, mask_threshold),
        collate,
        logger,
        progress,
        epochs_from_budget,
    )
    metrics = {}
    if len(val_ds):
        metrics = evaluate_segmenter(model, val_ds, val_truth, nms_iou=nms_iou, mask_threshold=mask_threshold)[0]
    return SegmenterFit(model, result, metrics, train_ds.stats.to_dict(), val_ds.stats.to_dict())


# ---- workspace glue ---------------------------------------------------------------------


def train(ws: Any, data_ref: str, *, progress: Any = None, **params: Any) -> Any:
    """Train a Mask R-CNN on a dataset version with polygon or mask annotations; returns the finished Run.

    Parameters are the engine's (``epochs``, ``time_budget``, ``batch_size``, ``lr``,
    ``seed``, ...) and this task's :data:`DEFAULTS` (``model``, ``image_size``,
    ``augment``, ``multiscale``, ``score_threshold``, ``nms_iou``, ``max_detections``,
    ``mask_threshold``, ``weights`` = a local file, ``hub`` or a run id).
    """
    from dlforge.engine.config import TrainConfig
    from dlforge.models import get_model_info
    from dlforge.tasks.common import environment, load_splits, record_fit, split_params
    from dlforge.tasks.image_classification import resolve_weights

    engine_p, hp = split_params(params, DEFAULTS, task=TASK)
    budget_only = "time_budget" in engine_p and "epochs" not in engine_p
    config = TrainConfig.from_params({**TRAIN_DEFAULTS, **engine_p})
    version = ws.version(data_ref)
    # instance masks come in detection-shaped imports (COCO is tagged object_detection, VOC
    # semantic_segmentation); whether the version holds masks is checked on its annotations
    shaped = version.task in ("object_detection", "semantic_segmentation")
    splits = load_splits(version, task=version.task if shaped else TASK, media_type="image")
    classes = list(version.classes)
    if not classes:
        raise InputError(f"{version.ref}: no classes; instance segmentation needs labelled polygons or masks")
    check_instances(version.ref, splits.train)
    if not splits.val:
        raise InputError(f"{version.ref} has no val split; re-split with --val > 0 (it selects the best model)")
    train_recs, train_skips = instance_records(splits.train)
    val_recs, val_skips = instance_records(splits.val)
    name = hp["model"] or default_model()
    size = int(hp["image_size"] or get_model_info(name).default_input_size or 320)
    torch.manual_seed(config.seed)
    weights = resolve_weights(ws, str(hp["weights"])) if hp["weights"] else None
    model = create_segmenter(name, len(classes), size, weights=weights, **(hp["model_kwargs"] or {}))
    resolver = ws.blobs.path
    train_ds, val_ds = build_datasets(
        train_recs, val_recs, classes, size, augment=hp["augment"], blob_resolver=resolver
    )
    val_truth = original_truth(val_recs, val_ds, resolver)
    run_params = {
        **params,
        "model": name,
        "image_size": size,
        "score_threshold": hp["score_threshold"],
        "nms_iou": hp["nms_iou"],
        "max_detections": hp["max_detections"],
        "mask_threshold": hp["mask_threshold"],
    }
    run = ws.create_run(TASK, run_params, version.ref)
    for what, st, skips in (("train", train_ds.stats, train_skips), ("val", val_ds.stats, val_skips)):
        if skips or st.skipped or st.dropped_boxes:
            run.log_event(
                "data",
                f"{what}: {len(skips)} images with boxes but no masks skipped, {len(st.skipped)} items skipped, "
                f"{st.dropped_boxes} empty masks dropped",
            )
    postprocess = {
        "score_threshold": hp["score_threshold"],
        "iou_threshold": hp["nms_iou"],
        "max_detections": hp["max_detections"],
        "mask_threshold": hp["mask_threshold"],
    }
    manifest = {
        "id": run.id,
        "task": TASK,
        "model": name,
        "model_kwargs": {k: v for k, v in (hp["model_kwargs"] or {}).items() if k != "image_size"},
        "classes": classes,
        "data": version.ref,
        "params": run_params,
        "input": {"size": [size, size], "resize": "stretch", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "postprocess": postprocess,
        "config": config.model_dump(),
        "environment": environment(),
    }
    run.write_manifest(manifest)
    return record_fit(
        run,
        manifest,
        config.monitor,
        lambda: fit_segmenter(
            model,
            train_ds,
            val_ds,
            val_truth,
            config,
            run.dir,
            logger=run,
            progress=progress,
            multiscale=bool(hp["multiscale"]),
            nms_iou=hp["nms_iou"],
            mask_threshold=hp["mask_threshold"],
            epochs_from_budget=budget_only,
        ),
    )


def load_model(run: Any) -> nn.Module:
    """The run's best Mask R-CNN in eval mode on the CPU."""
    from dlforge.engine.checkpoint import load_best

    m = run.manifest()
    model = create_segmenter(m["model"], len(m["classes"]), m["input"]["size"][0], **m.get("model_kwargs", {}))
    load_best(model, run.dir)
    return model.eval()


def evaluate_run(run: Any, split: str = "test", report_path: Path | None = None) -> dict[str, Any]:
    """COCO mask and box AP of the run's best model on a split of its data version (+ optional HTML report)."""
    m = run.manifest()
    version = run.ws.version(m["data"])
    records, _ = instance_records(version.records(split=split))
    if not records:
        raise InputError(f"{version.ref} has no {split} split to evaluate on")
    resolver = run.ws.blobs.path
    ds = DetectionDataset(records, m["classes"], m["input"]["size"][0], with_masks=True, blob_resolver=resolver)
    truth = original_truth(records, ds, resolver)
    pp = m["postprocess"]
    metrics, preds = evaluate_segmenter(
        load_model(run), ds, truth, nms_iou=pp["iou_threshold"], mask_threshold=pp["mask_threshold"]
    )
    out = {"run": run.id, "split": split, "data": version.ref, "n": len(ds), **metrics}
    if report_path is not None:
        write_instance_report(out, ds, truth, preds, m["classes"], Path(report_path), min_score=pp["score_threshold"])
    return out


def write_instance_report(
    metrics: dict[str, Any],
    ds: DetectionDataset,
    truth: Sequence[InstanceTruth],
    preds: Sequence[dict[str, Any]],
    classes: Sequence[str],
    path: Path,
    *,
    min_score: float = 0.3,
    n_images: int = 8,
) -> Path:
    """HTML report: mask and box AP, per-class AP, PR curves, and the worst images (truth | prediction)."""
    from PIL import Image

    from dlforge.evaluate import html as report_html
    from dlforge.evaluate.detection import plot_detection_pr
    from dlforge.evaluate.instance_segmentation import draw_instances

    rep = report_html.Report(f"Instance segmentation: {metrics.get('run', '')} on {metrics.get('split', '')}")
    rep.add_metrics({k: ("n/a" if v is None else v) for k, v in metrics.items() if k.startswith(("mask_", "box_"))})
    rep.add_text("COCO metrics over masks (mask_*) and boxes (box_*): AP over IoU 0.50:0.95, 101 recall points.")
    rep.add_table(metrics.get("per_class", []), "Per class (mask AP, AP50, AP75, AR@100; box AP50)")
    if metrics.get("pr_curves"):
        rep.add_image(plot_detection_pr(metrics["pr_curves"]), "Mask precision-recall at IoU 0.50")
    # worst images first: lowest per-image mask AP50
    scored = sorted(
        (instance_metrics(classes, [gt], [p])["mask_map_50"] or 0.0, i) for i, (gt, p) in enumerate(zip(truth, preds))
    )
    for ap50, i in scored[:n_images]:
        img = Image_from_item(ds.items[i])
        gt, p = truth[i], preds[i]
        left = draw_instances(img, gt.rles, gt.labels, None, classes)
        right = draw_instances(img, p["rles"], p["labels"], p["scores"], classes, min_score=min_score)
        pair = Image.new("RGB", (img.width * 2 + 4, img.height), (255, 255, 255))
        pair.paste(left, (0, 0))
        pair.paste(right, (img.width + 4, 0))
        rep.add_image(pair, f"{ds.items[i].name}: ground truth | prediction (mask AP50 {ap50:.2f})")
    path.parent.mkdir(parents=True, exist_ok=True)
    rep.save(path)
    return path


def export_spec(run: Any) -> Any:
    """Refused: Mask R-CNN runs have no bundle format yet (one line saying why and what works)."""
    from dlforge.models.instance_segmentation import EXPORT_REFUSAL

    raise InputError(f"run {run.id}: " + EXPORT_REFUSAL.format(model=run.manifest().get("model", "?")))


def predict_images(run: Any, paths: Sequence[str | Path], draw_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """Instances in image files with the run's best model; optionally drawn to ``draw_dir``.

    Returns per file ``{"path", "instances": [{"label", "score", "box", "mask"}], "drawn"?}``
    where ``mask`` is a COCO RLE (``counts`` as text) in the image's pixels.
    """
    from PIL import Image

    from dlforge.evaluate.instance_segmentation import draw_instances, encode_masks

    m = run.manifest()
    classes, size, pp = m["classes"], m["input"]["size"][0], m["postprocess"]
    model = load_model(run)
    out = []
    for p in map(Path, paths):
        img = load_rgb(p)
        w, h = img.size
        x = torch.from_numpy(np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255)
        boxes, scores, labels, masks = model.predict_with_masks(
            x.permute(2, 0, 1)[None],
            score_threshold=pp["score_threshold"],
            nms_iou=pp["iou_threshold"],
            max_detections=pp["max_detections"],
        )
        keep = scores[0] > 0
        b, pasted = _to_original(boxes[0][keep], masks[0][keep], size, h, w, pp["mask_threshold"])
        rles = encode_masks(pasted.numpy())
        instances = [
            {
                "label": classes[int(lab)],
                "score": round(float(s), 4),
                "box": [round(float(v), 1) for v in bb],
                "mask": {"size": r["size"], "counts": r["counts"].decode("ascii")},
            }
            for bb, s, lab, r in zip(b, scores[0][keep], labels[0][keep], rles)
        ]
        entry: dict[str, Any] = {"path": str(p), "instances": instances}
        if draw_dir is not None:
            d = Path(draw_dir)
            d.mkdir(parents=True, exist_ok=True)
            drawn = draw_instances(img, rles, labels[0][keep].numpy(), scores[0][keep].numpy(), classes)
            target = d / f"{p.stem}.inst.png"
            tmp = target.with_suffix(".tmp.png")
            drawn.save(tmp)
            tmp.replace(target)
            entry["drawn"] = str(target)
        out.append(entry)
    return out
