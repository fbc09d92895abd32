"""Datasets and their immutable versions: the Python face of the data service.

Every change — import, clean, split, relabel, rename/merge classes, merge,
sample, review marks — creates a new :class:`DatasetVersion` whose parent is
the version it started from. Nothing is deleted: cleaning and sampling
*exclude* items (with a reason) in the new version, and every earlier version
reads back exactly as it was.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, func, insert, select, text, update
from sqlalchemy.orm import Session

from dlforge.data.records import SPLITS, Annotation, SampleRecord
from dlforge.errors import InputError, NotFoundError
from dlforge.store.models import DatasetRow, ItemRow, SampleRow, VersionRow

if TYPE_CHECKING:
    from dlforge.workspace import Workspace


def copy_items(s: Session, from_version: int, to_version: int) -> None:
    """Copy every item row of one version into another (one INSERT ... SELECT)."""
    cols = ("uid", "sample_id", "name", "split", "excluded", "annotations")
    s.execute(
        insert(ItemRow).from_select(
            ("version_id", *cols),
            select(to_version, *(getattr(ItemRow, c) for c in cols)).where(ItemRow.version_id == from_version),
        )
    )


def sample_ids_by_sha(s: Session, shas: Iterable[str], chunk: int = 5000) -> dict[str, int]:
    """sha256 -> samples.id for the given hashes (chunked: SQLite caps bound parameters per statement)."""
    shas = list(shas)
    out: dict[str, int] = {}
    # One cached statement with an expanding parameter: a literal IN list compiles afresh per
    # chunk, and compiling 5000 bound names cost more than the lookup.
    q = select(SampleRow.sha256, SampleRow.id).where(SampleRow.sha256.in_(bindparam("shas", expanding=True)))
    for i in range(0, len(shas), chunk):
        out.update(s.execute(q, {"shas": shas[i : i + chunk]}).all())
    return out


def parse_ref(ref: str) -> tuple[str, int | None]:
    """``"name@3"`` -> ``("name", 3)``; ``"name"`` / ``"name@latest"`` -> ``("name", None)``."""
    name, _, ver = ref.partition("@")
    if not name:
        raise InputError(f"dataset reference {ref!r}: missing dataset name (expected NAME or NAME@VERSION)")
    if not ver or ver == "latest":
        return name, None
    try:
        number = int(ver.lstrip("v"))
    except ValueError:
        raise InputError(f"dataset reference {ref!r}: version {ver!r} is not a number") from None
    return name, number


@dataclass
class CleanResult:
    version: DatasetVersion
    report: Any  # dlforge.data.clean.CleanReport

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version.ref, "report": self.report.to_dict()}


@dataclass
class ItemChange:
    """New values for some fields of an item in a derived version."""

    split: str | None = None
    excluded: str | None = None
    annotations: list[Annotation] | None = None
    fields: set[str] = field(default_factory=set)


class Dataset:
    """A named dataset: a line of versions."""

    def __init__(self, ws: Workspace, name: str) -> None:
        self.ws = ws
        self.name = name

    def versions(self) -> list[DatasetVersion]:
        with self.ws.db.read() as s:
            ds = s.scalar(select(DatasetRow).where(DatasetRow.name == self.name))
            if ds is None:
                raise NotFoundError(f"dataset {self.name!r} does not exist")
            numbers = s.scalars(
                select(VersionRow.number).where(VersionRow.dataset_id == ds.id).order_by(VersionRow.number)
            ).all()
        return [DatasetVersion(self.ws, self.name, n) for n in numbers]

    def latest(self) -> DatasetVersion:
        versions = self.versions()
        if not versions:
            raise NotFoundError(f"dataset {self.name!r} has no versions")
        return versions[-1]

    def version(self, number: int | None = None) -> DatasetVersion:
        if number is None:
            return self.latest()
        v = DatasetVersion(self.ws, self.name, number)
        v._row()  # raises NotFoundError
        return v

    def log(self) -> list[dict[str, Any]]:
        return [v.describe() for v in self.versions()]

    def __repr__(self) -> str:
        return f"Dataset({self.name!r})"


# One row per (split, kind, label, review) with its number of annotations, unpacked from the
# items' JSON lists by each database's own JSON functions.
_SQLITE_ANNOTATION_COUNTS = text(
    "SELECT i.split, json_extract(a.value, '$.kind'), json_extract(a.value, '$.label'),"
    " coalesce(json_extract(a.value, '$.review'), 'unreviewed'), count(*)"
    " FROM version_items AS i, json_each(i.annotations) AS a"
    " WHERE i.version_id = :vid AND i.excluded IS NULL GROUP BY 1, 2, 3, 4"
)
_PG_ANNOTATION_COUNTS = text(
    "SELECT i.split, a.value ->> 'kind', a.value ->> 'label', coalesce(a.value ->> 'review', 'unreviewed'), count(*)"
    " FROM version_items AS i, json_array_elements(i.annotations) AS a(value)"
    " WHERE i.version_id = :vid AND i.excluded IS NULL GROUP BY 1, 2, 3, 4"
)


class DatasetVersion:
    """One immutable version of a dataset."""

    def __init__(self, ws: Workspace, name: str, number: int) -> None:
        self.ws = ws
        self.name = name
        self.number = number

    # -- identity and description --------------------------------------------------
    @property
    def ref(self) -> str:
        return f"{self.name}@{self.number}"

    def _row(self, s: Session | None = None) -> VersionRow:
        def find(sess: Session) -> VersionRow:
            row = sess.scalar(
                select(VersionRow)
                .join(DatasetRow)
                .where(DatasetRow.name == self.name, VersionRow.number == self.number)
            )
            if row is None:
                raise NotFoundError(f"dataset version {self.ref!r} does not exist")
            return row

        if s is not None:
            return find(s)
        with self.ws.db.read() as sess:
            return find(sess)

    @property
    def id(self) -> int:
        return self._row().id

    @property
    def classes(self) -> list[str]:
        return list(self._row().classes)

    @property
    def task(self) -> str | None:
        return self._row().task

    @property
    def message(self) -> str:
        return self._row().message

    @property
    def created_at(self) -> datetime:
        return self._row().created_at

    @property
    def parent(self) -> DatasetVersion | None:
        with self.ws.db.read() as s:
            row = self._row(s)
            if row.parent_id is None:
                return None
            parent = s.get(VersionRow, row.parent_id)
            assert parent is not None
            return DatasetVersion(self.ws, parent.dataset.name, parent.number)

    def counts(self) -> dict[str, Any]:
        with self.ws.db.read() as s:
            vid = self._row(s).id
            rows = s.execute(
                select(ItemRow.split, ItemRow.excluded.is_not(None), func.count())
                .where(ItemRow.version_id == vid)
                .group_by(ItemRow.split, ItemRow.excluded.is_not(None))
            ).all()
        out: dict[str, Any] = {"total": 0, "active": 0, "excluded": 0, "splits": {}}
        for split, excluded, n in rows:
            out["total"] += n
            if excluded:
                out["excluded"] += n
            else:
                out["active"] += n
                key = split or "unassigned"
                out["splits"][key] = out["splits"].get(key, 0) + n
        return out

    def describe(self) -> dict[str, Any]:
        with self.ws.db.read() as s:
            row = self._row(s)
            parent = s.get(VersionRow, row.parent_id) if row.parent_id else None
            d = {
                "version": self.ref,
                "number": row.number,
                "parent": parent.number if parent else None,
                "operation": row.operation,
                "message": row.message,
                "author": row.author,
                "created_at": row.created_at.isoformat(),
                "task": row.task,
                "classes": list(row.classes),
                "details": row.details,
            }
        d["counts"] = self.counts()
        return d

    # -- reading samples ---------------------------------------------------------------
    def records(
        self,
        split: str | None = None,
        *,
        include_excluded: bool = False,
        with_annotations: bool = True,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[SampleRecord]:
        """The version's samples, ordered by their uid.

        Args:
            split: ``train``/``val``/``test``, ``"unassigned"`` for samples without a split,
                or None for all.
            include_excluded: also return samples a clean excluded.
            with_annotations: False skips building the annotation objects.
            offset, limit: a page of the ordered list, cut in the database (the web UI's
                sample browser reads pages of versions with 100k samples).
        """
        if split is not None and split not in (*SPLITS, "unassigned"):
            raise InputError(f"split {split!r}: expected one of {', '.join(SPLITS)}, unassigned")
        with self.ws.db.read() as s:
            vid = self._row(s).id
            # Plain columns, not ORM entities: building 2 mapped objects per row was most of the
            # time of reading a large version.
            q = (
                select(
                    ItemRow.uid,
                    SampleRow.sha256,
                    SampleRow.media_type,
                    ItemRow.name,
                    SampleRow.meta,
                    ItemRow.split,
                    ItemRow.annotations,
                    ItemRow.excluded,
                )
                .join(SampleRow, ItemRow.sample_id == SampleRow.id)
                .where(ItemRow.version_id == vid)
                .order_by(ItemRow.uid)
            )
            if split == "unassigned":
                q = q.where(ItemRow.split.is_(None))
            elif split is not None:
                q = q.where(ItemRow.split == split)
            if not include_excluded:
                q = q.where(ItemRow.excluded.is_(None))
            if offset:
                q = q.offset(offset)
            if limit is not None:
                q = q.limit(limit)
            rows = s.execute(q).all()
        blob_path = self.ws.blobs.path
        return [
            SampleRecord(
                sample_id=uid,
                sha256=sha,
                media_type=media_type,
                name=name,
                path=blob_path(sha),
                meta=dict(meta),
                split=split_,
                annotations=[Annotation.from_dict(a) for a in anns] if with_annotations else [],
                excluded=excluded,
            )
            for uid, sha, media_type, name, meta, split_, anns, excluded in rows
        ]

    def annotation_counts(self) -> list[tuple[str | None, str, str | None, str, int]]:
        """``(split, kind, label, review, n)``: how many annotations of the active samples share them.

        Counted in the database from the JSON column (decoding every sample's annotations in
        Python took 1.8 s for a 100k-sample version; this takes a fraction of that), which is what
        the web overview of a version needs.
        """
        with self.ws.db.read() as s:
            vid = self._row(s).id
            sql = _PG_ANNOTATION_COUNTS if s.get_bind().dialect.name == "postgresql" else _SQLITE_ANNOTATION_COUNTS
            return [(sp, kind, label, review, int(n)) for sp, kind, label, review, n in s.execute(sql, {"vid": vid})]

    def blob_path(self, sha256: str) -> Path:
        return self.ws.blobs.path(sha256)

    # -- deriving new versions ----------------------------------------------------------
    def derive(
        self,
        operation: str,
        message: str,
        changes: dict[int, ItemChange] | None = None,
        *,
        classes: list[str] | None = None,
        task: str | None = None,
        details: dict[str, Any] | None = None,
        label_map: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
    ) -> DatasetVersion:
        """Create a child version: the parent's items copied, then ``changes`` applied.

        All of it happens in one write transaction, so a failure leaves no version behind.
        """
        with self.ws.db.write() as s:
            parent = self._row(s)
            new = self.ws._new_version(
                s,
                parent.dataset_id,
                operation=operation,
                message=message,
                parent_id=parent.id,
                task=task if task is not None else parent.task,
                classes=classes if classes is not None else list(parent.classes),
                details=details or {},
            )
            copy_items(s, parent.id, new.id)
            if label_map is not None:
                for item in s.scalars(select(ItemRow).where(ItemRow.version_id == new.id)):
                    item.annotations = label_map(list(item.annotations))
            if changes:
                params = []
                for uid, ch in changes.items():
                    values: dict[str, Any] = {}
                    if "split" in ch.fields:
                        values["split"] = ch.split
                    if "excluded" in ch.fields:
                        values["excluded"] = ch.excluded
                    if "annotations" in ch.fields:
                        values["annotations"] = [a.to_dict() for a in ch.annotations or []]
                    if values:
                        params.append((uid, values))
                # Group by the set of fields so each group is one executemany.
                groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
                for uid, values in params:
                    groups[tuple(sorted(values))].append({"b_uid": uid, **values})
                from sqlalchemy import bindparam

                for keys, rows in groups.items():
                    stmt = (
                        update(ItemRow.__table__)
                        .where(
                            ItemRow.__table__.c.version_id == new.id,
                            ItemRow.__table__.c.uid == bindparam("b_uid"),
                        )
                        .values({k: bindparam(k) for k in keys})
                    )
                    s.connection().execute(stmt, rows)
            number = new.number
        return DatasetVersion(self.ws, self.name, number)

    def clean(self, config: Any = None, *, message: str | None = None, **checks: Any) -> CleanResult:
        """Run the clean checks and make a version with the bad items excluded.

        ``checks`` override fields of :class:`dlforge.data.clean.CleanConfig`.
        """
        from dlforge.data.clean import CleanConfig, find_issues

        if config is None:
            config = CleanConfig(**checks)
        elif checks:
            config = config.model_copy(update=checks) if hasattr(config, "model_copy") else config
        records = self.records()
        report = find_issues(records, self.classes, config)
        changes = {uid: ItemChange(excluded=reason, fields={"excluded"}) for uid, reason in report.excluded.items()}
        summary = report.to_dict()
        details = {
            k: v for k, v in summary.items() if k not in ("excluded", "near_duplicate_groups", "bad_annotations")
        }
        details["excluded"] = len(report.excluded)
        new = self.derive("clean", message or f"clean: excluded {len(report.excluded)} items", changes, details=details)
        return CleanResult(new, report)

    def split(
        self, val: float = 0.1, test: float = 0.1, seed: int = 0, *, message: str | None = None
    ) -> DatasetVersion:
        """Stratified train/val/test assignment; near-duplicate groups stay together."""
        from dlforge.data.neardup import hashable, near_duplicate_groups
        from dlforge.data.split import assign_splits

        records = self.records()
        if not records:
            raise InputError(f"{self.ref}: no active samples to split")
        # The same perceptual hashes clean uses (phash + dhash); texts group by their normalised form.
        hashes = {r.sample_id: r.meta["phash"] + r.meta["dhash"] for r in records if hashable(r.meta)}
        groups = near_duplicate_groups(hashes) if hashes else []
        same: dict[str, list[int]] = defaultdict(list)
        for r in records:
            same[r.meta.get("norm_sha") or r.sha256].append(r.sample_id)
        groups = _merge_groups(groups + [g for g in same.values() if len(g) > 1])
        assignment = assign_splits(records, val=val, test=test, seed=seed, groups=groups)
        changes = {uid: ItemChange(split=sp, fields={"split"}) for uid, sp in assignment.items()}
        counts: dict[str, int] = defaultdict(int)
        for sp in assignment.values():
            counts[sp] += 1
        details = {"val": val, "test": test, "seed": seed, "counts": dict(counts), "groups": len(groups)}
        msg = message or f"split train/val/test {dict(counts)} seed={seed}"
        return self.derive("split", msg, changes, details=details)

    def assign_splits(self, splits: dict[int, str | None], *, message: str = "") -> DatasetVersion:
        """Set splits explicitly (uid -> train/val/test/None), e.g. to reproduce an external split."""
        bad = {sp for sp in splits.values() if sp is not None and sp not in SPLITS}
        if bad:
            raise InputError(f"{self.ref}: unknown split(s) {sorted(bad)}; expected {', '.join(SPLITS)}")
        changes = {uid: ItemChange(split=sp, fields={"split"}) for uid, sp in splits.items()}
        return self.derive("split", message or f"assign splits to {len(changes)} samples", changes)

    def relabel(
        self, labels: dict[int, list[str] | str], *, author: str | None = None, message: str = ""
    ) -> DatasetVersion:
        """Set the class label(s) of the given samples (by uid), keeping other annotations."""
        classes = self.classes
        records = {r.sample_id: r for r in self.records(include_excluded=True)}
        changes: dict[int, ItemChange] = {}
        for uid, new_labels in labels.items():
            if uid not in records:
                raise InputError(f"{self.ref}: sample {uid} does not exist")
            new_labels = [new_labels] if isinstance(new_labels, str) else list(new_labels)
            for lab in new_labels:
                if lab not in classes:
                    classes.append(lab)
            keep = [a for a in records[uid].annotations if a.kind != "class"]
            who = author or self.ws.settings.author
            anns = keep + [Annotation("class", lab, author=who, review="accepted") for lab in new_labels]
            changes[uid] = ItemChange(annotations=anns, fields={"annotations"})
        return self.derive("relabel", message or f"relabel {len(changes)} samples", changes, classes=classes)

    def rename_classes(self, mapping: dict[str, str], *, message: str = "") -> DatasetVersion:
        """Rename classes; mapping two classes to one name merges them."""
        classes = self.classes
        unknown = [c for c in mapping if c not in classes]
        if unknown:
            raise InputError(f"{self.ref}: class(es) {', '.join(map(repr, unknown))} not in the class list {classes}")
        new_classes: list[str] = []
        for c in classes:
            n = mapping.get(c, c)
            if n not in new_classes:
                new_classes.append(n)

        def remap(anns: list[dict[str, Any]]) -> list[dict[str, Any]]:
            out, seen = [], set()
            for a in anns:
                a = dict(a)
                if a.get("label") in mapping:
                    a["label"] = mapping[a["label"]]
                if a["kind"] == "class":  # merging can make two identical class labels
                    if a["label"] in seen:
                        continue
                    seen.add(a["label"])
                if a["kind"] == "segmap":
                    a["data"] = {
                        **a["data"],
                        "classes": {k: mapping.get(v, v) for k, v in a["data"]["classes"].items()},
                    }
                out.append(a)
            return out

        op = "merge_classes" if len(new_classes) < len(classes) else "rename_classes"
        return self.derive(op, message or f"{op}: {mapping}", classes=new_classes, label_map=remap)

    def sample(
        self,
        n: int | None = None,
        *,
        frac: float | None = None,
        seed: int = 0,
        stratified: bool = True,
        message: str = "",
    ) -> DatasetVersion:
        """Keep a random (stratified) subset; the rest is excluded as ``sampled out``."""
        records = self.records()
        total = len(records)
        k = n if n is not None else round((frac or 0) * total)
        if not 0 < k <= total:
            raise InputError(f"{self.ref}: sample size {k} must be between 1 and {total}")
        rng = random.Random(seed)
        if stratified:
            strata: dict[str, list[SampleRecord]] = defaultdict(list)
            for r in records:
                strata[(r.labels() or ["<none>"])[0]].append(r)
            # Largest-remainder allocation: quotas proportional to stratum size, summing to exactly k.
            quotas = {key: k * len(m) / total for key, m in strata.items()}
            take = {key: int(q) for key, q in quotas.items()}
            for key in sorted(quotas, key=lambda c: quotas[c] - take[c], reverse=True)[: k - sum(take.values())]:
                take[key] += 1
            keep: set[int] = set()
            for key, members in strata.items():
                keep.update(m.sample_id for m in rng.sample(members, take[key]))
        else:
            keep = {r.sample_id for r in rng.sample(records, k)}
        changes = {
            r.sample_id: ItemChange(excluded="sampled out", fields={"excluded"})
            for r in records
            if r.sample_id not in keep
        }
        return self.derive(
            "sample",
            message or f"sample {len(keep)} of {total} (seed={seed})",
            changes,
            details={"kept": len(keep), "seed": seed},
        )

    def merge(self, other: DatasetVersion, *, message: str = "") -> DatasetVersion:
        """A new version of this dataset holding this version's items plus ``other``'s."""
        theirs = other.records(include_excluded=True)
        classes = self.classes + [c for c in other.classes if c not in self.classes]
        with self.ws.db.write() as s:
            parent = self._row(s)
            new = self.ws._new_version(
                s,
                parent.dataset_id,
                operation="merge",
                message=message or f"merge {other.ref}",
                parent_id=parent.id,
                task=parent.task or other.task,
                classes=classes,
                details={"merged": other.ref, "added": len(theirs)},
            )
            copy_items(s, parent.id, new.id)
            next_uid = self.ws._next_uid(s, parent.dataset_id)
            sample_ids = sample_ids_by_sha(s, {r.sha256 for r in theirs})
            s.execute(
                insert(ItemRow),
                [
                    {
                        "version_id": new.id,
                        "uid": next_uid + i,
                        "sample_id": sample_ids[r.sha256],
                        "name": r.name,
                        "split": r.split,
                        "excluded": r.excluded,
                        "annotations": [a.to_dict() for a in r.annotations],
                    }
                    for i, r in enumerate(theirs)
                ],
            )
            number = new.number
        return DatasetVersion(self.ws, self.name, number)

    def mark_for_review(self, flags: dict[int, dict[str, Any]], *, message: str = "") -> DatasetVersion:
        """Mark samples "needs_review" with a suggested label and score (label-quality mining)."""
        records = {r.sample_id: r for r in self.records()}
        changes = {}
        for uid, flag in flags.items():
            if uid not in records:
                continue
            anns = []
            for a in records[uid].annotations:
                if a.kind == "class":
                    a = Annotation(
                        a.kind,
                        a.label,
                        {**a.data, **{k: v for k, v in flag.items() if k != "score"}},
                        a.author,
                        "needs_review",
                        flag.get("score"),
                    )
                anns.append(a)
            changes[uid] = ItemChange(annotations=anns, fields={"annotations"})
        return self.derive("review_flags", message or f"flag {len(changes)} samples for review", changes)

    def export(self, format: str, out: str | Path, *, split: str | None = None, **options: Any) -> dict[str, Any]:
        """Write the version (or one split) in a dataset format."""
        from dlforge.data.formats import get_format

        fmt = get_format(format)
        records = self.records(split=split)
        if not records:
            raise InputError(f"{self.ref}: nothing to export{' in split ' + split if split else ''}")
        out = Path(out)
        if format == "voc":  # segmentation maps live in the blob store
            options.setdefault("resolve_blob", self.blob_path)
        summary = fmt.write(records, self.classes, out, **options)
        return {"version": self.ref, "out": str(out), **summary}

    def __repr__(self) -> str:
        return f"DatasetVersion({self.ref!r})"


def _merge_groups(groups: Iterable[list[int]]) -> list[list[int]]:
    """Union overlapping groups of ids."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for g in groups:
        for x in g[1:]:
            parent[find(x)] = find(g[0])
        if g:
            find(g[0])
    merged: dict[int, list[int]] = defaultdict(list)
    for x in parent:
        merged[find(x)].append(x)
    return [sorted(v) for v in merged.values() if len(v) > 1]
