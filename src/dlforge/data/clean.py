"""Find the samples and annotations of a dataset version that should not reach training.

:func:`find_issues` runs the checks named in :class:`CleanConfig` over a version's
records and returns a :class:`CleanReport`: which samples to exclude and why, the
near-duplicate groups, and the annotations that are wrong but do not by themselves
exclude their sample. ``DatasetVersion.clean(**checks)`` turns the report into a new
version with those samples marked excluded (nothing is deleted).

Metadata comes from ``record.meta``, where the import stored
:func:`dlforge.data.probe.probe_many`'s output; only records whose meta lacks it are
probed again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from dlforge.data.neardup import DEFAULT_MAX_DISTANCE_128, MIN_HASH_SIDE, hashable, near_duplicate_groups
from dlforge.data.probe import HASH_ALGO, IMAGE_FIELDS, TEXT_FIELDS, probe_many
from dlforge.data.records import SampleRecord

#: Check names, in the order they run; also the keys of :attr:`CleanReport.counts`.
CHECKS = (
    "unreadable",
    "tiny_images",
    "empty_texts",
    "exact_duplicates",
    "text_duplicates",
    "near_duplicates",
    "conflicting_labels",
    "bad_boxes",
    "unknown_labels",
)


class CleanConfig(BaseModel):
    """Which checks to run and their thresholds (flat, so ``clean(**checks)`` can set any)."""

    model_config = ConfigDict(extra="forbid")

    unreadable: bool = True
    """Exclude images/texts that cannot be decoded (truncated, corrupt, not UTF-8)."""
    tiny_images: bool = True
    min_side: int = Field(default=16, ge=1)
    """Images whose shorter side is below this many pixels are excluded."""
    empty_texts: bool = True
    """Exclude texts and rows that are empty or only whitespace."""
    exact_duplicates: bool = True
    """Same bytes (same sha256): keep the smallest sample id, exclude the rest."""
    text_duplicates: bool = True
    """Texts equal after normalisation (NFKC, casefold, whitespace collapsed)."""
    near_duplicates: bool = True
    near_duplicate_max_distance: int = Field(default=DEFAULT_MAX_DISTANCE_128, ge=0, le=127)
    """Largest Hamming distance between the 128-bit ``phash + dhash`` of two near duplicates."""
    near_duplicate_min_side: int = Field(default=MIN_HASH_SIDE, ge=1)
    """Images smaller than this are not hashed: at 8x8 (digits) every hash looks alike."""
    conflicting_labels: bool = True
    """A duplicate group whose members carry different class labels: exclude the whole group."""
    bad_boxes: bool = True
    box_tolerance: float = Field(default=1.0, ge=0)
    """Pixels a box may reach past the image border before it counts as outside."""
    exclude_bad_boxes: bool = False
    """Also exclude samples that have a bad box (otherwise only the annotation is listed)."""
    unknown_labels: bool = True
    """Annotations whose label is not in the version's class list."""
    exclude_unknown_labels: bool = False


@dataclass
class CleanReport:
    """What :func:`find_issues` found."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    excluded: dict[int, str] = field(default_factory=dict)
    """sample_id -> reason, for every sample the clean version should exclude."""
    near_duplicate_groups: list[list[int]] = field(default_factory=list)
    duplicate_groups: list[list[int]] = field(default_factory=list)
    """Groups of exact (same sha256) and normalised-text duplicates."""
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    """``{"samples": [...], "labels": {...}}`` for each group with disagreeing labels."""
    bad_annotations: list[dict[str, Any]] = field(default_factory=list)
    """``{"sample_id", "index", "reason"}``; ``index`` is the annotation's position."""
    checked: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "counts": dict(self.counts),
            "excluded": {str(k): v for k, v in sorted(self.excluded.items())},
            "near_duplicate_groups": self.near_duplicate_groups,
            "duplicate_groups": self.duplicate_groups,
            "conflicts": self.conflicts,
            "bad_annotations": self.bad_annotations,
        }


