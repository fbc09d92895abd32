"""Association-rule mining with mlxtend (apriori or FP-growth)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from dlforge.analyze._plot import fig_to_png, new_figure
from dlforge.analyze.result import AnalysisResult
from dlforge.errors import InputError

__all__ = ["association_rules", "to_onehot"]


def to_onehot(
    data: pd.DataFrame | Sequence[Sequence[Any]], *, tid: str | None = None, item: str | None = None
) -> pd.DataFrame:
    """A boolean transactions x items table from any common basket layout.

    Accepts a list of transactions (lists of items), an already one-hot table
    (all values 0/1/True/False), a long table with a transaction-id column
    ``tid`` and an item column ``item``, or a table whose rows are
    transactions with one item per cell (empty cells ignored).
    """
    from mlxtend.preprocessing import TransactionEncoder

    if isinstance(data, pd.DataFrame):
        if tid is not None or item is not None:
            if tid not in data.columns or item not in data.columns:
                raise InputError(f"rules: columns {tid!r} and {item!r} must both be in the table")
            baskets = data.dropna(subset=[item]).groupby(tid)[item].agg(lambda s: sorted(set(map(str, s))))
            transactions = baskets.tolist()
        else:
            vals = data.dropna(how="all")
            if len(vals.columns) and all(
                pd.api.types.is_bool_dtype(vals[c]) or set(pd.unique(vals[c].dropna())) <= {0, 1} for c in vals.columns
            ):
                return vals.fillna(0).astype(bool)
            transactions = [
                sorted({str(v).strip() for v in row if pd.notna(v) and str(v).strip()})
                for row in vals.itertuples(index=False)
            ]
    else:
        transactions = [sorted({str(v) for v in t}) for t in data]
    transactions = [t for t in transactions if t]
    if not transactions:
        raise InputError("rules: no transactions")
    te = TransactionEncoder()
    arr = te.fit(transactions).transform(transactions)
    return pd.DataFrame(arr, columns=[str(c) for c in te.columns_])


def _fmt(items: Any) -> str:
    return ", ".join(sorted(map(str, items)))


def association_rules(
    data: pd.DataFrame | Sequence[Sequence[Any]],
    *,
    algorithm: str = "apriori",
    min_support: float = 0.1,
    min_confidence: float | None = 0.5,
    min_lift: float | None = None,
    max_len: int | None = None,
    tid: str | None = None,
    item: str | None = None,
    out: str | None = None,
) -> AnalysisResult:
    """Frequent itemsets and association rules.

    Args:
        data: transactions (see :func:`to_onehot` for the accepted layouts).
        algorithm: ``apriori`` or ``fpgrowth`` (same itemsets, FP-growth is faster on dense data).
        min_support: minimum share of transactions containing an itemset.
        min_confidence: minimum P(consequent | antecedent) for a rule (None: no filter).
        min_lift: minimum lift (None: no filter).
        max_len: longest itemset considered.
        tid, item: column names for a long (transaction id, item) table.
        out: folder to write ``rules.csv/json/png`` and ``itemsets.csv``.

    Returns:
        :class:`AnalysisResult`; table = rules sorted by lift then confidence (antecedents,
        consequents, support, confidence, lift, leverage, conviction); ``extra_tables["itemsets"]``.
    """
    from mlxtend.frequent_patterns import apriori, fpgrowth
    from mlxtend.frequent_patterns import association_rules as mx_rules

    if algorithm not in ("apriori", "fpgrowth"):
        raise InputError(f"rules: algorithm must be apriori or fpgrowth, got {algorithm!r}")
    if not 0 < min_support <= 1:
        raise InputError(f"rules: min_support must be in (0, 1], got {min_support}")
    onehot = to_onehot(data, tid=tid, item=item)
    fn = apriori if algorithm == "apriori" else fpgrowth
    freq = fn(onehot, min_support=min_support, use_colnames=True, max_len=max_len)
    cols = ["antecedents", "consequents", "support", "confidence", "lift", "leverage", "conviction"]
    if len(freq) and (freq["itemsets"].map(len) > 1).any():
        with np.errstate(divide="ignore", invalid="ignore"):  # mlxtend divides by zero for certainty
            rules = mx_rules(freq, num_itemsets=len(onehot), metric="support", min_threshold=0.0)
        if min_confidence is not None:
            rules = rules[rules["confidence"] >= min_confidence]
        if min_lift is not None:
            rules = rules[rules["lift"] >= min_lift]
        rules = rules.sort_values(["lift", "confidence", "support"], ascending=False, kind="stable")
        rules = rules[cols].reset_index(drop=True)
        rules["antecedents"] = rules["antecedents"].map(_fmt)
        rules["consequents"] = rules["consequents"].map(_fmt)
    else:
        rules = pd.DataFrame(columns=cols)
    itemsets = (
        freq.assign(itemsets=freq["itemsets"].map(_fmt), length=freq["itemsets"].map(len))
        .sort_values(["support", "length"], ascending=[False, True], kind="stable")
        .reset_index(drop=True)
    )
    summary = {
        "algorithm": algorithm,
        "transactions": len(onehot),
        "items": onehot.shape[1],
        "min_support": min_support,
        "min_confidence": min_confidence,
        "min_lift": min_lift,
        "itemsets": len(itemsets),
        "rules": len(rules),
    }
    png = None
    if len(rules):
        fig = new_figure(6, 4)
        ax = fig.add_subplot(1, 1, 1)
        sc = ax.scatter(rules["support"], rules["confidence"], c=rules["lift"].replace(np.inf, np.nan), cmap="viridis")
        fig.colorbar(sc, ax=ax, label="lift")
        ax.set_xlabel("support")
        ax.set_ylabel("confidence")
        ax.set_title(f"{len(rules)} rules ({algorithm})")
        png = fig_to_png(fig)
    res = AnalysisResult("rules", rules, summary, png, extra_tables={"itemsets": itemsets})
    if out is not None:
        res.save(out)
    return res
