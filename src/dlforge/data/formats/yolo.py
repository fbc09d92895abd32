"""YOLO (Ultralytics / darknet): ``data.yaml`` + ``images/<split>/`` + ``labels/<split>/*.txt``.

Label lines are ``cls cx cy w h`` (a box) or ``cls x1 y1 x2 y2 ...`` (a polygon),
normalised to the displayed image size; they become absolute pixel coordinates
using the EXIF-oriented size read from the image header. A label file sits where
the image is with the last ``images`` folder swapped for ``labels`` (Ultralytics'
rule), or next to the image when the path has no ``images`` folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from dlforge.data.formats import register_format
from dlforge.data.formats._common import (
    SPLIT_ALIASES,
    Summary,
    UniqueNames,
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
    write_text_atomic,
)
from dlforge.data.records import Annotation, ImportBatch, ImportItem, SampleRecord, Skip
from dlforge.errors import InputError

_YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
_NAME_FILES = ("classes.txt", "obj.names", "classes.names")


def _yaml_file(root: Path) -> Path | None:
    for name in _YAML_NAMES:
        if (root / name).is_file():
            return root / name
    for p in sorted(root.glob("*.y*ml")):
        try:
            doc = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError, OSError):
            continue
        if isinstance(doc, dict) and "names" in doc:
            return p
    return None


def label_path(image: Path) -> Path:
    """Where the label file of ``image`` lives (last ``images`` folder -> ``labels``)."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _parse_names(names: Any, src: str) -> dict[int, str]:
    if isinstance(names, list):
        return {i: str(n) for i, n in enumerate(names)}
    if isinstance(names, dict):
        try:
            return {int(k): str(v) for k, v in sorted(names.items(), key=lambda kv: int(kv[0]))}
        except (TypeError, ValueError) as exc:
            raise InputError(f"{src}: names keys must be class indices ({exc})") from exc
    raise InputError(f"{src}: names must be a list or a mapping of index to name")


