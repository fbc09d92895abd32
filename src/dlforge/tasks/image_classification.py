"""Image classification: single-label (softmax) and multi-label (sigmoid) recipes.

Reads top to bottom: parameters -> data -> model -> loss -> train -> evaluate ->
export. Images are decoded once (EXIF orientation applied), resized to a little
above the input size and cached as uint8 tensors, so every epoch after the first
costs only augmentation and the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from dlforge.data.records import SampleRecord
from dlforge.errors import InputError
from dlforge.tasks.common import (
    check_model,
    classification_setup,
    ensure_resumable,
    fit_prepared,
    val_metrics,
)

TASK = "image_classification"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

#: The task's own parameters and their defaults (engine parameters come from TrainConfig).
DEFAULTS: dict[str, Any] = {
    "model": None,  # chosen for the hardware when None
    "image_size": None,  # the model's default when None
    "augment": "light",  # none | light | trivial | randaugment
    "hflip": True,
    "mixup": 0.0,  # alpha; 0 disables
    "cutmix": 0.0,
    "label_smoothing": 0.0,
    "balance": None,  # None | "weights" (class-weighted loss) | "sampler" (oversample rare classes)
    "multilabel": False,
    "weights": None,  # file, "hub", or a run id to start from
    "freeze_backbone": False,
    "dropout": 0.0,
}
TRAIN_DEFAULTS = {
    "epochs": 10,
    "batch_size": 64,
    "lr": 2e-3,
    "optimizer": "adamw",
    "weight_decay": 0.05,
    "warmup_epochs": 1.0,
    "monitor": "val/accuracy",
    "monitor_mode": "max",
}


def default_model() -> str:
    # On a CPU the compact CNN learns most within minutes; with a GPU a ResNet is affordable.
    return "resnet18" if torch.cuda.is_available() else "cnn-small"


# -- data ----------------------------------------------------------------------------------
def load_image(path: Path, cache_side: int | None = None) -> Image.Image:
    """Decode an image upright (EXIF orientation applied) as RGB, optionally downsized."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        im = im.convert("RGB")
    if cache_side and min(im.size) > cache_side:
        scale = cache_side / min(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.BILINEAR)
    return im


def targets_of(record: SampleRecord, index: dict[str, int], multilabel: bool) -> Any:
    labels = [index[lab] for lab in record.labels() if lab in index]
    if multilabel:
        t = torch.zeros(len(index))
        t[labels] = 1.0
        return t
    if not labels:
        raise InputError(f"sample {record.name} (uid {record.sample_id}) has no class label")
    return labels[0]


class ImageClassificationDataset(Dataset):
    """Records -> (image tensor (3, S, S), target); decoded images are cached in memory."""

    def __init__(
        self,
        records: list[SampleRecord],
        classes: list[str],
        size: int,
        transform: Any,
        multilabel: bool = False,
    ) -> None:
        self.records = records
        self.index = {c: i for i, c in enumerate(classes)}
        self.size = size
        self.transform = transform
        self.multilabel = multilabel
        self.targets = [targets_of(r, self.index, multilabel) for r in records]
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.records)

    def image(self, i: int) -> torch.Tensor:
        if i not in self._cache:
            im = load_image(self.records[i].path, cache_side=int(self.size * 1.15))
            self._cache[i] = v2.functional.pil_to_tensor(im)  # (3, H, W) uint8
        return self._cache[i]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        return self.transform(self.image(i)), self.targets[i]


def build_transforms(size: int, augment: str, hflip: bool, train: bool) -> v2.Compose:
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    if not train or augment == "none":
        return v2.Compose([v2.Resize((size, size), antialias=True), *tail])
    ops: list[Any] = [v2.RandomResizedCrop(size, scale=(0.6, 1.0), ratio=(0.8, 1.25), antialias=True)]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    if augment == "trivial":
        ops.append(v2.TrivialAugmentWide())
    elif augment == "randaugment":
        ops.append(v2.RandAugment())
    elif augment != "light":
        raise InputError(f"augment {augment!r}: expected none, light, trivial or randaugment")
    return v2.Compose([*ops, *tail])


