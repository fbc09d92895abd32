"""Pascal VOC: ``Annotations/*.xml`` + ``JPEGImages/`` (also ``annots/`` + ``images/``).

Boxes are read as written (VOC's pixel coordinates, no 1-based shift), with
``difficult``/``truncated``/``occluded`` in ``data["attrs"]``.
``SegmentationClass/<id>.png`` becomes one ``"segmap"`` annotation per image whose
PNG travels in ``ImportItem.extra_blobs``. ``ImageSets/Main/{train,val,test}.txt``
set splits.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dlforge.data.formats import register_format
from dlforge.data.formats._common import (
    IMAGE_EXTS,
    Summary,
    UniqueNames,
    attrs_of,
    compact_number,
    copy_atomic,
    image_size,
    prepare_out,
    require_root,
    safe_relative,
    split_groups,
    to_number,
    write_bytes_atomic,
    write_text_atomic,
)
from dlforge.data.records import Annotation, ImportBatch, ImportItem, SampleRecord, Skip
from dlforge.errors import InputError

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
_ANN_DIRS = ("Annotations", "annotations", "annots", "Annots", "labels_xml")
_IMG_DIRS = ("JPEGImages", "images", "Images", "JPEGimages", "imgs")
_FLAG_ATTRS = ("difficult", "truncated", "occluded")


def voc_palette() -> list[tuple[int, int, int]]:
    """The 256-colour palette of VOC segmentation PNGs (bit-interleaved colour map)."""
    colors = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colors.append((r, g, b))
    return colors


def _xml_root_tag(path: Path) -> str | None:
    try:
        for _event, elem in ET.iterparse(path, events=("start",)):
            return elem.tag
    except (ET.ParseError, OSError):
        return None
    return None


def _layout(root: Path) -> tuple[Path, Path] | None:
    """``(annotations dir, images dir)`` of a VOC folder, looking up to two levels down."""
    candidates = [root]
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        candidates.append(child)
        candidates += sorted(p for p in child.iterdir() if p.is_dir())
    for base in candidates:
        for ann_name in _ANN_DIRS:
            ann = base / ann_name
            xmls = sorted(ann.glob("*.xml")) if ann.is_dir() else []
            if xmls and _xml_root_tag(xmls[0]) == "annotation":
                img = next((base / n for n in _IMG_DIRS if (base / n).is_dir()), base)
                return ann, img
    xmls = sorted(root.glob("*.xml"))
    if xmls and _xml_root_tag(xmls[0]) == "annotation":
        return root, root  # labelImg default: the XML next to each image
    return None


def _labelmap(base: Path) -> tuple[list[str], dict[tuple[int, int, int], int]] | None:
    """Names (and colours, when given) from a CVAT-style ``labelmap.txt``: ``name:r,g,b:parts:actions``."""
    path = base / "labelmap.txt"
    if not path.is_file():
        return None
    names: list[str] = []
    colors: dict[tuple[int, int, int], int] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) > 1 and fields[1].count(",") == 2:
            try:
                r, g, b = (int(v) for v in fields[1].split(","))
                colors[(r, g, b)] = len(names)
            except ValueError:
                pass
        names.append(fields[0].strip())
    return names, colors


def _read_splits(base: Path) -> dict[str, str]:
    """Image id -> split from ``ImageSets/Main`` (or ``ImageSets/Segmentation``)."""
    for sub in ("Main", "Segmentation"):
        folder = base / "ImageSets" / sub
        found: dict[str, str] = {}
        for split in ("train", "val", "test"):
            f = folder / f"{split}.txt"
            if f.is_file():
                for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                    if line.split():
                        found.setdefault(line.split()[0], split)
        if found:
            return found
    return {}


def _text(elem: ET.Element | None, tag: str) -> str | None:
    child = elem.find(tag) if elem is not None else None
    return child.text.strip() if child is not None and child.text is not None else None


def _parse_object(obj: ET.Element, index: int, wanted: set[str] | None) -> tuple[Annotation | None, str | None]:
    label = _text(obj, "name")
    if not label:
        return None, f"object {index}: no <name>"
    if wanted is not None and label not in wanted:
        return None, f"object {index}: label {label!r} is not in the class list"
    box = obj.find("bndbox")
    if box is None:
        return None, f"object {index} ({label}): no <bndbox>"
    try:
        x1, y1, x2, y2 = (to_number(_text(box, k), f"bndbox {k}") for k in ("xmin", "ymin", "xmax", "ymax"))
    except ValueError as exc:
        return None, f"object {index} ({label}): {exc}"
    if x2 < x1 or y2 < y1:
        return None, f"object {index} ({label}): bndbox max is smaller than min"
    data: dict[str, Any] = {"bbox": [x1, y1, x2, y2]}
    attrs: dict[str, Any] = {}
    for key in _FLAG_ATTRS:
        value = _text(obj, key)
        if value is not None:
            attrs[key] = int(value) if value.lstrip("-").isdigit() else value
    if attrs:
        data["attrs"] = attrs
    return Annotation("box", label, data), None


def _segmap(
    png: Path, color_index: dict[tuple[int, int, int], int]
) -> tuple[Path | bytes | None, set[int], str | None]:
    """The segmentation PNG as an index map (path when already indexed), the indices used, or a reason."""
    try:
        with Image.open(png) as im:
            im.load()
            if im.mode in ("P", "L"):
                values = set(np.unique(np.asarray(im)).tolist())
                return png, values, None
            rgb = np.asarray(im.convert("RGB"))
    except (OSError, ValueError) as exc:
        return None, set(), f"not a readable PNG ({exc})"
    # A colour PNG: map each colour back to its index (labelmap colours, else the VOC palette).
    lookup = color_index or {c: i for i, c in enumerate(voc_palette())}
    flat = rgb.reshape(-1, 3)
    uniq, inverse = np.unique(flat, axis=0, return_inverse=True)
    mapped = []
    for color in map(tuple, uniq.tolist()):
        if color not in lookup:
            return None, set(), f"colour {color} is not in the label map"
        mapped.append(lookup[color])
    index = np.asarray(mapped, dtype=np.uint8)[inverse.reshape(-1)].reshape(rgb.shape[:2])
    buf = io.BytesIO()
    Image.fromarray(index, mode="L").save(buf, format="PNG")
    return buf.getvalue(), set(np.unique(index).tolist()), None


@register_format
class VocFormat:
    """Pascal VOC XML boxes, optional segmentation PNGs and split lists."""

    name = "voc"
    priority = 20

    @staticmethod
    def detect(root: Path) -> bool:
        root = Path(root)
        return root.is_dir() and _layout(root) is not None

    @staticmethod
    def read(root: Path, **options: Any) -> ImportBatch:
        """Read a VOC folder.

        Args:
            root: the dataset folder (``VOCdevkit/VOC2012``-style nesting is found).
            **options: ``classes`` (list) keeps only these object labels and fixes
                the class order; otherwise ``labelmap.txt`` when present, else the
                sorted labels found.
        """
        root = require_root(root)
        if not root.is_dir():
            raise InputError(f"{root}: VOC needs a folder")
        layout = _layout(root)
        if layout is None:
            raise InputError(f"{root}: no VOC annotation XML found (Annotations/*.xml or annots/*.xml)")
        ann_dir, img_dir = layout
        base = ann_dir.parent
        labelmap = _labelmap(base)
        wanted_list = options.get("classes") or (labelmap[0] if labelmap else None)
        wanted = set(wanted_list) if options.get("classes") else None
        splits = _read_splits(base)
        seg_dir = base / "SegmentationClass"
        seg_names = labelmap[0] if labelmap else list(VOC_CLASSES)  # segmap index -> name
        items: list[ImportItem] = []
        skipped: list[Skip] = []
        found: set[str] = set()
        any_segmap = False
        for xml in sorted(ann_dir.glob("*.xml")):
            src = xml.relative_to(root).as_posix()
            try:
                tree = ET.parse(xml)
            except (ET.ParseError, OSError) as exc:
                skipped.append(Skip(src, f"malformed XML ({exc})"))
                continue
            node = tree.getroot()
            if node.tag != "annotation":
                skipped.append(Skip(src, f"root element is <{node.tag}>, expected <annotation>"))
                continue
            filename = _text(node, "filename") or ""
            image = _find_image(img_dir, filename, xml.stem)
            if image is None:
                skipped.append(Skip(src, f"image {filename or xml.stem!r} not found in {img_dir.name}/"))
                continue
            item = ImportItem(
                name=image.relative_to(root).as_posix(),
                media_type="image",
                path=image,
                split=splits.get(xml.stem) or splits.get(image.stem),
            )
            size = node.find("size")
            try:
                w, h = int(float(_text(size, "width") or "")), int(float(_text(size, "height") or ""))
                if w > 0 and h > 0:
                    item.meta = {"width": w, "height": h}
            except ValueError:
                pass  # a missing or broken <size> is common; the image header has the truth
            for i, obj in enumerate(node.findall("object")):
                ann, reason = _parse_object(obj, i, wanted)
                if ann is None:
                    skipped.append(Skip(src, str(reason)))
                    continue
                found.add(str(ann.label))
                item.annotations.append(ann)
            png = seg_dir / f"{image.stem}.png"
            if png.is_file():
                blob, used, reason = _segmap(png, labelmap[1] if labelmap else {})
                if blob is None:
                    skipped.append(Skip(png.relative_to(root).as_posix(), str(reason)))
                else:
                    key = f"segmap:{png.relative_to(root).as_posix()}"
                    indices = sorted(used - {255})
                    if max(indices, default=0) < len(seg_names):
                        mapping = {str(i): n for i, n in enumerate(seg_names)}
                    else:  # indices beyond the known names: keep them as numbers
                        mapping = {str(i): str(i) for i in indices}
                    item.annotations.append(Annotation("segmap", None, {"blob": key, "classes": mapping}))
                    item.extra_blobs[key] = blob
                    any_segmap = True
            items.append(item)
        if wanted_list:
            classes = list(wanted_list)
            classes += sorted(found - set(classes))
        else:
            classes = sorted(found)
        if not found and any_segmap:
            classes = list(seg_names)
        task = "object_detection" if found or not any_segmap else "semantic_segmentation"
        return ImportBatch("voc", items, classes, task=task, skipped=skipped)

    @staticmethod
    def write(records: list[SampleRecord], classes: list[str], out: Path, **options: Any) -> dict:
        """Write ``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``, ``SegmentationClass/``.

        Args:
            records: samples to export.
            classes: class names (order kept in ``labelmap.txt`` for segmaps).
            out: an empty or missing folder.
            **options: ``resolve_blob`` (callable sha256 -> Path) locates segmap PNGs
                kept in the blob store; without it segmaps are written only when
                ``data["blob"]`` is itself a file path.
        """
        out = prepare_out(out)
        summary = Summary("voc")
        resolve: Callable[[str], Path] | None = options.get("resolve_blob")
        stems = UniqueNames()
        split_ids: dict[str, list[str]] = {}
        seg_classes: dict[str, str] | None = None
        for split, group in split_groups(records, summary).items():
            for rec in group:
                if rec.media_type != "image":
                    summary.drop(rec, f"media type {rec.media_type!r} cannot go into VOC")
                    continue
                try:
                    width, height = image_size(rec.path)
                except InputError as exc:
                    summary.drop(rec, str(exc))
                    continue
                original = safe_relative(rec.name)
                stem = stems.take(original.stem).as_posix()
                suffix = original.suffix if original.suffix.lower() in IMAGE_EXTS else rec.path.suffix
                filename = f"{stem}{suffix}"
                copy_atomic(rec.path, out / "JPEGImages" / filename)
                node = ET.Element("annotation")
                ET.SubElement(node, "folder").text = "JPEGImages"
                ET.SubElement(node, "filename").text = filename
                size = ET.SubElement(node, "size")
                ET.SubElement(size, "width").text = str(width)
                ET.SubElement(size, "height").text = str(height)
                ET.SubElement(size, "depth").text = "3"
                segmented = ET.SubElement(node, "segmented")
                segmented.text = "0"
                for a in rec.annotations:
                    if a.kind == "box" and a.label is not None:
                        _box_element(node, a)
                        summary.annotations += 1
                    elif a.kind == "segmap":
                        src = _resolve(a.data.get("blob"), resolve)
                        if src is None:
                            summary.drop(rec, "segmap PNG not found (pass resolve_blob)")
                            continue
                        copy_atomic(src, out / "SegmentationClass" / f"{stem}.png")
                        segmented.text = "1"
                        seg_classes = seg_classes or a.data.get("classes")
                        summary.annotations += 1
                    else:
                        summary.drop(rec, f"{a.kind} annotation cannot be held by VOC")
                ET.indent(node)
                write_bytes_atomic(out / "Annotations" / f"{stem}.xml", ET.tostring(node, encoding="utf-8"))
                summary.items += 1
                if split:
                    split_ids.setdefault(split, []).append(stem)
        for split, ids in split_ids.items():
            write_text_atomic(out / "ImageSets" / "Main" / f"{split}.txt", "\n".join(ids) + "\n")
        if seg_classes:
            palette = voc_palette()
            order = sorted(seg_classes, key=int)
            lines = ["# label:color_rgb:parts:actions"]
            by_index = {int(k): seg_classes[k] for k in order}
            for i in range(max(by_index) + 1):
                r, g, b = palette[i]
                lines.append(f"{by_index.get(i, str(i))}:{r},{g},{b}::")
            write_text_atomic(out / "labelmap.txt", "\n".join(lines) + "\n")
        return summary.to_dict()


def _find_image(img_dir: Path, filename: str, stem: str) -> Path | None:
    if filename:
        p = img_dir / Path(filename.replace("\\", "/")).name
        if p.is_file():
            return p
    for s in (Path(filename).stem if filename else stem, stem):
        for ext in IMAGE_EXTS:
            for cand in (img_dir / f"{s}{ext}", img_dir / f"{s}{ext.upper()}"):
                if cand.is_file():
                    return cand
    return None


def _resolve(blob: Any, resolve: Callable[[str], Path] | None) -> Path | None:
    if not blob:
        return None
    if resolve is not None:
        p = Path(resolve(str(blob)))
        return p if p.is_file() else None
    p = Path(str(blob))
    return p if p.is_file() else None


def _box_element(node: ET.Element, a: Annotation) -> None:
    obj = ET.SubElement(node, "object")
    ET.SubElement(obj, "name").text = str(a.label)
    ET.SubElement(obj, "pose").text = "Unspecified"
    attrs = attrs_of(a)
    for key in _FLAG_ATTRS:
        if key in attrs or key != "occluded":
            ET.SubElement(obj, key).text = str(attrs.get(key, 0))
    box = ET.SubElement(obj, "bndbox")
    for key, value in zip(("xmin", "ymin", "xmax", "ymax"), a.data["bbox"]):
        ET.SubElement(box, key).text = str(compact_number(value))