def _entries(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _resolve_entry(entry: str, bases: list[Path]) -> Path | None:
    for base in bases:
        for cand in (base / entry, base / entry.lstrip("./").removeprefix("../")):
            if cand.exists():
                return cand
    return None


def _images_of(entry: Path) -> list[Path]:
    if entry.is_dir():
        return [p for p in walk_files(entry) if is_image(p)]
    if entry.suffix == ".txt":  # a list of image paths, one per line
        out = []
        for line in entry.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.strip()
            if line:
                p = Path(line) if Path(line).is_absolute() else entry.parent / line
                if p.is_file():
                    out.append(p)
        return out
    return [entry] if is_image(entry) else []


def _collect(root: Path, doc: dict | None, yaml_path: Path | None) -> dict[Path, str | None]:
    """Image path -> split, from the YAML split entries or else from folder names."""
    found: dict[Path, set[str]] = {}
    dir_of: dict[Path, Path] = {}
    if doc is not None and yaml_path is not None:
        bases = []
        if doc.get("path"):
            p = Path(str(doc["path"]))
            bases.append(p if p.is_absolute() else yaml_path.parent / p)
        bases += [yaml_path.parent, root]
        for key in ("train", "val", "test"):
            for entry in _entries(doc.get(key)):
                resolved = _resolve_entry(entry, bases)
                if resolved is None:
                    continue
                for img in _images_of(resolved):
                    found.setdefault(img, set()).add(key)
                    dir_of[img] = resolved
    if found:
        out: dict[Path, str | None] = {}
        for img, keys in found.items():
            # One folder named by two keys (train and val both "images") holds no split of its own.
            out[img] = next(iter(keys)) if len(keys) == 1 else split_from_name(dir_of[img].name)
        return out
    out = {}
    for img in walk_files(root):
        if not is_image(img):
            continue
        split = None
        for part in img.relative_to(root).parts[:-1]:
            if part.lower() in SPLIT_ALIASES:
                split = SPLIT_ALIASES[part.lower()]
        out[img] = split
    return out


def _parse_line(line: str, n_names: int | None) -> tuple[int, list[float], float | None]:
    """``(class index, normalised coordinates, confidence)``; ValueError says what is wrong."""
    tokens = line.split()
    try:
        cls_f = float(tokens[0])
    except ValueError:
        raise ValueError(f"class {tokens[0]!r} is not a number") from None
    if not cls_f.is_integer() or cls_f < 0:
        raise ValueError(f"class {tokens[0]!r} is not a class index")
    cls = int(cls_f)
    if n_names is not None and cls not in range(n_names):
        raise ValueError(f"class {cls} is not in names (0..{n_names - 1})")
    values = [to_number(t, "coordinate") for t in tokens[1:]]
    if len(values) == 4:
        return cls, values, None
    if len(values) == 5:  # prediction files add a confidence
        return cls, values[:4], values[4]
    if len(values) >= 6 and len(values) % 2 == 0:
        return cls, values, None
    raise ValueError(f"{len(tokens)} fields: expected 5 (box) or an odd number >= 7 (polygon)")


@register_format
class YoloFormat:
    """Ultralytics/darknet YOLO text labels (boxes and segmentation polygons)."""

    name = "yolo"
    priority = 30

    @staticmethod
    def detect(root: Path) -> bool:
        root = Path(root)
        if not root.is_dir():
            return False
        if _yaml_file(root) is not None:
            return True
        labels = root / "labels"
        if labels.is_dir() and any(labels.rglob("*.txt")):
            return True
        return any((d / "labels").is_dir() and any((d / "labels").rglob("*.txt")) for d in root.iterdir())

    @staticmethod
    def read(root: Path, **options: Any) -> ImportBatch:
        """Read a YOLO folder.

        Args:
            root: the dataset folder holding ``data.yaml`` (or ``images/`` + ``labels/``).
            **options: ``yaml`` (path of the dataset YAML, relative to root).
        """
        root = require_root(root)
        if not root.is_dir():
            raise InputError(f"{root}: YOLO needs a folder")
        yaml_path = root / options["yaml"] if options.get("yaml") else _yaml_file(root)
        doc: dict | None = None
        names: dict[int, str] | None = None
        if yaml_path is not None:
            if not yaml_path.is_file():
                raise InputError(f"{yaml_path}: dataset YAML not found")
            try:
                doc = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise InputError(f"{yaml_path.name}: malformed YAML ({str(exc).splitlines()[0]})") from exc
            if not isinstance(doc, dict) or "names" not in doc:
                raise InputError(f"{yaml_path.name}: no 'names' list of classes")
            names = _parse_names(doc["names"], yaml_path.name)
        else:
            for cand in [root / n for n in _NAME_FILES] + [root / "labels" / n for n in _NAME_FILES]:
                if cand.is_file():
                    lines = cand.read_text(encoding="utf-8").splitlines()
                    names = {i: s.strip() for i, s in enumerate(lines) if s.strip()}
                    break
        images = _collect(root, doc, yaml_path)
        if not images:
            raise InputError(f"{root}: no images found for the YOLO labels")
        n_names = (max(names) + 1) if names else None
        items: list[ImportItem] = []
        skipped: list[Skip] = []
        used_labels: set[Path] = set()
        seen_ids: set[int] = set()
        for img, split in sorted(images.items()):
            rel = img.relative_to(root).as_posix() if img.is_relative_to(root) else img.name
            try:
                width, height = image_size(img)
            except InputError as exc:
                skipped.append(Skip(rel, str(exc).split(": ", 1)[-1]))
                continue
            item = ImportItem(rel, "image", path=img, split=split, meta={"width": width, "height": height})
            lbl = label_path(img)
            if lbl.is_file():
                used_labels.add(lbl.resolve())
                lsrc = lbl.relative_to(root).as_posix() if lbl.is_relative_to(root) else lbl.name
                try:
                    text = lbl.read_text(encoding="utf-8")
                except (UnicodeDecodeError, OSError) as exc:
                    skipped.append(Skip(lsrc, f"unreadable label file ({exc})"))
                    text = ""
                for lineno, line in enumerate(text.splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        cls, vals, conf = _parse_line(line, n_names)
                        if names is not None and cls not in names:
                            raise ValueError(f"class {cls} is not in names")
                    except ValueError as exc:
                        skipped.append(Skip(f"{lsrc}:{lineno}", str(exc)))
                        continue
                    seen_ids.add(cls)
                    item.annotations.append(_to_annotation(cls, vals, conf, width, height))
            items.append(item)
        for labels_dir in {label_path(i).parent for i in images}:
            for lbl in sorted(labels_dir.glob("*.txt")) if labels_dir.is_dir() else []:
                if lbl.resolve() not in used_labels and lbl.name not in _NAME_FILES:
                    src = lbl.relative_to(root).as_posix() if lbl.is_relative_to(root) else lbl.name
                    skipped.append(Skip(src, "label file has no matching image"))
        if names is None:
            names = {i: str(i) for i in range(max(seen_ids, default=-1) + 1)}
        for item in items:
            for a in item.annotations:
                a.label = names[int(a.label)]  # type: ignore[arg-type]
        return ImportBatch("yolo", items, list(names.values()), task="object_detection", skipped=skipped)

    @staticmethod
    def write(records: list[SampleRecord], classes: list[str], out: Path, **options: Any) -> dict:
        """Write ``data.yaml``, ``images/[<split>/]`` and ``labels/[<split>/]``.

        Boxes and single-ring polygons are written (6 decimals, normalised);
        masks, segmaps, class labels and extra polygon rings are dropped.
        """
        out = prepare_out(out)
        summary = Summary("yolo")
        classes = list(classes)
        split_dirs: dict[str, str] = {}
        for split, group in split_groups(records, summary).items():
            sub = Path(split) if split else Path()
            names = UniqueNames()
            for rec in group:
                if rec.media_type != "image":
                    summary.drop(rec, f"media type {rec.media_type!r} cannot go into YOLO")
                    continue
                try:
                    width, height = image_size(rec.path)
                except InputError as exc:
                    summary.drop(rec, str(exc))
                    continue
                original = safe_relative(rec.name)
                rel = names.take(original.stem).as_posix() + (original.suffix or rec.path.suffix)
                lines = []
                for a in rec.annotations:
                    line = _to_line(a, classes, width, height, rec, summary)
                    if line is not None:
                        lines.append(line)
                        summary.annotations += 1
                copy_atomic(rec.path, out / "images" / sub / rel)
                write_text_atomic(
                    out / "labels" / sub / Path(rel).with_suffix(".txt"), "".join(f"{x}\n" for x in lines)
                )
                summary.items += 1
            split_dirs[split or ""] = (Path("images") / sub).as_posix()
        doc: dict[str, Any] = {}
        if "" in split_dirs:
            doc["train"] = doc["val"] = split_dirs[""]
        for key in ("train", "val", "test"):
            if key in split_dirs:
                doc[key] = split_dirs[key]
        if "val" not in doc and "train" in doc:
            doc["val"] = doc["train"]  # Ultralytics insists on a val entry
        doc["nc"] = len(classes)
        doc["names"] = classes
        write_text_atomic(out / "data.yaml", yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
        return summary.to_dict()


def _to_annotation(cls: int, vals: list[float], conf: float | None, width: int, height: int) -> Annotation:
    if len(vals) == 4:
        cx, cy, w, h = vals
        bbox = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
        return Annotation("box", str(cls), {"bbox": bbox}, score=conf)
    ring = [v * (width if i % 2 == 0 else height) for i, v in enumerate(vals)]
    return Annotation("polygon", str(cls), {"points": [ring]})


def _to_line(
    a: Annotation, classes: list[str], width: int, height: int, rec: SampleRecord, summary: Summary
) -> str | None:
    if a.kind not in ("box", "polygon"):
        summary.drop(rec, f"{a.kind} annotation cannot be held by YOLO labels")
        return None
    if a.label is None:
        summary.drop(rec, f"{a.kind} annotation without a label")
        return None
    if a.label not in classes:
        classes.append(a.label)
    cls = classes.index(a.label)
    if a.kind == "box":
        x1, y1, x2, y2 = (float(v) for v in a.data["bbox"])
        vals = [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height]
    else:
        rings = a.data["points"]
        if len(rings) > 1:
            summary.drop(rec, f"polygon {a.label!r}: {len(rings) - 1} extra rings dropped (YOLO holds one)")
        vals = [float(v) / (width if i % 2 == 0 else height) for i, v in enumerate(rings[0])]
    return " ".join([str(cls)] + [f"{v:.6f}" for v in vals])
