"""Exact and near-duplicate detection over sample records (used by reports and label quality).

Near-duplicates come from a perceptual hash stored in ``record.meta["phash"]``
(a 64-bit pHash as 16 hex digits, as the store probes it; see dlforge.data.probe). Groups are
found with :func:`dlforge.data.neardup.near_duplicate_groups` (multi-index
hashing), never by comparing all pairs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from dlforge.data.records import SampleRecord

__all__ = ["duplicate_groups", "leakage"]


def _hash_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value & 0xFFFFFFFFFFFFFFFF
    try:
        s = str(value).strip().lower()
        if not s or len(s) > 16:  # only 64-bit hashes are comparable here
            return None
        return int(s, 16)
    except ValueError:
        return None


def _big_enough(meta: dict[str, Any]) -> bool:
    # Tiny images (8x8 digits) collide under any perceptual hash; records without a size are kept.
    from dlforge.data.neardup import MIN_HASH_SIDE

    return "width" not in meta or min(meta.get("width", 0), meta.get("height", 0)) >= MIN_HASH_SIDE


def duplicate_groups(records: Sequence[SampleRecord], max_distance: int = 4) -> dict[str, list[list[int]]]:
    """Groups of record indices: ``exact`` (same sha256) and ``near`` (pHash close, not exact).

    Args:
        records: the samples.
        max_distance: pHash Hamming threshold; negative disables near-duplicates.
    """
    by_sha: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_sha[r.sha256].append(i)
    exact = [g for g in by_sha.values() if len(g) > 1]
    near: list[list[int]] = []
    if max_distance >= 0:
        from dlforge.data.neardup import near_duplicate_groups

        hashes = {
            i: f"{h:016x}"
            for i, r in enumerate(records)
            if (h := _hash_int(r.meta.get("phash"))) is not None and _big_enough(r.meta)
        }
        # Multi-index hashing (the same search cleaning uses): no N x N comparison.
        for g in near_duplicate_groups(hashes, max_distance):
            if len({records[i].sha256 for i in g}) > 1:  # all-equal content is an exact group
                near.append(sorted(g))
    return {"exact": exact, "near": near}


def leakage(records: Sequence[SampleRecord], groups: Sequence[Sequence[int]]) -> list[dict[str, Any]]:
    """Duplicate groups whose members sit in more than one split (train/val/test leakage)."""
    out = []
    for g in groups:
        splits = sorted({records[i].split or "none" for i in g})
        if len(splits) > 1:
            out.append(
                {
                    "samples": [records[i].sample_id for i in g],
                    "names": [records[i].name for i in g],
                    "splits": splits,
                }
            )
    return out
