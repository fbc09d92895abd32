"""Group-by aggregation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from dlforge.analyze._plot import fig_to_png, new_figure
from dlforge.analyze.result import AnalysisResult
from dlforge.errors import InputError

__all__ = ["groupby_agg", "parse_aggs"]

AGG_FUNCS = ("count", "size", "sum", "mean", "median", "min", "max", "std", "var", "nunique", "first", "last")


def parse_aggs(specs: Sequence[str]) -> dict[str, list[str]]:
    """``["price:mean,max", "qty:sum"]`` -> ``{"price": ["mean", "max"], "qty": ["sum"]}``."""
    out: dict[str, list[str]] = {}
    for spec in specs:
        col, sep, funcs = spec.rpartition(":")
        if not sep or not col or not funcs:
            raise InputError(f"aggregation {spec!r}: expected COLUMN:FUNC[,FUNC...]")
        out.setdefault(col, []).extend(f.strip() for f in funcs.split(",") if f.strip())
    return out


def groupby_agg(
    df: pd.DataFrame,
    by: str | Sequence[str],
    aggs: Mapping[str, str | Sequence[str]] | None = None,
    *,
    out: str | None = None,
) -> AnalysisResult:
    """Aggregate columns per group.

    Args:
        df: the table.
        by: grouping column(s).
        aggs: ``{column: func or [funcs]}`` with funcs from :data:`AGG_FUNCS`; default: the
            group size plus the mean of every numeric column.
        out: folder to write ``groupby.csv/json/png`` (a bar chart of the first aggregate).

    Returns:
        :class:`AnalysisResult` with one row per group, columns ``<column>_<func>``.
    """
    keys = [by] if isinstance(by, str) else list(by)
    if not keys:
        raise InputError("groupby: give at least one column to group by")
    cols = set(map(str, df.columns))
    missing = [k for k in keys if k not in cols]
    if missing:
        raise InputError(f"groupby: column(s) {', '.join(map(repr, missing))} not in the table")
    if aggs is None:
        num = [c for c in df.select_dtypes("number").columns if c not in keys]
        spec: dict[str, list[str]] = {c: ["mean"] for c in num}
    else:
        spec = {c: [f] if isinstance(f, str) else list(f) for c, f in aggs.items()}
    for c, funcs in spec.items():
        if c not in cols:
            raise InputError(f"groupby: aggregated column {c!r} not in the table")
        bad = [f for f in funcs if f not in AGG_FUNCS]
        if bad:
            raise InputError(f"groupby: unknown aggregation {bad[0]!r} for {c!r} (use {', '.join(AGG_FUNCS)})")
        if any(f in ("sum", "mean", "median", "std", "var") for f in funcs) and not pd.api.types.is_numeric_dtype(
            df[c]
        ):
            raise InputError(f"groupby: column {c!r} is not numeric; {'/'.join(funcs)} needs numbers")
    g = df.groupby(keys, dropna=False, sort=True)
    table = g.size().rename("size").to_frame()
    for c, funcs in spec.items():
        for f in funcs:
            if f == "size":
                continue
            table[f"{c}_{f}"] = g[c].agg(f)
    table = table.reset_index()
    value_cols = [c for c in table.columns if c not in keys]
    summary = {"by": keys, "groups": len(table), "aggregates": value_cols}
    png = None
    if len(table):
        plot_col = value_cols[1] if len(value_cols) > 1 else value_cols[0]
        top = table.nlargest(25, plot_col) if len(table) > 25 else table
        fig = new_figure(7, 3.8)
        ax = fig.add_subplot(1, 1, 1)
        labels = top[keys].astype(str).agg(" / ".join, axis=1)
        ax.bar(range(len(top)), top[plot_col].to_numpy(dtype=float), color="#4c78a8")
        ax.set_xticks(range(len(top)), [s[:14] for s in labels], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{plot_col} by {', '.join(keys)}")
        png = fig_to_png(fig)
    res = AnalysisResult("groupby", table, summary, png)
    if out is not None:
        res.save(out)
    return res
