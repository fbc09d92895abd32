"""Synthetic shapes with exact boxes and masks, for tests, benchmarks and pipeline smoke tests.

Shapes of several classes (circle, square, triangle, ...) are drawn on textured,
noisy backgrounds. Each object's mask is rasterised first and its box is taken
from the mask's pixels, so ``box == bbox(mask)`` holds exactly: a box
``[x1, y1, x2, y2]`` covers pixel columns ``x1 .. x2-1`` (pixel edges, the
convention of :mod:`dlforge.data.records`). Objects never overlap, so every
instance mask is fully visible and the semantic map is the union of them.

Two entry points:

- :func:`generate_shapes` builds samples in memory (numpy arrays), for tests.
- :func:`make_shapes` writes a COCO folder (``images/*.png`` + ``annotations.json``
  with boxes and RLE or polygon masks) and, by default, VOC-style
  ``SegmentationClass/*.png`` label maps; :func:`shapes_to_records` turns in-memory
  samples into :class:`~dlforge.data.records.SampleRecord` objects.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dlforge.data.records import Annotation, SampleRecord
from dlforge.errors import InputError

SHAPES = ("circle", "square", "triangle", "diamond", "ellipse", "cross")
"""Shape classes the generator can draw."""

_POLYGON_SHAPES = {"square", "triangle", "diamond", "cross"}


@dataclass
class ShapeSample:
    """One generated image with its objects.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        boxes: ``(N, 4)`` float32 xyxy in pixel edges; exactly the bbox of each mask.
        labels: ``(N,)`` int64 indices into the class tuple.
        masks: ``(N, H, W)`` bool instance masks.
        polygons: per object, the flat vertex list the shape was drawn from
            (``None`` for round shapes).
        name: file name the sample gets when written.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    polygons: list[list[float] | None] = field(default_factory=list)
    name: str = ""

    def semantic(self) -> np.ndarray:
        """``(H, W)`` uint8 class map: 0 is background, class ``i`` is ``i + 1``."""
        out = np.zeros(self.image.shape[:2], dtype=np.uint8)
        for m, lab in zip(self.masks, self.labels):
            out[m] = lab + 1
        return out


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode a bool mask as COCO uncompressed RLE (column-major runs, starting with zeros)."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    if flat.size == 0:
        return {"size": list(mask.shape), "counts": []}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A smooth random colour field plus pixel noise, so that shapes are not trivially separable."""
    gh, gw = rng.integers(3, 9), rng.integers(3, 9)
    grid = rng.uniform(30, 225, size=(int(gh), int(gw), 3)).astype(np.uint8)
    smooth = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=np.float32)
    noise = rng.normal(0, rng.uniform(4, 14), size=(h, w, 3))
    # thin random stripes add edges that are not objects
    if rng.random() < 0.5:
        period = rng.uniform(6, 24)
        phase = rng.uniform(0, 2 * math.pi)
        yy, xx = np.mgrid[0:h, 0:w]
        angle = rng.uniform(0, math.pi)
        stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) / period * 2 * math.pi + phase)
        smooth += (stripes[..., None] * rng.uniform(5, 20)).astype(np.float32)
    return smooth + noise


def _shape_outline(kind: str, cx: float, cy: float, r: float, rot: float) -> list[float] | None:
    """Flat polygon vertices for polygon shapes, ``None`` for round ones."""
    if kind == "square":
        pts = [(-r, -r), (r, -r), (r, r), (-r, r)]
    elif kind == "triangle":
        pts = [(r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
    elif kind == "diamond":
        pts = [(0, -r), (r * 0.6, 0), (0, r), (-r * 0.6, 0)]
    elif kind == "cross":
        t = r * 0.35
        pts = [(-t, -r), (t, -r), (t, -t), (r, -t), (r, t), (t, t), (t, r), (-t, r), (-t, t), (-r, t),
               (-r, -t), (-t, -t)]  # fmt: skip
    else:
        return None
    c, s = math.cos(rot), math.sin(rot)
    out: list[float] = []
    for x, y in pts:
        out += [cx + x * c - y * s, cy + x * s + y * c]
    return out


def _rasterise(kind: str, h: int, w: int, cx: float, cy: float, r: float, rot: float, aspect: float):
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    poly = _shape_outline(kind, cx, cy, r, rot)
    if poly is not None:
        draw.polygon(poly, fill=1)
    elif kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
    elif kind == "ellipse":
        draw.ellipse([cx - r, cy - r * aspect, cx + r, cy + r * aspect], fill=1)
    else:
        raise InputError(f"synthetic shapes: unknown shape class {kind!r}; known: {', '.join(SHAPES)}")
    return np.asarray(canvas, dtype=bool), poly


def _pick_size(rng: np.random.Generator, size: Any) -> tuple[int, int]:
    """``size`` is ``(H, W)`` or ``((h_min, h_max), (w_min, w_max))`` for varied sizes and aspects."""
    h, w = size
    if isinstance(h, (tuple, list)):
        h = int(rng.integers(h[0], h[1] + 1))
    if isinstance(w, (tuple, list)):
        w = int(rng.integers(w[0], w[1] + 1))
    if h < 16 or w < 16:
        raise InputError(f"synthetic shapes: size {h}x{w} is too small (need at least 16x16)")
    return int(h), int(w)


def generate_shapes(
    n_images: int,
    *,
    size: Any = (256, 256),
    classes: Sequence[str] = ("circle", "square", "triangle"),
    min_objects: int = 1,
    max_objects: int = 4,
    empty_fraction: float = 0.0,
    object_size: tuple[float, float] = (0.1, 0.35),
    seed: int = 0,
) -> list[ShapeSample]:
    """Generate shape images in memory.

    Args:
        n_images: how many images.
        size: ``(H, W)``, or ``((h_min, h_max), (w_min, w_max))`` to vary size and aspect.
        classes: shape names from :data:`SHAPES`; label ``i`` is ``classes[i]``.
        min_objects: fewest objects on a non-empty image.
        max_objects: most objects per image.
        empty_fraction: share of images with no objects at all.
        object_size: object diameter range as a fraction of ``min(H, W)``.
        seed: random seed; the same arguments give the same pixels.

    Returns:
        One :class:`ShapeSample` per image, named ``shape_00000.png`` onward.
    """
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or not classes:
        raise InputError(f"synthetic shapes: unknown classes {unknown}; choose from {', '.join(SHAPES)}")
    if max_objects < min_objects or min_objects < 0:
        raise InputError(f"synthetic shapes: need 0 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
    rng = np.random.default_rng(seed)
    out: list[ShapeSample] = []
    for i in range(n_images):
        h, w = _pick_size(rng, size)
        img = _texture(rng, h, w)
        n_obj = 0 if rng.random() < empty_fraction else int(rng.integers(min_objects, max_objects + 1))
        occupied = np.zeros((h, w), dtype=bool)
        boxes, labels, masks, polys = [], [], [], []
        for _ in range(n_obj):
            for _try in range(30):
                cls = int(rng.integers(len(classes)))
                r = max(rng.uniform(*object_size) * min(h, w) / 2, 4.0)
                cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
                mask, poly = _rasterise(
                    classes[cls], h, w, cx, cy, r, rng.uniform(0, 2 * math.pi), rng.uniform(0.45, 0.75)
                )
                if mask.sum() < 12:
                    continue
                # keep a 2-pixel gap between objects so masks never touch or occlude
                grown = np.zeros_like(occupied)
                ys, xs = np.nonzero(mask)
                grown[max(ys.min() - 2, 0) : ys.max() + 3, max(xs.min() - 2, 0) : xs.max() + 3] = True
                if (grown & occupied).any():
                    continue
                occupied |= grown
                colour = rng.uniform(0, 255, size=3)
                # keep the fill visibly different from the local background
                bg = img[mask].mean(axis=0)
                if np.abs(colour - bg).sum() < 120:
                    colour = np.where(bg > 127, bg - 110, bg + 110)
                img[mask] = colour + rng.normal(0, 6, size=(int(mask.sum()), 3))
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                labels.append(cls)
                masks.append(mask)
                polys.append(poly)
                break
        out.append(
            ShapeSample(
                image=np.clip(img, 0, 255).astype(np.uint8),
                boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
                labels=np.asarray(labels, dtype=np.int64),
                masks=np.asarray(masks, dtype=bool).reshape(-1, h, w),
                polygons=polys,
                name=f"shape_{i:05d}.png",
            )
        )
    return out


def _write_bytes_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _png_bytes(img: np.ndarray | Image.Image) -> bytes:
    buf = io.BytesIO()
    (img if isinstance(img, Image.Image) else Image.fromarray(img)).save(buf, format="PNG")
    return buf.getvalue()


def shapes_to_records(
    samples: Sequence[ShapeSample],
    image_dir: str | Path,
    classes: Sequence[str] = ("circle", "square", "triangle"),
    *,
    split: str | None = None,
) -> list[SampleRecord]:
    """Write the samples' PNGs to ``image_dir`` and return them as SampleRecords.

    Each object becomes a ``box`` annotation and a ``mask`` annotation (RLE) with
    the class name as label, in the same order; ``data["attrs"]["instance"]``
    links the two.
    """
    image_dir = Path(image_dir)
    records: list[SampleRecord] = []
    for idx, s in enumerate(samples):
        data = _png_bytes(s.image)
        path = image_dir / s.name
        _write_bytes_atomic(path, data)
        anns: list[Annotation] = []
        for j, (box, lab, mask) in enumerate(zip(s.boxes, s.labels, s.masks)):
            attrs = {"instance": j}
            name = classes[int(lab)]
            anns.append(Annotation("box", name, {"bbox": [float(v) for v in box], "attrs": attrs}))
            anns.append(Annotation("mask", name, {"rle": mask_to_rle(mask), "attrs": attrs}))
        records.append(
            SampleRecord(
                sample_id=idx + 1,
                sha256=hashlib.sha256(data).hexdigest(),
                media_type="image",
                name=s.name,
                path=path,
                meta={"width": int(s.image.shape[1]), "height": int(s.image.shape[0])},
                split=split,
                annotations=anns,
            )
        )
    return records


def make_shapes(
    out_dir: str | Path,
    n_images: int,
    *,
    size: Any = (256, 256),
    classes: Sequence[str] = ("circle", "square", "triangle"),
    min_objects: int = 1,
    max_objects: int = 4,
    empty_fraction: float = 0.0,
    object_size: tuple[float, float] = (0.1, 0.35),
    seed: int = 0,
    semantic_masks: bool = True,
    mask_format: str = "rle",
) -> dict[str, Any]:
    """Write a synthetic shapes dataset as a COCO folder.

    Layout: ``images/shape_00000.png ...``, ``annotations.json`` (COCO: ``bbox`` as
    xywh, ``segmentation`` as a polygon for polygon shapes and uncompressed RLE for
    round ones, ``area`` = mask pixels) and, with ``semantic_masks``,
    ``SegmentationClass/*.png`` palette PNGs holding class indices (0 = background,
    ``i + 1`` = ``classes[i]``), as in Pascal VOC.

    Args:
        out_dir: folder to create (files are written under temporary names, then renamed).
        n_images: number of images.
        size, classes, min_objects, max_objects, empty_fraction, object_size, seed:
            as in :func:`generate_shapes`.
        semantic_masks: also write VOC-style class maps.
        mask_format: ``"rle"`` (exact pixels, the default) or ``"polygon"`` (the drawn outlines of
            polygon shapes; COCO tools rasterise them within ~2 px of the pixels; round shapes stay RLE).

    Returns:
        ``{"root", "annotations", "images", "objects", "classes"}``.
    """
    if mask_format not in ("rle", "polygon"):
        raise InputError(f"mask_format {mask_format!r}: expected rle or polygon")
    out = Path(out_dir)
    samples = generate_shapes(
        n_images,
        size=size,
        classes=classes,
        min_objects=min_objects,
        max_objects=max_objects,
        empty_fraction=empty_fraction,
        object_size=object_size,
        seed=seed,
    )
    coco: dict[str, Any] = {
        "info": {"description": f"dlforge synthetic shapes (seed {seed})"},
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": c, "supercategory": "shape"} for i, c in enumerate(classes)],
    }
    palette = _voc_palette()
    ann_id = 1
    for img_id, s in enumerate(samples, start=1):
        h, w = s.image.shape[:2]
        _write_bytes_atomic(out / "images" / s.name, _png_bytes(s.image))
        if semantic_masks:
            seg = Image.fromarray(s.semantic()).convert("P")
            seg.putpalette(palette)
            _write_bytes_atomic(out / "SegmentationClass" / s.name, _png_bytes(seg))
        coco["images"].append({"id": img_id, "file_name": s.name, "width": w, "height": h})
        for box, lab, mask, poly in zip(s.boxes, s.labels, s.masks, s.polygons):
            x1, y1, x2, y2 = (float(v) for v in box)
            if mask_format == "polygon" and poly is not None:
                segm: Any = [[round(v, 2) for v in poly]]
            else:
                segm = mask_to_rle(mask)
            coco["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": int(lab) + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": int(mask.sum()),
                    "segmentation": segm,
                    "iscrowd": 0,
                }
            )
            ann_id += 1
    _write_bytes_atomic(out / "annotations.json", json.dumps(coco).encode())
    return {
        "root": str(out),
        "annotations": str(out / "annotations.json"),
        "images": len(samples),
        "objects": ann_id - 1,
        "classes": list(classes),
    }


def _voc_palette() -> list[int]:
    """The Pascal VOC colour map (bit-interleaved), 256 entries."""
    pal: list[int] = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal
