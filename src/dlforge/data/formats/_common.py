"""Helpers shared by the format readers and writers.

Small, dependency-free pieces: which files are images, the displayed
(EXIF-oriented) size of an image read from its header, atomic writes,
walking a folder while ignoring OS clutter, and building writer summaries.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from dlforge.data.records import Annotation, SampleRecord
from dlforge.errors import InputError, NotFoundError

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
#: EXIF orientations 5-8 rotate the picture by 90 degrees, so displayed width and height swap.
_EXIF_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_CLUTTER = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"})


def is_image(path: Path) -> bool:
    """True when the file name has an image extension (the content is not checked)."""
    return path.suffix.lower() in IMAGE_EXTS


def is_clutter(path: Path) -> bool:
    """Hidden files and OS droppings that no dataset means to contain."""
    return any(part.startswith(".") or part in _CLUTTER for part in path.parts)


def _clutter_name(name: str) -> bool:
    return name.startswith(".") or name in _CLUTTER


def walk_relative(root: Path, recursive: bool = True) -> list[tuple[Path, str]]:
    """``(path, posix path relative to root)`` of the files under ``root``, sorted, clutter excluded.

    ``os.scandir`` with its cached file types, and no ``Path`` arithmetic per file: a
    folder of 100k images is listed in well under a second (``Path.glob`` plus
    ``relative_to`` took ~60 us a file). Symlinked folders are followed, like ``glob``.
    """
    found: list[tuple[str, ...]] = []

    def visit(folder: str, parts: tuple[str, ...], seen: frozenset[tuple[int, int]]) -> None:
        with os.scandir(folder) as entries:
            for entry in entries:
                if _clutter_name(entry.name):
                    continue
                if entry.is_dir():
                    if recursive:
                        st = entry.stat()
                        key = (st.st_dev, st.st_ino)
                        if key not in seen:  # a symlink loop would otherwise never end
                            visit(entry.path, (*parts, entry.name), seen | {key})
                elif entry.is_file():
                    found.append((*parts, entry.name))

    root = Path(root)
    st = root.stat()
    visit(str(root), (), frozenset({(st.st_dev, st.st_ino)}))
    # Sorting the part tuples gives the order sorted(Path) would.
    found.sort()
    folders: dict[tuple[str, ...], Path] = {}
    out = []
    for parts in found:
        # Joining a name to its (cached) folder's Path costs a third of parsing a whole path.
        folder = folders.get(parts[:-1])
        if folder is None:
            folder = folders.setdefault(parts[:-1], root.joinpath(*parts[:-1]))
        out.append((folder / parts[-1], "/".join(parts)))
    return out


def walk_files(root: Path, recursive: bool = True) -> Iterator[Path]:
    """Files under ``root`` in a stable (sorted) order, clutter excluded."""
    for path, _ in walk_relative(root, recursive):
        yield path


def split_from_name(name: str) -> str | None:
    """Map a folder or file-stem name such as ``valid`` or ``train2017`` to a split."""
    low = name.lower()
    if low in SPLIT_ALIASES:
        return SPLIT_ALIASES[low]
    for key in ("train", "val", "test", "dev"):
        # train2017, instances_val2017, dev_set: the split word at a word boundary.
        for token in low.replace("-", "_").replace(".", "_").split("_"):
            if token.rstrip("0123456789") == key:
                return SPLIT_ALIASES[key]
    return None


def image_size(path: Path) -> tuple[int, int]:
    """Displayed ``(width, height)`` of an image, read from its header.

    EXIF orientations 5-8 swap width and height, like
    ``PIL.ImageOps.exif_transpose`` would, without decoding the pixels.

    Raises:
        InputError: the file is not a readable image.
    """
    try:
        with Image.open(path) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(_EXIF_ORIENTATION_TAG)
            except Exception:  # a broken EXIF block must not hide a usable image
                orientation = None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from exc
    if orientation in _SWAPPING_ORIENTATIONS:
        return h, w
    return w, h


def require_root(root: Path | str) -> Path:
    """The import root as a Path, or NotFoundError when it does not exist."""
    root = Path(root)
    if not root.exists():
        raise NotFoundError(f"{root}: no such file or folder")
    return root


@contextlib.contextmanager
def atomic_path(dest: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; rename it onto ``dest`` on success."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(dest: Path, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(dest: Path, text: str) -> None:
    write_bytes_atomic(dest, text.encode("utf-8"))


def write_json_atomic(dest: Path, obj: Any) -> None:
    write_text_atomic(dest, json.dumps(obj, ensure_ascii=False, indent=1))


def copy_atomic(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def safe_relative(name: str) -> Path:
    """A record name turned into a relative path that cannot leave the output folder.

    Synthetic names (``reviews.csv#12``) and names with ``..`` or absolute
    prefixes keep only their harmless parts.
    """
    parts = [p for p in Path(name.replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
    parts = [p.replace(":", "_") for p in parts if not p.endswith(":")]
    return Path(*parts) if parts else Path("sample")


class UniqueNames:
    """Hands out file names, adding ``_1``, ``_2`` ... when a name is already taken."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, rel: Path | str) -> Path:
        rel = Path(rel)
        candidate, n = rel, 0
        while candidate.as_posix().lower() in self._taken:
            n += 1
            candidate = rel.with_name(f"{rel.stem}_{n}{rel.suffix}")
        self._taken.add(candidate.as_posix().lower())
        return candidate


class Summary:
    """Collects what a writer wrote and what it could not hold."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.items = 0
        self.annotations = 0
        self.dropped: list[str] = []

    def drop(self, record: SampleRecord | None, reason: str) -> None:
        self.dropped.append(f"{record.name}: {reason}" if record is not None else reason)

    def to_dict(self, **extra: Any) -> dict[str, Any]:
        return {
            "format": self.fmt,
            "items": self.items,
            "annotations": self.annotations,
            "dropped": self.dropped,
            **extra,
        }


def prepare_out(out: Path | str) -> Path:
    """Create the export folder; refuse a non-empty one so exports never mix."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: export target exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out}: export folder is not empty")
    out.mkdir(parents=True, exist_ok=True)
    return out


def split_groups(records: Iterable[SampleRecord], summary: Summary) -> dict[str | None, list[SampleRecord]]:
    """Group records by split for formats that keep splits as folders or files.

    When some records have a split and others do not, the unsplit ones go
    with ``train`` (a folder-per-split layout has no place for them) and the
    summary says so.
    """
    records = list(records)
    has_split = any(r.split for r in records)
    groups: dict[str | None, list[SampleRecord]] = {}
    moved = 0
    for r in records:
        split = r.split
        if has_split and not split:
            split, moved = "train", moved + 1
        groups.setdefault(split, []).append(r)
    if moved:
        summary.dropped.append(f"{moved} samples without a split were written to train")
    return groups


def box_of_points(points: list[list[float]]) -> list[float]:
    """Bounding box ``[x1, y1, x2, y2]`` of flat polygon rings."""
    xs = [v for ring in points for v in ring[0::2]]
    ys = [v for ring in points for v in ring[1::2]]
    return [min(xs), min(ys), max(xs), max(ys)]


def attrs_of(ann: Annotation) -> dict[str, Any]:
    return dict(ann.data.get("attrs") or {})


def to_number(text: Any, what: str) -> float:
    """Parse a coordinate; ValueError names ``what`` when it is not a finite number."""
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise ValueError(f"{what} {text!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{what} {text!r} is not a finite number")
    return v


def compact_number(v: float) -> int | float:
    """Write integral coordinates as ints so files stay readable."""
    return int(v) if float(v).is_integer() else round(float(v), 6)
