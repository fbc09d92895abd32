"""Dataset reports (dlforge.data.report): figures vs independent computations, findings, HTML."""

from __future__ import annotations

import hashlib
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlforge.data.records import Annotation, SampleRecord
from dlforge.data.report import dataset_report


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture()
def image_records(tmp_path: Path) -> list[SampleRecord]:
    rng = np.random.default_rng(0)
    recs = []
    for i in range(40):
        w, h = int(rng.integers(40, 120)), int(rng.integers(40, 120))
        arr = np.full((h, w, 3), (i * 5) % 256, dtype=np.uint8)
        p = tmp_path / f"{i}.png"
        Image.fromarray(arr).save(p)
        # Half the records carry probed meta, half must be probed by the report.
        meta = (
            {
                "width": w,
                "height": h,
                "mode": "RGB",
                "brightness": float(arr.mean()),
                "phash": f"{(i * 0x9E3779B97F4A7C15) & (2**64 - 1):016x}",
            }
            if i % 2 == 0
            else {}
        )
        label = "ok" if i < 36 else "scratch"
        anns = [Annotation("class", label)]
        nb = i % 3
        for k in range(nb):
            anns.append(Annotation("box", label, {"bbox": [k * 5.0, k * 5.0, k * 5.0 + 10 + i, k * 5.0 + 8]}))
        recs.append(
            SampleRecord(
                i,
                _sha(p.read_bytes()),
                "image",
                p.name,
                p,
                meta=meta,
                split="test" if i % 5 == 0 else "train",
                annotations=anns,
            )
        )
    # An exact duplicate of sample 1 (train) put into the test split: leakage.
    recs.append(
        SampleRecord(
            100,
            recs[1].sha256,
            "image",
            "copy.png",
            recs[1].path,
            split="test",
            annotations=[Annotation("class", "ok")],
        )
    )
    # A near duplicate of sample 2 (pHash 2 bits away) without annotations.
    near = f"{int(recs[2].meta['phash'], 16) ^ 0b101:016x}"
    recs.append(
        SampleRecord(
            101, "f" * 64, "image", "near.png", recs[2].path, split="train", meta={**recs[2].meta, "phash": near}
        )
    )
    return recs


def test_image_and_box_figures(image_records: list[SampleRecord], tmp_path: Path) -> None:
    rep = dataset_report(image_records, ["ok", "scratch", "dent"], title="parts")
    f = rep.figures
    assert f["overview"]["samples"] == 42
    assert f["overview"]["splits"] == {"train": 33, "test": 9}
    labels = [r.labels()[0] for r in image_records if r.labels()]
    assert f["classes"]["counts"] == {"ok": labels.count("ok"), "scratch": 4, "dent": 0}
    assert f["classes"]["imbalance_ratio"] == pytest.approx(labels.count("ok") / 4)
    # Image sizes: meta where present, probed otherwise; both must match the files.
    sizes = [Image.open(r.path).size for r in image_records]
    assert f["images"]["width"]["median"] == pytest.approx(np.median([s[0] for s in sizes]))
    assert f["images"]["height"]["max"] == max(s[1] for s in sizes)
    assert f["images"]["measured"] == 42
    # Boxes.
    boxes = [(r, a.data["bbox"]) for r in image_records for a in r.annotations if a.kind == "box"]
    assert f["boxes"]["boxes"] == len(boxes)
    per_image = [sum(a.kind == "box" for a in r.annotations) for r in image_records]
    assert f["boxes"]["per_image"]["mean"] == pytest.approx(np.mean(per_image), abs=1e-6)
    widths = np.array([b[2] - b[0] for _, b in boxes])
    assert f["boxes"]["width"]["median"] == pytest.approx(np.median(widths))
    areas = np.array([(b[2] - b[0]) * (b[3] - b[1]) for _, b in boxes])
    assert f["boxes"]["area_buckets"]["small"] == int((areas < 1024).sum())
    assert int(np.sum(f["boxes"]["heatmap"]["counts"])) == len(boxes)
    scratch = next(c for c in f["boxes"]["per_class"] if c["class"] == "scratch")
    sw = [b[2] - b[0] for r, b in boxes if r.labels() == ["scratch"]]
    assert scratch["boxes"] == len(sw) and scratch["median_width"] == pytest.approx(np.median(sw))
    # Duplicates and leakage.
    d = f["duplicates"]
    assert d["exact_groups"] == 1 and d["near_groups"] == 1 and d["cross_split_groups"] == 1
    # Findings in plain words.
    assert f"class `scratch` has 4 samples, {labels.count('ok') / 4:.0f}x fewer than `ok`" in rep.findings
    assert "class `dent` has no samples" in rep.findings
    assert any("leakage" in x for x in rep.findings)
    assert f["annotations"]["coverage"] == pytest.approx(41 / 42)
    # HTML: parses, self-contained, one embedded PNG per plot.
    out = rep.save_html(tmp_path / "r.html")
    imgs: list[str] = []
    scripts: list[str] = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
            a = dict(attrs)
            if tag == "img":
                imgs.append(a["src"])
            if tag in ("script", "link"):
                scripts.append(tag)

    html = out.read_text()
    P().feed(html)
    assert len(imgs) == len(rep.plots) >= 3
    assert all(s.startswith("data:image/png;base64,") for s in imgs)
    assert not scripts and "scratch" in html


