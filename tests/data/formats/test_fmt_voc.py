"""Pascal VOC: standard and flat layouts, splits, segmentation PNGs, bad XML, round trip."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dlforge.data.formats.voc import VocFormat, voc_palette
from dlforge.data.records import Annotation, SampleRecord
from dlforge.errors import InputError


def test_reads_boxes_splits_and_segmaps(tmp_path: Path, fmtgen) -> None:
    truth = fmtgen.voc_dataset(tmp_path)
    batch = VocFormat.read(tmp_path)
    assert not batch.skipped
    assert batch.classes == ["car", "person"]
    by_name = {Path(it.name).name: it for it in batch.items}
    assert set(by_name) == set(truth)
    for name, t in truth.items():
        item = by_name[name]
        assert item.split == t["split"]
        boxes = [a for a in item.annotations if a.kind == "box"]
        expected = [Annotation("box", lbl, {"bbox": b, "attrs": attrs}) for _, lbl, b, attrs in t["boxes"]]
        fmtgen.match_annotations(expected, boxes, tol=0, attrs=("difficult", "truncated"))
        segmaps = [a for a in item.annotations if a.kind == "segmap"]
        if t["seg"] is None:
            assert not segmaps
            continue
        (seg,) = segmaps
        assert seg.label is None and seg.data["classes"]["15"] == "person"
        blob = item.extra_blobs[seg.data["blob"]]
        with Image.open(blob if isinstance(blob, Path) else io.BytesIO(blob)) as im:
            assert (np.asarray(im) == t["seg"]).all()


def test_colour_segmentation_png_is_mapped_to_indices(tmp_path: Path, fmtgen) -> None:
    truth = fmtgen.voc_dataset(tmp_path, n=1)
    png = tmp_path / "SegmentationClass" / "2007_000000.png"
    with Image.open(png) as im:
        im.convert("RGB").save(png)
    item = VocFormat.read(tmp_path).items[0]
    (seg,) = [a for a in item.annotations if a.kind == "segmap"]
    with Image.open(io.BytesIO(item.extra_blobs[seg.data["blob"]])) as im:
        assert im.mode == "L" and (np.asarray(im) == truth["2007_000000.jpg"]["seg"]).all()


def test_flat_layout_like_kangaroo(tmp_path: Path, fmtgen) -> None:
    truth = fmtgen.voc_dataset(tmp_path, flat=True)
    assert VocFormat.detect(tmp_path)
    batch = VocFormat.read(tmp_path)
    assert len(batch.items) == len(truth) and all(it.name.startswith("images/") for it in batch.items)


def test_bad_xml_and_boxes_are_skipped(tmp_path: Path, fmtgen) -> None:
    fmtgen.voc_dataset(tmp_path, n=3, segmentation=False)
    ann = tmp_path / "Annotations"
    (ann / "2007_000001.xml").write_text("<annotation><filename>x.jpg</file")
    xml = (ann / "2007_000002.xml").read_text()
    xml = xml.replace("<xmin>", "<xmin>abc", 1)
    (ann / "2007_000002.xml").write_text(xml)
    (ann / "orphan.xml").write_text("<annotation><filename>nope.jpg</filename></annotation>")
    batch = VocFormat.read(tmp_path)
    reasons = {s.source: s.reason for s in batch.skipped}
    assert "malformed XML" in reasons["Annotations/2007_000001.xml"]
    assert "bndbox xmin 'abc" in reasons["Annotations/2007_000002.xml"]
    assert "not found" in reasons["Annotations/orphan.xml"]
    assert len(batch.items) == 2  # the image with a bad object keeps its item


def test_class_list_option_and_missing_source(tmp_path: Path, fmtgen) -> None:
    fmtgen.voc_dataset(tmp_path, n=4, segmentation=False)
    batch = VocFormat.read(tmp_path, classes=["person"])
    assert batch.classes == ["person"]
    assert all(a.label == "person" for it in batch.items for a in it.annotations)
    assert any("'car' is not in the class list" in s.reason for s in batch.skipped)
    with pytest.raises(InputError, match="no VOC annotation"):
        VocFormat.read(tmp_path / "JPEGImages")


def test_writer_keeps_segmaps_with_resolver(tmp_path: Path, fmtgen) -> None:
    fmtgen.voc_dataset(tmp_path / "src", n=2)
    batch = VocFormat.read(tmp_path / "src")
    blobs = {key: blob for it in batch.items for key, blob in it.extra_blobs.items()}
    recs = [
        SampleRecord(i, f"{i:064x}", "image", it.name, it.path, split=it.split, annotations=it.annotations)
        for i, it in enumerate(batch.items)
    ]
    summary = VocFormat.write(recs, batch.classes, tmp_path / "out", resolve_blob=lambda k: blobs[k])
    assert not summary["dropped"]
    again = VocFormat.read(tmp_path / "out")
    segs = [a for it in again.items for a in it.annotations if a.kind == "segmap"]
    assert len(segs) == 1 and segs[0].data["classes"]["7"] == "car"
    assert (tmp_path / "out" / "labelmap.txt").read_text().splitlines()[1].startswith("background:0,0,0")
    assert voc_palette()[15] == (192, 128, 128)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_roundtrip_boxes_attrs_splits(data, fmtgen) -> None:
    samples = data.draw(fmtgen.image_samples(kinds=("box",)))
    for s in samples:
        for a in s.annotations:
            a.data["attrs"] = {"difficult": data.draw(st.integers(0, 1)), "truncated": data.draw(st.integers(0, 1))}
    with tempfile.TemporaryDirectory() as tmp:
        recs = fmtgen.to_records(samples, Path(tmp) / "blobs")
        summary = VocFormat.write(recs, fmtgen.classes, Path(tmp) / "out")
        assert summary["items"] == len(recs) and not summary["dropped"]
        assert VocFormat.detect(Path(tmp) / "out")
        batch = VocFormat.read(Path(tmp) / "out")
        got = {Path(it.name).stem: it for it in batch.items}
        for rec in recs:
            item = got[Path(rec.name).stem]
            assert item.split == rec.split
            fmtgen.match_annotations(rec.annotations, item.annotations, tol=1e-3, attrs=("difficult", "truncated"))
