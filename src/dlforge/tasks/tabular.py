"""Tabular machine learning: classification and regression on rows of a table.

Reads top to bottom: rows -> schema (numeric / categorical columns) -> a
scikit-learn Pipeline with the preprocessing inside it (median imputation +
scaling for numbers, one-hot encoding for categories) -> k-fold
cross-validation next to a majority/mean baseline -> the final model on all
rows -> permutation importance -> report -> ONNX (skl2onnx) bundle.

Models: ``hgb`` (HistGradientBoosting, the default: the right first answer for
most business tables), ``rf`` (random forest), ``linear`` (logistic / ridge
regression) and ``mlp`` (a small torch MLP trained with a plain loop).

Example:
    >>> import pandas as pd
    >>> from dlforge.tasks.tabular import fit_tabular
    >>> res = fit_tabular(pd.read_csv("churn.csv"), "churned", model="hgb", cv=5)
    >>> res.cv_metrics["accuracy"], res.baseline["accuracy"]
    >>> res.export_bundle("churn-bundle/")
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dlforge.data.records import SampleRecord
from dlforge.errors import InputError

TASK = "tabular"
MODELS = ("hgb", "rf", "linear", "mlp")
MISSING = ""  # what a missing category becomes (OneHotEncoder then ignores or encodes it)


# --------------------------------------------------------------------------- rows and schema


def records_frame(records: Sequence[SampleRecord], target: str | None) -> pd.DataFrame:
    """Rows of ``row`` samples as a DataFrame; the class annotation becomes column ``target``.

    Args:
        records: ``row`` samples (blob = canonical JSON of the row's features).
        target: name for the label column (None: no label column).
    """
    rows = []
    for r in records:
        if r.media_type != "row":
            raise InputError(f"{r.name}: media type {r.media_type!r}, the tabular task needs row samples")
        try:
            row = json.loads(r.path.read_bytes())
        except (OSError, ValueError) as exc:
            raise InputError(f"{r.name}: cannot read row: {exc}") from None
        if target is not None:
            labels = r.labels()
            row[target] = labels[0] if labels else None
        rows.append(row)
    df = pd.DataFrame(rows)
    if target is not None and target in df.columns:
        num = pd.to_numeric(df[target], errors="coerce")
        if num.notna().sum() == df[target].notna().sum():  # labels are stored as text; numbers stay numbers
            df[target] = num
    return df


def infer_schema(df: pd.DataFrame, target: str) -> list[dict[str, str]]:
    """Feature columns and their types: ``number`` or ``string``; free-text/id columns are left out."""
    feats = []
    for col in df.columns:
        if col == target:
            continue
        s = df[col]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            feats.append({"name": str(col), "type": "number"})
            continue
        nn = s.dropna()
        if len(nn) and nn.nunique() > 50 and nn.nunique() / len(nn) > 0.5:
            continue  # identifiers and free text do not generalise as one-hot columns
        feats.append({"name": str(col), "type": "string"})
    if not feats:
        raise InputError(f"no usable feature columns besides target {target!r}")
    return feats


def prepare_frame(df: pd.DataFrame, schema: Sequence[dict[str, str]]) -> pd.DataFrame:
    """The feature columns in model form: numbers as float (NaN = missing), categories as str.

    Raises:
        InputError: a column is missing, or a number column holds text that is not a number.
    """
    out = {}
    for f in schema:
        name = f["name"]
        if name not in df.columns:
            raise InputError(f"column {name!r} is missing (the model needs {', '.join(x['name'] for x in schema)})")
        s = df[name]
        if f["type"] == "number":
            if pd.api.types.is_bool_dtype(s):
                s = s.astype(float)
            num = pd.to_numeric(s, errors="coerce")
            bad = num.isna() & s.notna() & (s.astype(str).str.strip() != "")
            if bad.any():
                raise InputError(
                    f"column {name!r} must be numeric; row {int(np.flatnonzero(bad)[0])} holds {s[bad].iloc[0]!r}"
                )
            out[name] = num.astype(np.float64)
        else:
            out[name] = s.map(
                lambda v: MISSING if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            ).astype(object)
    return pd.DataFrame(out, index=df.index)


# --------------------------------------------------------------------------- the torch MLP


class TorchMLP:
    """A small MLP (two hidden layers, ReLU) trained with Adam in a plain loop; scikit-learn shaped.

    Lives at the end of the preprocessing Pipeline, so it sees scaled numbers and
    one-hot columns. ``task`` is ``classification`` (softmax over ``classes_``) or
    ``regression`` (the target is standardised for training and mapped back).
    """

    def __init__(
        self,
        task: str = "classification",
        hidden: int = 64,
        epochs: int = 200,
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        seed: int = 0,
    ) -> None:
        self.task = task
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.seed = seed

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("task", "hidden", "epochs", "lr", "weight_decay", "batch_size", "seed")}

    def set_params(self, **params: Any) -> TorchMLP:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

        mixin = ClassifierMixin if self.task == "classification" else RegressorMixin

        class _T(mixin, BaseEstimator):  # type: ignore[misc, valid-type]
            pass

        return _T().__sklearn_tags__()

    def fit(self, x: Any, y: Any) -> TorchMLP:
        import torch  # noqa: F401  (imported so that _torch_threads sees it)

        with _torch_threads(1):  # tiny layers: threads cost more than they give
            return self._fit(x, y)

    def _fit(self, x: Any, y: Any) -> TorchMLP:
        import torch
        from torch import nn

        torch.manual_seed(self.seed)
        xt = torch.as_tensor(np.asarray(x, dtype=np.float32))  # (N, D)
        if self.task == "classification":
            self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
            yt = torch.as_tensor(codes, dtype=torch.long)
            n_out = len(self.classes_)
        else:
            yv = np.asarray(y, dtype=np.float64)
            self.y_mean_, self.y_std_ = float(yv.mean()), float(yv.std() or 1.0)
            yt = torch.as_tensor((yv - self.y_mean_) / self.y_std_, dtype=torch.float32)[:, None]
            n_out = 1
        self.net_ = nn.Sequential(
            nn.Linear(xt.shape[1], self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, self.hidden),
            nn.ReLU(),
            nn.Linear(self.hidden, n_out),
        )
        opt = torch.optim.AdamW(self.net_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        loss_fn = nn.CrossEntropyLoss() if self.task == "classification" else nn.MSELoss()
        g = torch.Generator().manual_seed(self.seed)
        self.net_.train()
        for _ in range(self.epochs):
            perm = torch.randperm(len(xt), generator=g)
            for i in range(0, len(xt), self.batch_size):
                idx = perm[i : i + self.batch_size]
                opt.zero_grad()
                loss = loss_fn(self.net_(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
            sched.step()
        self.net_.eval()
        self.n_features_in_ = xt.shape[1]
        return self

    def _out(self, x: Any) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.net_(torch.as_tensor(np.asarray(x, dtype=np.float32))).numpy()

    def predict_proba(self, x: Any) -> np.ndarray:
        z = self._out(x)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, x: Any) -> np.ndarray:
        if self.task == "classification":
            return self.classes_[self._out(x).argmax(axis=1)]
        return self._out(x)[:, 0] * self.y_std_ + self.y_mean_

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(W (out, in), b) per Linear layer, for the ONNX converter."""
        return [
            (m.weight.detach().numpy().astype(np.float32), m.bias.detach().numpy().astype(np.float32))
            for m in self.net_
            if hasattr(m, "weight")
        ]


# --------------------------------------------------------------------------- pipeline


def build_pipeline(schema: Sequence[dict[str, str]], model: str, task: str, seed: int = 0, **hp: Any) -> Any:
    """Preprocessing (ColumnTransformer) + estimator as one scikit-learn Pipeline."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if model not in MODELS:
        raise InputError(f"model must be one of {', '.join(MODELS)}, got {model!r}")
    num = [f["name"] for f in schema if f["type"] == "number"]
    cat = [f["name"] for f in schema if f["type"] == "string"]
    parts = []
    if num:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median"))]
        if model in ("linear", "mlp"):
            # Trees are scale-invariant; leaving the scaler out also keeps the ONNX graph comparing
            # the raw float32 inputs with the thresholds, so exported trees split as sklearn's do.
            steps.append(("scale", StandardScaler()))
        parts.append(("num", Pipeline(steps), num))
    if cat:
        parts.append(("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False, max_categories=50), cat))
    pre = ColumnTransformer(parts, sparse_threshold=0.0)
    clf = task == "classification"
    if model == "hgb":
        kw = {
            "max_iter": hp.get("max_iter", 100),
            "learning_rate": hp.get("learning_rate", 0.1),
            "random_state": seed,
            "early_stopping": False,
        }
        est = HistGradientBoostingClassifier(**kw) if clf else HistGradientBoostingRegressor(**kw)
    elif model == "rf":
        kw = {
            "n_estimators": hp.get("n_estimators", 200),
            "random_state": seed,
            "n_jobs": 1,
            "min_samples_leaf": hp.get("min_samples_leaf", 1),
        }
        est = RandomForestClassifier(**kw) if clf else RandomForestRegressor(**kw)
    elif model == "linear":
        est = LogisticRegression(C=hp.get("C", 1.0), max_iter=2000) if clf else Ridge(alpha=hp.get("alpha", 1.0))
    else:
        est = TorchMLP(
            task, hidden=hp.get("hidden", 64), epochs=hp.get("epochs", 200), lr=hp.get("lr", 1e-2), seed=seed
        )
    return Pipeline([("pre", pre), ("model", est)])


# --------------------------------------------------------------------------- metrics


def _metrics(task: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None = None) -> dict[str, float]:
    from sklearn import metrics as m

    if task == "classification":
        out = {
            "accuracy": float(m.accuracy_score(y, pred)),
            "balanced_accuracy": float(m.balanced_accuracy_score(y, pred)),
            "f1_macro": float(m.f1_score(y, pred, average="macro", zero_division=0)),
        }
        return out
    return {
        "r2": float(m.r2_score(y, pred)),
        "rmse": float(np.sqrt(m.mean_squared_error(y, pred))),
        "mae": float(m.mean_absolute_error(y, pred)),
    }


def _task_of(y: pd.Series, task: str) -> str:
    from dlforge.analyze.target import target_task

    if task == "auto":
        return target_task(y)
    if task not in ("classification", "regression"):
        raise InputError(f"task must be classification, regression or auto, got {task!r}")
    return task


# --------------------------------------------------------------------------- result


@dataclass
class TabularResult:
    """A fitted tabular model with its cross-validated evaluation.

    Attributes:
        pipeline: preprocessing + estimator, fitted on all rows.
        task: ``classification`` or ``regression``.
        target: target column.
        schema: feature columns ``[{"name", "type": "number"|"string"}]`` in model input order.
        classes: class labels (classification), as strings.
        model: ``hgb`` | ``rf`` | ``linear`` | ``mlp``.
        cv_metrics: mean out-of-fold metrics; ``cv_folds``: per fold.
        baseline: the same metrics of a majority-class / mean predictor in the same folds.
        importance: permutation importance per raw column (on a held-out fold).
        oof_pred: out-of-fold predictions, aligned with the training rows.
        y: training targets.
    """

    pipeline: Any
    task: str
    target: str
    schema: list[dict[str, str]]
    classes: list[str]
    model: str
    cv_metrics: dict[str, float]
    cv_folds: list[dict[str, float]]
    baseline: dict[str, float]
    importance: pd.DataFrame
    oof_pred: np.ndarray
    y: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)
    fit_seconds: float = 0.0
    parity_rows: pd.DataFrame | None = None  # a few raw training rows, to check exports against

    def predict(self, df: pd.DataFrame) -> np.ndarray:
        """Predictions for new rows (raw columns; the preprocessing is inside the model)."""
        return self.pipeline.predict(prepare_frame(df, self.schema))

    def predict_proba(self, df: pd.DataFrame) -> np.ndarray:
        if self.task != "classification":
            raise InputError("predict_proba: this is a regression model")
        return self.pipeline.predict_proba(prepare_frame(df, self.schema))

    def summary(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "target": self.target,
            "model": self.model,
            "rows": int(len(self.y)),
            "features": [f["name"] for f in self.schema],
            "classes": self.classes,
            "cv": {k: round(v, 6) for k, v in self.cv_metrics.items()},
            "baseline": {k: round(v, 6) for k, v in self.baseline.items()},
            "importance": self.importance.head(20).round(6).to_dict(orient="records"),
            "fit_seconds": round(self.fit_seconds, 3),
        }

    def save_report(
        self, path: str | os.PathLike[str], title: str | None = None, held_out: dict[str, Any] | None = None
    ) -> Path:
        """An HTML report: CV metrics next to the baseline, confusion matrix or residuals, importance.

        Args:
            path: HTML file to write.
            title: report title.
            held_out: optional ``{"name", "y", "pred", "metrics"}`` of an evaluation split, shown first.
        """
        from dlforge.tasks.tabular_report import tabular_report

        title = title or f"Tabular {self.task}: {self.target} ({self.model})"
        return tabular_report(self, title, held_out=held_out).save(path)

    def export_onnx(self, path: str | os.PathLike[str]) -> Path:
        """The fitted pipeline as ONNX (skl2onnx): one input per column, shape (N, 1)."""
        from dlforge.tasks.tabular_onnx import to_onnx

        return to_onnx(self, Path(path))

    def export_bundle(
        self,
        out_dir: str | os.PathLike[str],
        *,
        name: str = "model",
        data_version: str | None = None,
        run_id: str | None = None,
        overwrite: bool = False,
    ) -> Path:
        """A deployable bundle (``manifest.json`` + ``model.onnx``) for the Predictor's tabular handler."""
        from dlforge.tasks.tabular_onnx import write_bundle

        return write_bundle(
            self, Path(out_dir), name=name, data_version=data_version, run_id=run_id, overwrite=overwrite
        )


def fit_tabular(
    df: pd.DataFrame,
    target: str,
    *,
    model: str = "hgb",
    task: str = "auto",
    cv: int = 5,
    seed: int = 0,
    importance_repeats: int = 5,
    **hp: Any,
) -> TabularResult:
    """Cross-validate and fit a tabular model.

    Args:
        df: the table, target column included.
        target: the column to predict.
        model: ``hgb``, ``rf``, ``linear`` or ``mlp``.
        task: ``classification``, ``regression`` or ``auto`` (few distinct integer values or
            non-numeric -> classification).
        cv: folds (stratified for classification; lowered to the rarest class's count).
        seed: seed for folds and models.
        importance_repeats: permutation-importance repeats (0 to skip).
        **hp: model hyperparameters (hgb: max_iter, learning_rate; rf: n_estimators,
            min_samples_leaf; linear: C / alpha; mlp: hidden, epochs, lr).

    Raises:
        InputError: target missing or with a single value, regression on a non-numeric
            target, no usable feature columns, fewer than 2 rows per fold.
    """
    from threadpoolctl import threadpool_limits

    # Small tables: one thread is faster, and OpenMP's spinning workers in HistGradientBoosting
    # slow to a crawl (30x measured) when the cores are shared with other processes.
    with threadpool_limits(limits=int(os.environ.get("DLFORGE_TABULAR_THREADS", "1"))), _torch_threads(1):
        return _fit_tabular(
            df, target, model=model, task=task, cv=cv, seed=seed, importance_repeats=importance_repeats, **hp
        )


class _torch_threads:
    """Temporarily set torch's intra-op threads (only when torch is already imported)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.prev: int | None = None

    def __enter__(self) -> None:
        import sys

        torch = sys.modules.get("torch")
        if torch is not None:
            self.prev = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc: object) -> None:
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and self.prev is not None:
            torch.set_num_threads(self.prev)


def _fit_tabular(
    df: pd.DataFrame, target: str, *, model: str, task: str, cv: int, seed: int, importance_repeats: int, **hp: Any
) -> TabularResult:
    from sklearn.base import clone
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import KFold, StratifiedKFold

    t0 = time.perf_counter()
    if target not in df.columns:
        raise InputError(f"target column {target!r} not found; columns are {', '.join(map(str, df.columns))}")
    data = df[df[target].notna()].reset_index(drop=True)
    if data[target].nunique() < 2:
        raise InputError(f"target column {target!r} has a single value; there is nothing to learn")
    task = _task_of(data[target], task)
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(data[target]):
            raise InputError(f"target column {target!r} is not numeric; regression needs numbers")
        y = data[target].to_numpy(dtype=np.float64)
        classes: list[str] = []
    else:
        y = data[target].astype(str).to_numpy(dtype=object)
        classes = sorted(set(y.tolist()))
    schema = infer_schema(data, target)
    x = prepare_frame(data, schema)
    if task == "classification":
        folds = min(cv, int(pd.Series(y).value_counts().min()))
        if folds < 2:
            raise InputError(f"target {target!r}: a class has a single row; cross-validation needs two per class")
        splitter: Any = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        folds = min(cv, len(y) // 2)
        if folds < 2:
            raise InputError("too few rows to cross-validate")
        splitter = KFold(folds, shuffle=True, random_state=seed)
    base = build_pipeline(schema, model, task, seed, **hp)
    oof = np.empty(len(y), dtype=object if task == "classification" else np.float64)
    per_fold, base_fold = [], []
    held: tuple[Any, np.ndarray] | None = None
    for k, (tr, te) in enumerate(splitter.split(x, y if task == "classification" else None)):
        est = clone(base)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(x.iloc[tr], y[tr])
        pred = est.predict(x.iloc[te])
        oof[te] = pred
        per_fold.append(_metrics(task, y[te], pred))
        dummy = DummyClassifier(strategy="most_frequent") if task == "classification" else DummyRegressor()
        dummy.fit(np.zeros((len(tr), 1)), y[tr])
        base_fold.append(_metrics(task, y[te], dummy.predict(np.zeros((len(te), 1)))))
        if k == 0:
            held = (est, te)
    mean = {m: float(np.mean([f[m] for f in per_fold])) for m in per_fold[0]}
    baseline = {m: float(np.mean([f[m] for f in base_fold])) for m in base_fold[0]}
    final = clone(base)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        final.fit(x, y)
    imp = pd.DataFrame(columns=["feature", "importance", "std"])
    if importance_repeats and held is not None:
        est, te = held
        te = te[:2000]
        scoring = "accuracy" if task == "classification" else "r2"
        r = permutation_importance(
            est, x.iloc[te], y[te], n_repeats=importance_repeats, random_state=seed, scoring=scoring
        )
        imp = pd.DataFrame({"feature": list(x.columns), "importance": r.importances_mean, "std": r.importances_std})
        imp = imp.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    return TabularResult(
        pipeline=final,
        task=task,
        target=target,
        schema=schema,
        classes=classes,
        model=model,
        cv_metrics=mean,
        cv_folds=per_fold,
        baseline=baseline,
        importance=imp,
        oof_pred=oof if task == "regression" else oof.astype(str),
        y=y if task == "regression" else y.astype(str),
        params={"model": model, "task": task, "cv": folds, "seed": seed, **hp},
        fit_seconds=time.perf_counter() - t0,
        parity_rows=x.head(256).copy(),
    )


# --------------------------------------------------------------------------- workspace recipe


def train(
    ws: Any,
    data_ref: str,
    target: str | None = None,
    *,
    progress: Any = None,
    model: str | None = None,
    task_type: str = "auto",
    cv: int = 5,
    seed: int = 0,
    **hp: Any,
) -> Any:
    """Train on a tabular dataset version (``row`` samples); writes the run, report and bundle.

    The target is the samples' class annotation (imported with ``--option target=COL``) or,
    when ``target`` names a column of the rows, that column.
    """
    v = ws.version(data_ref)
    records = v.records()
    if not records:
        raise InputError(f"{v.ref}: no samples")
    # Keep a test split out of training and cross-validation, so evaluate_run(split="test") is honest.
    if any(r.split == "test" for r in records):
        records = [r for r in records if r.split != "test"]
    column, use_labels = _target_column(records, target, v.ref)
    df = records_frame(records, column if use_labels else None)
    for engine_key in (
        "epochs",
        "batch_size",
        "lr",
        "time_budget",
        "device",
        "precision",
        "optimizer",
        "scheduler",
        "weight_decay",
        "image_size",
        "weights",
        "freeze_backbone",
    ):
        if engine_key in hp and model != "mlp":
            hp.pop(engine_key)
    model = model or "hgb"
    params = {"model": model, "target": column, "task_type": task_type, "cv": cv, "seed": seed, **hp}
    run = ws.create_run(TASK, params, v.ref)
    run.set_status("running")
    try:
        res = fit_tabular(
            df,
            column,
            model=model,
            task=task_type,
            cv=cv,
            seed=seed,
            **{
                k: v_
                for k, v_ in hp.items()
                if k
                in (
                    "max_iter",
                    "learning_rate",
                    "n_estimators",
                    "min_samples_leaf",
                    "C",
                    "alpha",
                    "hidden",
                    "epochs",
                    "lr",
                )
            },
        )
        for k, fold in enumerate(res.cv_folds):
            run.log_metrics(k, {f"cv/{m}": val for m, val in fold.items()})
        import joblib

        joblib.dump(res, run.dir / "model.joblib")
        res.save_report(run.dir / "report.html", title=f"{v.ref}: {column} ({model})")
        bundle_ok = True
        try:
            res.export_bundle(run.dir / "bundle", name=v.name, data_version=v.ref, run_id=run.id, overwrite=True)
        except InputError as exc:
            bundle_ok = False
            run.log_event("export", f"bundle not written: {exc}")
        summary = {
            **{f"cv/{k}": val for k, val in res.cv_metrics.items()},
            **{f"baseline/{k}": val for k, val in res.baseline.items()},
        }
        primary = "cv/accuracy" if res.task == "classification" else "cv/r2"
        summary.update(
            {"monitor": primary, "best_metric": summary[primary], "best_epoch": None, "stop_reason": "completed"}
        )
        run.write_manifest(
            {
                "id": run.id,
                "task": TASK,
                "model": model,
                "model_kwargs": hp,
                "classes": res.classes,
                "data": v.ref,
                "params": params,
                "target": column,
                "task_type": res.task,
                "input": {"kind": "tabular", "columns": [f["name"] for f in res.schema], "schema": res.schema},
                "metrics": summary,
                "importance": res.summary()["importance"],
                "bundle": bundle_ok,
                "status": "completed",
            }
        )
        run.finish("completed", summary)
    except BaseException as exc:
        run.log_event("error", str(exc), level="error")
        run.finish("failed")
        raise
    return run


def _target_column(records: Sequence[SampleRecord], target: str | None, ref: str) -> tuple[str, bool]:
    """Which column to predict and whether it comes from the class annotations.

    A ``target`` that is a column of the rows is used as is. Otherwise the samples'
    class annotations (the column chosen at import with ``--option target=COL``) are the
    target, named ``target`` (or the name given).
    """
    first = json.loads(records[0].path.read_bytes())
    if target is not None and target in first:
        return target, False
    if any(r.labels() for r in records[:100]):
        return target or records[0].meta.get("target") or "target", True
    raise InputError(f"{ref}: rows carry no target annotation; pass --target COLUMN (columns: {', '.join(first)})")


def load_result(run: Any) -> TabularResult:
    import joblib

    path = run.dir / "model.joblib"
    if not path.exists():
        raise InputError(f"run {run.id}: no model.joblib")
    return joblib.load(path)


def evaluate_run(run: Any, split: str = "test", report_path: Path | None = None) -> dict[str, Any]:
    """Metrics of a run's model on a split of its dataset version (test rows the CV also saw: use
    a version with a held-out split for an unbiased figure)."""
    res = load_result(run)
    m = run.manifest()
    v = run.ws.version(m["data"])
    records = v.records(split=split)
    if not records:
        raise InputError(f"{v.ref} has no {split} split to evaluate on")
    column, use_labels = _target_column(records, m["target"], v.ref)
    df = records_frame(records, column if use_labels else None)
    y = df[column]
    y = y.astype(str).to_numpy() if res.task == "classification" else y.to_numpy(dtype=float)
    pred = res.predict(df)
    scores = _metrics(res.task, y, pred)
    metrics = {"run": run.id, "split": split, "data": v.ref, "n": len(df), **scores}
    if report_path is not None:
        res.save_report(
            report_path,
            title=f"{v.ref} {split}: {column} ({res.model})",
            held_out={"name": f"{v.ref} {split}", "y": y, "pred": pred, "metrics": scores},
        )
    return metrics


def export_bundle(run: Any, out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write the run's bundle to ``out`` (copies the one built at training time)."""
    src = run.dir / "bundle"
    if not src.is_dir():
        res = load_result(run)
        return res.export_bundle(out, data_version=run.data_ref, run_id=run.id, overwrite=overwrite)
    out = Path(out)
    if out.exists():
        if not overwrite:
            from dlforge.errors import ConflictError

            raise ConflictError(f"{out}: already exists")
        shutil.rmtree(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent if out.parent.exists() else None))
    shutil.rmtree(tmp)
    shutil.copytree(src, tmp)
    os.replace(tmp, out)
    return out