def balanced_indices(targets: list[Any], seed: int) -> list[int]:
    """Oversample rare classes so each class appears about as often as the largest."""
    by: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by.setdefault(int(t), []).append(i)
    top = max(len(v) for v in by.values())
    rng = np.random.default_rng(seed)
    out: list[int] = []
    for members in by.values():
        out += members + list(rng.choice(members, top - len(members)))
    return out


class _Subset(Dataset):
    def __init__(self, base: Dataset, indices: list[int]) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.base[self.indices[i]]


# -- model -----------------------------------------------------------------------------------
def build_model(name: str, num_classes: int, hp: dict[str, Any], ws: Any = None) -> nn.Module:
    from dlforge.models import create_model

    kwargs = {"dropout": hp["dropout"]} if hp.get("dropout") else {}
    model = create_model(name, num_classes, task=TASK, **kwargs)
    source = hp.get("weights")
    if source:
        from dlforge.models.weights import load_pretrained

        load_pretrained(model, resolve_weights(ws, source))
    if hp.get("freeze_backbone"):
        from dlforge.models.weights import freeze_backbone

        freeze_backbone(model)
    return model


def resolve_weights(ws: Any, source: str) -> str | Path:
    """A weights file, ``hub``, or the id of a finished run (the workspace is its own model zoo)."""
    if source == "hub" or Path(source).exists():
        return source
    if ws is not None:
        run = ws.run(source)
        best = run.dir / "checkpoints" / "best.pt"
        if not best.exists():
            raise InputError(f"--weights {source}: run {run.id} has no best checkpoint")
        return best
    raise InputError(f"--weights {source!r}: not a file, 'hub', or a run id")


# -- loss and metrics ---------------------------------------------------------------------
def make_step_fn(multilabel: bool, label_smoothing: float, class_weights: torch.Tensor | None, batch_mix: Any) -> Any:
    def step_fn(model: nn.Module, batch: Any, device: torch.device) -> torch.Tensor:
        x, y = batch
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if batch_mix is not None and not multilabel:
            x, y = batch_mix(x, y)  # y becomes soft (B, C)
        logits = model(x)  # (B, C)
        if multilabel:
            return F.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=_on(class_weights, device))
        return F.cross_entropy(logits, y, weight=_on(class_weights, device), label_smoothing=label_smoothing)

    return step_fn


