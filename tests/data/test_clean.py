"""Clean checks on real files: unreadable, tiny, duplicates (exact, normalised, near), conflicts, boxes."""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance
from pydantic import ValidationError

from dlforge.data.clean import CHECKS, CleanConfig, find_issues, summarize
from dlforge.data.probe import probe_bytes_or_path
from dlforge.data.records import Annotation, SampleRecord


def _scene(seed: int, w: int = 96, h: int = 80) -> Image.Image:
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    bg = np.zeros((h, w, 3))
    for _ in range(3):
        fx, fy = nrng.uniform(-3, 3, 2)
        bg += np.sin(2 * np.pi * (fx * xx + fy * yy) + nrng.uniform(0, 6.3))[..., None] * nrng.uniform(-60, 60, 3)
    im = Image.fromarray(np.clip(bg + nrng.uniform(60, 200, 3), 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    for _ in range(7):
        x, y = rng.randint(-10, w), rng.randint(-10, h)
        fill = tuple(rng.choices(range(256), k=3))
        d.rectangle([x, y, x + rng.randint(8, max(9, w // 2)), y + rng.randint(8, max(9, h // 2))], fill=fill)
    return im


class _Dataset:
    """Builds SampleRecords the way the import does: file in a folder, probe output in meta."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.records: list[SampleRecord] = []

    def add(self, data: bytes, media_type: str = "image", labels: tuple[str, ...] = (), *, probe: bool = True,
            boxes: list[tuple[str, list[float]]] | None = None, excluded: str | None = None) -> int:
        sid = len(self.records) + 1
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / f"{sid}.bin"
        path.write_bytes(data)
        anns = [Annotation("class", label) for label in labels]
        anns += [Annotation("box", label, {"bbox": bbox}) for label, bbox in boxes or []]
        meta = probe_bytes_or_path(path, media_type) if probe else {}
        self.records.append(SampleRecord(sid, sha, media_type, f"{sid}", path, meta, None, anns, excluded))
        return sid


def _jpeg(im: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_image_checks(tmp_path: Path) -> None:
    ds = _Dataset(tmp_path)
    good = [ds.add(_jpeg(_scene(i)), labels=("cat" if i % 2 else "dog",)) for i in range(8)]
    data = _jpeg(_scene(100))
    keep = ds.add(data, labels=("cat",))
    dup = ds.add(data, labels=("cat",))  # same bytes
    near = ds.add(_jpeg(ImageEnhance.Brightness(_scene(100)).enhance(1.1), 70), labels=("cat",))
    c1 = ds.add(_jpeg(_scene(200)), labels=("cat",))
    c2 = ds.add(_jpeg(_scene(200).resize((120, 100))), labels=("dog",))  # same picture, other label
    trunc = ds.add(data[: len(data) // 2], labels=("cat",))
    tiny = ds.add(_jpeg(_scene(300, 10, 40)), labels=("dog",))
    gone = ds.add(_jpeg(_scene(400)), labels=("dog",), excluded="earlier clean")

    report = find_issues(ds.records, ["cat", "dog"])
    ex = report.excluded
    assert set(ex) == {dup, near, c1, c2, trunc, tiny}
    assert keep not in ex and gone not in ex and not set(good) & set(ex)
    assert ex[dup] == f"exact duplicate of sample {keep}"
    assert ex[near] == f"near duplicate of sample {keep}"
    assert ex[c1].startswith("conflicting labels") and "cat vs dog" in ex[c1]
    assert ex[trunc].startswith("unreadable:")
    assert ex[tiny].startswith("tiny image 10x40")
    assert [keep, dup, near] in report.near_duplicate_groups and [c1, c2] in report.near_duplicate_groups
    assert report.conflicts == [{"samples": [c1, c2], "labels": {str(c1): ["cat"], str(c2): ["dog"]}}]
    assert report.counts == {**dict.fromkeys(CHECKS, 0), "unreadable": 1, "tiny_images": 1, "exact_duplicates": 1,
                             "near_duplicates": 1, "conflicting_labels": 2}
    assert report.checked == len(ds.records) - 1
    json.dumps(report.to_dict())
    assert summarize(report).startswith("6 of 15 samples excluded")

    # Checks switch off one by one.
    off = find_issues(ds.records, ["cat", "dog"], CleanConfig(near_duplicates=False, conflicting_labels=False,
                                                              tiny_images=False, unreadable=False))
    assert set(off.excluded) == {dup}


def test_missing_meta_is_probed_again(tmp_path: Path) -> None:
    ds = _Dataset(tmp_path)
    data = _jpeg(_scene(5))
    a = ds.add(data, probe=False)
    b = ds.add(_jpeg(_scene(5).crop((2, 2, 94, 78))), probe=False)
    t = ds.add(data[:300], probe=False)
    report = find_issues(ds.records, [])
    assert report.excluded == {b: f"near duplicate of sample {a}", t: report.excluded[t]}
    assert report.excluded[t].startswith("unreadable")
    assert ds.records[0].meta == {}  # records are not modified
    audio = ds.add(b"RIFF....WAVE", "audio", probe=False)  # a media type the probe does not know
    assert audio not in find_issues(ds.records, []).excluded


def test_text_checks(tmp_path: Path) -> None:
    ds = _Dataset(tmp_path)
    a = ds.add("ＡＢＣ　１２３".encode(), "text", ("pos",))
    b = ds.add(b"abc 123", "text", ("pos",))
    c = ds.add(b"abc 123", "text", ("pos",))
    e = ds.add(b" \n\t ", "text", ("neg",))
    d1 = ds.add(b"Great food", "text", ("pos",))
    d2 = ds.add(b"great   FOOD\n", "text", ("neg",))
    ok = ds.add(b"slow delivery", "text", ("neg",))
    bad = ds.add(b"\xff\xfe broken", "text", ("neg",))
    report = find_issues(ds.records, ["pos", "neg"])
    assert report.excluded[b] == f"normalised text duplicate of sample {a}"
    assert report.excluded[c] in (f"exact duplicate of sample {b}", f"normalised text duplicate of sample {a}")
    assert report.excluded[e] == "empty text"
    assert report.excluded[d1].startswith("conflicting") and report.excluded[d2].startswith("conflicting")
    assert report.excluded[bad].startswith("unreadable: not UTF-8")
    assert a not in report.excluded and ok not in report.excluded
    assert report.duplicate_groups == [[a, b, c], [d1, d2]]
    assert report.counts["text_duplicates"] + report.counts["exact_duplicates"] == 2


def test_box_and_label_checks(tmp_path: Path) -> None:
    ds = _Dataset(tmp_path)
    boxes = [
        ("cat", [10, 10, 50, 40]),  # fine
        ("cat", [10, 10, 10, 40]),  # zero width
        ("cat", [60, 50, 120, 70]),  # past the right edge of a 96x80 image
        ("cat", [-0.5, 0, 96.5, 80]),  # within the 1 px tolerance
        ("bird", [1, 1, 5, 5]),  # label not in the class list
        ("cat", [1, 2, 3]),  # malformed
    ]
    sid = ds.add(_jpeg(_scene(9)), boxes=boxes)
    other = ds.add(_jpeg(_scene(10)), boxes=[("cat", [0, 0, 96, 80])])
    report = find_issues(ds.records, ["cat", "dog"])
    got = {(b["sample_id"], b["index"]): b["reason"] for b in report.bad_annotations}
    assert set(got) == {(sid, 1), (sid, 2), (sid, 4), (sid, 5)}
    assert got[(sid, 1)].startswith("zero or negative area")
    assert "outside the 96x80 image" in got[(sid, 2)]
    assert got[(sid, 4)] == "label 'bird' not in the class list"
    assert got[(sid, 5)].startswith("malformed box")
    assert report.counts["bad_boxes"] == 3 and report.counts["unknown_labels"] == 1
    assert report.excluded == {}  # annotation problems alone keep the sample
    strict = find_issues(ds.records, ["cat", "dog"], CleanConfig(exclude_bad_boxes=True))
    assert set(strict.excluded) == {sid} and other not in strict.excluded


def test_config_is_validated() -> None:
    with pytest.raises(ValidationError):
        CleanConfig(no_such_check=True)
    with pytest.raises(ValidationError):
        CleanConfig(min_side=0)
