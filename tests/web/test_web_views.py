"""What the web platform computes for its views: distributions, sample pages, run comparison, reports."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dlforge.errors import InputError
from dlforge.runs import compare_runs
from dlforge.web.app import create_app
from dlforge.web.views import class_distribution, review_counts, sample_page
from dlforge.workspace import Workspace


def test_class_distribution_counts_samples_or_objects_per_split() -> None:
    # (split, kind, label, review, n) rows as DatasetVersion.annotation_counts returns them
    cls = [("train", "class", "cat", "unreviewed", 1), ("train", "class", "dog", "unreviewed", 1),
           ("val", "class", "cat", "accepted", 1), (None, "class", "cat", "unreviewed", 1)]
    d = class_distribution(cls)
    assert d["basis"] == "samples" and d["splits"] == ["train", "val", "unassigned"]
    assert d["counts"] == {
        "cat": {"train": 1, "val": 1, "unassigned": 1},
        "dog": {"train": 1, "val": 0, "unassigned": 0},
    }
    assert review_counts(cls) == {"unreviewed": 3, "accepted": 1}
    det = [("train", "box", "car", "unreviewed", 2), ("train", "box", "bus", "unreviewed", 1)]
    d = class_distribution(det, splits=["train", "test"])  # test holds only unannotated samples
    assert d["basis"] == "objects" and d["counts"] == {"bus": {"train": 1, "test": 0}, "car": {"train": 2, "test": 0}}


def test_sample_page_filters_by_split_label_review_and_pages(ws: Workspace, small_imagefolder: Path) -> None:
    ws.import_data(small_imagefolder, "animals")
    v1 = ws.version("animals@1")
    assert sample_page(v1, split="unassigned")["total"] == 36
    v2 = v1.split(val=0.25, test=0.25, seed=0)
    truth = Counter((r.split, r.labels()[0]) for r in v2.records())
    for split in ("train", "val", "test"):
        for label in ("cat", "dog", "fox"):
            page = sample_page(v2, split=split, label=label, limit=200)
            assert page["total"] == truth[split, label]
            assert all(s["split"] == split and s["annotations"][0]["label"] == label for s in page["samples"])
    assert sample_page(v2, split="unassigned")["total"] == 0
    train = [r.sample_id for r in v2.records("train")]
    paged = sample_page(v2, split="train", offset=3, limit=5)  # cut in the database
    assert paged["total"] == len(train) and [s["uid"] for s in paged["samples"]] == train[3:8]
    pages = [sample_page(v2, offset=o, limit=10)["samples"] for o in (0, 10, 20, 30)]
    uids = [s["uid"] for p in pages for s in p]
    assert len(uids) == 36 and len(set(uids)) == 36 and [len(p) for p in pages] == [10, 10, 10, 6]
    first = pages[0][0]
    assert (first["width"], first["height"], first["snippet"]) == (24, 24, None)
    v3 = v2.mark_for_review({uids[0]: {"suggested": "dog", "score": 0.9}})
    flagged = sample_page(v3, review="needs_review")
    assert flagged["total"] == 1 and flagged["samples"][0]["uid"] == uids[0]
    with pytest.raises(InputError, match="review 'maybe'"):
        sample_page(v3, review="maybe")


def test_text_samples_come_with_a_snippet(ws: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "reviews.jsonl"
    long = "很好吃，" * 200
    src.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in
                             [("great food", "pos"), ("cold and late", "neg"), (long, "pos")]), encoding="utf-8")
    ws.import_data(src, "reviews")
    page = sample_page(ws.version("reviews"), label="pos")
    snippets = sorted(s["snippet"] for s in page["samples"])
    assert page["total"] == 2 and snippets[0] == "great food"
    assert len(snippets[1]) == 280 and long.startswith(snippets[1])


def test_compare_runs_keeps_differing_params_and_numeric_summary(ws: Workspace) -> None:
    a = ws.create_run("image_classification", {"lr": 0.1, "epochs": 3, "aug": ["flip"]})
    b = ws.create_run("image_classification", {"lr": 0.01, "epochs": 3, "aug": ["flip", "crop"]})
    a.finish("completed", {"monitor": "val/accuracy", "best_metric": 0.9, "steps": 10, "stop_reason": "epochs"})
    b.finish("failed", {"monitor": "val/accuracy", "best_metric": 0.5, "steps": 4, "early": True})
    c = compare_runs([a, b])
    assert c["runs"] == [a.id, b.id] and c["data"] == {a.id: None, b.id: None}
    assert set(c["params"]) == {"lr", "aug"} and c["params"]["lr"] == {a.id: 0.1, b.id: 0.01}
    assert set(c["metrics"]) == {"best_metric", "steps"} and c["metrics"]["steps"] == {a.id: 10, b.id: 4}
    assert c["status"] == {a.id: "completed", b.id: "failed"}
    with pytest.raises(InputError, match="two or more"):
        compare_runs([a])


def test_routes_for_version_overview_compare_and_report(ws: Workspace, small_imagefolder: Path) -> None:
    ws.import_data(small_imagefolder, "animals")
    a = ws.create_run("image_classification", {"lr": 0.1})
    b = ws.create_run("image_classification", {"lr": 0.2})
    client = TestClient(create_app(ws))
    ov = client.get("/api/datasets/animals/versions/1").json()
    assert ov["operation"] == "import" and ov["review"] == {"unreviewed": 36}
    assert ov["distribution"]["counts"]["cat"] == {"unassigned": 12}
    page = client.get("/api/datasets/animals/versions/1/samples", params={"label": "dog", "limit": 5}).json()
    assert page["total"] == 12 and len(page["samples"]) == 5
    cleaned = client.post("/api/datasets/animals/clean").json()
    assert cleaned["version"] == "animals@2" and cleaned["checked"] == 36 and cleaned["excluded"] == 0
    cmp = client.get("/api/compare", params=[("runs", a.id), ("runs", b.id)]).json()
    assert cmp["params"] == {"lr": {a.id: 0.1, b.id: 0.2}}
    assert client.get("/api/compare", params={"runs": a.id}).status_code == 422
    assert client.get(f"/api/runs/{a.id}").json()["report"] is None
    assert client.get(f"/runs/{a.id}/report.html").status_code == 404
    a.dir.mkdir(parents=True, exist_ok=True)
    (a.dir / "report.html").write_text("<h1>accuracy 0.93</h1>", encoding="utf-8")
    link = client.get(f"/api/runs/{a.id}").json()["report"]
    report = client.get(link)
    assert report.status_code == 200 and "accuracy 0.93" in report.text
    assert report.headers["content-type"].startswith("text/html")
    assert client.get("/runs/ghost/report.html").status_code == 404
