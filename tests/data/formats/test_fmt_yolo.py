"""YOLO: data.yaml names (list or dict), splits, polygons, EXIF orientation, bad lines, round trip."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlforge.data.formats.yolo import YoloFormat, label_path
from dlforge.data.records import Annotation
from dlforge.errors import InputError


@pytest.mark.parametrize("names_as_dict", [False, True])
def test_reads_boxes_polygons_and_splits(tmp_path: Path, fmtgen, names_as_dict: bool) -> None:
    truth = fmtgen.yolo_dataset(tmp_path, names_as_dict=names_as_dict)
    batch = YoloFormat.read(tmp_path)
    assert batch.classes == ["ant", "bee", "wasp"] and not batch.skipped
    by_name = {it.name: it for it in batch.items}
    assert set(by_name) == set(truth)
    for name, (split, anns) in truth.items():
        item = by_name[name]
        assert item.split == split
        w, h = item.meta["width"], item.meta["height"]
        expected = [Annotation(kind, lbl, {"bbox": c} if kind == "box" else {"points": c}) for kind, lbl, c in anns]
        fmtgen.match_annotations(expected, item.annotations, tol=1e-6 * max(w, h) * 2)


def test_exif_rotated_jpeg_uses_displayed_size(tmp_path: Path, fmtgen) -> None:
    # Stored 40 wide x 20 high, orientation 6 (rotate 90): displayed 20 x 40.
    fmtgen.make_image(tmp_path / "images" / "r.jpg", 40, 20, orientation=6)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "r.txt").write_text("0 0.5 0.5 0.5 0.25\n")
    (tmp_path / "data.yaml").write_text("names: [thing]\n")
    (item,) = YoloFormat.read(tmp_path).items
    assert (item.meta["width"], item.meta["height"]) == (20, 40)
    assert item.annotations[0].data["bbox"] == pytest.approx([5.0, 15.0, 15.0, 25.0])


def test_bad_lines_and_orphan_labels_are_skipped(tmp_path: Path, fmtgen) -> None:
    fmtgen.yolo_dataset(tmp_path)
    lbl = tmp_path / "labels" / "train" / "train_0.txt"
    lbl.write_text(lbl.read_text() + "7 0.5 0.5 0.1 0.1\n0 0.5 abc 0.1 0.1\n0 0.5 0.5\n")
    (tmp_path / "labels" / "train" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    batch = YoloFormat.read(tmp_path)
    reasons = {s.source: s.reason for s in batch.skipped}
    assert "class 7 is not in names" in reasons["labels/train/train_0.txt:3"]
    assert "'abc' is not a number" in reasons["labels/train/train_0.txt:4"]
    assert "expected 5" in reasons["labels/train/train_0.txt:5"]
    assert "no matching image" in reasons["labels/train/ghost.txt"]
    assert len(batch.items) == 6


def test_malformed_yaml_is_a_source_error(tmp_path: Path, fmtgen) -> None:
    fmtgen.yolo_dataset(tmp_path)
    (tmp_path / "data.yaml").write_text("names: [a, b\ntrain: images/train\n")
    with pytest.raises(InputError, match="data.yaml: malformed YAML"):
        YoloFormat.read(tmp_path)


def test_label_path_rule() -> None:
    assert label_path(Path("/d/images/train/a.jpg")) == Path("/d/labels/train/a.txt")
    assert label_path(Path("/d/train/images/a.png")) == Path("/d/train/labels/a.txt")
    assert label_path(Path("/d/pics/a.png")) == Path("/d/pics/a.txt")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_roundtrip_within_rounding(data, fmtgen) -> None:
    samples = data.draw(fmtgen.image_samples(kinds=("box", "polygon")))
    with tempfile.TemporaryDirectory() as tmp:
        recs = fmtgen.to_records(samples, Path(tmp) / "blobs")
        summary = YoloFormat.write(recs, fmtgen.classes, Path(tmp) / "out")
        assert summary["items"] == len(recs) and not summary["dropped"]
        assert YoloFormat.detect(Path(tmp) / "out")
        batch = YoloFormat.read(Path(tmp) / "out")
        assert batch.classes == fmtgen.classes
        got = {Path(it.name).stem: it for it in batch.items}
        for rec, s in zip(recs, samples):
            item = got[Path(rec.name).stem]
            assert item.split == rec.split
            # 6 normalised decimals: half a unit of 1e-6 of the side, twice (centre and size)
            fmtgen.match_annotations(rec.annotations, item.annotations, tol=1e-6 * max(s.width, s.height) + 1e-9)


def test_roboflow_layout_and_classes_txt(tmp_path: Path, fmtgen) -> None:
    rf = tmp_path / "rf"
    for split in ("train", "valid"):
        fmtgen.make_image(rf / split / "images" / f"{split}.png", 10, 10)
        (rf / split / "labels").mkdir(parents=True)
        (rf / split / "labels" / f"{split}.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (rf / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnc: 2\nnames: ['a', 'b']\n")
    batch = YoloFormat.read(rf)
    assert sorted((it.name, it.split) for it in batch.items) == [
        ("train/images/train.png", "train"),
        ("valid/images/valid.png", "val"),
    ]
    assert batch.items[0].annotations[0].label == "b"
    darknet = tmp_path / "dk"
    fmtgen.make_image(darknet / "images" / "x.png", 10, 10)
    (darknet / "labels").mkdir()
    (darknet / "labels" / "x.txt").write_text("0 0.5 0.5 1 1\n")
    (darknet / "classes.txt").write_text("zebra\n")
    assert YoloFormat.detect(darknet)
    (item,) = YoloFormat.read(darknet).items
    assert item.annotations[0].label == "zebra" and item.annotations[0].data["bbox"] == [0, 0, 10, 10]
