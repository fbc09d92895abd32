"""Unlabelled folders of images or text files."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlforge.data.formats.unlabelled import UnlabelledFormat
from dlforge.errors import InputError


def test_images_and_texts_without_labels(tmp_path: Path, fmtgen) -> None:
    fmtgen.make_image(tmp_path / "a.png", 6, 6)
    fmtgen.make_image(tmp_path / "more" / "b.jpg", 6, 6)
    (tmp_path / "note.txt").write_bytes("你好，世界".encode("gb18030"))
    (tmp_path / "empty.txt").write_text("   ")
    (tmp_path / "data.bin").write_bytes(b"\x00")
    (tmp_path / ".hidden.png").write_bytes(b"")
    batch = UnlabelledFormat.read(tmp_path)
    assert sorted(it.name for it in batch.items) == ["a.png", "more/b.jpg", "note.txt"]
    note = next(it for it in batch.items if it.name == "note.txt")
    assert note.content.decode("utf-8") == "你好，世界" and note.meta["encoding"] == "gb18030"
    assert all(not it.annotations for it in batch.items) and batch.classes == []
    assert {s.source for s in batch.skipped} == {"empty.txt", "data.bin"}


def test_roundtrip_and_errors(tmp_path: Path, fmtgen) -> None:
    recs = fmtgen.to_records(
        [fmtgen.Sample("x/a.png", 5, 5, None), fmtgen.Sample("r.csv#3", 0, 0, None, text="hello")], tmp_path / "b"
    )
    summary = UnlabelledFormat.write(recs, [], tmp_path / "out")
    assert summary["items"] == 2
    names = sorted(it.name for it in UnlabelledFormat.read(tmp_path / "out").items)
    assert names == ["r.csv_3.txt", "x/a.png"]
    (tmp_path / "void").mkdir()
    assert not UnlabelledFormat.detect(tmp_path / "void")
    with pytest.raises(InputError, match="no images or .txt"):
        UnlabelledFormat.read(tmp_path / "void")
