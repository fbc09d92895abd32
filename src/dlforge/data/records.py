"""Plain records that move between formats, the store and the tasks.

These are the data contract of the data service: format readers produce
:class:`ImportBatch`, the store turns it into a dataset version, and a version
hands :class:`SampleRecord` objects to cleaning, splitting, export, reports and
training. Geometry is always in **absolute pixels of the image as displayed**
(EXIF orientation applied), boxes as ``[x1, y1, x2, y2]``.

Annotation kinds and their ``data``:

- ``"class"``: ``label`` is the class name, ``data`` is ``{}``. Multi-label
  samples carry one ``class`` annotation per label.
- ``"box"``: ``data = {"bbox": [x1, y1, x2, y2]}``.
- ``"polygon"``: ``data = {"points": [[x1, y1, x2, y2, ...], ...]}`` (one or
  more rings, flat coordinate lists).
- ``"mask"``: an instance mask, ``data = {"rle": {"size": [h, w], "counts": [...]}}``
  in COCO's *uncompressed* RLE (column-major run lengths, starting with zeros).
- ``"segmap"``: a semantic label map for the whole image, ``label`` is None,
  ``data = {"blob": sha256_of_png, "classes": {"0": "background", "1": "cat", ...}}``;
  the PNG is single-channel (mode L or P) holding class indices, 255 = ignore.

Every annotation may also carry ``data["attrs"]`` (format extras such as
``iscrowd``, ``difficult``, ``truncated``) which writers that can hold them keep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ANNOTATION_KINDS = ("class", "box", "polygon", "mask", "segmap")
REVIEW_STATES = ("unreviewed", "accepted", "rejected", "needs_review")
MEDIA_TYPES = ("image", "text", "row")
SPLITS = ("train", "val", "test")


@dataclass
class Annotation:
    """One annotation on one sample."""

    kind: str
    label: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    author: str = "import"
    review: str = "unreviewed"
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": self.label,
            "data": self.data,
            "author": self.author,
            "review": self.review,
            "score": self.score,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Annotation:
        return cls(
            kind=d["kind"],
            label=d.get("label"),
            data=dict(d.get("data") or {}),
            author=d.get("author", "import"),
            review=d.get("review", "unreviewed"),
            score=d.get("score"),
        )


@dataclass
class ImportItem:
    """One sample as a format reader found it, before it is stored.

    Exactly one of ``path`` (a file to copy into the blob store) or ``content``
    (bytes, e.g. the UTF-8 text of a CSV row) is set. ``name`` is the sample's
    path relative to the import root (or a synthetic name such as
    ``"reviews.csv#12"``); writers use it to name exported files.
    """

    name: str
    media_type: str
    path: Path | None = None
    content: bytes | None = None
    annotations: list[Annotation] = field(default_factory=list)
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    extra_blobs: dict[str, Path | bytes] = field(default_factory=dict)
    """Side files referenced by annotations (e.g. a VOC segmentation PNG): key is a
    placeholder the reader put in ``annotation.data["blob"]``; the store replaces it
    with the stored file's sha256."""


@dataclass
class Skip:
    """An item a reader or a batch job left out, and why."""

    source: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "reason": self.reason}


@dataclass
class ImportBatch:
    """What a format reader returns."""

    format: str
    items: list[ImportItem]
    classes: list[str]
    task: str | None = None
    skipped: list[Skip] = field(default_factory=list)


@dataclass
class SampleRecord:
    """One sample of a stored dataset version, as handed to jobs and tasks."""

    sample_id: int
    sha256: str
    media_type: str
    name: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)
    split: str | None = None
    annotations: list[Annotation] = field(default_factory=list)
    excluded: str | None = None

    def labels(self) -> list[str]:
        """Class labels (``class`` annotations) in order."""
        return [a.label for a in self.annotations if a.kind == "class" and a.label is not None]

    def read_text(self) -> str:
        return self.path.read_bytes().decode("utf-8")
