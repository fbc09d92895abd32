"""Assign train/val/test splits: stratified by label, reproducible, leak-free.

Near-duplicate groups (from :mod:`dlforge.data.neardup`, or exact duplicates) are
placed as one unit, so no image has a near copy on the other side of the
train/test line. Units are stratified by their primary label (unlabelled samples
form their own stratum) and each stratum is shuffled with the seed and cut to the
requested fractions.
"""

from __future__ import annotations

import random
from collections import Counter

from dlforge.data.records import SampleRecord
from dlforge.errors import InputError


def _check_fractions(val: float, test: float) -> None:
    for name, f in (("val", val), ("test", test)):
        if not 0.0 <= f < 1.0:
            raise InputError(f"{name}={f}: a split fraction must be in [0, 1)")
    if val + test >= 1.0:
        raise InputError(f"val + test = {val + test:g}: must be below 1 so that train keeps samples")


def _units(ids: list[int], groups: list[list[int]] | None) -> list[list[int]]:
    """Sample ids bundled into placement units: overlapping groups merge, the rest are singletons."""
    parent = {i: i for i in ids}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups or []:
        members = [g for g in group if g in parent]  # ids of excluded/unknown samples are ignored
        for other in members[1:]:
            a, b = find(members[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)
    units: dict[int, list[int]] = {}
    for i in ids:
        units.setdefault(find(i), []).append(i)
    return sorted((sorted(u) for u in units.values()), key=lambda u: u[0])


def assign_splits(
    records: list[SampleRecord],
    val: float,
    test: float,
    seed: int,
    groups: list[list[int]] | None = None,
) -> dict[int, str]:
    """Assign each active record to ``"train"``, ``"val"`` or ``"test"``.

    Args:
        records: The samples to split; excluded records are left out of the result.
        val: Fraction of samples for validation, in [0, 1).
        test: Fraction for test, in [0, 1); ``val + test`` must be below 1.
        seed: The same seed, records and groups always give the same assignment.
        groups: Sample-id groups that must share a split (near duplicates).

    Returns:
        sample_id -> split name.

    Raises:
        InputError: A fraction outside [0, 1) or ``val + test >= 1``.

    Every label with at least as many units as there are non-empty splits gets at
    least one unit in each of them (a rare class still appears in val and test).
    A group's stratum is its members' most common primary label.
    """
    _check_fractions(val, test)
    live = {r.sample_id: r for r in records if r.excluded is None}
    units = _units(sorted(live), groups)

    strata: dict[str, list[list[int]]] = {}
    for unit in units:
        primaries = Counter(live[i].labels()[0] if live[i].labels() else None for i in unit)
        # Most common label; ties go to the name that sorts first so the result is stable.
        label = min(primaries.items(), key=lambda kv: (-kv[1], kv[0] is None, str(kv[0])))[0]
        key = "\x00unlabelled" if label is None else f"label:{label}"
        strata.setdefault(key, []).append(unit)

    wanted = [(name, frac) for name, frac in (("test", test), ("val", val)) if frac > 0]
    rng = random.Random(seed)
    out: dict[int, str] = {}
    for key in sorted(strata):
        stratum = strata[key]
        rng.shuffle(stratum)
        total = sum(len(u) for u in stratum)
        targets = {name: round(frac * total) for name, frac in wanted}
        if len(stratum) > len(wanted):
            # Enough units for every split to see this label: at least one each.
            for name in targets:
                targets[name] = max(1, targets[name])
        filled = dict.fromkeys(targets, 0)
        for unit in stratum:
            # The eval split furthest below its target takes the unit; when all are full, train.
            need = [(targets[n] - filled[n], n) for n in targets if filled[n] < targets[n]]
            if need:
                name = max(need)[1]
                filled[name] += len(unit)
            else:
                name = "train"
            for sid in unit:
                out[sid] = name
    return out