def export_package(run: Any, format: str, out: str | os.PathLike[str], *, overwrite: bool = False) -> dict[str, Any]:
    """Export a tabular run as ``bundle`` (directory) or ``onnx`` (the model file alone).

    Tabular models are scikit-learn pipelines converted by skl2onnx, not torch modules,
    so they bypass :class:`~dlforge.deploy.spec.ExportSpec`; ``dlforge.deploy.export``
    calls this when a recipe provides it.
    """
    out = Path(out)
    if format == "bundle":
        path = export_bundle(run, out, overwrite=overwrite)
    elif format == "onnx":
        if out.exists() and not overwrite:
            from dlforge.errors import ConflictError

            raise ConflictError(f"{out}: already exists")
        path = load_result(run).export_onnx(out)
    else:
        raise InputError(f"tabular runs export as bundle or onnx, not {format!r} (no edge/web package yet)")
    manifest_path = path / "manifest.json" if path.is_dir() else None
    parity = json.loads(manifest_path.read_text())["parity"] if manifest_path and manifest_path.exists() else None
    files = sorted(p.name for p in path.iterdir()) if path.is_dir() else [path.name]
    size = sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size
    return {"path": str(path), "parity": parity, "files": files, "size_bytes": size}


def export_spec(run: Any) -> Any:
    """Tabular runs have no torch ExportSpec; see :func:`export_package`."""
    raise InputError(
        f"run {run.id}: tabular models export through skl2onnx; the bundle is in {run.dir / 'bundle'} "
        "(dlforge.tasks.tabular.export_package writes it elsewhere)"
    )