def _on(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else t.to(device)


@torch.no_grad()
def predict_probs(
    model: nn.Module, loader: Any, device: torch.device, multilabel: bool
) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    probs, targets = [], []
    for x, y in loader:
        logits = model(x.to(device))
        probs.append((torch.sigmoid(logits) if multilabel else torch.softmax(logits, 1)).float().cpu())
        targets.append(y)
    return torch.cat(probs).numpy(), torch.cat(targets).numpy()


def make_eval_fn(multilabel: bool) -> Any:
    def eval_fn(model: nn.Module, loader: Any, device: torch.device) -> dict[str, float]:
        return val_metrics(*predict_probs(model, loader, device, multilabel), multilabel)

    return eval_fn


# -- the recipe ------------------------------------------------------------------------------
def _prepare(ws: Any, run_params: dict[str, Any], data_ref: str) -> dict[str, Any]:
    """Everything train and resume build identically from the run's parameters."""
    from dlforge.engine.loader import make_loader

    config, hp, version, splits, classes = classification_setup(
        ws, run_params, data_ref, task=TASK, media_type="image", defaults=DEFAULTS, train_defaults=TRAIN_DEFAULTS
    )
    name = hp["model"] or default_model()
    info = check_model(name, TASK)
    size = int(hp["image_size"] or info.default_input_size or 224)
    check_model(name, TASK, size)
    train_ds = ImageClassificationDataset(
        splits.train,
        classes,
        size,
        build_transforms(size, hp["augment"], hp["hflip"], True),
        hp["multilabel"],
    )
    val_ds = ImageClassificationDataset(
        splits.val, classes, size, build_transforms(size, "none", False, False), hp["multilabel"]
    )
    train_set: Dataset = train_ds
    class_weights = None
    if hp["balance"] == "sampler" and not hp["multilabel"]:
        train_set = _Subset(train_ds, balanced_indices(train_ds.targets, config.seed))
    elif hp["balance"] == "weights":
        counts = (
            torch.stack(train_ds.targets).sum(0)
            if hp["multilabel"]
            else torch.bincount(torch.tensor(train_ds.targets), minlength=len(classes)).float()
        )
        class_weights = (counts.sum() / counts.clamp(min=1) / len(classes)).float()
    elif hp["balance"] not in (None, "none", "sampler"):
        raise InputError(f"balance {hp['balance']!r}: expected weights or sampler")
    mixes = []
    if hp["mixup"]:
        mixes.append(v2.MixUp(alpha=float(hp["mixup"]), num_classes=len(classes)))
    if hp["cutmix"]:
        mixes.append(v2.CutMix(alpha=float(hp["cutmix"]), num_classes=len(classes)))
    batch_mix = v2.RandomChoice(mixes) if mixes else None
    torch.manual_seed(config.seed)  # the same initial weights for the same seed
    model = build_model(name, len(classes), hp, ws)
    loaders = {
        "train": make_loader(train_set, config.batch_size, True, config.num_workers, config.seed),
        "val": make_loader(val_ds, config.batch_size * 2, False, config.num_workers, config.seed),
    }
    return {
        "config": config,
        "hp": hp,
        "version": version,
        "classes": classes,
        "model_name": name,
        "size": size,
        "model": model,
        "loaders": loaders,
        "step_fn": make_step_fn(hp["multilabel"], float(hp["label_smoothing"]), class_weights, batch_mix),
        "eval_fn": make_eval_fn(hp["multilabel"]),
    }


def train(ws: Any, data_ref: str, *, progress: Any = None, **params: Any) -> Any:
    """Train an image classifier on ``data_ref``; returns the finished :class:`~dlforge.runs.Run`."""
    version = ws.version(data_ref)
    p = _prepare(ws, params, version.ref)  # validate everything before the run exists
    run = ws.create_run(TASK, {**params, "model": p["model_name"], "image_size": p["size"]}, version.ref)
    return _fit(run, p, progress, resume=False)


def resume(ws: Any, run: Any, *, progress: Any = None) -> Any:
    """Continue an interrupted run exactly (model, optimizer, scheduler, RNG, epoch, step)."""
    ensure_resumable(run, TASK)
    p = _prepare(ws, run.params, run.data_ref)
    return _fit(run, p, progress, resume=True)


def _fit(run: Any, p: dict[str, Any], progress: Any, resume: bool) -> Any:
    fit_prepared(
        run,
        p,
        task=TASK,
        model_kwargs={"dropout": p["hp"]["dropout"]} if p["hp"]["dropout"] else {},
        input_spec={"size": [p["size"], p["size"]], "resize": "stretch", "mean": MEAN, "std": STD},
        progress=progress,
        resume=resume,
    )
    if p["hp"]["multilabel"]:
        thresholds = tune_thresholds(run, p)
        m = run.manifest()
        m["thresholds"] = thresholds
        run.write_manifest(m)
    return run


def tune_thresholds(run: Any, p: dict[str, Any]) -> list[float]:
    """Per-label thresholds that maximise F1 on the validation split."""
    model = load_model(run)
    probs, y = predict_probs(model, p["loaders"]["val"], torch.device("cpu"), True)
    out = []
    for c in range(probs.shape[1]):
        best_t, best_f1 = 0.5, -1.0
        for t in np.linspace(0.05, 0.95, 19):
            pred = probs[:, c] >= t
            tp = float((pred & (y[:, c] > 0.5)).sum())
            f1 = 2 * tp / max(1.0, pred.sum() + (y[:, c] > 0.5).sum())
            if f1 > best_f1:
                best_t, best_f1 = float(t), f1
        out.append(round(best_t, 3))
    return out


def load_model(run: Any) -> nn.Module:
    """The run's best model in eval mode on the CPU."""
    from dlforge.engine.checkpoint import load_best
    from dlforge.models import create_model

    m = run.manifest()
    model = create_model(m["model"], len(m["classes"]), task=TASK, **m.get("model_kwargs", {}))
    load_best(model, run.dir)
    return model.eval()


def evaluate_run(run: Any, split: str = "test", report_path: Path | None = None) -> dict[str, Any]:
    """Metrics of the best model on a split of the run's dataset version (+ optional HTML report)."""
    from dlforge.engine.loader import make_loader
    from dlforge.evaluate.classification import classification_metrics
    from dlforge.tasks.classification_report import write_classification_report

    m = run.manifest()
    version = run.ws.version(m["data"])
    records = version.records(split=split)
    if not records:
        raise InputError(f"{version.ref} has no {split} split to evaluate on")
    size = m["input"]["size"][0]
    ds = ImageClassificationDataset(
        records, m["classes"], size, build_transforms(size, "none", False, False), m["multilabel"]
    )
    model = load_model(run)
    probs, y = predict_probs(model, make_loader(ds, 128, False), torch.device("cpu"), m["multilabel"])
    metrics = classification_metrics(y, probs, m["classes"], multilabel=m["multilabel"], thresholds=m.get("thresholds"))
    metrics = {"run": run.id, "split": split, "data": version.ref, "n": len(records), **metrics}
    if report_path is not None:
        write_classification_report(run, metrics, records, probs, y, report_path, kind="image")
    return metrics


def export_spec(run: Any) -> Any:
    """What deployment needs: the model, preprocessing, labels and real samples for parity checks."""
    from dlforge.deploy.spec import ExportSpec, ImageInput

    m = run.manifest()
    version = run.ws.version(m["data"])
    size = m["input"]["size"][0]
    tf = build_transforms(size, "none", False, False)

    def batch(split: str, n: int) -> tuple[torch.Tensor | None, np.ndarray | None]:
        recs = version.records(split=split)[:n]
        if not recs:
            return None, None
        ds = ImageClassificationDataset(recs, m["classes"], size, tf, m["multilabel"])
        xs = torch.stack([ds[i][0] for i in range(len(ds))])  # (N, 3, S, S)
        ys = np.array([int(t) if not m["multilabel"] else 0 for t in ds.targets])
        return xs, ys

    examples, _ = batch("val", 16)
    calib, _ = batch("train", 64)
    val_x, val_y = batch("val", 512)
    return ExportSpec(
        model=load_model(run),
        task=TASK,
        labels=m["classes"],
        input=ImageInput(size=(size, size), resize="stretch", mean=MEAN, std=STD),
        example_inputs=examples,
        calibration_inputs=calib,
        validation_inputs=val_x,
        validation_targets=None if m["multilabel"] else val_y,
        metrics=run.info().summary,
        data_version=m["data"],
        run_id=run.id,
        postprocess={"thresholds": m.get("thresholds")} if m["multilabel"] else {},
        multi_label=m["multilabel"],
        name=m["data"].split("@")[0],
    )


def predict_files(run: Any, paths: list[Path], top_k: int = 5) -> list[dict[str, Any]]:
    """Predict image files with the run's best model (torch; deployment uses the Predictor)."""
    m = run.manifest()
    size = m["input"]["size"][0]
    tf = build_transforms(size, "none", False, False)
    model = load_model(run)
    out = []
    for p in paths:
        x = tf(v2.functional.pil_to_tensor(load_image(Path(p))))[None]
        with torch.no_grad():
            prob = torch.softmax(model(x), 1)[0]
        top = torch.topk(prob, min(top_k, len(prob)))
        out.append(
            {
                "input": str(p),
                "label": m["classes"][int(top.indices[0])],
                "score": float(top.values[0]),
                "top_k": [{"label": m["classes"][int(i)], "score": float(s)} for s, i in zip(top.values, top.indices)],
            }
        )
    return out
