"""imagefolder: class folders (sklearn digits), split folders, writer round trip."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlforge.data.formats import detect_format, get_format
from dlforge.data.formats.imagefolder import ImageFolderFormat
from dlforge.data.records import Annotation


def test_reads_digit_class_folders(tmp_path: Path, fmtgen) -> None:
    truth = fmtgen.digits_imagefolder(tmp_path, per_class=3)
    (tmp_path / "3" / "notes.txt").write_text("not an image")
    batch = ImageFolderFormat.read(tmp_path)
    assert batch.classes == [str(d) for d in range(10)]
    assert batch.task == "image_classification"
    got = {it.name: (it.annotations[0].label, it.split) for it in batch.items}
    assert got == truth
    assert [s.source for s in batch.skipped] == ["3/notes.txt"]
    assert "not an image" in batch.skipped[0].reason


def test_split_folders_set_splits(tmp_path: Path, fmtgen) -> None:
    truth = fmtgen.digits_imagefolder(tmp_path, per_class=4, splits=True)
    batch = ImageFolderFormat.read(tmp_path)
    assert {it.name: (it.annotations[0].label, it.split) for it in batch.items} == truth
    assert {it.split for it in batch.items} == {"train", "val", "test"}
    assert detect_format(tmp_path) == "imagefolder"


def test_class_list_option_skips_other_folders(tmp_path: Path, fmtgen) -> None:
    fmtgen.digits_imagefolder(tmp_path, per_class=2)
    batch = ImageFolderFormat.read(tmp_path, classes=["1", "7"])
    assert batch.classes == ["1", "7"]
    assert {it.annotations[0].label for it in batch.items} == {"1", "7"}
    assert any("class '0' is not in the class list" in s.reason for s in batch.skipped)


def test_writer_drops_what_it_cannot_hold(tmp_path: Path, fmtgen) -> None:
    S = fmtgen.Sample
    samples = [
        S("a.png", 8, 8, None, [Annotation("class", "x"), Annotation("class", "y")]),
        S("b.png", 8, 8, None, []),
    ]
    recs = fmtgen.to_records(samples, tmp_path / "blobs")
    summary = get_format("imagefolder").write(recs, ["x", "y"], tmp_path / "out")
    assert summary["items"] == 1 and (tmp_path / "out" / "x" / "a.png").is_file()
    assert len(summary["dropped"]) == 2


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_roundtrip_labels_and_splits(data, fmtgen) -> None:
    samples = data.draw(fmtgen.image_samples(kinds=("class",), max_ann=1))
    samples = [s for s in samples if s.annotations] or [
        fmtgen.Sample("dir/x.png", 5, 5, None, [Annotation("class", "cat")])
    ]
    with tempfile.TemporaryDirectory() as tmp:
        recs = fmtgen.to_records(samples, Path(tmp) / "blobs")
        summary = ImageFolderFormat.write(recs, fmtgen.classes, Path(tmp) / "out")
        assert summary["items"] == len(recs) and not summary["dropped"]
        batch = ImageFolderFormat.read(Path(tmp) / "out")
        got = {Path(it.name).name: (it.annotations[0].label, it.split) for it in batch.items}
        want = {Path(r.name).name: (r.labels()[0], r.split) for r in recs}
        assert got == want