def _metadata(records: list[SampleRecord]) -> dict[int, dict[str, Any]]:
    """Each record's probe metadata, probing only the records whose meta lacks it."""
    meta: dict[int, dict[str, Any]] = {}
    missing: list[SampleRecord] = []
    for r in records:
        needed = {"image": IMAGE_FIELDS, "text": TEXT_FIELDS, "row": TEXT_FIELDS}.get(r.media_type, ())
        # Media the probe does not know (yet) keep their meta: only the sha256 check applies.
        # Image hashes from an older algorithm would not compare with the others: re-probe.
        current = r.media_type != "image" or r.meta.get("hash_algo") == HASH_ALGO
        if "error" in r.meta or (current and all(k in r.meta for k in needed)):
            meta[r.sample_id] = r.meta
        else:
            missing.append(r)
    if missing:
        probed = probe_many([(r.path, r.media_type) for r in missing])
        for r, m in zip(missing, probed):
            meta[r.sample_id] = {**r.meta, **m}
    return meta


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        root = self.parent.setdefault(x, x)
        while root != self.parent[root]:
            root = self.parent[root]
        while x != root:  # path compression
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for x in self.parent:
            out.setdefault(self.find(x), []).append(x)
        return sorted((sorted(g) for g in out.values() if len(g) > 1), key=lambda g: g[0])


def _box_problem(bbox: Any, width: int | None, height: int | None, tol: float) -> str | None:
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        return "malformed box (expected [x1, y1, x2, y2])"
    try:
        x1, y1, x2, y2 = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return "malformed box (non-numeric coordinates)"
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return "malformed box (non-finite coordinates)"
    if x2 <= x1 or y2 <= y1:
        return f"zero or negative area box [{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
    if width is not None and height is not None and (x1 < -tol or y1 < -tol or x2 > width + tol or y2 > height + tol):
        return f"box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] outside the {width}x{height} image"
    return None


