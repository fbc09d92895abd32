"""The workspace: the entry object tying the store, datasets and runs together."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dlforge.data.dataset import Dataset, DatasetVersion, copy_items, parse_ref, sample_ids_by_sha
from dlforge.data.records import ImportBatch, Skip
from dlforge.errors import ConflictError, InputError, NotFoundError
from dlforge.runs import Run, new_run_id
from dlforge.settings import Settings
from dlforge.store import BlobStore, Database
from dlforge.store.db import bulk_insert
from dlforge.store.models import DatasetRow, ItemRow, RunRow, SampleRow, VersionRow

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")


@dataclass
class ImportResult:
    """What an import did: the new version, the detected format, and what was skipped."""

    version: DatasetVersion
    format: str
    detected: bool
    imported: int
    new_blobs: int
    task: str | None
    classes: list[str]
    skipped: list[Skip] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.version.name,
            "version": self.version.ref,
            "number": self.version.number,
            "format": self.format,
            "detected": self.detected,
            "imported": self.imported,
            "new_blobs": self.new_blobs,
            "task": self.task,
            "classes": self.classes,
            "skipped": [s.to_dict() for s in self.skipped],
        }


def infer_task(batch: ImportBatch) -> str | None:
    """Guess the task from what the annotations hold."""
    if batch.task:
        return batch.task
    kinds: set[str] = set()
    media: set[str] = set()
    for it in batch.items:
        media.add(it.media_type)
        kinds.update(a.kind for a in it.annotations)
    if "row" in media:
        return "tabular"
    if "text" in media:
        return "text_classification" if "class" in kinds else None
    if "segmap" in kinds:
        return "semantic_segmentation"
    if kinds & {"box", "polygon", "mask"}:
        return "object_detection"
    if "class" in kinds:
        return "image_classification"
    return None


class Workspace:
    """A dlforge workspace: ``dlforge.db`` (or a PostgreSQL URL) plus ``blobs/`` and ``runs/``.

    Example:
        >>> ws = Workspace.open("/tmp/ws")
        >>> res = ws.import_data("photos/", name="products")
        >>> v = res.version.clean().version.split(val=0.1, test=0.1, seed=0)
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.home.mkdir(parents=True, exist_ok=True)
        self.blobs = BlobStore(settings.blobs_dir)
        self.db = Database(settings.database_url)

    @classmethod
    def open(cls, home: str | Path | None = None, *, database_url: str | None = None) -> Workspace:
        """Open (creating if needed) the workspace at ``home`` or ``DLFORGE_HOME``."""
        return cls(Settings.load(home, database_url))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def home(self) -> Path:
        return self.settings.home

    # -- datasets ----------------------------------------------------------------------
    def datasets(self) -> list[Dataset]:
        with self.db.read() as s:
            names = s.scalars(select(DatasetRow.name).order_by(DatasetRow.name)).all()
        return [Dataset(self, n) for n in names]

    def dataset(self, name: str) -> Dataset:
        with self.db.read() as s:
            if s.scalar(select(DatasetRow.id).where(DatasetRow.name == name)) is None:
                known = ", ".join(s.scalars(select(DatasetRow.name)).all()) or "none"
                raise NotFoundError(f"dataset {name!r} does not exist (datasets: {known})")
        return Dataset(self, name)

    def version(self, ref: str) -> DatasetVersion:
        """Resolve ``NAME`` (latest) or ``NAME@N``."""
        name, number = parse_ref(ref)
        return self.dataset(name).version(number)

    def _new_version(
        self,
        s: Session,
        dataset_id: int,
        *,
        operation: str,
        message: str,
        parent_id: int | None,
        task: str | None,
        classes: list[str],
        details: dict[str, Any],
    ) -> VersionRow:
        # Lock the dataset row so concurrent writers number versions one after another. (SQLite
        # ignores FOR UPDATE; its write transactions already start with BEGIN IMMEDIATE.)
        s.execute(select(DatasetRow.id).where(DatasetRow.id == dataset_id).with_for_update())
        number = (
            s.scalar(select(func.max(VersionRow.number)).where(VersionRow.dataset_id == dataset_id)) or 0
        ) + 1
        row = VersionRow(
            dataset_id=dataset_id,
            number=number,
            parent_id=parent_id,
            operation=operation,
            message=message,
            author=self.settings.author,
            task=task,
            classes=classes,
            details=details,
        )
        s.add(row)
        s.flush()
        return row

    def _lock_dataset(self, s: Session, name: str) -> DatasetRow | None:
        """The dataset row, locked for this transaction (PostgreSQL; SQLite writers are serial)."""
        return s.scalar(select(DatasetRow).where(DatasetRow.name == name).with_for_update())

    def _create_dataset(self, s: Session, name: str) -> DatasetRow:
        try:
            with s.begin_nested():
                ds = DatasetRow(name=name)
                s.add(ds)
            return ds
        except IntegrityError:
            # Another process created it first (PostgreSQL; its transaction has committed by now).
            ds = self._lock_dataset(s, name)
            assert ds is not None
            return ds

    def _next_uid(self, s: Session, dataset_id: int) -> int:
        q = select(func.max(ItemRow.uid)).join(VersionRow).where(VersionRow.dataset_id == dataset_id)
        return (s.scalar(q) or 0) + 1

    def import_data(
        self,
        src: str | Path,
        name: str,
        *,
        format: str | None = None,
        task: str | None = None,
        strict: bool = False,
        message: str | None = None,
        workers: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        **options: Any,
    ) -> ImportResult:
        """Import a folder or archive as a new version of dataset ``name``.

        A new name creates the dataset; an existing one gets a version holding
        its latest items plus the imported ones. Items a reader cannot use are
        skipped and listed; with ``strict=True`` any skip aborts the import and
        nothing is stored.
        """
        from dlforge.data.formats import detect_format, get_format
        from dlforge.data.ingest import store_items

        src = Path(src)
        if not src.exists():
            raise NotFoundError(f"{src}: no such file or directory")
        if not name or "@" in name or "/" in name:
            raise InputError(f"dataset name {name!r}: must be non-empty and contain no '@' or '/'")
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.settings.tmp_dir) as tmp:
            root = src
            if src.is_file() and src.name.lower().endswith(ARCHIVE_SUFFIXES):
                from dlforge.data.archive import extract_archive

                root = extract_archive(src, Path(tmp))
            detected = format is None
            fmt_name = detect_format(root) if format is None else format
            fmt = get_format(fmt_name)
            if task is not None:
                options.setdefault("task", task) if fmt_name in ("csv", "jsonl") else None
            batch: ImportBatch = fmt.read(root, **options)
            skipped = list(batch.skipped)
            if strict and skipped:
                raise InputError(
                    f"{src}: --strict and {len(skipped)} item(s) were bad, imported nothing; "
                    f"first: {skipped[0].source}: {skipped[0].reason}"
                )
            if not batch.items:
                first = f"; first problem: {skipped[0].source}: {skipped[0].reason}" if skipped else ""
                raise InputError(f"{src}: no importable items found as format {fmt_name!r}{first}")
            stored = store_items(batch.items, self.blobs, workers=workers, progress=progress)
            created = [st.sha256 for st in stored if st.created]
            good = []
            for st in stored:
                # Unreadable content (a corrupt image, non-UTF-8 text) is a bad item: skip and report.
                if st.meta.get("error"):
                    skipped.append(Skip(st.item.name, st.meta["error"]))
                else:
                    good.append(st)
            try:
                if strict and len(good) < len(stored):
                    bad = skipped[-1]
                    raise InputError(f"{src}: --strict and {bad.source}: {bad.reason}; imported nothing")
                if not good:
                    raise InputError(
                        f"{src}: none of the {len(stored)} items could be read; first: "
                        f"{skipped[0].source}: {skipped[0].reason}"
                    )
                version = self._store_import(name, batch, good, fmt_name, task, message, src, skipped)
            except BaseException:
                for sha in created:  # blobs this import added and nothing references
                    if not self._blob_referenced(sha):
                        self.blobs.remove(sha)
                raise
        return ImportResult(
            version=version,
            format=fmt_name,
            detected=detected,
            imported=len(good),
            new_blobs=len(created),
            task=version.task,
            classes=version.classes,
            skipped=skipped,
        )

    def _blob_referenced(self, sha: str) -> bool:
        with self.db.read() as s:
            return s.scalar(select(SampleRow.id).where(SampleRow.sha256 == sha)) is not None

    def _store_import(self, name, batch, stored, fmt_name, task, message, src, skipped) -> DatasetVersion:  # type: ignore[no-untyped-def]
        extra: dict[int, dict[str, str]] = {}
        for i, st in enumerate(stored):
            for key, blob in st.item.extra_blobs.items():
                sha = (
                    self.blobs.put_bytes(blob)[0] if isinstance(blob, bytes) else self.blobs.put_file(blob)[0]
                )
                extra.setdefault(i, {})[key] = sha
        task = task or infer_task(batch)
        with self.db.write() as s:
            ds = self._lock_dataset(s, name) or self._create_dataset(s, name)
            parent = s.scalar(
                select(VersionRow).where(VersionRow.dataset_id == ds.id).order_by(VersionRow.number.desc())
            )
            classes = list(parent.classes) if parent else []
            classes += [c for c in batch.classes if c not in classes]
            if parent and parent.task and task and parent.task != task:
                raise ConflictError(
                    f"dataset {name!r} holds {parent.task} data; this import looks like {task}"
                )
            version = self._new_version(
                s,
                ds.id,
                operation="import",
                parent_id=parent.id if parent else None,
                message=message or f"import {Path(src).name} ({fmt_name}, {len(stored)} items)",
                task=task or (parent.task if parent else None),
                classes=classes,
                details={
                    "source": str(src),
                    "format": fmt_name,
                    "imported": len(stored),
                    "skipped": len(skipped),
                },
            )
            if parent is not None:
                copy_items(s, parent.id, version.id)
            shas = {st.sha256 for st in stored}
            existing = sample_ids_by_sha(s, shas)
            new_rows = {}
            for st in stored:
                if st.sha256 not in existing and st.sha256 not in new_rows:
                    new_rows[st.sha256] = {
                        "sha256": st.sha256,
                        "media_type": st.item.media_type,
                        "size": st.size,
                        "meta": st.meta,
                    }
            if new_rows:
                bulk_insert(s, SampleRow.__table__, list(new_rows.values()))
                existing.update(sample_ids_by_sha(s, new_rows))
            uid = self._next_uid(s, ds.id)
            rows = []
            for i, st in enumerate(stored):
                anns = []
                for a in st.item.annotations:
                    d = a.to_dict()
                    if "blob" in a.data and i in extra and a.data["blob"] in extra[i]:
                        d["data"] = {**a.data, "blob": extra[i][a.data["blob"]]}
                    anns.append(d)
                rows.append(
                    {
                        "version_id": version.id,
                        "uid": uid + i,
                        "sample_id": existing[st.sha256],
                        "name": st.item.name,
                        "split": st.item.split,
                        "excluded": None,
                        "annotations": anns,
                    }
                )
            bulk_insert(s, ItemRow.__table__, rows)
            number = version.number
        return DatasetVersion(self, name, number)

    # -- runs ----------------------------------------------------------------------------
    def create_run(self, task: str, params: dict[str, Any], data_ref: str | None = None) -> Run:
        """Register a new run (status ``created``) and make its directory."""
        version_id = None
        if data_ref is not None:
            v = self.version(data_ref)
            data_ref, version_id = v.ref, v.id
        run_id = new_run_id(task)
        with self.db.write() as s:
            s.add(
                RunRow(
                    id=run_id,
                    task=task,
                    status="created",
                    data_ref=data_ref,
                    version_id=version_id,
                    params=params,
                    author=self.settings.author,
                )
            )
        run = Run(self, run_id)
        (run.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        return run

    def run(self, run_id: str) -> Run:
        with self.db.read() as s:
            if s.get(RunRow, run_id) is None:
                matches = s.scalars(select(RunRow.id).where(RunRow.id.like(f"{run_id}%"))).all()
                if len(matches) == 1:
                    return Run(self, matches[0])
                raise NotFoundError(f"run {run_id!r} does not exist")
        return Run(self, run_id)

    def runs(self, task: str | None = None) -> list[Run]:
        with self.db.read() as s:
            q = select(RunRow.id).order_by(RunRow.created_at)
            if task:
                q = q.where(RunRow.task == task)
            ids = s.scalars(q).all()
        return [Run(self, i) for i in ids]

    def delete_run_dir(self, run: Run) -> None:
        shutil.rmtree(run.dir, ignore_errors=True)
