"""Feature-versus-target analysis: which columns carry information about the target."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dlforge.analyze._plot import fig_to_png, new_figure
from dlforge.analyze.profile import column_kind
from dlforge.analyze.result import AnalysisResult
from dlforge.errors import InputError

__all__ = ["feature_vs_target", "target_task"]


def target_task(y: pd.Series) -> str:
    """``classification`` for non-numeric or few-valued targets, else ``regression``."""
    if not pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y):
        return "classification"
    nn = y.dropna()
    # Integer codes with few values are classes (0/1 churn flags, 1-5 ratings).
    if nn.nunique() <= 20 and np.allclose(nn, np.round(nn)):
        return "classification"
    return "regression"


def feature_vs_target(
    df: pd.DataFrame, target: str, *, task: str = "auto", seed: int = 0, out: str | None = None
) -> AnalysisResult:
    """Per-feature statistics against the target, ranked by mutual information.

    Classification target: numeric features get the ANOVA F test and per-class means,
    categorical ones the chi-square test of independence and Cramér's V. Regression
    target: numeric features get Pearson and Spearman correlation and the F test,
    categorical ones a one-way ANOVA across categories and eta squared. Every feature
    gets mutual information with the target (scikit-learn's estimators).

    Args:
        df: the table.
        target: the target column.
        task: ``classification``, ``regression`` or ``auto`` (see :func:`target_task`).
        seed: seed of the mutual-information estimator.
        out: folder to write ``target.csv/json/png``.

    Raises:
        InputError: target missing or with a single value.
    """
    from scipy import stats
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    if target not in df.columns:
        raise InputError(f"target column {target!r} not in the table (columns: {', '.join(map(str, df.columns))})")
    data = df[df[target].notna()]
    y = data[target]
    if y.nunique() < 2:
        raise InputError(f"target column {target!r} has a single value; nothing to relate features to")
    if task == "auto":
        task = target_task(y)
    if task not in ("classification", "regression"):
        raise InputError(f"task must be classification, regression or auto, got {task!r}")
    if task == "regression" and not pd.api.types.is_numeric_dtype(y):
        raise InputError(f"target column {target!r} is not numeric; regression needs numbers")
    y_codes = pd.factorize(y.astype(str))[0] if task == "classification" else y.to_numpy(dtype=float)

    rows: list[dict[str, Any]] = []
    for col in data.columns:
        if col == target:
            continue
        s = data[col]
        kind = column_kind(s)
        row: dict[str, Any] = {"feature": str(col), "kind": kind, "missing": int(s.isna().sum())}
        if kind in ("numeric", "bool"):
            x = s.astype(float)
            ok = x.notna().to_numpy()
            xv, yv = x.to_numpy()[ok], y_codes[ok]
            if len(xv) < 3 or np.nanstd(xv) == 0:
                row["note"] = "constant or too few values"
                rows.append(row)
                continue
            if task == "classification":
                groups = [xv[yv == k] for k in np.unique(yv)]
                groups = [g for g in groups if len(g)]
                f, p = stats.f_oneway(*groups) if len(groups) > 1 else (np.nan, np.nan)
                row.update({"test": "anova", "statistic": float(f), "p_value": float(p)})
                labels = y.astype(str).to_numpy()[ok]
                row["class_means"] = {k: float(xv[labels == k].mean()) for k in np.unique(labels)[:20]}
                mi = mutual_info_classif(xv[:, None], yv, random_state=seed)[0]
            else:
                r, p = stats.pearsonr(xv, yv)
                rho, _ = stats.spearmanr(xv, yv)
                row.update({"test": "pearson", "statistic": float(r), "p_value": float(p), "spearman": float(rho)})
                mi = mutual_info_regression(xv[:, None], yv, random_state=seed)[0]
        elif kind in ("categorical", "text"):
            if kind == "text":
                row["note"] = "free text or identifier: skipped"
                rows.append(row)
                continue
            xs = s.astype(str).where(s.notna(), "<missing>")
            codes = pd.factorize(xs)[0]
            if task == "classification":
                ct = pd.crosstab(xs, y.astype(str))
                chi2, p, _, _ = stats.chi2_contingency(ct)
                n = ct.to_numpy().sum()
                v = np.sqrt(chi2 / (n * max(1, min(ct.shape) - 1)))
                row.update({"test": "chi2", "statistic": float(chi2), "p_value": float(p), "cramers_v": float(v)})
                mi = mutual_info_classif(codes[:, None], y_codes, discrete_features=True, random_state=seed)[0]
            else:
                groups = [y_codes[codes == k] for k in np.unique(codes)]
                groups = [g for g in groups if len(g)]
                f, p = stats.f_oneway(*groups) if len(groups) > 1 else (np.nan, np.nan)
                grand = y_codes.mean()
                ss_between = sum(len(g) * (g.mean() - grand) ** 2 for g in groups)
                ss_total = ((y_codes - grand) ** 2).sum()
                row.update(
                    {
                        "test": "anova",
                        "statistic": float(f),
                        "p_value": float(p),
                        "eta_squared": float(ss_between / ss_total) if ss_total else 0.0,
                    }
                )
                mi = mutual_info_regression(codes[:, None], y_codes, discrete_features=True, random_state=seed)[0]
        else:
            row["note"] = f"{kind} column: skipped"
            rows.append(row)
            continue
        row["mutual_info"] = float(mi)
        rows.append(row)
    table = pd.DataFrame(rows)
    if "mutual_info" in table.columns:
        table = table.sort_values("mutual_info", ascending=False, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    ranked = table.dropna(subset=["mutual_info"]) if "mutual_info" in table.columns else table.iloc[:0]
    summary = {
        "target": target,
        "task": task,
        "rows": len(data),
        "dropped_missing_target": int(len(df) - len(data)),
        "target_distribution": y.astype(str).value_counts().head(50).to_dict()
        if task == "classification"
        else {"mean": float(y.mean()), "std": float(y.std()), "min": float(y.min()), "max": float(y.max())},
        "top_features": ranked["feature"].head(10).tolist(),
    }
    png = None
    if len(ranked):
        top = ranked.head(25)
        fig = new_figure(6, 1 + 0.3 * len(top))
        ax = fig.add_subplot(1, 1, 1)
        ax.barh(top["feature"][::-1].str.slice(0, 20), top["mutual_info"][::-1], color="#54a24b")
        ax.set_xlabel("mutual information with target")
        ax.set_title(f"features vs {target} ({task})")
        png = fig_to_png(fig)
    res = AnalysisResult("target", table, summary, png)
    if out is not None:
        res.save(out)
    return res
