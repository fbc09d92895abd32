"""Sampling rows: simple random, stratified (proportional) and systematic."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dlforge.analyze._plot import fig_to_png, new_figure
from dlforge.analyze.result import AnalysisResult
from dlforge.errors import InputError

__all__ = ["sample"]

METHODS = ("random", "stratified", "systematic")


def _size(total: int, n: int | None, frac: float | None) -> int:
    if (n is None) == (frac is None):
        raise InputError("sample: give exactly one of n or frac")
    if frac is not None:
        if not 0 < frac <= 1:
            raise InputError(f"sample: frac must be in (0, 1], got {frac}")
        return max(1, int(round(frac * total)))
    if n is None or n < 1:
        raise InputError(f"sample: n must be >= 1, got {n}")
    return min(n, total)


def _proportional(counts: pd.Series, k: int) -> pd.Series:
    """Largest-remainder allocation of ``k`` draws over groups, proportional to their sizes."""
    exact = counts / counts.sum() * k
    alloc = np.floor(exact).astype(int)
    short = k - int(alloc.sum())
    if short > 0:
        order = (exact - alloc).sort_values(ascending=False, kind="stable").index[:short]
        alloc[order] += 1
    return alloc.clip(upper=counts)


def sample(
    df: pd.DataFrame,
    method: str = "random",
    *,
    n: int | None = None,
    frac: float | None = None,
    by: str | None = None,
    seed: int = 0,
    out: str | None = None,
) -> AnalysisResult:
    """Draw a sample of rows.

    Args:
        df: the table.
        method: ``random`` (without replacement), ``stratified`` (each group of ``by`` keeps its
            share, largest-remainder rounding) or ``systematic`` (every k-th row from a random start).
        n: sample size; or ``frac``: share of rows.
        by: the stratification column (required for ``stratified``; for the others it is only
            used in the summary and plot).
        seed: random seed.
        out: folder to write ``sample.csv/json/png``.

    Returns:
        :class:`AnalysisResult` whose table is the sampled rows (original index kept in ``row``).
    """
    if method not in METHODS:
        raise InputError(f"sample: method must be one of {', '.join(METHODS)}, got {method!r}")
    if len(df) == 0:
        raise InputError("sample: the table has no rows")
    if by is not None and by not in df.columns:
        raise InputError(f"sample: column {by!r} not in the table (columns: {', '.join(map(str, df.columns))})")
    k = _size(len(df), n, frac)
    rng = np.random.default_rng(seed)
    if method == "random":
        idx = np.sort(rng.choice(len(df), size=k, replace=False))
    elif method == "systematic":
        step = len(df) / k
        start = rng.uniform(0, step)
        idx = np.floor(start + step * np.arange(k)).astype(int)
    else:
        if by is None:
            raise InputError("sample: stratified sampling needs by=COLUMN")
        keys = df[by].astype(str).fillna("<missing>")
        counts = keys.value_counts()
        alloc = _proportional(counts, k)
        parts = []
        for key, m in alloc.items():
            members = np.flatnonzero((keys == key).to_numpy())
            if m > 0:
                parts.append(rng.choice(members, size=int(m), replace=False))
        idx = np.sort(np.concatenate(parts)) if parts else np.array([], dtype=int)
    table = df.iloc[idx].copy()
    table.insert(0, "row", idx)
    table = table.reset_index(drop=True)
    summary: dict = {"method": method, "population": len(df), "size": len(table), "seed": seed}
    png = None
    if by is not None:
        pop = df[by].astype(str).value_counts(normalize=True)
        got = table[by].astype(str).value_counts(normalize=True).reindex(pop.index, fill_value=0.0)
        summary["by"] = by
        summary["population_shares"] = pop.round(6).to_dict()
        summary["sample_shares"] = got.round(6).to_dict()
        summary["max_share_gap"] = float((pop - got).abs().max())
        fig = new_figure(7, 3.5)
        ax = fig.add_subplot(1, 1, 1)
        top = pop.index[:20]
        x = np.arange(len(top))
        ax.bar(x - 0.2, pop[top].values, 0.4, label="population")
        ax.bar(x + 0.2, got[top].values, 0.4, label="sample")
        ax.set_xticks(x, [str(t)[:12] for t in top], rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("share")
        ax.legend()
        ax.set_title(f"{method} sample: shares of {by}")
        png = fig_to_png(fig)
    else:
        num = df.select_dtypes("number").columns
        if len(num):
            c = num[0]
            fig = new_figure(6, 3.5)
            ax = fig.add_subplot(1, 1, 1)
            ax.hist(df[c].dropna(), bins=30, density=True, alpha=0.5, label="population")
            ax.hist(table[c].dropna(), bins=30, density=True, alpha=0.5, label="sample")
            ax.legend()
            ax.set_title(f"{method} sample: {c}")
            png = fig_to_png(fig)
    res = AnalysisResult("sample", table, summary, png)
    if out is not None:
        res.save(out)
    return res
