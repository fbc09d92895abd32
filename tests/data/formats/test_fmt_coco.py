"""COCO: boxes, polygons, compressed/uncompressed RLE, bad input, pycocotools-valid output."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from dlforge.data.formats.coco import CocoFormat, rle_counts_from_mask, rle_to_uncompressed
from dlforge.errors import InputError


def test_reads_all_annotation_kinds(tmp_path: Path, fmtgen) -> None:
    truth = fmtgen.coco_dataset(tmp_path)
    batch = CocoFormat.read(tmp_path)
    assert batch.classes == ["cat", "dog", "bird"]  # category order kept
    assert not batch.skipped
    by_name = {Path(it.name).name: it for it in batch.items}
    assert set(by_name) == set(truth)
    assert by_name["img5.png"].annotations == []  # images without annotations are kept
    for name, expected in truth.items():
        got = by_name[name].annotations
        assert sorted((a.kind, a.label) for a in got) == sorted((k, lbl) for k, lbl, _ in expected)
        for kind, label, value in expected:
            match = [a for a in got if a.kind == kind and a.label == label]
            if kind == "box":
                assert any(np.allclose(a.data["bbox"], value, atol=1e-6) for a in match)
            elif kind == "polygon":
                assert any(np.allclose(a.data["points"][0], value[0]) for a in match)
                assert all("bbox" in a.data for a in match)
            else:
                assert any(a.data["rle"]["counts"] == value for a in match)
                assert all(a.data["attrs"]["iscrowd"] == 1 for a in match)


def test_rle_helpers_agree_with_pycocotools() -> None:
    rng = np.random.default_rng(0)
    m = (rng.random((13, 7)) > 0.5).astype(np.uint8)
    compressed = mask_util.encode(np.asfortranarray(m))
    un = rle_to_uncompressed({"size": [13, 7], "counts": compressed["counts"].decode()}, 13, 7)
    assert un["counts"] == rle_counts_from_mask(m)
    back = mask_util.decode(mask_util.frPyObjects(un, 13, 7))
    assert (back == m).all()
    with pytest.raises(ValueError, match="sum to"):
        rle_to_uncompressed({"size": [2, 2], "counts": [1, 1]}, 2, 2)


def test_bad_annotations_are_skipped_with_reasons(tmp_path: Path, fmtgen) -> None:
    fmtgen.coco_dataset(tmp_path, n_images=3)
    path = tmp_path / "annotations" / "instances_default.json"
    doc = json.loads(path.read_text())
    doc["images"].append({"id": 999, "file_name": "missing.png", "width": 5, "height": 5})
    doc["annotations"] += [
        {"id": 501, "image_id": 100, "category_id": 42, "bbox": [1, 1, 2, 2]},
        {"id": 502, "image_id": 100, "category_id": 3, "bbox": [1, "x", 2, 2]},
        {"id": 503, "image_id": 12345, "category_id": 3, "bbox": [1, 1, 2, 2]},
    ]
    path.write_text(json.dumps(doc))
    batch = CocoFormat.read(tmp_path)
    reasons = {s.source: s.reason for s in batch.skipped}
    assert "image file not found" in reasons["instances_default.json: missing.png"]
    assert "category_id 42" in reasons["instances_default.json: annotation 501"]
    assert "'x' is not a number" in reasons["instances_default.json: annotation 502"]
    assert "image_id 12345" in reasons["instances_default.json: annotation 503"]
    assert len(batch.items) == 3


def test_missing_or_malformed_source(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no COCO annotation JSON"):
        CocoFormat.read(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InputError, match="malformed JSON"):
        CocoFormat.read(tmp_path, annotation_file="bad.json")
    assert not CocoFormat.detect(tmp_path)


def test_split_from_file_names(tmp_path: Path, fmtgen) -> None:
    fmtgen.coco_dataset(tmp_path, n_images=4)
    doc = json.loads((tmp_path / "annotations" / "instances_default.json").read_text())
    (tmp_path / "annotations" / "instances_default.json").unlink()
    for split, ids in (("train2017", {100, 101, 102}), ("val2017", {103})):
        part = dict(doc, images=[im for im in doc["images"] if im["id"] in ids])
        part["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(part))
    batch = CocoFormat.read(tmp_path)
    assert sorted((Path(it.name).name, it.split) for it in batch.items) == [
        ("img0.png", "train"),
        ("img1.png", "train"),
        ("img2.png", "train"),
        ("img3.png", "val"),
    ]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_roundtrip_and_pycocotools_loads(data, fmtgen) -> None:
    samples = data.draw(fmtgen.image_samples(kinds=("box", "polygon", "mask"), rings=2))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        recs = fmtgen.to_records(samples, Path(tmp) / "blobs")
        summary = CocoFormat.write(recs, fmtgen.classes, out)
        assert summary["items"] == len(recs) and not summary["dropped"]
        assert summary["annotations"] == sum(len(r.annotations) for r in recs)
        for f in summary["files"]:
            coco = COCO(str(out / f))
            for ann in coco.loadAnns(coco.getAnnIds()):
                if ann["segmentation"]:
                    assert coco.annToMask(ann).shape == (
                        coco.imgs[ann["image_id"]]["height"],
                        coco.imgs[ann["image_id"]]["width"],
                    )
        assert CocoFormat.detect(out)
        batch = CocoFormat.read(out)
        assert batch.classes == fmtgen.classes
        got = {Path(it.name).name: it for it in batch.items}
        for rec in recs:
            item = got[Path(rec.name).name]
            assert item.split == rec.split
            fmtgen.match_annotations(rec.annotations, item.annotations, tol=1e-3, attrs=("iscrowd",))


def test_big_files_are_sniffed_not_parsed_for_detection(tmp_path: Path, fmtgen, monkeypatch) -> None:
    from dlforge.data.formats import coco, labelstudio

    fmtgen.coco_dataset(tmp_path / "c", n_images=2)
    fmtgen.labelstudio_export(tmp_path / "l")
    monkeypatch.setattr(coco, "_PARSE_LIMIT", 10)
    monkeypatch.setattr(coco, "_SNIFF_BYTES", 200)
    assert CocoFormat.detect(tmp_path / "c") and not CocoFormat.detect(tmp_path / "l")
    assert len(CocoFormat.read(tmp_path / "c").items) == 2
    assert labelstudio.LabelStudioFormat.detect(tmp_path / "l")
