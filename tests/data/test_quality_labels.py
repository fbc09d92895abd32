"""Label-issue mining and annotator agreement (dlforge.data.quality)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from dlforge.data.quality import (
    annotator_agreement,
    box_iou,
    cohen_kappa,
    find_label_issues,
    fleiss_kappa,
)
from dlforge.data.records import Annotation, SampleRecord
from dlforge.errors import InputError


def _digit_records(tmp: Path, labels: np.ndarray, images: np.ndarray) -> list[SampleRecord]:
    recs = []
    for i, (img, lab) in enumerate(zip(images, labels)):
        p = tmp / f"{i}.png"
        Image.fromarray((img * 255 / 16).astype(np.uint8)).save(p)
        recs.append(
            SampleRecord(
                i,
                hashlib.sha256(p.read_bytes()).hexdigest(),
                "image",
                p.name,
                p,
                annotations=[Annotation("class", str(lab))],
            )
        )
    return recs


def test_finds_flipped_digit_labels(tmp_path: Path) -> None:
    d = load_digits()
    y = d.target.copy()
    rng = np.random.default_rng(0)
    flip = rng.choice(len(y), int(round(0.05 * len(y))), replace=False)
    y[flip] = (y[flip] + rng.integers(1, 10, len(flip))) % 10
    recs = _digit_records(tmp_path, y, d.images)
    res = find_label_issues(recs, [str(c) for c in range(10)], seed=0)
    k = 2 * len(flip)
    found = set(res.ranked(k)) & set(flip.tolist())
    assert len(found) / len(flip) >= 0.7
    # Flagged label issues carry a suggestion; most suggestions restore the true label.
    label_issues = [i for i in res.issues if i.kind == "label"]
    assert label_issues
    truth = {i: str(t) for i, t in enumerate(d.target)}
    right = [i for i in label_issues if i.sample_id in set(flip.tolist()) and i.suggested == truth[i.sample_id]]
    assert len(right) >= 0.6 * len(set(i.sample_id for i in label_issues) & set(flip.tolist()))
    sugg = res.suggestions()
    assert all(0.0 <= s <= 1.0 for _, s in sugg.values())
    assert res.cv_accuracy > 0.85
    assert res.to_dict()["counts"]["label"] == len(label_issues)


def test_text_duplicate_conflict_and_skips(tmp_path: Path) -> None:
    texts = [("great product, love it", "pos"), ("terrible, broke in a day", "neg")] * 15
    texts += [("great product, love it", "neg")]  # same text, other label
    recs = []
    for i, (t, lab) in enumerate(texts):
        p = tmp_path / f"{i}.txt"
        p.write_text(t, encoding="utf-8")
        recs.append(
            SampleRecord(
                i,
                hashlib.sha256(t.encode()).hexdigest(),
                "text",
                p.name,
                p,
                annotations=[Annotation("class", lab)],
            )
        )
    p = tmp_path / "nolabel.txt"
    p.write_text("x")
    recs.append(SampleRecord(999, "0" * 64, "text", "nolabel.txt", p))
    res = find_label_issues(recs, ["neg", "pos"], cv_folds=3)
    conflicts = [i for i in res.issues if i.kind == "duplicate_conflict"]
    assert [c.sample_id for c in conflicts] == [30]
    assert conflicts[0].suggested == "pos"
    assert any(s.source == "nolabel.txt" for s in res.skipped)


def test_label_issues_need_two_classes(tmp_path: Path) -> None:
    p = tmp_path / "a.txt"
    p.write_text("a")
    recs = [SampleRecord(i, str(i), "text", "a.txt", p, annotations=[Annotation("class", "x")]) for i in range(5)]
    with pytest.raises(InputError):
        find_label_issues(recs, ["x", "y"])


def test_kappas_match_references() -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, 200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(0, 3, 200))
    assert cohen_kappa(a.tolist(), b.tolist()) == pytest.approx(cohen_kappa_score(a, b))
    # Fleiss' worked example (Wikipedia, 10 items, 14 raters, 5 categories): kappa = 0.210.
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-4)


def test_annotator_agreement_labels_and_boxes(tmp_path: Path) -> None:
    recs = []
    labels = ["a", "b", "a", "b", "a", "a"]
    other = ["a", "b", "b", "b", "a", "a"]
    for i, (x, y) in enumerate(zip(labels, other)):
        recs.append(
            SampleRecord(
                i,
                str(i),
                "image",
                f"{i}.png",
                tmp_path,
                annotations=[
                    Annotation("class", x, author="ann1"),
                    Annotation("class", y, author="ann2"),
                    Annotation("class", x, author="ann3"),
                    Annotation("box", x, {"bbox": [0, 0, 10, 10]}, author="ann1"),
                    Annotation("box", x, {"bbox": [0, 0, 10, 5]}, author="ann2"),  # IoU 0.5
                ],
            )
        )
    res = annotator_agreement(recs, kind="class")
    pair = next(p for p in res["pairwise"] if (p["a"], p["b"]) == ("ann1", "ann2"))
    assert pair["items"] == 6
    assert pair["cohen_kappa"] == pytest.approx(cohen_kappa(labels, other))
    assert next(p for p in res["pairwise"] if p["b"] == "ann3")["cohen_kappa"] == pytest.approx(1.0)
    assert res["fleiss_items"] == 6 and -1 <= res["fleiss_kappa"] <= 1
    boxes = annotator_agreement(recs, kind="box", iou_threshold=0.5)
    assert boxes["annotators"] == ["ann1", "ann2"]
    assert boxes["mean_iou"] == pytest.approx(0.5)
    assert boxes["pairwise"][0]["match_rate"] == pytest.approx(1.0)
    iou = box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3], [5, 5, 6, 6]]))
    assert iou[0, 0] == pytest.approx(1 / 7) and iou[0, 1] == 0


def test_row_label_issues(tmp_path: Path) -> None:
    import json

    from sklearn.datasets import load_wine

    d = load_wine(as_frame=True)
    y = d.target.to_numpy().copy()
    rng = np.random.default_rng(0)
    flip = rng.choice(len(y), 9, replace=False)
    y[flip] = (y[flip] + 1) % 3
    recs = []
    for i, row in enumerate(d.data.to_dict(orient="records")):
        p = tmp_path / f"{i}.json"
        p.write_text(json.dumps(row))
        recs.append(SampleRecord(i, str(i), "row", f"wine.csv#{i}", p, annotations=[Annotation("class", str(y[i]))]))
    res = find_label_issues(recs, ["0", "1", "2"], phash_distance=-1)
    assert len(set(res.ranked(18)) & set(flip.tolist())) >= 7
