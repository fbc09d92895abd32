"""Unlabelled data: a folder of images, or of ``.txt`` files (one text sample per file).

The generic fallback of detection (lowest priority): everything is imported
without annotations, ready for labelling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlforge.data.formats import register_format
from dlforge.data.formats._common import (
    Summary,
    UniqueNames,
    copy_atomic,
    is_image,
    prepare_out,
    require_root,
    safe_relative,
    walk_files,
    walk_relative,
    write_bytes_atomic,
)
from dlforge.data.formats.text import decode
from dlforge.data.records import ImportBatch, ImportItem, SampleRecord, Skip
from dlforge.errors import InputError


@register_format
class UnlabelledFormat:
    """Images or ``.txt`` files in a folder (recursively), with no labels."""

    name = "unlabelled"
    priority = 1000

    @staticmethod
    def detect(root: Path) -> bool:
        root = Path(root)
        if not root.is_dir():
            return False
        return any(is_image(p) or p.suffix.lower() == ".txt" for p in walk_files(root))

    @staticmethod
    def read(root: Path, **options: Any) -> ImportBatch:
        """Read every image and ``.txt`` file below ``root``.

        Text files are decoded (UTF-8, UTF-8 with BOM, GB18030) and stored as UTF-8.
        Other files are skipped with a reason.
        """
        root = require_root(root)
        if not root.is_dir():
            raise InputError(f"{root}: unlabelled import needs a folder")
        items: list[ImportItem] = []
        skipped: list[Skip] = []
        for path, rel in walk_relative(root):
            if is_image(path):
                items.append(ImportItem(rel, "image", path=path))
            elif path.suffix.lower() == ".txt":
                try:
                    text, enc = decode(path.read_bytes(), rel)
                except InputError as exc:
                    skipped.append(Skip(rel, str(exc).split(": ", 1)[-1]))
                    continue
                text = text.replace("\ufeff", "").strip()
                if not text:
                    skipped.append(Skip(rel, "empty text file"))
                    continue
                items.append(ImportItem(rel, "text", content=text.encode("utf-8"), meta={"encoding": enc}))
            else:
                skipped.append(Skip(rel, f"not an image or .txt file ({path.suffix or 'no extension'})"))
        if not items:
            raise InputError(f"{root}: no images or .txt files found")
        media = {i.media_type for i in items}
        task = None if len(media) > 1 else ("text_classification" if media == {"text"} else None)
        return ImportBatch("unlabelled", items, [], task=task, skipped=skipped)

    @staticmethod
    def write(records: list[SampleRecord], classes: list[str], out: Path, **options: Any) -> dict:
        """Copy each sample to ``out/<its name>`` (text samples as ``.txt``); annotations are dropped."""
        out = prepare_out(out)
        summary = Summary("unlabelled")
        names = UniqueNames()
        for rec in records:
            rel = safe_relative(rec.name)
            if rec.media_type == "text" and rel.suffix.lower() != ".txt":
                rel = rel.with_name(rel.name.replace("#", "_") + ".txt")
            elif rec.media_type not in ("image", "text"):
                summary.drop(rec, f"media type {rec.media_type!r} is not a file sample")
                continue
            rel = names.take(rel)
            if rec.media_type == "text":
                write_bytes_atomic(out / rel, rec.path.read_bytes())
            else:
                copy_atomic(rec.path, out / rel)
            if rec.annotations:
                summary.drop(rec, f"{len(rec.annotations)} annotations dropped (unlabelled export)")
            summary.items += 1
        return summary.to_dict()
