"""Format detection picks the right format for each generated fixture."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from dlforge.data.formats import detect_format, format_names, get_format
from dlforge.errors import InputError


def _build(kind: str, root: Path, gen) -> Path:
    if kind == "imagefolder":
        gen.digits_imagefolder(root, per_class=1)
    elif kind == "imagefolder-splits":
        gen.digits_imagefolder(root, per_class=4, splits=True)
    elif kind == "coco":
        gen.coco_dataset(root, n_images=2)
    elif kind == "coco-file":
        gen.coco_dataset(root, n_images=2)
        return root / "annotations" / "instances_default.json"
    elif kind == "voc":
        gen.voc_dataset(root, n=2)
    elif kind == "voc-flat":
        gen.voc_dataset(root, n=2, flat=True)
    elif kind == "yolo":
        gen.yolo_dataset(root)
    elif kind == "labelstudio":
        gen.labelstudio_export(root)
    elif kind == "csv":
        gen.text_csv(root / "r.csv", [("1", "good")])
    elif kind == "csv-file":
        return gen.text_csv(root / "r.csv", [("1", "good")])
    elif kind == "csv-gz":
        (root / "r.csv.gz").write_bytes(gzip.compress(b"text,label\nhi,1\n"))
    elif kind == "jsonl":
        (root / "d.jsonl").write_text('{"text": "hi", "label": "a"}\n')
    elif kind == "unlabelled-images":
        gen.make_image(root / "a.png", 4, 4)
        gen.make_image(root / "sub" / "b.png", 4, 4)
    elif kind == "unlabelled-text":
        (root / "a.txt").write_text("hello")
    return root


CASES = {
    "imagefolder": "imagefolder",
    "imagefolder-splits": "imagefolder",
    "coco": "coco",
    "coco-file": "coco",
    "voc": "voc",
    "voc-flat": "voc",
    "yolo": "yolo",
    "labelstudio": "labelstudio",
    "csv": "csv",
    "csv-file": "csv",
    "csv-gz": "csv",
    "jsonl": "jsonl",
    "unlabelled-images": "unlabelled",
    "unlabelled-text": "unlabelled",
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_detects_fixture(tmp_path: Path, fmtgen, kind: str) -> None:
    root = _build(kind, tmp_path, fmtgen)
    assert detect_format(root) == CASES[kind]
    batch = get_format(CASES[kind]).read(root)
    assert batch.items and batch.format == CASES[kind]


def test_registry_and_nothing_to_detect(tmp_path: Path) -> None:
    assert format_names() == ["coco", "csv", "imagefolder", "jsonl", "labelstudio", "unlabelled", "voc", "yolo"]
    with pytest.raises(InputError, match="could not detect a dataset format"):
        detect_format(tmp_path)
    with pytest.raises(InputError, match="unknown format 'nope'"):
        get_format("nope")
