"""COCO instances: ``annotations/instances_<split>.json`` plus an images folder.

Each COCO object becomes one annotation: ``"box"`` when it has only a bbox,
``"polygon"`` when its segmentation is a polygon list, ``"mask"`` when it is
RLE (compressed strings are decoded with ``pycocotools.mask`` and stored as
uncompressed counts). Polygon and mask annotations also keep COCO's box in
``data["bbox"]`` (xyxy) so detection tasks can use any instance annotation.
``iscrowd``, ``area`` and CVAT-style ``attributes`` go to ``data["attrs"]``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dlforge.data.formats import register_format
from dlforge.data.formats._common import (
    Summary,
    UniqueNames,
    attrs_of,
    box_of_points,
    compact_number,
    copy_atomic,
    image_size,
    is_image,
    prepare_out,
    require_root,
    safe_relative,
    split_from_name,
    split_groups,
    to_number,
    walk_files,
    write_json_atomic,
)
from dlforge.data.records import Annotation, ImportBatch, ImportItem, SampleRecord, Skip
from dlforge.errors import InputError

_COCO_KEYS = ("images", "annotations", "categories")
#: Files up to this size are parsed to detect COCO; bigger ones are sniffed at both ends.
_PARSE_LIMIT = 8 * 1024 * 1024
_SNIFF_BYTES = 1024 * 1024


def _load_json(path: Path) -> Any:
    with path.open("rb") as fh:
        return json.load(fh)


def _is_coco(obj: Any) -> bool:
    return isinstance(obj, dict) and all(isinstance(obj.get(k), list) for k in _COCO_KEYS)


def _candidate_jsons(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if root.suffix.lower() == ".json" else []
    found = sorted(root.glob("*.json")) + sorted((root / "annotations").glob("*.json"))
    return [p for p in found if p.is_file() and not p.name.startswith(".")]


def _looks_like_coco(path: Path) -> bool:
    """Cheap check used by detection: small files are parsed, big ones sniffed for the three keys."""
    try:
        size = path.stat().st_size
        if size <= _PARSE_LIMIT:
            return _is_coco(_load_json(path))
        with path.open("rb") as fh:
            head = fh.read(_SNIFF_BYTES)
            fh.seek(max(size - _SNIFF_BYTES, 0))
            tail = fh.read()
    except (ValueError, UnicodeDecodeError, OSError):
        return False
    # In a big file the "annotations" key can sit far from both ends; ask for COCO-shaped words instead.
    text = head + tail
    has_section = b'"images"' in text or b'"annotations"' in text
    has_field = b'"file_name"' in text or b'"image_id"' in text
    return head.lstrip().startswith(b"{") and has_section and has_field


def _coco_files(root: Path) -> list[tuple[Path, dict]]:
    """Parsed COCO files among the candidate JSONs (files that are not COCO are passed over)."""
    out = []
    for path in _candidate_jsons(root):
        if not _looks_like_coco(path):
            continue
        try:
            obj = _load_json(path)
        except (ValueError, UnicodeDecodeError, OSError):
            continue
        if _is_coco(obj):
            out.append((path, obj))
    return out


def rle_counts_from_mask(mask: np.ndarray) -> list[int]:
    """COCO uncompressed RLE counts (column-major, starting with zeros) of a binary mask."""
    flat = np.asarray(mask, dtype=np.uint8).flatten(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return [0, *counts] if flat[0] else counts


def rle_to_uncompressed(rle: dict, height: int, width: int) -> dict:
    """Return ``{"size": [h, w], "counts": [...]}`` for a compressed or uncompressed COCO RLE.

    Raises:
        ValueError: the RLE is malformed (counts do not add up to h * w).
    """
    size = rle.get("size") or [height, width]
    h, w = int(size[0]), int(size[1])
    counts = rle.get("counts")
    if isinstance(counts, list):
        ints = [int(c) for c in counts]
        if any(c < 0 for c in ints) or sum(ints) != h * w:
            raise ValueError(f"RLE counts sum to {sum(ints)}, expected {h * w} (size {h}x{w})")
        return {"size": [h, w], "counts": ints}
    if isinstance(counts, str | bytes):
        from pycocotools import mask as mask_util

        raw = counts.encode("ascii") if isinstance(counts, str) else counts
        decoded = mask_util.decode({"size": [h, w], "counts": raw})
        return {"size": [h, w], "counts": rle_counts_from_mask(decoded)}
    raise ValueError("RLE counts are neither a list nor a string")


def mask_area(rle: dict) -> int:
    return int(sum(rle["counts"][1::2]))


def polygon_area(points: list[list[float]]) -> float:
    total = 0.0
    for ring in points:
        xs, ys = np.asarray(ring[0::2]), np.asarray(ring[1::2])
        total += 0.5 * abs(float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))))
    return total


def _dataset_dir(root: Path) -> Path:
    """The dataset folder: root itself, or for a JSON file its folder (above ``annotations/``)."""
    if root.is_dir():
        return root
    return root.parent.parent if root.parent.name.lower() == "annotations" else root.parent


def _split_token(stem: str) -> str | None:
    """The word in a JSON file name that names its split (``train2017`` in ``instances_train2017``)."""
    for token in stem.lower().replace("-", "_").split("_"):
        if split_from_name(token):
            return token
    return None


class _ImageFinder:
    """Resolves a COCO ``file_name`` to a file, trying the usual folder layouts."""

    def __init__(self, root: Path, images_dir: Path | None) -> None:
        self.root = root
        self.images_dir = images_dir
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, file_name: str, json_path: Path) -> Path | None:
        rel = Path(file_name.replace("\\", "/").lstrip("/"))
        if self.images_dir is not None:
            bases = [self.images_dir]
        else:
            token = _split_token(json_path.stem)
            bases = [json_path.parent, self.root, self.root / "images", json_path.parent / "images"]
            if token:
                bases += [self.root / "images" / token, self.root / token]
        for base in bases:
            p = base / rel
            if p.is_file():
                return p
        if self._by_name is None:
            self._by_name = {}
            for f in walk_files(self.root):
                if is_image(f):
                    self._by_name.setdefault(f.name, []).append(f)
        hits = self._by_name.get(rel.name, [])
        return hits[0] if len(hits) == 1 else None


def _convert_annotation(ann: dict, width: int, height: int, label: str) -> tuple[Annotation | None, str | None]:
    """One COCO annotation dict to an :class:`Annotation`, or ``(None, reason)``."""
    attrs: dict[str, Any] = {}
    for key in ("iscrowd", "area"):
        if key in ann:
            attrs[key] = ann[key]
    if isinstance(ann.get("attributes"), dict):
        attrs.update(ann["attributes"])
    try:
        bbox = ann.get("bbox")
        xyxy = None
        if bbox:
            if len(bbox) != 4:
                raise ValueError(f"bbox has {len(bbox)} values, expected 4")
            x, y, w, h = (to_number(v, "bbox value") for v in bbox)
            xyxy = [x, y, x + w, y + h]
        seg = ann.get("segmentation")
        if isinstance(seg, list) and seg and any(seg):
            points = []
            for ring in seg:
                if not isinstance(ring, list) or len(ring) < 6 or len(ring) % 2:
                    raise ValueError("polygon ring needs an even number (>= 6) of coordinates")
                points.append([to_number(v, "polygon coordinate") for v in ring])
            data: dict[str, Any] = {"points": points, "bbox": xyxy or box_of_points(points)}
            kind = "polygon"
        elif isinstance(seg, dict) and "counts" in seg:
            rle = rle_to_uncompressed(seg, height, width)
            data = {"rle": rle}
            if xyxy is not None:
                data["bbox"] = xyxy
            kind = "mask"
        elif xyxy is not None:
            data, kind = {"bbox": xyxy}, "box"
        else:
            return None, "has neither a bbox nor a segmentation"
    except (ValueError, TypeError) as exc:
        return None, str(exc)
    if attrs:
        data["attrs"] = attrs
    score = ann.get("score")
    return Annotation(kind, label, data, score=float(score) if score is not None else None), None


def _read_one(
    path: Path, obj: dict, root: Path, finder: _ImageFinder, split: str | None, name_to_class: dict[str, str]
) -> tuple[list[ImportItem], list[Skip]]:
    src = path.name
    skipped: list[Skip] = []
    cats: dict[Any, str] = {}
    for c in obj["categories"]:
        if isinstance(c, dict) and "id" in c and "name" in c:
            cats[c["id"]] = str(c["name"])
            name_to_class.setdefault(str(c["name"]), str(c["name"]))
        else:
            skipped.append(Skip(src, f"category entry {c!r} lacks id or name"))
    items: dict[Any, ImportItem] = {}
    sizes: dict[Any, tuple[int, int]] = {}
    base = _dataset_dir(root)
    for img in obj["images"]:
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            skipped.append(Skip(src, f"image entry {str(img)[:80]} lacks id or file_name"))
            continue
        file = finder.find(str(img["file_name"]), path)
        if file is None:
            skipped.append(Skip(f"{src}: {img['file_name']}", "image file not found in the folder"))
            continue
        try:
            w, h = int(img["width"]), int(img["height"])
        except (KeyError, TypeError, ValueError):
            try:
                w, h = image_size(file)
            except InputError as exc:
                skipped.append(Skip(str(img["file_name"]), str(exc)))
                continue
        try:
            name = file.relative_to(base).as_posix()
        except ValueError:
            name = str(img["file_name"])
        items[img["id"]] = ImportItem(
            name=name, media_type="image", path=file, split=split, meta={"width": w, "height": h}
        )
        sizes[img["id"]] = (w, h)
    all_ids = {im.get("id") for im in obj["images"] if isinstance(im, dict)}
    for i, ann in enumerate(obj["annotations"]):
        where = f"{src}: annotation {ann.get('id', i) if isinstance(ann, dict) else i}"
        if not isinstance(ann, dict):
            skipped.append(Skip(where, "is not an object"))
            continue
        item = items.get(ann.get("image_id"))
        if item is None:
            if ann.get("image_id") not in all_ids:
                skipped.append(Skip(where, f"image_id {ann.get('image_id')!r} is not in images"))
            continue  # its image was skipped already, with its own reason
        label = cats.get(ann.get("category_id"))
        if label is None:
            skipped.append(Skip(where, f"category_id {ann.get('category_id')!r} is not in categories"))
            continue
        w, h = sizes[ann["image_id"]]
        converted, reason = _convert_annotation(ann, w, h, label)
        if converted is None:
            skipped.append(Skip(where, str(reason)))
            continue
        item.annotations.append(converted)
    return list(items.values()), skipped


@register_format
class CocoFormat:
    """COCO instances JSON (detection, polygons, RLE masks)."""

    name = "coco"
    priority = 10

    @staticmethod
    def detect(root: Path) -> bool:
        root = Path(root)
        return root.exists() and any(_looks_like_coco(p) for p in _candidate_jsons(root))

    @staticmethod
    def read(root: Path, **options: Any) -> ImportBatch:
        """Read one or more COCO instances files.

        Args:
            root: the dataset folder (or the JSON file itself).
            **options: ``annotation_file`` (a JSON path, relative to root or absolute),
                ``images_dir`` (folder the ``file_name`` entries are relative to).
                With several JSON files, the split comes from each file name
                (``instances_train2017.json`` -> train).
        """
        root = require_root(root)
        ann_opt = options.get("annotation_file")
        if ann_opt:
            ann_path = Path(ann_opt) if Path(ann_opt).is_absolute() else root / ann_opt
            if not ann_path.is_file():
                raise InputError(f"{ann_path}: annotation file not found")
            try:
                obj = _load_json(ann_path)
            except (ValueError, UnicodeDecodeError) as exc:
                raise InputError(f"{ann_path}: malformed JSON ({exc})") from exc
            if not _is_coco(obj):
                raise InputError(f"{ann_path}: not a COCO file (needs images, annotations, categories lists)")
            files = [(ann_path, obj)]
        else:
            files = _coco_files(root)
            if not files:
                raise InputError(f"{root}: no COCO annotation JSON (with images, annotations, categories)")
        images_dir = options.get("images_dir")
        if images_dir is not None:
            images_dir = Path(images_dir) if Path(images_dir).is_absolute() else root / images_dir
        finder = _ImageFinder(_dataset_dir(root), images_dir)
        items: list[ImportItem] = []
        skipped: list[Skip] = []
        classes: dict[str, str] = {}
        for path, obj in files:
            split = split_from_name(path.stem) if len(files) > 1 or _split_token(path.stem) else None
            got, skips = _read_one(path, obj, root, finder, split, classes)
            items += got
            skipped += skips
        return ImportBatch("coco", items, list(classes), task="object_detection", skipped=skipped)

    @staticmethod
    def write(records: list[SampleRecord], classes: list[str], out: Path, **options: Any) -> dict:
        """Write ``images/[<split>/]<file>`` and ``annotations/instances[_<split>].json``.

        Boxes, polygons and masks are written; class labels and segmaps are dropped.
        Category ids are 1-based in ``classes`` order.
        """
        out = prepare_out(out)
        summary = Summary("coco")
        classes = list(classes)
        written_files: list[str] = []
        ann_id = 0
        for split, group in split_groups(records, summary).items():
            names = UniqueNames()
            images, annotations = [], []
            img_dir = Path("images") / split if split else Path("images")
            for rec in group:
                if rec.media_type != "image":
                    summary.drop(rec, f"media type {rec.media_type!r} cannot go into COCO")
                    continue
                try:
                    width, height = image_size(rec.path)
                except InputError as exc:
                    summary.drop(rec, str(exc))
                    continue
                rel = names.take(safe_relative(rec.name).name)
                copy_atomic(rec.path, out / img_dir / rel)
                image_id = len(images) + 1
                images.append({"id": image_id, "file_name": rel.as_posix(), "width": width, "height": height})
                summary.items += 1
                for a in rec.annotations:
                    entry = _coco_annotation(a, rec, classes, summary)
                    if entry is None:
                        continue
                    ann_id += 1
                    entry.update(id=ann_id, image_id=image_id)
                    annotations.append(entry)
                    summary.annotations += 1
            doc = {
                "info": {"description": "exported by dlforge"},
                "licenses": [],
                "images": images,
                "annotations": annotations,
                "categories": [{"id": i + 1, "name": c, "supercategory": ""} for i, c in enumerate(classes)],
            }
            target = out / "annotations" / (f"instances_{split}.json" if split else "instances.json")
            write_json_atomic(target, doc)
            written_files.append(target.relative_to(out).as_posix())
        return summary.to_dict(files=written_files)


def _coco_annotation(a: Annotation, rec: SampleRecord, classes: list[str], summary: Summary) -> dict | None:
    if a.kind not in ("box", "polygon", "mask"):
        summary.drop(rec, f"{a.kind} annotation cannot be held by COCO instances")
        return None
    if a.label is None:
        summary.drop(rec, f"{a.kind} annotation without a label")
        return None
    if a.label not in classes:
        classes.append(a.label)  # keep the annotation; the category list grows
    attrs = attrs_of(a)
    entry: dict[str, Any] = {"category_id": classes.index(a.label) + 1, "segmentation": []}
    if a.kind == "box":
        xyxy = a.data["bbox"]
        area = (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1])
    elif a.kind == "polygon":
        entry["segmentation"] = [[compact_number(v) for v in ring] for ring in a.data["points"]]
        xyxy = a.data.get("bbox") or box_of_points(a.data["points"])
        area = polygon_area(a.data["points"])
    else:
        rle = a.data["rle"]
        entry["segmentation"] = {"size": list(rle["size"]), "counts": list(rle["counts"])}
        xyxy = a.data.get("bbox") or _mask_box(rle)
        area = mask_area(rle)
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    entry["bbox"] = [compact_number(x1), compact_number(y1), compact_number(x2 - x1), compact_number(y2 - y1)]
    entry["area"] = attrs.pop("area", compact_number(area))
    entry["iscrowd"] = int(attrs.pop("iscrowd", 0))
    if attrs:
        entry["attributes"] = attrs
    if a.score is not None:
        entry["score"] = a.score
    return entry


def _mask_box(rle: dict) -> list[float]:
    h, w = rle["size"]
    flat = np.zeros(h * w, dtype=np.uint8)
    pos = 0
    for i, c in enumerate(rle["counts"]):
        if i % 2:
            flat[pos : pos + c] = 1
        pos += c
    mask = flat.reshape((w, h)).T  # column-major runs
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