def find_issues(
    records: list[SampleRecord],
    classes: list[str],
    config: CleanConfig | None = None,
) -> CleanReport:
    """Run the enabled checks over ``records`` and report what to exclude.

    Records already excluded are ignored. In each duplicate group (same bytes, same
    normalised text, or near-duplicate images) the smallest sample id is kept and the
    others excluded, unless the members' class labels disagree: then the whole group is
    excluded as a conflict, since no one can tell which label is right.

    Args:
        records: The version's samples.
        classes: The version's class list (empty: the unknown-label check is skipped).
        config: Checks and thresholds; defaults to every check on.

    Returns:
        A :class:`CleanReport`.
    """
    cfg = config or CleanConfig()
    report = CleanReport()
    live = sorted((r for r in records if r.excluded is None), key=lambda r: r.sample_id)
    report.checked = len(live)
    meta = _metadata(live)
    excluded = report.excluded

    def exclude(sid: int, check: str, reason: str) -> None:
        if sid not in excluded:
            excluded[sid] = reason
            report.counts[check] += 1

    # Per-sample checks: unusable samples leave before grouping so they never get "kept".
    for r in live:
        m = meta[r.sample_id]
        if "error" in m:
            if cfg.unreadable:
                exclude(r.sample_id, "unreadable", f"unreadable: {m['error']}")
            continue
        if r.media_type == "image" and cfg.tiny_images:
            w, h = m.get("width"), m.get("height")
            if w is not None and h is not None and min(w, h) < cfg.min_side:
                exclude(r.sample_id, "tiny_images", f"tiny image {w}x{h} (min side {cfg.min_side})")
        elif r.media_type in ("text", "row") and cfg.empty_texts and m.get("empty"):
            exclude(r.sample_id, "empty_texts", "empty text")

    usable = [r for r in live if r.sample_id not in excluded]
    by_id = {r.sample_id: r for r in usable}

    # Duplicate relations. One union-find holds them all, so a sample that is both an
    # exact and a near duplicate lands in one group with one keeper.
    uf = _UnionFind()
    exact = _UnionFind()
    if cfg.exact_duplicates:
        first_by_sha: dict[str, int] = {}
        for r in usable:
            keep = first_by_sha.setdefault(r.sha256, r.sample_id)
            if keep != r.sample_id:
                uf.union(keep, r.sample_id)
                exact.union(keep, r.sample_id)
    if cfg.text_duplicates:
        first_by_norm: dict[str, int] = {}
        for r in usable:
            norm = meta[r.sample_id].get("norm_sha") if r.media_type in ("text", "row") else None
            if norm is None:
                continue
            keep = first_by_norm.setdefault(f"{r.media_type}:{norm}", r.sample_id)
            if keep != r.sample_id:
                uf.union(keep, r.sample_id)
                exact.union(keep, r.sample_id)
    if cfg.near_duplicates:
        hashes = {
            r.sample_id: meta[r.sample_id]["phash"] + meta[r.sample_id]["dhash"]
            for r in usable
            if r.media_type == "image" and hashable(meta[r.sample_id], cfg.near_duplicate_min_side)
        }
        report.near_duplicate_groups = near_duplicate_groups(hashes, cfg.near_duplicate_max_distance)
        for group in report.near_duplicate_groups:
            for sid in group[1:]:
                uf.union(group[0], sid)
    report.duplicate_groups = exact.groups()

    for group in uf.groups():
        label_sets = {sid: tuple(sorted(set(by_id[sid].labels()))) for sid in group}
        distinct = {labels for labels in label_sets.values() if labels}
        if cfg.conflicting_labels and len(distinct) > 1:
            report.conflicts.append({"samples": group, "labels": {str(s): list(lab) for s, lab in label_sets.items()}})
            names = " vs ".join("/".join(lab) for lab in sorted(distinct))
            for sid in group:
                exclude(sid, "conflicting_labels", f"conflicting labels in duplicate group {group}: {names}")
            continue
        keep = group[0]
        for sid in group[1:]:
            rec, kept = by_id[sid], by_id[keep]
            if rec.sha256 == kept.sha256:
                exclude(sid, "exact_duplicates", f"exact duplicate of sample {keep}")
            elif exact.find(sid) == exact.find(keep):
                exclude(sid, "text_duplicates", f"normalised text duplicate of sample {keep}")
            else:
                exclude(sid, "near_duplicates", f"near duplicate of sample {keep}")

    # Annotation-level checks: list each bad annotation; exclude its sample only on request.
    known = set(classes)
    for r in usable:
        m = meta[r.sample_id]
        for index, ann in enumerate(r.annotations):
            if cfg.bad_boxes and ann.kind == "box":
                problem = _box_problem(ann.data.get("bbox"), m.get("width"), m.get("height"), cfg.box_tolerance)
                if problem:
                    report.bad_annotations.append({"sample_id": r.sample_id, "index": index, "reason": problem})
                    report.counts["bad_boxes"] += 1
                    if cfg.exclude_bad_boxes:
                        excluded.setdefault(r.sample_id, f"bad box: {problem}")
            if cfg.unknown_labels and known and ann.label is not None and ann.label not in known:
                reason = f"label {ann.label!r} not in the class list"
                report.bad_annotations.append({"sample_id": r.sample_id, "index": index, "reason": reason})
                report.counts["unknown_labels"] += 1
                if cfg.exclude_unknown_labels:
                    excluded.setdefault(r.sample_id, reason)
    return report


def summarize(report: CleanReport) -> str:
    """One line for logs and the CLI: how many were excluded and the non-zero counts."""
    parts = [f"{k.replace('_', ' ')}: {v}" for k, v in report.counts.items() if v]
    head = f"{len(report.excluded)} of {report.checked} samples excluded"
    return f"{head} ({', '.join(parts)})" if parts else head
