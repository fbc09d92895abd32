"""Label Studio: upload-style paths, choices/rectangles/polygons, text tasks, authors, round trip."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlforge.data.formats.labelstudio import LabelStudioFormat
from dlforge.errors import InputError


def test_reads_export(tmp_path: Path, fmtgen) -> None:
    truth = fmtgen.labelstudio_export(tmp_path)
    batch = LabelStudioFormat.read(tmp_path)
    assert not batch.skipped
    images = {it.name: it for it in batch.items if it.media_type == "image"}
    assert set(images) == set(truth)
    for name, t in truth.items():
        anns = images[name].annotations
        assert sorted(a.label for a in anns if a.kind == "class") == sorted(t["classes"])
        (box,) = [a for a in anns if a.kind == "box"]
        assert box.data["bbox"] == pytest.approx(t["box"], abs=1e-9)
        (poly,) = [a for a in anns if a.kind == "polygon"]
        assert poly.data["points"][0] == pytest.approx(t["polygon"], abs=1e-9)
        assert {a.author for a in anns} == {t["author"]}
    (text,) = [it for it in batch.items if it.media_type == "text"]
    assert text.content == b"great food, fast delivery" and text.name == "export.json#99"
    assert text.annotations[0].label == "positive" and text.annotations[0].author == "labelstudio-user-3"
    assert batch.classes == sorted({"outdoor", "day", "tree", "lake", "positive"})


def test_bad_tasks_are_skipped(tmp_path: Path, fmtgen) -> None:
    fmtgen.labelstudio_export(tmp_path)
    tasks = json.loads((tmp_path / "export.json").read_text())
    tasks.append({"id": 50, "data": {"image": "/data/upload/9/deadbeef-nothere.jpg"}, "annotations": []})
    tasks[0]["annotations"][0]["result"].append(
        {"type": "rectanglelabels", "value": {"x": "left", "y": 1, "width": 1, "height": 1, "rectanglelabels": ["t"]}}
    )
    tasks[1]["annotations"][0]["result"].append({"type": "labels", "value": {"start": 0, "end": 2, "labels": ["x"]}})
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    batch = LabelStudioFormat.read(tmp_path)
    reasons = {s.source: s.reason for s in batch.skipped}
    assert "not found" in reasons["export.json#50"]
    assert "'left' is not a number" in reasons["export.json#1"]
    assert "not supported" in reasons["export.json#2"]
    assert len(batch.items) == 5


def test_not_an_export(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"images": []}')
    assert not LabelStudioFormat.detect(tmp_path)
    with pytest.raises(InputError, match="no Label Studio JSON export"):
        LabelStudioFormat.read(tmp_path)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_roundtrip_images_and_text(data, fmtgen) -> None:
    samples = data.draw(fmtgen.image_samples(kinds=("class", "box", "polygon")))
    samples += data.draw(fmtgen.text_samples())
    for s in samples:
        for a in s.annotations:
            a.author = data.draw(st.sampled_from(["import", "ann@example.com", "b@x.org"]))
    with tempfile.TemporaryDirectory() as tmp:
        recs = fmtgen.to_records(samples, Path(tmp) / "blobs")
        summary = LabelStudioFormat.write(recs, fmtgen.classes, Path(tmp) / "out")
        assert summary["items"] == len(recs) and not summary["dropped"]
        assert LabelStudioFormat.detect(Path(tmp) / "out")
        batch = LabelStudioFormat.read(Path(tmp) / "out")
        assert len(batch.items) == len(recs)
        for rec, item in zip(recs, batch.items):  # tasks keep the record order
            assert item.split == rec.split and item.media_type == rec.media_type
            if rec.media_type == "text":
                assert item.content == rec.path.read_bytes()
            else:
                assert Path(item.name).name == Path(rec.name).name
            fmtgen.match_annotations(rec.annotations, item.annotations, tol=1e-3, author=True)
