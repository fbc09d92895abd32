"""Datasets and box/mask-aware augmentation for detection and segmentation, from SampleRecords.

The pipeline decodes every image once, resizes it to the model's square input
size and caches it in memory (a few hundred images at 320 px take ~100 MB), so
that an epoch costs only augmentation and the network. Augmentation uses
``torchvision.transforms.v2`` on ``tv_tensors`` so boxes and masks move with
the pixels: optional mosaic (2x2 images), photometric distortion, large scale
jitter + random crop/pad, horizontal flip, then ``SanitizeBoundingBoxes``.

Preprocessing for inference is a plain resize of the whole image to
``(size, size)`` (no letterbox), RGB scaled to 0..1; a box predicted at
``(x, y)`` in input pixels maps back to ``(x * W / size, y * H / size)``.

Bad input is handled the same way everywhere: boxes outside the image are
clipped and degenerate ones dropped (counted in :attr:`DetectionDataset.stats`),
masks whose size differs from the image are skipped with a reason
(:attr:`skipped`), a label outside the label map raises :class:`InputError`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from dlforge.data.records import SampleRecord, Skip
from dlforge.errors import InputError

IGNORE_INDEX = 255
"""Label value in segmentation targets that the loss and metrics ignore."""

BlobResolver = Callable[[str], Path]


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode COCO uncompressed RLE (column-major runs, zeros first) to an ``(H, W)`` bool mask."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        # compressed RLE string: let pycocotools decode it
        from pycocotools import mask as mask_utils

        c = counts.encode() if isinstance(counts, str) else counts
        return mask_utils.decode({"size": [h, w], "counts": c}).astype(bool)
    flat = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for c in counts:
        c = int(c)
        if val:
            flat[pos : pos + c] = True
        pos += c
        val = not val
    if pos != h * w:
        raise InputError(f"RLE mask: run lengths sum to {pos}, expected {h}*{w}={h * w}")
    return flat.reshape((w, h)).T


def polygon_to_mask(rings: Sequence[Sequence[float]], height: int, width: int) -> np.ndarray:
    """Rasterise polygon rings (flat ``[x1, y1, x2, y2, ...]`` lists) to a bool mask."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for ring in rings:
        if len(ring) >= 6:
            draw.polygon([float(v) for v in ring], fill=1)
    return np.asarray(canvas, dtype=bool)


def load_rgb(path: Path) -> Image.Image:
    """Open an image as RGB with EXIF orientation applied; one clear error when unreadable."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read image ({exc})") from exc


@dataclass
class SampleTargets:
    """Annotations of one record, in the original image's pixels."""

    boxes: np.ndarray  # (N, 4) float32 xyxy
    labels: np.ndarray  # (N,) int64
    masks: np.ndarray | None = None  # (N, H, W) bool, aligned with boxes, or None
    semantic: np.ndarray | None = None  # (H, W) uint8 class index + 1, 0 background, 255 ignore


@dataclass
class PrepareStats:
    """What preparing records changed or left out, for the run log."""

    images: int = 0
    objects: int = 0
    empty_images: int = 0
    clipped_boxes: int = 0
    dropped_boxes: int = 0
    skipped: list[Skip] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "objects": self.objects,
            "empty_images": self.empty_images,
            "clipped_boxes": self.clipped_boxes,
            "dropped_boxes": self.dropped_boxes,
            "skipped": [s.to_dict() for s in self.skipped],
        }


def _label_index(record: SampleRecord, label: str | None, index: dict[str, int]) -> int:
    if label not in index:
        raise InputError(f"{record.name}: label {label!r} is not in the label map ({', '.join(index)})")
    return index[label]


