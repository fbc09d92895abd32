"""What the web platform shows about a dataset version, computed from the library's records.

The routes in :mod:`dlforge.web.app` stay one call each: they hand a
:class:`~dlforge.data.dataset.DatasetVersion` to a function here and return its dict.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from dlforge.data.dataset import DatasetVersion
from dlforge.data.records import REVIEW_STATES, SampleRecord
from dlforge.errors import InputError

#: Text samples are shown as a snippet of this many characters.
SNIPPET_CHARS = 280
MAX_PAGE = 200


def sample_labels(r: SampleRecord) -> list[str]:
    """Every label a sample carries: class labels, then labels of boxes/polygons/masks (no repeats)."""
    out: list[str] = []
    for a in r.annotations:
        if a.label is not None and a.label not in out:
            out.append(a.label)
    return out


AnnotationCounts = Iterable[tuple[str | None, str, str | None, str, int]]


def class_distribution(counts: AnnotationCounts, splits: Iterable[str] = ()) -> dict[str, Any]:
    """Class counts per split, from :meth:`DatasetVersion.annotation_counts` rows.

    Classification data counts samples per class; detection/segmentation data
    (labels only on boxes, polygons or masks) counts objects, as a detector sees them.

    Args:
        counts: ``(split, kind, label, review, n)`` rows.
        splits: splits that hold samples (also those whose samples carry no annotation).

    Returns:
        ``{"basis": "samples"|"objects", "splits": [...], "counts": {class: {split: n}}}``;
        samples without a split count under ``"unassigned"``.
    """
    counts = list(counts)
    has_class = any(kind == "class" for _, kind, _, _, _ in counts)
    per_class: dict[str, Counter[str]] = defaultdict(Counter)
    seen = set(splits)
    for split, kind, label, _review, n in counts:
        split = split or "unassigned"
        seen.add(split)
        if label is not None and (kind == "class") == has_class:
            per_class[label][split] += n
    order = [s for s in ("train", "val", "test", "unassigned") if s in seen]
    return {
        "basis": "samples" if has_class else "objects",
        "splits": order,
        "counts": {c: {s: n[s] for s in order} for c, n in sorted(per_class.items())},
    }


def review_counts(counts: AnnotationCounts) -> dict[str, int]:
    """How many annotations are in each review state (only the states that occur)."""
    c: Counter[str] = Counter()
    for _split, _kind, _label, review, n in counts:
        c[review] += n
    return {s: c[s] for s in REVIEW_STATES if c[s]}


def version_overview(v: DatasetVersion) -> dict[str, Any]:
    """A version's description plus its class distribution per split and review states."""
    described = v.describe()
    counts = v.annotation_counts()
    return {
        **described,
        "distribution": class_distribution(counts, described["counts"]["splits"]),
        "review": review_counts(counts),
    }


def _snippet(r: SampleRecord) -> str | None:
    if r.media_type == "image":
        return None
    try:
        with open(r.path, "rb") as f:
            # A few bytes more than needed: a cut multi-byte character is dropped, not shown broken.
            return f.read(SNIPPET_CHARS * 4).decode("utf-8", errors="ignore")[:SNIPPET_CHARS]
    except OSError as exc:
        return f"<unreadable: {exc.strerror}>"


def sample_page(
    v: DatasetVersion,
    *,
    split: str | None = None,
    label: str | None = None,
    review: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> dict[str, Any]:
    """One page of a version's active samples, filtered by split, label and review state.

    Args:
        v: the dataset version.
        split: ``train``/``val``/``test``, ``unassigned`` for samples without one, or None for all.
        label: keep samples carrying this label (on a class annotation or a box/polygon/mask).
        review: keep samples with an annotation in this review state.
        offset: index of the first sample of the page in the filtered list.
        limit: page size (at most 200).

    Returns:
        ``{"total": filtered count, "offset", "samples": [...]}``; each sample has uid, name,
        split, media_type, sha256, width/height (images), snippet (text), annotations.
    """
    if review is not None and review not in REVIEW_STATES:
        raise InputError(f"review {review!r}: expected one of {', '.join(REVIEW_STATES)}")
    if offset < 0 or limit < 1:
        raise InputError(f"offset {offset} / limit {limit}: expected offset >= 0 and limit >= 1")
    limit = min(limit, MAX_PAGE)
    if label is None and review is None:
        # Paged in the database: browsing a 100k-sample version reads one page, not all of it.
        counts = v.counts()
        total = counts["active"] if split is None else counts["splits"].get(split, 0)
        page = v.records(split=split, offset=offset, limit=limit)
    else:
        records = v.records(split=split)
        if label is not None:
            records = [r for r in records if label in sample_labels(r)]
        if review is not None:
            records = [r for r in records if any(a.review == review for a in r.annotations)]
        total, page = len(records), records[offset : offset + limit]
    return {
        "total": total,
        "offset": offset,
        "samples": [
            {
                "uid": r.sample_id,
                "name": r.name,
                "split": r.split,
                "media_type": r.media_type,
                "sha256": r.sha256,
                "width": r.meta.get("width"),
                "height": r.meta.get("height"),
                "snippet": _snippet(r),
                "meta": r.meta,
                "annotations": [a.to_dict() for a in r.annotations],
            }
            for r in page
        ],
    }
