"""Column profiling: types, missing values, distributions and outliers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dlforge.analyze._plot import fig_to_png, grid
from dlforge.analyze.result import AnalysisResult

__all__ = ["profile", "column_kind"]

_MAX_PLOTS = 16


def column_kind(s: pd.Series) -> str:
    """``numeric``, ``bool``, ``datetime``, ``categorical`` or ``text`` (free text / identifiers)."""
    if pd.api.types.is_bool_dtype(s):
        return "bool"
    if pd.api.types.is_numeric_dtype(s):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "datetime"
    nn = s.dropna()
    if len(nn) == 0:
        return "categorical"
    uniq = nn.nunique()
    # Many distinct values that are mostly unique: names, ids, free text.
    if uniq > 50 and uniq / len(nn) > 0.5:
        return "text"
    return "categorical"


def _numeric_stats(s: pd.Series) -> dict[str, Any]:
    x = s.dropna().astype(float)
    if x.empty:
        return {}
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    iqr = q3 - q1
    outliers = int(((x < q1 - 1.5 * iqr) | (x > q3 + 1.5 * iqr)).sum())
    return {
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0,
        "min": float(x.min()),
        "p25": float(q1),
        "median": float(med),
        "p75": float(q3),
        "max": float(x.max()),
        "skew": float(x.skew()) if len(x) > 2 else 0.0,
        "zeros": int((x == 0).sum()),
        "outliers": outliers,
    }


def profile(df: pd.DataFrame, *, out: str | None = None) -> AnalysisResult:
    """Profile every column: kind, missing share, distinct values, top value, numeric stats, outliers.

    Outliers are values beyond 1.5 x IQR from the quartiles (Tukey's fences).

    Args:
        df: the table.
        out: folder to write ``profile.csv``, ``profile.json`` and ``profile.png`` (histograms
            of numeric columns, bar charts of the top categories).

    Returns:
        :class:`AnalysisResult` with one row per column.
    """
    rows = []
    n = len(df)
    for col in df.columns:
        s = df[col]
        kind = column_kind(s)
        missing = int(s.isna().sum())
        vc = s.dropna().astype(str).value_counts() if kind != "numeric" else None
        row: dict[str, Any] = {
            "column": str(col),
            "dtype": str(s.dtype),
            "kind": kind,
            "count": n - missing,
            "missing": missing,
            "missing_pct": round(100.0 * missing / n, 4) if n else 0.0,
            "unique": int(s.nunique(dropna=True)),
            "top": None if vc is None or vc.empty else vc.index[0],
            "top_freq": None if vc is None or vc.empty else int(vc.iloc[0]),
        }
        if kind == "numeric":
            row.update(_numeric_stats(s))
        rows.append(row)
    table = pd.DataFrame(rows)
    summary = {
        "rows": n,
        "columns": len(df.columns),
        "duplicate_rows": int(df.duplicated().sum()) if n else 0,
        "missing_cells": int(df.isna().sum().sum()),
        "kinds": table["kind"].value_counts().to_dict() if len(table) else {},
        "memory_bytes": int(df.memory_usage(deep=True).sum()),
    }
    png = _plot(df, table)
    res = AnalysisResult("profile", table, summary, png)
    if out is not None:
        res.save(out)
    return res


def _plot(df: pd.DataFrame, table: pd.DataFrame) -> bytes | None:
    picks = [(col, r) for col, r in zip(df.columns, table.itertuples()) if r.kind in ("numeric", "categorical", "bool")]
    picks = picks[:_MAX_PLOTS]
    if not picks:
        return None
    fig, axes = grid(len(picks))
    for ax, (col, r) in zip(axes, picks):
        s = df[col]
        if r.kind == "numeric":
            x = s.dropna().astype(float)
            ax.hist(x, bins=min(30, max(5, int(np.sqrt(len(x))))) if len(x) else 5, color="#4c78a8")
        else:
            vc = s.astype(str).value_counts().head(10)
            ax.barh(vc.index[::-1], vc.values[::-1], color="#f58518")
            ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{r.column} ({r.missing_pct:.0f}% missing)", fontsize=8)
    return fig_to_png(fig)
