"""Tabular analysis (dlforge.analyze): reading, profiling, sampling, grouping, correlation, target."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dlforge.analyze import correlation, feature_vs_target, groupby_agg, profile, read_table, sample
from dlforge.errors import InputError, NotFoundError

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=n)
    cat = rng.choice(["a", "b", "c"], size=n, p=[0.6, 0.3, 0.1])
    y = np.where(x + rng.normal(scale=0.3, size=n) > 0, "yes", "no")
    df = pd.DataFrame(
        {
            "x": x,
            "x2": 2 * x + rng.normal(scale=0.1, size=n),
            "noise": rng.normal(size=n),
            "cat": cat,
            "y": y,
            "amount": rng.exponential(10, n),
        }
    )
    df.loc[:9, "noise"] = np.nan
    df.loc[0, "amount"] = 1000.0  # an outlier
    return df


def test_read_table_encodings_and_ragged_rows(tmp_path: Path) -> None:
    p = tmp_path / "gb.csv"
    p.write_bytes("城市,人口\n北京,2189\n上海,2487\n".encode("gb18030"))
    t = read_table(p)
    assert t.encoding == "gb18030" and list(t.df.columns) == ["城市", "人口"]
    assert t.df["人口"].sum() == 2189 + 2487

    p = tmp_path / "bom.csv"
    p.write_bytes("\ufeffname,score\nann,1\nbob,2\n".encode())
    t = read_table(p)
    assert t.encoding == "utf-8-sig" and list(t.df.columns) == ["name", "score"]

    p = tmp_path / "ragged.csv"
    p.write_text("a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n", encoding="utf-8")
    t = read_table(p)
    assert t.encoding == "utf-8" and len(t.df) == 2 and t.df["a"].tolist() == [1, 10]
    assert [s.source for s in t.skipped] == ["ragged.csv:3", "ragged.csv:4"]
    assert "2 fields" in t.skipped[0].reason
    assert t.to_dict()["skipped_rows"] == 2

    p = tmp_path / "bad.csv"
    p.write_bytes(b"a,b\n\x80\x80,1\n")
    with pytest.raises(InputError, match="bad.csv"):
        read_table(p)
    with pytest.raises(NotFoundError):
        read_table(tmp_path / "missing.csv")


def test_read_table_parquet_and_semicolons(tmp_path: Path, frame: pd.DataFrame) -> None:
    frame.to_parquet(tmp_path / "f.parquet")
    t = read_table(tmp_path / "f.parquet")
    pd.testing.assert_frame_equal(t.df, frame)
    (tmp_path / "s.csv").write_text("a;b\n1;2\n3;4\n")
    assert read_table(tmp_path / "s.csv").df["b"].tolist() == [2, 4]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(-99, 99), min_size=1, max_size=5), min_size=1, max_size=20))
def test_read_table_keeps_exactly_the_well_formed_rows(tmp_path_factory, rows: list[list[int]]) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path_factory.mktemp("h") / "t.csv"
    width = 3
    p.write_text("a,b,c\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    t = read_table(p, delimiter=",")
    good = [r for r in rows if len(r) == width]
    assert len(t.df) == len(good) and len(t.skipped) == len(rows) - len(good)
    if good:
        assert t.df.to_numpy().tolist() == good


def test_profile_matches_pandas(tmp_path: Path, frame: pd.DataFrame) -> None:
    res = profile(frame, out=str(tmp_path))
    t = res.table.set_index("column")
    assert t.loc["noise", "missing"] == 10
    assert t.loc["x", "mean"] == pytest.approx(frame["x"].mean())
    assert t.loc["x", "std"] == pytest.approx(frame["x"].std())
    assert t.loc["cat", "kind"] == "categorical" and t.loc["cat", "top"] == frame["cat"].value_counts().index[0]
    a = frame["amount"]
    q1, q3 = a.quantile([0.25, 0.75])
    assert t.loc["amount", "outliers"] == int(((a < q1 - 1.5 * (q3 - q1)) | (a > q3 + 1.5 * (q3 - q1))).sum())
    assert res.summary["rows"] == 400 and res.summary["missing_cells"] == 10
    assert Path(res.files["png"]).read_bytes().startswith(PNG)
    doc = json.loads(Path(res.files["json"]).read_text())
    assert doc["summary"]["columns"] == 6 and len(doc["table"]) == 6


def test_sampling_methods(frame: pd.DataFrame) -> None:
    r = sample(frame, "random", n=50, seed=1)
    assert len(r.table) == 50 and r.table["row"].is_unique
    assert sample(frame, "random", n=50, seed=1).table["row"].tolist() == r.table["row"].tolist()
    s = sample(frame, "stratified", frac=0.25, by="cat", seed=0)
    assert len(s.table) == 100
    want = frame["cat"].value_counts() * 0.25
    got = s.table["cat"].value_counts()
    assert all(abs(got[k] - want[k]) <= 1 for k in want.index)
    y = sample(frame, "systematic", n=40, seed=0)
    rows = y.table["row"].to_numpy()
    assert len(rows) == 40 and set(np.diff(rows)) <= {9, 10, 11}
    with pytest.raises(InputError):
        sample(frame, "stratified", n=10)
    with pytest.raises(InputError):
        sample(frame, "random", n=10, frac=0.1)


def test_groupby_matches_pandas(tmp_path: Path, frame: pd.DataFrame) -> None:
    res = groupby_agg(frame, "cat", {"amount": ["sum", "max"], "x": "mean"}, out=str(tmp_path))
    t = res.table.set_index("cat")
    ref = frame.groupby("cat")
    assert t["size"].to_dict() == ref.size().to_dict()
    np.testing.assert_allclose(t["amount_sum"], ref["amount"].sum())
    np.testing.assert_allclose(t["x_mean"], ref["x"].mean())
    assert Path(res.files["csv"]).exists() and Path(res.files["png"]).exists()
    with pytest.raises(InputError, match="not numeric"):
        groupby_agg(frame, "cat", {"y": "mean"})
    with pytest.raises(InputError, match="nope"):
        groupby_agg(frame, "nope")


def test_correlation_matches_numpy_and_scipy(tmp_path: Path, frame: pd.DataFrame) -> None:
    res = correlation(frame, "pearson", out=str(tmp_path))
    m = res.table
    assert m.loc["x", "x2"] == pytest.approx(np.corrcoef(frame["x"], frame["x2"])[0, 1])
    assert res.summary["strongest"][0]["a"] in ("x", "x2") and res.summary["strongest"][0]["b"] in ("x", "x2")
    sp = correlation(frame, "spearman").table
    assert sp.loc["x", "amount"] == pytest.approx(stats.spearmanr(frame["x"], frame["amount"])[0])
    assert Path(res.files["png"]).read_bytes().startswith(PNG)
    with pytest.raises(InputError):
        correlation(frame[["x", "cat"]])


def test_feature_vs_target(tmp_path: Path, frame: pd.DataFrame) -> None:
    res = feature_vs_target(frame, "y", out=str(tmp_path))
    assert res.summary["task"] == "classification"
    top = res.table.iloc[0]["feature"]
    assert top in ("x", "x2")
    noise = res.table.set_index("feature").loc["noise"]
    assert noise["p_value"] > 0.01 and res.table.set_index("feature").loc["x", "p_value"] < 1e-10
    reg = feature_vs_target(frame.drop(columns=["y"]), "x2")
    assert reg.summary["task"] == "regression" and reg.table.iloc[0]["feature"] == "x"
    assert reg.table.set_index("feature").loc["x", "statistic"] == pytest.approx(
        stats.pearsonr(frame["x"], frame["x2"])[0]
    )
    with pytest.raises(InputError, match="not in the table"):
        feature_vs_target(frame, "missing")
    with pytest.raises(InputError, match="single value"):
        feature_vs_target(frame.assign(c=1), "c")