def record_targets(
    record: SampleRecord,
    classes: Sequence[str],
    size: tuple[int, int],
    *,
    want_masks: bool = False,
    blob_resolver: BlobResolver | None = None,
    stats: PrepareStats | None = None,
) -> SampleTargets:
    """Turn a record's annotations into arrays in the image's own pixels.

    Boxes come from ``box`` annotations; objects that only have a ``polygon`` or
    ``mask`` get their box from the mask. A ``box`` and a ``mask``/``polygon``
    with the same ``data["attrs"]["instance"]`` (or, without it, the same label
    at the same position in the annotation order) are one object.

    Args:
        record: the sample.
        classes: label map; label ``classes[i]`` is index ``i``.
        size: ``(H, W)`` of the decoded image.
        want_masks: also build instance masks and the semantic map.
        blob_resolver: maps a ``segmap`` blob sha256 to a file path.
        stats: counters to update (clipped/dropped boxes, skips).

    Raises:
        InputError: a label is not in ``classes``.
    """
    stats = stats if stats is not None else PrepareStats()
    h, w = size
    index = {c: i for i, c in enumerate(classes)}
    boxes: list[list[float]] = []
    labels: list[int] = []
    masks: list[np.ndarray | None] = []
    semantic: np.ndarray | None = None
    shape_anns = [a for a in record.annotations if a.kind in ("polygon", "mask")]
    box_anns = [a for a in record.annotations if a.kind == "box"]
    # pair shapes with boxes: by explicit instance id, else by order within the same label
    shape_by_instance: dict[Any, Any] = {}
    unpaired: list[Any] = []
    for a in shape_anns:
        inst = (a.data.get("attrs") or {}).get("instance")
        if inst is not None:
            shape_by_instance[inst] = a
        else:
            unpaired.append(a)

    def decode_shape(a: Any) -> np.ndarray | None:
        if a.kind == "polygon":
            return polygon_to_mask(a.data.get("points") or [], h, w)
        rle = a.data.get("rle") or {}
        rh, rw = (int(v) for v in rle.get("size", (0, 0)))
        if (rh, rw) != (h, w):
            stats.skipped.append(Skip(record.name, f"mask size {rh}x{rw} differs from image size {h}x{w}"))
            return None
        return rle_to_mask(rle)

    used_shapes: set[int] = set()
    for a in box_anns:
        cls = _label_index(record, a.label, index)
        inst = (a.data.get("attrs") or {}).get("instance")
        shape = shape_by_instance.get(inst) if inst is not None else None
        if shape is None:
            shape = next((s for s in unpaired if id(s) not in used_shapes and s.label == a.label), None)
        if shape is not None:
            used_shapes.add(id(shape))
        try:
            x1, y1, x2, y2 = (float(v) for v in a.data["bbox"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{record.name}: box annotation has no valid 'bbox' [x1, y1, x2, y2]") from exc
        boxes.append([x1, y1, x2, y2])
        labels.append(cls)
        masks.append(decode_shape(shape) if shape is not None and want_masks else None)
    # shapes without a box: the box is the bbox of the mask
    for a in shape_anns:
        if id(a) in used_shapes:
            continue
        cls = _label_index(record, a.label, index)
        m = decode_shape(a)
        if m is None:
            continue
        ys, xs = np.nonzero(m)
        if len(xs) == 0:
            stats.dropped_boxes += 1
            continue
        boxes.append([float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)])
        labels.append(cls)
        masks.append(m)
    for a in record.annotations:
        if a.kind != "segmap" or not want_masks:
            continue
        semantic = _load_segmap(record, a, classes, (h, w), blob_resolver, stats)

    # clip to the image, drop what is left degenerate
    arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    clipped = arr.copy()
    clipped[:, 0::2] = clipped[:, 0::2].clip(0, w)
    clipped[:, 1::2] = clipped[:, 1::2].clip(0, h)
    changed = np.any(np.abs(clipped - arr) > 1e-6, axis=1)
    valid = (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    stats.clipped_boxes += int((changed & valid).sum())
    stats.dropped_boxes += int((~valid).sum())
    keep = np.flatnonzero(valid)
    out_masks = None
    if want_masks:
        full = [masks[i] if masks[i] is not None else _box_mask(clipped[i], h, w) for i in keep]
        out_masks = np.asarray(full, dtype=bool).reshape(-1, h, w)
        if semantic is None:
            semantic = np.zeros((h, w), dtype=np.uint8)
            # paint big objects first so small ones on top stay visible
            order = sorted(range(len(keep)), key=lambda k: -int(out_masks[k].sum()))
            for k in order:
                if masks[keep[k]] is not None:
                    semantic[out_masks[k]] = labels[keep[k]] + 1
    stats.objects += len(keep)
    stats.images += 1
    stats.empty_images += int(len(keep) == 0)
    return SampleTargets(
        boxes=clipped[keep],
        labels=np.asarray(labels, dtype=np.int64)[keep],
        masks=out_masks,
        semantic=semantic,
    )


def _box_mask(box: np.ndarray, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    m[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)] = True
    return m


def _load_segmap(
    record: SampleRecord,
    ann: Any,
    classes: Sequence[str],
    size: tuple[int, int],
    blob_resolver: BlobResolver | None,
    stats: PrepareStats,
) -> np.ndarray | None:
    """Read a ``segmap`` PNG and remap its indices to ``classes`` (+1; 0 = background, 255 = ignore)."""
    blob = ann.data.get("blob")
    path = Path(ann.data["path"]) if ann.data.get("path") else None
    if path is None:
        if blob_resolver is None:
            raise InputError(f"{record.name}: segmap annotation needs a blob store to resolve {blob!r}")
        path = blob_resolver(str(blob))
    with Image.open(path) as im:
        arr = np.asarray(im if im.mode in ("L", "P") else im.convert("L"), dtype=np.uint8)
    if arr.shape != tuple(size):
        stats.skipped.append(
            Skip(
                record.name,
                f"segmap size {arr.shape[0]}x{arr.shape[1]} differs from image size {size[0]}x{size[1]}",
            )
        )
        return None
    names = {int(k): v for k, v in (ann.data.get("classes") or {}).items()}
    index = {c: i for i, c in enumerate(classes)}
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for value, name in names.items():
        if name in ("background", "_background_", None) and name not in index:
            lut[value] = 0
        elif name in index:
            lut[value] = index[name] + 1
        else:
            raise InputError(f"{record.name}: segmap class {name!r} is not in the label map ({', '.join(classes)})")
    if not names:
        # no names: indices are already 0 = background, i + 1 = classes[i]
        lut[: len(classes) + 1] = np.arange(len(classes) + 1)
    present = np.unique(arr)
    unknown = [int(v) for v in present if v != IGNORE_INDEX and lut[v] == IGNORE_INDEX]
    if unknown:
        raise InputError(f"{record.name}: segmap holds class ids {unknown} outside the label map")
    return lut[arr]


@dataclass
class CachedSample:
    """One decoded image resized to the model size, with targets scaled to it."""

    image: torch.Tensor  # (3, S, S) uint8
    boxes: torch.Tensor  # (N, 4) float32, in S x S pixels
    labels: torch.Tensor  # (N,) int64
    masks: torch.Tensor | None  # (N, S, S) bool
    semantic: torch.Tensor | None  # (S, S) uint8
    orig_size: tuple[int, int]  # (H, W)
    orig_boxes: np.ndarray  # (N, 4) in original pixels, for evaluation
    name: str


def prepare_records(
    records: Sequence[SampleRecord],
    classes: Sequence[str],
    image_size: int,
    *,
    want_masks: bool = False,
    need_semantic: bool = False,
    blob_resolver: BlobResolver | None = None,
) -> tuple[list[CachedSample], PrepareStats]:
    """Decode, resize and cache records; bad items are skipped and reported in the stats.

    Args:
        records: image records with box/polygon/mask/segmap annotations.
        classes: the label map.
        image_size: side of the square model input.
        want_masks: keep instance masks (for mask-aware augmentation checks).
        need_semantic: build semantic maps; records whose mask could not be used are skipped.
        blob_resolver: maps a segmap blob sha256 to a path.
    """
    stats = PrepareStats()
    out: list[CachedSample] = []
    for rec in records:
        if rec.media_type != "image":
            stats.skipped.append(Skip(rec.name, f"media type {rec.media_type!r} is not an image"))
            continue
        try:
            pil = load_rgb(Path(rec.path))
        except InputError as exc:
            stats.skipped.append(Skip(rec.name, str(exc)))
            continue
        w, h = pil.size
        n_skips = len(stats.skipped)
        tg = record_targets(
            rec,
            classes,
            (h, w),
            want_masks=want_masks or need_semantic,
            blob_resolver=blob_resolver,
            stats=stats,
        )
        if need_semantic and len(stats.skipped) > n_skips:
            # a mask that does not fit its image makes the whole label map untrustworthy
            continue
        s = image_size
        img = torch.from_numpy(np.asarray(pil.resize((s, s), Image.BILINEAR), dtype=np.uint8).copy())
        img = img.permute(2, 0, 1).contiguous()
        scale = np.array([s / w, s / h, s / w, s / h], dtype=np.float32)
        masks_t = sem_t = None
        if tg.masks is not None and want_masks:
            m = torch.from_numpy(tg.masks).unsqueeze(1).float()
            masks_t = (
                (torch.nn.functional.interpolate(m, size=(s, s), mode="nearest")[:, 0] > 0.5)
                if len(m)
                else torch.zeros((0, s, s), dtype=torch.bool)
            )
        if tg.semantic is not None:
            sem = Image.fromarray(tg.semantic).resize((s, s), Image.NEAREST)
            sem_t = torch.from_numpy(np.asarray(sem, dtype=np.uint8).copy())
        out.append(
            CachedSample(
                image=img,
                boxes=torch.from_numpy(tg.boxes * scale),
                labels=torch.from_numpy(tg.labels),
                masks=masks_t,
                semantic=sem_t,
                orig_size=(h, w),
                orig_boxes=tg.boxes,
                name=rec.name,
            )
        )
    return out, stats


@dataclass
class AugmentConfig:
    """Training augmentation strengths. ``strong()`` is for learning from few images from scratch."""

    hflip: float = 0.5
    scale_range: tuple[float, float] = (0.5, 1.5)
    photometric: float = 0.5
    mosaic: float = 0.0

    @classmethod
    def strong(cls) -> AugmentConfig:
        return cls(hflip=0.5, scale_range=(0.3, 1.8), photometric=0.8, mosaic=0.5)

    @classmethod
    def none(cls) -> AugmentConfig:
        return cls(hflip=0.0, scale_range=(1.0, 1.0), photometric=0.0, mosaic=0.0)


def build_train_transform(
    image_size: int, aug: AugmentConfig, *, fill_mask: int = 0, with_boxes: bool = True
) -> v2.Compose:
    """Box- and mask-aware training transforms on tv_tensors (uint8 image in, uint8 image out)."""
    s = image_size
    ops: list[Any] = []
    if aug.scale_range != (1.0, 1.0):
        # large scale jitter: resize by a random factor, then crop or pad back to S x S
        ops.append(v2.ScaleJitter(target_size=(s, s), scale_range=aug.scale_range, antialias=True))
        ops.append(
            v2.RandomCrop(
                (s, s),
                pad_if_needed=True,
                fill={tv_tensors.Image: 114, tv_tensors.Mask: fill_mask, "others": 0},
            )
        )
    if aug.hflip > 0:
        ops.append(v2.RandomHorizontalFlip(p=aug.hflip))
    if with_boxes:
        ops.append(v2.ClampBoundingBoxes())
        ops.append(v2.SanitizeBoundingBoxes(min_size=2.0))
    return v2.Compose(ops or [v2.Identity()])


def photometric(img: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Random brightness, contrast, saturation and per-channel gain on a float ``(3, H, W)`` image in 0..1.

    Done on the float tensor with a handful of ops because torchvision's hue
    jitter costs ~1 s per image on a small CPU; geometry is untouched, so boxes
    and masks need no update.
    """
    r = torch.rand(5).tolist()
    img = img * (1 + strength * 0.4 * (r[0] - 0.5) * 2)  # brightness
    mean = img.mean()
    img = (img - mean) * (1 + strength * 0.4 * (r[1] - 0.5) * 2) + mean  # contrast
    gray = img.mean(0, keepdim=True)
    img = (img - gray) * (1 + strength * 0.6 * (r[2] - 0.5) * 2) + gray  # saturation
    gain = 1 + strength * 0.1 * (torch.rand(3, 1, 1) - 0.5) * 2  # colour cast
    img = img * gain
    if r[3] < 0.2 * strength:  # occasional grayscale
        img = img.mean(0, keepdim=True).expand_as(img)
    return img.clamp(0, 1)


def _mosaic(items: Sequence[CachedSample], s: int, with_masks: bool, sem_fill: int) -> dict[str, Any]:
    """Four cached samples on a 2S x 2S canvas (later scale jitter brings it back to S)."""
    img = torch.empty((3, 2 * s, 2 * s), dtype=torch.uint8)
    boxes, labels, masks, sems = [], [], [], []
    sem = torch.full((2 * s, 2 * s), sem_fill, dtype=torch.uint8)
    for k, it in enumerate(items):
        oy, ox = (k // 2) * s, (k % 2) * s
        img[:, oy : oy + s, ox : ox + s] = it.image
        boxes.append(it.boxes + torch.tensor([ox, oy, ox, oy], dtype=torch.float32))
        labels.append(it.labels)
        if with_masks and it.masks is not None:
            m = torch.zeros((len(it.masks), 2 * s, 2 * s), dtype=torch.bool)
            m[:, oy : oy + s, ox : ox + s] = it.masks
            masks.append(m)
        if it.semantic is not None:
            sem[oy : oy + s, ox : ox + s] = it.semantic
            sems.append(True)
    out = {"image": img, "boxes": torch.cat(boxes), "labels": torch.cat(labels)}
    if with_masks:
        out["masks"] = torch.cat(masks) if masks else torch.zeros((0, 2 * s, 2 * s), dtype=torch.bool)
    if sems:
        out["semantic"] = sem
    return out


class DetectionDataset(Dataset):
    """Cached, augmented detection samples.

    ``dataset[i]`` is ``(image, target)``: ``image`` a float ``(3, S, S)`` tensor in
    0..1, ``target`` a dict with ``boxes`` ``(N, 4)`` xyxy in input pixels,
    ``labels`` ``(N,)`` int64 (0-based class index), ``index`` and, with
    ``with_masks``, ``masks`` ``(N, S, S)``.

    Args:
        records: SampleRecords with box/polygon/mask annotations (images without objects are fine).
        classes: label map.
        image_size: square model input side.
        train: apply augmentation (else only the resize).
        augment: augmentation strengths (default :class:`AugmentConfig`).
        with_masks: carry instance masks through the transforms.
        blob_resolver: maps segmap blobs to files.
    """

    def __init__(
        self,
        records: Sequence[SampleRecord],
        classes: Sequence[str],
        image_size: int,
        *,
        train: bool = False,
        augment: AugmentConfig | None = None,
        with_masks: bool = False,
        blob_resolver: BlobResolver | None = None,
        prepared: tuple[list[CachedSample], PrepareStats] | None = None,
    ) -> None:
        self.classes = list(classes)
        self.image_size = int(image_size)
        self.train = train
        self.augment = augment or AugmentConfig()
        self.with_masks = with_masks
        self.items, self.stats = prepared or prepare_records(
            records, classes, image_size, want_masks=with_masks, blob_resolver=blob_resolver
        )
        self.transform = build_train_transform(self.image_size, self.augment) if train else None

    def __len__(self) -> int:
        return len(self.items)

    def raw(self, i: int) -> dict[str, Any]:
        it = self.items[i]
        d: dict[str, Any] = {"image": it.image, "boxes": it.boxes, "labels": it.labels}
        if self.with_masks:
            d["masks"] = it.masks if it.masks is not None else torch.zeros((0, *it.image.shape[1:]), dtype=torch.bool)
        return d

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        s = self.image_size
        if self.train and self.augment.mosaic > 0 and len(self.items) >= 4 and random.random() < self.augment.mosaic:
            others = random.sample(range(len(self.items)), 3)
            d = _mosaic([self.items[i]] + [self.items[j] for j in others], s, self.with_masks, 0)
        else:
            d = self.raw(i)
        sample: dict[str, Any] = {
            "image": tv_tensors.Image(d["image"]),
            "boxes": tv_tensors.BoundingBoxes(d["boxes"], format="XYXY", canvas_size=tuple(d["image"].shape[-2:])),
            "labels": d["labels"],
        }
        if self.with_masks:
            sample["masks"] = tv_tensors.Mask(d["masks"])
        if self.transform is not None:
            sample = self.transform(sample)
        img = sample["image"]
        if img.shape[-2:] != (s, s):  # a mosaic without scale jitter is 2S: bring it back
            sample = v2.Resize((s, s), antialias=True)(sample)
            img = sample["image"]
        target = {
            "boxes": sample["boxes"].as_subclass(torch.Tensor).float(),
            "labels": sample["labels"],
            "index": torch.tensor(i),
        }
        if self.with_masks:
            target["masks"] = sample["masks"].as_subclass(torch.Tensor)
        x = TF.to_dtype(img.as_subclass(torch.Tensor), torch.float32, scale=True)
        if self.train and self.augment.photometric > 0 and random.random() < self.augment.photometric:
            x = photometric(x)
        return x, target


class SegmentationDataset(Dataset):
    """Cached, augmented semantic segmentation samples.

    ``dataset[i]`` is ``(image, mask)``: float ``(3, S, S)`` in 0..1 and an int64
    ``(S, S)`` map with ``0`` = background, ``i + 1`` = ``classes[i]`` and
    :data:`IGNORE_INDEX` for padding and unlabelled pixels.
    """

    def __init__(
        self,
        records: Sequence[SampleRecord],
        classes: Sequence[str],
        image_size: int,
        *,
        train: bool = False,
        augment: AugmentConfig | None = None,
        blob_resolver: BlobResolver | None = None,
    ) -> None:
        self.classes = list(classes)
        self.image_size = int(image_size)
        self.train = train
        self.augment = augment or AugmentConfig()
        self.items, self.stats = prepare_records(
            records, classes, image_size, need_semantic=True, blob_resolver=blob_resolver
        )
        self.transform = (
            build_train_transform(self.image_size, self.augment, fill_mask=IGNORE_INDEX, with_boxes=False)
            if train
            else None
        )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.image_size
        if self.train and self.augment.mosaic > 0 and len(self.items) >= 4 and random.random() < self.augment.mosaic:
            others = random.sample(range(len(self.items)), 3)
            d = _mosaic([self.items[i]] + [self.items[j] for j in others], s, False, IGNORE_INDEX)
            img, sem = d["image"], d["semantic"]
        else:
            img, sem = self.items[i].image, self.items[i].semantic
        sample = {"image": tv_tensors.Image(img), "mask": tv_tensors.Mask(sem)}
        if self.transform is not None:
            sample = self.transform(sample)
        if sample["image"].shape[-2:] != (s, s):
            sample = v2.Resize((s, s), antialias=True)(sample)
        mask = sample["mask"].as_subclass(torch.Tensor).long()
        x = TF.to_dtype(sample["image"].as_subclass(torch.Tensor), torch.float32, scale=True)
        if self.train and self.augment.photometric > 0 and random.random() < self.augment.photometric:
            x = photometric(x)
        return x, mask


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Stack images ``(B, 3, S, S)``; keep targets as a list (object counts differ)."""
    images = torch.stack([b[0] for b in batch])
    return images, [b[1] for b in batch]


class MultiScaleCollate:
    """Collate that resizes each batch to a random side from ``sizes`` (multi-scale training)."""

    def __init__(self, sizes: Sequence[int]) -> None:
        self.sizes = list(sizes)

    def __call__(self, batch: Sequence[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
        images, targets = collate_detection(batch)
        s = random.choice(self.sizes)
        cur = images.shape[-1]
        if s != cur:
            images = torch.nn.functional.interpolate(
                images, size=(s, s), mode="bilinear", align_corners=False, antialias=s < cur
            )
            f = s / cur
            targets = [{**t, "boxes": t["boxes"] * f} for t in targets]
        return images, targets
