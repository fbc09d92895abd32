"""Real data from ../shared/data (skipped when absent): kangaroo VOC, waimai and shopping CSVs."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from dlforge.data.formats import detect_format
from dlforge.data.formats.coco import CocoFormat
from dlforge.data.formats.text import CsvFormat
from dlforge.data.formats.voc import VocFormat
from dlforge.data.formats.yolo import YoloFormat
from dlforge.data.records import SampleRecord

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
pytestmark = pytest.mark.realdata


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_kangaroo_voc_reads_and_converts(tmp_path: Path, fmtgen) -> None:
    root = _need(DATA / "kangaroo-voc")
    assert detect_format(root) == "voc"
    batch = VocFormat.read(root)
    n_xml = len(list((root / "annots").glob("*.xml")))
    assert len(batch.items) + len(batch.skipped) == n_xml and len(batch.items) >= 150
    assert batch.classes == ["kangaroo"] and batch.task == "object_detection"
    for it in batch.items:
        assert it.annotations, it.name
        for a in it.annotations:
            x1, y1, x2, y2 = a.data["bbox"]
            assert 0 <= x1 < x2 <= it.meta["width"] + 1 and 0 <= y1 < y2 <= it.meta["height"] + 1
    recs = [
        SampleRecord(
            i, f"{i:064x}", "image", it.name, it.path, annotations=it.annotations, split=("train", "val")[i % 2]
        )
        for i, it in enumerate(batch.items)
    ]
    summary = CocoFormat.write(recs, batch.classes, tmp_path / "coco")
    assert summary["items"] == len(recs) and not summary["dropped"]
    coco = COCO(str(tmp_path / "coco" / "annotations" / "instances_train.json"))
    assert len(coco.imgs) == (len(recs) + 1) // 2
    back = {Path(it.name).name: it for it in CocoFormat.read(tmp_path / "coco").items}
    yolo_summary = YoloFormat.write(recs, batch.classes, tmp_path / "yolo")
    assert yolo_summary["items"] == len(recs)
    yolo_back = {Path(it.name).name: it for it in YoloFormat.read(tmp_path / "yolo").items}
    for rec in recs:
        name = Path(rec.name).name
        fmtgen.match_annotations(rec.annotations, back[name].annotations, tol=1e-3)
        assert back[name].split == rec.split == yolo_back[name].split
        fmtgen.match_annotations(rec.annotations, yolo_back[name].annotations, tol=1e-2)


def test_waimai_csv(fmtgen) -> None:
    path = _need(DATA / "waimai-10k" / "waimai_10k.csv")
    batch = CsvFormat.read(path)
    with path.open(encoding="utf-8", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["review"].strip()]
    assert len(batch.items) == len(rows) > 11000
    assert batch.classes == ["0", "1"]
    positives = sum(it.annotations[0].label == "1" for it in batch.items)
    assert positives == sum(r["label"] == "1" for r in rows) and 3500 < positives < 4500
    assert batch.items[0].meta["encoding"] == "utf-8" and batch.items[0].name == "waimai_10k.csv#2"


def test_online_shopping_gz_with_stray_boms() -> None:
    path = _need(DATA / "online-shopping-10cats" / "online_shopping_10_cats.csv.gz")
    batch = CsvFormat.read(path, label_column="cat")
    assert len(batch.classes) == 10 and len(batch.items) > 60000
    assert not any(it.content.startswith("\ufeff".encode()) for it in batch.items)
    assert all(s.reason.endswith("empty text") for s in batch.skipped)
