"""Image classification as folders: ``root/<class>/*.jpg`` or ``root/<split>/<class>/*.jpg``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlforge.data.formats import register_format
from dlforge.data.formats._common import (
    SPLIT_ALIASES,
    Summary,
    UniqueNames,
    copy_atomic,
    is_clutter,
    is_image,
    prepare_out,
    require_root,
    safe_relative,
    split_groups,
    walk_files,
)
from dlforge.data.records import Annotation, ImportBatch, ImportItem, SampleRecord, Skip
from dlforge.errors import InputError


def _subdirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not is_clutter(Path(p.name)))


def _has_images(path: Path) -> bool:
    return any(is_image(p) for p in path.iterdir() if p.is_file())


def _split_dirs(root: Path) -> dict[str, Path]:
    """Split folders (train/val/test and aliases) that hold class folders."""
    found: dict[str, Path] = {}
    for d in _subdirs(root):
        split = SPLIT_ALIASES.get(d.name.lower())
        if split and any(_has_images(c) for c in _subdirs(d)):
            found[split] = d
    return found


@register_format
class ImageFolderFormat:
    """One folder per class, optionally inside one folder per split."""

    name = "imagefolder"
    priority = 80

    @staticmethod
    def detect(root: Path) -> bool:
        root = Path(root)
        if not root.is_dir() or _has_images(root):
            return False
        if _split_dirs(root):
            return True
        # Two class folders at least: a lone folder of images is more likely unlabelled data.
        return sum(1 for d in _subdirs(root) if _has_images(d)) >= 2

    @staticmethod
    def read(root: Path, **options: Any) -> ImportBatch:
        """Read class folders.

        Args:
            root: the dataset folder.
            **options: ``classes`` (list) restricts to these class folders; other
                class folders are skipped with a reason.
        """
        root = require_root(root)
        if not root.is_dir():
            raise InputError(f"{root}: imagefolder needs a folder of class folders")
        wanted = options.get("classes")
        splits = _split_dirs(root)
        layout: list[tuple[str | None, Path]] = [(s, d) for s, d in splits.items()] if splits else [(None, root)]
        items: list[ImportItem] = []
        skipped: list[Skip] = []
        classes: set[str] = set()
        for split, base in layout:
            for file in walk_files(base, recursive=False):
                skipped.append(Skip(file.relative_to(root).as_posix(), "file outside a class folder"))
            for class_dir in _subdirs(base):
                label = class_dir.name
                rel_dir = class_dir.relative_to(root).as_posix()
                if wanted is not None and label not in wanted:
                    skipped.append(Skip(rel_dir, f"class {label!r} is not in the class list"))
                    continue
                for file in walk_files(class_dir, recursive=False):
                    rel = file.relative_to(root).as_posix()
                    if not is_image(file):
                        skipped.append(Skip(rel, f"not an image file ({file.suffix or 'no extension'})"))
                        continue
                    classes.add(label)
                    items.append(
                        ImportItem(
                            name=rel,
                            media_type="image",
                            path=file,
                            annotations=[Annotation("class", label)],
                            split=split,
                        )
                    )
                for nested in _subdirs(class_dir):
                    skipped.append(Skip(nested.relative_to(root).as_posix(), "nested folder ignored"))
        if not items and not skipped:
            raise InputError(f"{root}: no class folders with images found")
        ordered = list(wanted) if wanted is not None else sorted(classes)
        return ImportBatch("imagefolder", items, ordered, task="image_classification", skipped=skipped)

    @staticmethod
    def write(records: list[SampleRecord], classes: list[str], out: Path, **options: Any) -> dict:
        """Copy each image into ``out/[<split>/]<class>/<file name>``.

        Multi-label samples go under their first label; unlabelled ones are dropped.
        """
        out = prepare_out(out)
        summary = Summary("imagefolder")
        names = UniqueNames()
        for split, group in split_groups(records, summary).items():
            for rec in group:
                if rec.media_type != "image":
                    summary.drop(rec, f"media type {rec.media_type!r} cannot be an image folder entry")
                    continue
                labels = rec.labels()
                if not labels:
                    summary.drop(rec, "no class label")
                    continue
                if len(labels) > 1:
                    summary.drop(rec, f"extra labels {labels[1:]} dropped (one folder per image)")
                others = [a.kind for a in rec.annotations if a.kind != "class"]
                if others:
                    summary.drop(rec, f"{len(others)} non-class annotations dropped")
                folder = labels[0].replace("/", "_").replace("\\", "_").strip(".") or "_"
                rel = names.take(Path(split or "") / folder / safe_relative(rec.name).name)
                copy_atomic(rec.path, out / rel)
                summary.items += 1
                summary.annotations += 1
        return summary.to_dict()
