"""Tabular data analysis: read a table, profile it, sample it, aggregate it, correlate it,
mine association rules and relate features to a target.

Every analysis returns an :class:`AnalysisResult` holding a table (a pandas
DataFrame), a JSON-able summary and a plot; ``out=DIR`` writes
``<name>.csv``, ``<name>.json`` and ``<name>.png`` there.

Example:
    >>> from dlforge.analyze import read_table, profile, correlation
    >>> t = read_table("sales.csv")          # encoding fallback, ragged rows skipped
    >>> profile(t.df, out="analysis/").summary["rows"]
    >>> correlation(t.df, method="spearman", out="analysis/")
"""

from __future__ import annotations

from dlforge.analyze.aggregate import groupby_agg
from dlforge.analyze.correlate import correlation
from dlforge.analyze.io import TableRead, read_table, read_transactions
from dlforge.analyze.profile import profile
from dlforge.analyze.result import AnalysisResult
from dlforge.analyze.rules import association_rules
from dlforge.analyze.sampling import sample
from dlforge.analyze.target import feature_vs_target

__all__ = [
    "AnalysisResult",
    "TableRead",
    "association_rules",
    "correlation",
    "feature_vs_target",
    "groupby_agg",
    "profile",
    "read_table",
    "read_transactions",
    "sample",
]
