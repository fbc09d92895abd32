"""Fixture generators for the format tests: small real files written on the fly.

Every generator writes a complete dataset folder in one format and returns
what it wrote (the expected annotations), so tests compare a reader's output
with ground truth rather than with itself.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st
from PIL import Image

from dlforge.data.records import Annotation, SampleRecord

SHARED = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"


def make_image(path: Path, w: int, h: int, seed: int = 0, orientation: int | None = None) -> Path:
    """Write a small random RGB image (PNG or JPEG by suffix), optionally with an EXIF orientation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    kwargs: dict[str, Any] = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif
    im.save(path, **kwargs)
    return path


def digits_imagefolder(root: Path, per_class: int = 5, splits: bool = False) -> dict[str, tuple[str, str | None]]:
    """scikit-learn digits as PNG class folders; returns name -> (label, split)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    truth: dict[str, tuple[str, str | None]] = {}
    counts: dict[int, int] = {}
    for img, target in zip(digits.images, digits.target):
        n = counts.get(int(target), 0)
        if n >= per_class:
            continue
        counts[int(target)] = n + 1
        split = ("train", "train", "val", "test")[n % 4] if splits else None
        rel = Path(split or "") / str(target) / f"d{target}_{n}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 16).clip(0, 255).astype(np.uint8), mode="L").resize((16, 16)).save(root / rel)
        truth[rel.as_posix()] = (str(target), split)
    return truth


def rand_box(rng: random.Random, w: int, h: int) -> list[float]:
    x1, x2 = sorted(rng.uniform(0, w) for _ in range(2))
    y1, y2 = sorted(rng.uniform(0, h) for _ in range(2))
    return [x1, y1, x2 + 0.5, y2 + 0.5] if x2 + 0.5 <= w and y2 + 0.5 <= h else [x1, y1, x2, y2]


def rand_ring(rng: random.Random, w: int, h: int, n: int = 5) -> list[float]:
    ring: list[float] = []
    for _ in range(n):
        ring += [rng.uniform(0, w), rng.uniform(0, h)]
    return ring


def rand_mask_rle(rng: random.Random, w: int, h: int) -> dict:
    """A random rectangle mask as (uncompressed rle dict, binary mask)."""
    m = np.zeros((h, w), dtype=np.uint8)
    x1, y1 = rng.randrange(w // 2), rng.randrange(h // 2)
    m[y1 : y1 + rng.randrange(1, h // 2 + 1), x1 : x1 + rng.randrange(1, w // 2 + 1)] = 1
    return m


def coco_dataset(root: Path, seed: int = 0, n_images: int = 6) -> dict[str, list[tuple]]:
    """COCO folder with boxes, polygons, compressed and uncompressed RLE, and one image without objects."""
    from pycocotools import mask as mask_util

    from dlforge.data.formats.coco import rle_counts_from_mask

    rng = random.Random(seed)
    cats = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 9, "name": "bird"}]
    images, anns, truth = [], [], {}
    for i in range(n_images):
        w, h = rng.randint(20, 60), rng.randint(20, 60)
        name = f"img{i}.png"
        make_image(root / "images" / name, w, h, seed=i)
        images.append({"id": 100 + i, "file_name": name, "width": w, "height": h})
        truth[name] = []
        if i == n_images - 1:
            continue  # an image with no annotations is kept
        for j in range(3):
            cat = rng.choice(cats)
            ann: dict[str, Any] = {"id": len(anns) + 1, "image_id": 100 + i, "category_id": cat["id"], "iscrowd": 0}
            kind = ("box", "polygon", "mask")[(i + j) % 3]
            if kind == "box":
                x1, y1, x2, y2 = rand_box(rng, w, h)
                ann.update(bbox=[x1, y1, x2 - x1, y2 - y1], segmentation=[], area=(x2 - x1) * (y2 - y1))
                truth[name].append(("box", cat["name"], [x1, y1, x2, y2]))
            elif kind == "polygon":
                ring = rand_ring(rng, w, h)
                xs, ys = ring[0::2], ring[1::2]
                ann.update(segmentation=[ring], bbox=[min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)], area=1.0)
                truth[name].append(("polygon", cat["name"], [ring]))
            else:
                m = rand_mask_rle(rng, w, h)
                counts = rle_counts_from_mask(m)
                if j % 2:
                    rle = mask_util.encode(np.asfortranarray(m))
                    seg = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
                else:
                    seg = {"size": [h, w], "counts": counts}
                ys_, xs_ = np.nonzero(m)
                ann.update(
                    segmentation=seg,
                    iscrowd=1,
                    area=int(m.sum()),
                    bbox=[
                        int(xs_.min()),
                        int(ys_.min()),
                        int(xs_.max() - xs_.min() + 1),
                        int(ys_.max() - ys_.min() + 1),
                    ],
                )
                truth[name].append(("mask", cat["name"], counts))
            anns.append(ann)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    doc = {"images": images, "annotations": anns, "categories": cats}
    (root / "annotations" / "instances_default.json").write_text(json.dumps(doc))
    return truth


VOC_XML = """<annotation><folder>JPEGImages</folder><filename>{filename}</filename>
<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objects}</annotation>"""
VOC_OBJ = """<object><name>{name}</name><pose>Unspecified</pose><truncated>{trunc}</truncated>
<difficult>{diff}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"""


def voc_dataset(root: Path, seed: int = 0, n: int = 6, flat: bool = False, segmentation: bool = True) -> dict:
    """VOC folder (standard or flat images/+annots/ layout), ImageSets splits and SegmentationClass PNGs."""
    rng = random.Random(seed)
    ann_dir, img_dir = (root / "annots", root / "images") if flat else (root / "Annotations", root / "JPEGImages")
    ann_dir.mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    splits = {"train": [], "val": [], "test": []}
    for i in range(n):
        w, h = rng.randint(30, 80), rng.randint(30, 80)
        stem = f"2007_{i:06d}"
        make_image(img_dir / f"{stem}.jpg", w, h, seed=i)
        objs, boxes = [], []
        for _ in range(rng.randint(1, 3)):
            box = [float(rng.randint(0, w // 2)), float(rng.randint(0, h // 2))]
            box += [float(rng.randint(int(box[0]) + 1, w)), float(rng.randint(int(box[1]) + 1, h))]
            name, diff, trunc = rng.choice(["person", "car"]), rng.randint(0, 1), rng.randint(0, 1)
            objs.append(VOC_OBJ.format(name=name, trunc=trunc, diff=diff, x1=box[0], y1=box[1], x2=box[2], y2=box[3]))
            boxes.append(("box", name, box, {"difficult": diff, "truncated": trunc}))
        (ann_dir / f"{stem}.xml").write_text(VOC_XML.format(filename=f"{stem}.jpg", w=w, h=h, objects="".join(objs)))
        split = ("train", "val", "test")[i % 3]
        splits[split].append(stem)
        seg = None
        if segmentation and not flat and i % 2 == 0:
            idx = np.zeros((h, w), dtype=np.uint8)
            idx[: h // 2, : w // 2] = 15  # person
            idx[h // 2 :, w // 2 :] = 7  # car
            idx[0, :] = 255  # ignore border
            seg_dir = root / "SegmentationClass"
            seg_dir.mkdir(exist_ok=True)
            im = Image.fromarray(idx, mode="P")
            from dlforge.data.formats.voc import voc_palette

            im.putpalette([c for rgb in voc_palette() for c in rgb])
            im.save(seg_dir / f"{stem}.png")
            seg = idx
        truth[f"{stem}.jpg"] = {"boxes": boxes, "split": None if flat else split, "seg": seg}
    if not flat:
        main = root / "ImageSets" / "Main"
        main.mkdir(parents=True, exist_ok=True)
        for split, ids in splits.items():
            (main / f"{split}.txt").write_text("".join(f"{s}\n" for s in ids))
    return truth


def yolo_dataset(root: Path, seed: int = 0, names_as_dict: bool = False) -> dict:
    """Ultralytics layout with boxes and polygons in train/val; returns name -> (split, [(kind, label, coords)])."""
    import yaml

    rng = random.Random(seed)
    names = ["ant", "bee", "wasp"]
    truth: dict[str, tuple[str, list]] = {}
    for split, count in (("train", 4), ("val", 2)):
        for i in range(count):
            w, h = rng.randint(20, 70), rng.randint(20, 70)
            stem = f"{split}_{i}"
            make_image(root / "images" / split / f"{stem}.png", w, h, seed=i)
            lines, anns = [], []
            for j in range(2):
                c = rng.randrange(3)
                if j == 0:
                    x1, y1, x2, y2 = rand_box(rng, w, h)
                    cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
                    lines.append(f"{c} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
                    anns.append(("box", names[c], [x1, y1, x2, y2]))
                else:
                    ring = rand_ring(rng, w, h, 4)
                    lines.append(f"{c} " + " ".join(f"{v / (w if k % 2 == 0 else h):.6f}" for k, v in enumerate(ring)))
                    anns.append(("polygon", names[c], [ring]))
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
            truth[f"images/{split}/{stem}.png"] = (split, anns)
    doc = {
        "path": ".",
        "train": "images/train",
        "val": "images/val",
        "names": {i: n for i, n in enumerate(names)} if names_as_dict else names,
    }
    (root / "data.yaml").write_text(yaml.safe_dump(doc))
    return truth


def labelstudio_export(root: Path, seed: int = 0) -> dict:
    """A Label Studio JSON export with upload-style paths, choices, boxes, polygons and emails."""
    rng = random.Random(seed)
    tasks, truth = [], {}
    for i in range(4):
        w, h = rng.randint(30, 90), rng.randint(30, 90)
        fname = f"pic{i}.jpg"
        make_image(root / "images" / fname, w, h, seed=i)
        ref = f"/data/upload/1/{i:08x}-{fname}" if i % 2 else f"images/{fname}"
        x, y, bw, bh = rng.uniform(0, 50), rng.uniform(0, 50), rng.uniform(1, 50), rng.uniform(1, 50)
        pts = [[rng.uniform(0, 100), rng.uniform(0, 100)] for _ in range(4)]
        result = [
            {"type": "choices", "from_name": "c", "to_name": "image", "value": {"choices": ["outdoor", "day"]}},
            {
                "type": "rectanglelabels",
                "from_name": "b",
                "to_name": "image",
                "original_width": w,
                "original_height": h,
                "value": {"x": x, "y": y, "width": bw, "height": bh, "rotation": 0, "rectanglelabels": ["tree"]},
            },
            {
                "type": "polygonlabels",
                "from_name": "p",
                "to_name": "image",
                "original_width": w,
                "original_height": h,
                "value": {"points": pts, "polygonlabels": ["lake"]},
            },
        ]
        tasks.append(
            {
                "id": i + 1,
                "data": {"image": ref},
                "annotations": [
                    {"id": i + 10, "completed_by": {"id": 1, "email": f"ann{i % 2}@example.com"}, "result": result}
                ],
            }
        )
        truth[f"images/{fname}"] = {
            "author": f"ann{i % 2}@example.com",
            "classes": ["outdoor", "day"],
            "box": [x * w / 100, y * h / 100, (x + bw) * w / 100, (y + bh) * h / 100],
            "polygon": [v for px, py in pts for v in (px * w / 100, py * h / 100)],
        }
    tasks.append(
        {
            "id": 99,
            "data": {"text": "great food, fast delivery"},
            "annotations": [{"completed_by": 3, "result": [{"type": "choices", "value": {"choices": ["positive"]}}]}],
        }
    )
    (root / "export.json").write_text(json.dumps(tasks))
    return truth


def text_csv(path: Path, rows: list[tuple[str, str]], header: str = "label,review", encoding: str = "utf-8") -> Path:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header.split(","))
    for label, text in rows:
        writer.writerow([label, text])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue().encode(encoding))
    return path


@dataclass
class Sample:
    """One generated sample for round-trip tests (turned into a SampleRecord)."""

    name: str
    width: int
    height: int
    split: str | None
    annotations: list[Annotation] = field(default_factory=list)
    text: str | None = None


def to_records(samples: list[Sample], folder: Path) -> list[SampleRecord]:
    """Write each sample's file (image or UTF-8 text) and build SampleRecords pointing at it."""
    records = []
    for i, s in enumerate(samples):
        if s.text is not None:
            path = folder / f"blob{i}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s.text.encode("utf-8"))
            media = "text"
        else:
            path = make_image(folder / f"blob{i}{Path(s.name).suffix or '.png'}", s.width, s.height, seed=i)
            media = "image"
        records.append(
            SampleRecord(
                sample_id=i,
                sha256=f"{i:064x}",
                media_type=media,
                name=s.name,
                path=path,
                split=s.split,
                annotations=list(s.annotations),
            )
        )
    return records