def test_text_figures(tmp_path: Path) -> None:
    texts = [
        ("the battery is great and the screen is great", "pos"),
        ("great value, great battery", "pos"),
        ("screen broke after a week", "neg"),
        ("电池很好，屏幕很好", "pos"),
        ("屏幕坏了", "neg"),
        ("", "neg"),
    ]
    recs = []
    for i, (t, lab) in enumerate(texts):
        p = tmp_path / f"{i}.txt"
        p.write_text(t, encoding="utf-8")
        recs.append(
            SampleRecord(
                i,
                _sha(t.encode() + bytes([i])),
                "text",
                p.name,
                p,
                split="train",
                annotations=[Annotation("class", lab, review="accepted" if i < 2 else "unreviewed")],
            )
        )
    rep = dataset_report(recs, ["pos", "neg"], plots=True)
    tx = rep.figures["text"]
    allchars = "".join(t for t, _ in texts)
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in allchars)
    assert tx["charset_mix"]["cjk"] == pytest.approx(cjk / len(allchars), abs=1e-6)
    assert tx["length_chars"]["median"] == pytest.approx(np.median([len(t) for t, _ in texts]))
    assert tx["languages"] == {"latin": 3, "cjk": 2, "none": 1}
    assert tx["top_ngrams"]["pos"][0] == ["great", 4]
    assert ["屏幕", 1] in tx["top_ngrams"]["neg"]
    assert tx["empty"] == 1
    assert rep.figures["annotations"]["review"]["accepted"] == 2
    assert any("empty" in x for x in rep.findings) and "text" in rep.plots


def test_mask_pixel_shares(tmp_path: Path) -> None:
    blobs = {}
    recs = []
    for i in range(3):
        m = np.zeros((10, 10), dtype=np.uint8)
        m[: 2 + i, :] = 1
        m[9, :] = 255  # ignore
        p = tmp_path / f"m{i}.png"
        Image.fromarray(m, mode="L").save(p)
        sha = _sha(p.read_bytes())
        blobs[sha] = p
        img = tmp_path / f"i{i}.png"
        Image.fromarray(np.zeros((10, 10, 3), dtype=np.uint8)).save(img)
        recs.append(
            SampleRecord(
                i,
                _sha(img.read_bytes()) + str(i),
                "image",
                img.name,
                img,
                meta={"width": 10, "height": 10, "mode": "RGB"},
                annotations=[Annotation("segmap", None, {"blob": sha, "classes": {"0": "bg", "1": "road"}})],
            )
        )
    rep = dataset_report(recs, ["bg", "road"], blob_path=blobs.__getitem__)
    shares = {s["class"]: s for s in rep.figures["masks"]["pixel_shares"]}
    road = 2 * 10 + 3 * 10 + 4 * 10
    labelled = 3 * 90
    assert shares["road"]["pixels"] == road and shares["road"]["share"] == pytest.approx(road / labelled)
    assert shares["bg"]["share"] == pytest.approx(1 - road / labelled)
    assert rep.figures["masks"]["ignore_pixels"] == 30
