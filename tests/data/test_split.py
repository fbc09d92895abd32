"""Split assignment: fractions validated, stratified, deterministic, groups never straddle splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlforge.data.records import Annotation, SampleRecord
from dlforge.data.split import assign_splits
from dlforge.errors import InputError


def _records(labels: list[str | None], excluded: set[int] = frozenset()) -> list[SampleRecord]:
    return [
        SampleRecord(
            sample_id=i,
            sha256=f"{i:064x}",
            media_type="image",
            name=str(i),
            path=Path(f"{i}.jpg"),
            annotations=[Annotation("class", lab)] if lab else [],
            excluded="dup" if i in excluded else None,
        )
        for i, lab in enumerate(labels)
    ]


@pytest.mark.parametrize(("val", "test"), [(-0.1, 0.1), (1.0, 0.0), (0.1, 1.2), (0.5, 0.5), (0.7, 0.4)])
def test_bad_fractions_raise_input_error(val: float, test: float) -> None:
    with pytest.raises(InputError, match="must be"):
        assign_splits(_records(["a"] * 10), val=val, test=test, seed=0)


def test_stratified_with_rare_class_in_every_split() -> None:
    labels = ["cat"] * 300 + ["dog"] * 200 + ["emu"] * 4 + [None] * 50
    recs = _records(labels)
    out = assign_splits(recs, val=0.1, test=0.2, seed=3)
    assert set(out) == {r.sample_id for r in recs}
    per = Counter((labels[i], s) for i, s in out.items())
    for lab, n in (("cat", 300), ("dog", 200), (None, 50)):
        assert per[(lab, "val")] == round(0.1 * n) and per[(lab, "test")] == round(0.2 * n)
    assert all(per[("emu", s)] >= 1 for s in ("train", "val", "test"))


def test_deterministic_for_a_seed_and_varies_across_seeds() -> None:
    recs = _records(["a", "b", "c"] * 100)
    groups = [[0, 3, 6], [10, 11]]
    first = assign_splits(recs, 0.2, 0.2, seed=11, groups=groups)
    assert first == assign_splits(list(reversed(recs)), 0.2, 0.2, seed=11, groups=[[6, 3, 0], [11, 10]])
    assert first != assign_splits(recs, 0.2, 0.2, seed=12, groups=groups)


def test_excluded_records_and_unknown_group_ids_are_ignored() -> None:
    recs = _records(["a"] * 20, excluded={0, 1})
    out = assign_splits(recs, 0.25, 0.25, seed=0, groups=[[0, 2, 99]])
    assert set(out) == set(range(2, 20))
    assert assign_splits(recs, 0.0, 0.0, seed=0) == dict.fromkeys(range(2, 20), "train")


@settings(max_examples=60, deadline=None)
@given(
    labels=st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=120),
    raw_groups=st.lists(st.lists(st.integers(0, 150), min_size=1, max_size=6), max_size=25),
    val=st.floats(0, 0.45),
    test=st.floats(0, 0.45),
    seed=st.integers(0, 2**31),
)
def test_groups_never_straddle_splits(labels, raw_groups, val, test, seed) -> None:
    recs = _records(labels)
    out = assign_splits(recs, val, test, seed, groups=raw_groups)
    assert set(out) == set(range(len(labels)))
    assert set(out.values()) <= {"train", "val", "test"}
    # Overlapping groups merge, so check integrity transitively: every group is in one split.
    for group in raw_groups:
        assert len({out[i] for i in group if i in out}) <= 1
    if val == 0:
        assert "val" not in out.values()
    if test == 0:
        assert "test" not in out.values()