def coords(a: Annotation) -> list[float] | list[int]:
    if a.kind == "box":
        return [float(v) for v in a.data["bbox"]]
    if a.kind == "polygon":
        return [float(v) for ring in a.data["points"] for v in ring]
    if a.kind == "mask":
        return list(a.data["rle"]["counts"])
    return []


def match_annotations(
    expected: list[Annotation], got: list[Annotation], tol: float, attrs: tuple[str, ...] = (), author: bool = False
) -> None:
    """Assert ``got`` holds the same annotations as ``expected`` (order-free, coordinates within ``tol``)."""
    remaining = list(got)
    for e in expected:
        ec = coords(e)
        for g in remaining:
            gc = coords(g)
            if (g.kind, g.label) != (e.kind, e.label) or len(gc) != len(ec):
                continue
            if e.kind == "mask" and gc != ec:
                continue
            if any(abs(a - b) > tol for a, b in zip(ec, gc)):
                continue
            ea, ga = e.data.get("attrs") or {}, g.data.get("attrs") or {}
            if any(k in ea and ea[k] != ga.get(k) for k in attrs):
                continue
            if author and e.author != g.author:
                continue
            remaining.remove(g)
            break
        else:
            raise AssertionError(f"no match for {e} among {got}")
    assert not remaining, f"unexpected annotations {remaining}"


