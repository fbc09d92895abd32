"""Correlation matrices (Pearson, Spearman) with a heat map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dlforge.analyze._plot import fig_to_png, new_figure
from dlforge.analyze.result import AnalysisResult
from dlforge.errors import InputError

__all__ = ["correlation"]


def correlation(
    df: pd.DataFrame,
    method: str = "pearson",
    *,
    columns: Sequence[str] | None = None,
    top: int = 10,
    out: str | None = None,
) -> AnalysisResult:
    """Pairwise correlation of the numeric columns (pairwise-complete observations).

    Args:
        df: the table.
        method: ``pearson`` or ``spearman``.
        columns: restrict to these columns (each must be numeric).
        top: how many strongest pairs to list in the summary.
        out: folder to write ``corr.csv/json/png`` (the heat map).

    Returns:
        :class:`AnalysisResult` whose table is the square correlation matrix.
    """
    if method not in ("pearson", "spearman"):
        raise InputError(f"correlation: method must be pearson or spearman, got {method!r}")
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise InputError(f"correlation: column(s) {', '.join(map(repr, missing))} not in the table")
        nonnum = [c for c in columns if not pd.api.types.is_numeric_dtype(df[c])]
        if nonnum:
            raise InputError(f"correlation: column {nonnum[0]!r} is not numeric")
        num = df[list(columns)]
    else:
        num = df.select_dtypes("number")
        num = num[[c for c in num.columns if not pd.api.types.is_bool_dtype(num[c])]]
    if num.shape[1] < 2:
        raise InputError(f"correlation: needs at least two numeric columns, found {num.shape[1]}")
    mat = num.astype(float).corr(method=method)
    iu = np.triu_indices(len(mat), k=1)
    pairs = pd.DataFrame({"a": mat.index[iu[0]], "b": mat.columns[iu[1]], "r": mat.to_numpy()[iu]})
    pairs = pairs.dropna().reindex(pairs["r"].abs().sort_values(ascending=False).index).dropna().head(top)
    summary = {
        "method": method,
        "columns": [str(c) for c in mat.columns],
        "strongest": [{"a": str(a), "b": str(b), "r": round(float(r), 6)} for a, b, r in pairs.itertuples(index=False)],
    }
    k = len(mat)
    fig = new_figure(min(2 + 0.5 * k, 14), min(1.6 + 0.45 * k, 12))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(mat.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(k), [str(c)[:14] for c in mat.columns], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(k), [str(c)[:14] for c in mat.index], fontsize=7)
    if k <= 15:
        for i in range(k):
            for j in range(k):
                v = mat.iat[i, j]
                if not np.isnan(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_title(f"{method} correlation")
    table = mat.copy()
    table.index.name = "column"
    res = AnalysisResult("corr", table, summary, fig_to_png(fig))
    if out is not None:
        res.save(out)
    return res
