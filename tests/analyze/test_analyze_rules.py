"""Association rules on a known basket set (dlforge.analyze.association_rules)."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pandas as pd
import pytest

from dlforge.analyze import association_rules, read_transactions

BASKETS = [
    ["Milk", "Onion", "Nutmeg", "Kidney Beans", "Eggs", "Yogurt"],
    ["Dill", "Onion", "Nutmeg", "Kidney Beans", "Eggs", "Yogurt"],
    ["Milk", "Apple", "Kidney Beans", "Eggs"],
    ["Milk", "Unicorn", "Corn", "Kidney Beans", "Yogurt"],
    ["Corn", "Onion", "Onion", "Kidney Beans", "Ice cream", "Eggs"],
]


def _support(items: set[str]) -> float:
    return sum(items <= set(b) for b in BASKETS) / len(BASKETS)


@pytest.mark.parametrize("algorithm", ["apriori", "fpgrowth"])
def test_rules_match_hand_counts(algorithm: str, tmp_path: Path) -> None:
    res = association_rules(BASKETS, algorithm=algorithm, min_support=0.6, min_confidence=0.7, out=str(tmp_path))
    itemsets = res.extra_tables["itemsets"]
    # Count frequent itemsets independently.
    universe = sorted({i for b in BASKETS for i in b})
    expected = {", ".join(sorted(c)) for k in (1, 2, 3) for c in combinations(universe, k) if _support(set(c)) >= 0.6}
    assert set(itemsets["itemsets"]) == expected and len(expected) == 11
    rules = res.table
    assert len(rules) > 0
    for r in rules.itertuples():
        a, c = set(r.antecedents.split(", ")), set(r.consequents.split(", "))
        conf = _support(a | c) / _support(a)
        assert r.support == pytest.approx(_support(a | c))
        assert r.confidence == pytest.approx(conf) and conf >= 0.7
        assert r.lift == pytest.approx(conf / _support(c))
    onion = rules[(rules.antecedents == "Onion") & (rules.consequents == "Eggs")].iloc[0]
    assert onion.confidence == pytest.approx(1.0) and onion.lift == pytest.approx(1.25)
    assert rules["lift"].is_monotonic_decreasing
    assert Path(res.files["png"]).exists() and Path(res.files["itemsets_csv"]).exists()


def test_rules_input_layouts(tmp_path: Path) -> None:
    long = pd.DataFrame([(t, i) for t, b in enumerate(BASKETS) for i in b], columns=["tid", "item"])
    a = association_rules(long, tid="tid", item="item", min_support=0.6, min_lift=1.1)
    assert (a.table["lift"] >= 1.1).all() and len(a.table)
    p = tmp_path / "baskets.csv"
    p.write_text("\n".join(",".join(b) for b in BASKETS) + "\n")
    tx, enc = read_transactions(p)
    assert enc == "utf-8" and len(tx) == 5
    b = association_rules(tx, min_support=0.6, min_lift=1.1)
    assert b.table.equals(a.table)