CLASSES = ["cat", "traffic light", "狗", "a&b<c>", "0"]


@st.composite
def image_samples(draw: Any, kinds: tuple[str, ...] = ("box", "polygon"), max_ann: int = 4, rings: int = 1) -> list:
    """Random image samples: sizes, splits (all or none), annotations of the given kinds."""
    n = draw(st.integers(1, 4))
    with_splits = draw(st.booleans())
    samples = []
    for i in range(n):
        w, h = draw(st.integers(4, 48)), draw(st.integers(4, 48))
        split = draw(st.sampled_from(["train", "val", "test"])) if with_splits else None
        anns = []
        for _ in range(draw(st.integers(0, max_ann))):
            kind = draw(st.sampled_from(kinds))
            label = draw(st.sampled_from(CLASSES))
            xs = st.floats(0, w, allow_nan=False, allow_infinity=False)
            ys = st.floats(0, h, allow_nan=False, allow_infinity=False)
            if kind == "box":
                x1, x2 = sorted((draw(xs), draw(xs)))
                y1, y2 = sorted((draw(ys), draw(ys)))
                anns.append(Annotation("box", label, {"bbox": [x1, y1, x2, y2]}))
            elif kind == "polygon":
                points = []
                for _ in range(draw(st.integers(1, rings))):
                    ring = []
                    for _ in range(draw(st.integers(3, 6))):
                        ring += [draw(xs), draw(ys)]
                    points.append(ring)
                anns.append(Annotation("polygon", label, {"points": points}))
            elif kind == "mask":
                from dlforge.data.formats.coco import rle_counts_from_mask

                m = np.zeros((h, w), dtype=np.uint8)
                x0, y0 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
                m[y0 : y0 + draw(st.integers(1, h)), x0 : x0 + draw(st.integers(1, w))] = 1
                rle = {"size": [h, w], "counts": rle_counts_from_mask(m)}
                anns.append(Annotation("mask", label, {"rle": rle, "attrs": {"iscrowd": 1}}))
            elif kind == "class" and label not in [a.label for a in anns if a.kind == "class"]:
                anns.append(Annotation("class", label))
        samples.append(Sample(f"dir/s{i}.png", w, h, split, anns))
    return samples


