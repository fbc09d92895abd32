"""Workspace, store and dataset versions: immutability, lineage, atomicity, concurrency."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from dlforge.data.dataset import ItemChange
from dlforge.data.records import Annotation
from dlforge.errors import InputError, NotFoundError
from dlforge.store.models import SampleRow
from dlforge.workspace import Workspace


def test_sqlite_runs_in_wal_with_foreign_keys(ws: Workspace) -> None:
    with ws.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_import_stores_each_file_once(ws: Workspace, small_imagefolder: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(small_imagefolder, copy)
    first = ws.import_data(small_imagefolder, "animals")
    second = ws.import_data(copy, "animals-again")
    assert first.imported == second.imported == 36
    assert first.new_blobs == 36 and second.new_blobs == 0
    with ws.db.read() as s:
        assert len(s.scalars(select(SampleRow)).all()) == 36
    blob_files = [p for p in ws.blobs.root.rglob("*") if p.is_file() and p.parent.name != "tmp"]
    assert len(blob_files) == 36


def test_every_change_makes_a_version_and_old_versions_read_back(ws: Workspace, small_imagefolder: Path) -> None:
    v1 = ws.import_data(small_imagefolder, "animals").version
    before = [(r.sample_id, r.split, r.labels()) for r in v1.records()]
    v2 = v1.split(val=0.25, test=0.25, seed=1)
    v3 = v2.rename_classes({"dog": "canine", "fox": "canine"})
    v4 = v3.relabel({1: ["fox"]})
    v5 = v4.sample(n=12, seed=0)
    assert [v.number for v in (v1, v2, v3, v4, v5)] == [1, 2, 3, 4, 5]
    assert [e["operation"] for e in ws.dataset("animals").log()] == [
        "import",
        "split",
        "merge_classes",
        "relabel",
        "sample",
    ]
    assert [(r.sample_id, r.split, r.labels()) for r in ws.version("animals@1").records()] == before
    assert set(v3.classes) == {"cat", "canine"}
    assert {lab for r in v3.records() for lab in r.labels()} == {"cat", "canine"}
    assert ws.version("animals@4").records()[0].labels() == ["fox"]
    assert v5.counts()["active"] == 12 and v5.counts()["excluded"] == 24
    assert ws.version("animals").number == 5
    assert v2.parent is not None and v2.parent.number == 1


def test_split_is_stratified_deterministic_and_keeps_exact_duplicates_together(
    ws: Workspace, small_imagefolder: Path
) -> None:
    shutil.copy(small_imagefolder / "cat" / "cat_0.png", small_imagefolder / "cat" / "cat_dup.png")
    v = ws.import_data(small_imagefolder, "animals").version
    a = {r.sample_id: r.split for r in v.split(val=0.2, test=0.2, seed=7).records()}
    b = {r.sample_id: r.split for r in v.split(val=0.2, test=0.2, seed=7).records()}
    assert a == b
    recs = v.records()
    dup = [r.sample_id for r in recs if r.name in ("cat/cat_0.png", "cat/cat_dup.png")]
    assert len({a[u] for u in dup}) == 1
    for c in ("cat", "dog", "fox"):
        assert {a[r.sample_id] for r in recs if r.labels() == [c]} == {"train", "val", "test"}


def test_failed_import_leaves_workspace_unchanged(ws: Workspace, small_imagefolder: Path) -> None:
    (small_imagefolder / "dog" / "broken.png").write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="broken.png"):
        ws.import_data(small_imagefolder, "animals", strict=True)
    assert ws.datasets() == []
    with ws.db.read() as s:
        assert s.scalars(select(SampleRow)).all() == []
    res = ws.import_data(small_imagefolder, "animals")
    assert res.imported == 36
    assert [s.source for s in res.skipped] == ["dog/broken.png"]


def test_missing_things_are_clear_errors(ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such file"):
        ws.import_data(tmp_path / "nope", "x")
    with pytest.raises(NotFoundError, match="dataset 'ghost' does not exist"):
        ws.version("ghost@2")
    with pytest.raises(InputError, match="not a number"):
        ws.version("ghost@two")


PG_URL = os.environ.get("DLFORGE_TEST_POSTGRES_URL")
DATABASES = [
    "sqlite",
    pytest.param(
        "postgres",
        marks=pytest.mark.skipif(
            not PG_URL, reason="set DLFORGE_TEST_POSTGRES_URL=postgresql+psycopg://... to test PostgreSQL"
        ),
    ),
]


def _import_worker(home: str, src: str, name: str, q: multiprocessing.Queue, url: str | None = None) -> None:
    try:
        w = Workspace.open(home, database_url=url)
        for i in range(3):
            w.import_data(src, name, message=f"{name} {i}", workers=1)
        q.put("ok")
    except Exception as exc:  # report to the parent instead of dying silently
        q.put(repr(exc))


@pytest.mark.parametrize("db", DATABASES)
def test_two_processes_importing_at_once_lose_nothing(tmp_path: Path, small_imagefolder: Path, db: str) -> None:
    home = str(tmp_path / "shared-ws")
    url = PG_URL if db == "postgres" else None
    name = f"same-{uuid.uuid4().hex[:8]}"  # a PostgreSQL database outlives the test
    Workspace.open(home, database_url=url).close()
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_import_worker, args=(home, str(small_imagefolder), name, q, url)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert sorted(q.get() for _ in procs) == ["ok", "ok"]
    w = Workspace.open(home, database_url=url)
    log = w.dataset(name).log()
    assert [e["number"] for e in log] == [1, 2, 3, 4, 5, 6]
    # each import adds 36 items on top of the latest version
    assert log[-1]["counts"]["total"] == 6 * 36
    # JSON columns written by the bulk insert read back as objects on either database
    recs = w.version(name).records()
    assert all(r.annotations[0].kind == "class" and r.meta["width"] > 0 and r.meta["phash"] for r in recs)


def test_runs_record_metrics_events_and_status(ws: Workspace) -> None:
    run = ws.create_run("image_classification", {"lr": 0.1})
    run.log_metrics(1, {"train/loss": 1.5, "lr": 0.1})
    run.log_metrics(2, {"train/loss": float("nan")})  # non-finite values are not stored
    run.log_event("loss_spike", "loss 10x the running median", step=2)
    run.finish("completed", {"best_metric": 0.9})
    info = ws.run(run.id[:12]).info()
    assert info.status == "completed" and info.summary["best_metric"] == 0.9
    assert run.history() == {"train/loss": [(1, 1.5)], "lr": [(1, 0.1)]}
    assert run.events()[0]["kind"] == "loss_spike"


@pytest.mark.parametrize("db", DATABASES)
def test_annotation_counts_in_the_database_match_the_records(tmp_path: Path, db: str) -> None:
    """The SQL aggregate over the JSON annotation lists (json_each / json_array_elements)
    counts what a walk over records() counts, for boxes, masks and review states alike."""
    from collections import Counter

    from dlforge.data.synthetic import make_shapes

    make_shapes(tmp_path / "coco", 12, size=(48, 48), seed=1, max_objects=3, empty_fraction=0.2)
    w = Workspace.open(tmp_path / "ws", database_url=PG_URL if db == "postgres" else None)
    name = f"shapes-{uuid.uuid4().hex[:8]}"
    v = w.import_data(tmp_path / "coco", name).version.split(val=0.25, test=0.25, seed=0)
    first, second = [r for r in v.records() if r.annotations][:2]
    accepted = [Annotation(a.kind, a.label, a.data, "me", "accepted") for a in second.annotations]
    changes = {
        first.sample_id: ItemChange(excluded="test", fields={"excluded"}),  # excluded: not counted
        second.sample_id: ItemChange(annotations=accepted, fields={"annotations"}),
    }
    v = v.derive("edit", "exclude one, accept one", changes)
    truth = Counter((r.split, a.kind, a.label, a.review) for r in v.records() for a in r.annotations)
    got = {(split, kind, label, review): n for split, kind, label, review, n in v.annotation_counts()}
    assert got == dict(truth) and sum(got.values()) > 12
