"""Tabular task (dlforge.tasks.tabular): models vs baselines, ONNX bundle parity, bad input, workspace run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

from dlforge.errors import InputError
from dlforge.tasks.tabular import fit_tabular, records_frame


@pytest.mark.parametrize(
    ("loader", "model", "kw", "min_acc", "margin"),
    [
        (load_iris, "hgb", {}, 0.9, 0.5),
        (load_wine, "rf", {"n_estimators": 60}, 0.9, 0.45),
        (load_breast_cancer, "linear", {}, 0.94, 0.25),
        (load_iris, "mlp", {"epochs": 60}, 0.9, 0.5),
    ],
)
def test_classifiers_beat_majority(loader, model: str, kw: dict, min_acc: float, margin: float) -> None:  # type: ignore[no-untyped-def]
    df = loader(as_frame=True).frame
    res = fit_tabular(df, "target", model=model, cv=3, importance_repeats=2, **kw)
    assert res.task == "classification"
    assert res.cv_metrics["accuracy"] >= min_acc
    assert res.cv_metrics["accuracy"] - res.baseline["accuracy"] >= margin
    assert len(res.cv_folds) == 3 and len(res.oof_pred) == len(df)
    assert set(res.importance["feature"]) == set(df.columns) - {"target"}


@pytest.mark.parametrize("model", ["hgb", "linear"])
def test_regression_beats_mean(model: str) -> None:
    df = load_diabetes(as_frame=True).frame
    res = fit_tabular(df, "target", model=model, task="regression", cv=3, importance_repeats=0)
    assert res.baseline["r2"] < 0.01
    assert res.cv_metrics["r2"] >= 0.3
    assert res.cv_metrics["rmse"] < 0.85 * res.baseline["rmse"]


def _mixed_frame() -> pd.DataFrame:
    df = load_iris(as_frame=True).frame
    df.columns = ["sepal length (cm)", "sepal width", "petal length", "petal width", "species"]
    df["species"] = np.array(["setosa", "versicolor", "virginica"])[df["species"]]
    rng = np.random.default_rng(0)
    df["colour"] = rng.choice(["red", "blue", None], len(df))
    df.loc[::17, "petal width"] = np.nan
    return df


@pytest.mark.parametrize("model", ["hgb", "rf", "linear", "mlp"])
def test_bundle_matches_sklearn_and_predictor(tmp_path: Path, model: str) -> None:
    from dlforge.deploy.predictor import Predictor

    df = _mixed_frame()
    hp = {"rf": {"n_estimators": 30}, "mlp": {"epochs": 40}}.get(model, {})
    res = fit_tabular(df, "species", model=model, cv=3, importance_repeats=0, **hp)
    out = res.export_bundle(tmp_path / "bundle", name="iris")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == "tabular" and manifest["parity"]["passed"]
    assert [c["name"] for c in manifest["input"]["schema"]] == [
        "sepal length (cm)",
        "sepal width",
        "petal length",
        "petal width",
        "colour",
    ]
    pred = Predictor(out)
    rows = df.drop(columns=["species"]).replace({np.nan: None}).to_dict(orient="records")
    got = pred.predict(rows)
    want = res.predict(df)
    assert [g.label for g in got] == list(want)
    probs = res.predict_proba(df)
    np.testing.assert_allclose([g.score for g in got], probs.max(axis=1), atol=1e-5)
    single = pred.predict(rows[0])
    assert single.label == want[0]
    assert pred.predict(json.dumps(rows[1])).label == want[1]  # as `dlforge predict` passes it


def test_regression_bundle(tmp_path: Path) -> None:
    from dlforge.deploy.predictor import Predictor

    df = load_diabetes(as_frame=True).frame
    res = fit_tabular(df, "target", task="regression", cv=3, importance_repeats=0)
    out = res.export_bundle(tmp_path / "b")
    got = Predictor(out).predict(df.drop(columns=["target"]).head(50).to_dict(orient="records"))
    np.testing.assert_allclose([g["value"] for g in got], res.predict(df.head(50)), rtol=1e-4, atol=1e-3)


def test_bad_input_is_one_clear_error(tmp_path: Path) -> None:
    from dlforge.deploy.manifest import BundleError
    from dlforge.deploy.predictor import Predictor

    df = _mixed_frame()
    with pytest.raises(InputError, match="'nope' not found"):
        fit_tabular(df, "nope")
    with pytest.raises(InputError, match="single value"):
        fit_tabular(df.assign(one=1), "one")
    with pytest.raises(InputError, match="not numeric"):
        fit_tabular(df, "species", task="regression")
    res = fit_tabular(df, "species", model="linear", cv=2, importance_repeats=0)
    bad = df.head(3).copy()
    bad["sepal width"] = bad["sepal width"].astype(object)
    bad.loc[bad.index[1], "sepal width"] = "wide"
    with pytest.raises(InputError, match="'sepal width' must be numeric"):
        res.predict(bad)
    pred = Predictor(res.export_bundle(tmp_path / "b"))
    with pytest.raises(BundleError, match="'colour' is missing"):
        pred.predict({"sepal length (cm)": 5.0, "sepal width": 3.0, "petal length": 1.0, "petal width": 0.2})
    with pytest.raises(BundleError, match="must be a number"):
        pred.predict(
            {"sepal length (cm)": "x", "sepal width": 3.0, "petal length": 1.0, "petal width": 0.2, "colour": "red"}
        )


def test_report_html_has_images(tmp_path: Path) -> None:
    from html.parser import HTMLParser

    res = fit_tabular(load_wine(as_frame=True).frame, "target", model="linear", cv=3, importance_repeats=2)
    path = res.save_report(tmp_path / "r.html")
    imgs: list[str] = []

    class P(HTMLParser):
        def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
            if tag == "img":
                imgs.append(dict(attrs)["src"])

    P().feed(path.read_text())
    assert len(imgs) == 2 and all(s.startswith("data:image/png;base64,") for s in imgs)


def test_train_on_workspace_dataset(tmp_path: Path) -> None:
    from dlforge.workspace import Workspace

    df = _mixed_frame()
    csv = tmp_path / "src" / "iris.csv"
    csv.parent.mkdir()
    df.to_csv(csv, index=False)
    ws = Workspace.open(home=tmp_path / "home")
    ws.import_data(csv.parent, "iris", format="csv", task="tabular", target="species")
    v = ws.version("iris")
    frame = records_frame(v.records(), "species")
    assert len(frame) == len(df) and set(frame["species"]) == {"setosa", "versicolor", "virginica"}
    from dlforge.tasks import tabular

    split = v.split(val=0.0, test=0.25, seed=0)
    run = tabular.train(ws, split.ref, target="species", cv=3, model="hgb")
    info = run.manifest()
    assert info["metrics"]["cv/accuracy"] > 0.85 and info["bundle"]
    assert (run.dir / "report.html").exists() and (run.dir / "bundle" / "model.onnx").exists()
    m = tabular.evaluate_run(run, split="test", report_path=tmp_path / "eval.html")
    assert m["n"] == len(split.records(split="test")) and m["accuracy"] > 0.8
    out = tabular.export_bundle(run, tmp_path / "exported")
    assert (out / "manifest.json").exists()