texts = (
    st.text(
        alphabet=st.characters(categories=["L", "N", "P", "Zs", "S"], exclude_characters="\ufeff|")
        | st.sampled_from([",", '"', "\n", "\r", "\t", "\u2028"]),
        min_size=1,
        max_size=40,
    )
    .map(str.strip)
    .filter(bool)
)


@st.composite
def text_samples(draw: Any, multi: bool = True) -> list:
    """Random text samples with one or more (distinct) labels and splits (all or none)."""
    n = draw(st.integers(1, 6))
    with_splits = draw(st.booleans())
    out = []
    for i in range(n):
        k = draw(st.integers(1, 3)) if multi else 1
        labels = draw(st.lists(st.sampled_from(CLASSES), min_size=k, max_size=k, unique=True))
        split = draw(st.sampled_from(["train", "val", "test"])) if with_splits else None
        out.append(Sample(f"t{i}", 0, 0, split, [Annotation("class", lbl) for lbl in labels], text=draw(texts)))
    return out


@pytest.fixture(scope="session")
def fmtgen() -> SimpleNamespace:
    """The generators above, for tests (conftest modules are not imported by name)."""
    return SimpleNamespace(
        make_image=make_image,
        digits_imagefolder=digits_imagefolder,
        coco_dataset=coco_dataset,
        voc_dataset=voc_dataset,
        yolo_dataset=yolo_dataset,
        labelstudio_export=labelstudio_export,
        text_csv=text_csv,
        Sample=Sample,
        to_records=to_records,
        rand_box=rand_box,
        rand_ring=rand_ring,
        match_annotations=match_annotations,
        image_samples=image_samples,
        text_samples=text_samples,
        classes=CLASSES,
        shared=SHARED,
    )
