"""``dlforge analyze ...`` and ``dlforge data report|issues`` through the real command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

DLFORGE = [sys.executable, "-m", "dlforge.cli.main"]


def _run(args: list[str], home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DLFORGE_HOME": str(home)}
    return subprocess.run(DLFORGE + args, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture()
def table(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 120
    x = rng.normal(size=n)
    df = pd.DataFrame(
        {
            "x": x,
            "y": 3 * x + rng.normal(size=n),
            "shop": rng.choice(["a", "b"], n),
            "bought": np.where(x > 0, "yes", "no"),
        }
    )
    p = tmp_path / "t.csv"
    p.write_text(df.to_csv(index=False) + "1,2\n", encoding="utf-8")  # one ragged row
    return p


@pytest.mark.parametrize(
    ("cmd", "extra", "check"),
    [
        ("profile", [], lambda d: d["summary"]["rows"] == 120 and d["source"]["skipped_rows"] == 1),
        ("sample", ["--method", "stratified", "--by", "shop", "--n", "30"], lambda d: d["rows"] == 30),
        ("groupby", ["--by", "shop", "--agg", "y:mean,max"], lambda d: d["summary"]["groups"] == 2),
        ("corr", ["--method", "spearman"], lambda d: d["summary"]["strongest"][0]["r"] > 0.8),
        ("target", ["--target", "bought"], lambda d: d["summary"]["top_features"][0] in ("x", "y")),
    ],
)
def test_analyze_commands_print_one_json(tmp_path: Path, table: Path, cmd: str, extra: list[str], check) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    r = _run(["analyze", cmd, str(table), "--out", str(out), "--json", *extra], tmp_path / "home")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)  # exactly one JSON object
    assert check(d)
    assert Path(d["files"]["csv"]).exists() and Path(d["files"]["json"]).exists()


def test_rules_basket_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "b.csv"
    p.write_text("bread,milk\nbread,butter\nbread,milk,butter\nmilk\n")
    r = _run(
        [
            "analyze",
            "rules",
            str(p),
            "--basket",
            "--out",
            str(tmp_path / "o"),
            "--min-support",
            "0.5",
            "--min-confidence",
            "0.6",
            "--json",
        ],
        tmp_path / "home",
    )
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["summary"]["transactions"] == 4 and d["summary"]["rules"] >= 1
    ok = tmp_path / "ok.csv"
    ok.write_text("a,b\n1,2\n3,4\n")
    r = _run(
        ["analyze", "target", str(ok), "--out", str(tmp_path / "o"), "--target", "nope", "--json"], tmp_path / "home"
    )
    assert r.returncode != 0 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and "nope" in r.stderr


def test_data_report_and_issues(tmp_path: Path) -> None:
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for label, n, value in (("dark", 24, 30), ("light", 24, 220), ("grey", 3, 128)):
        (src / label).mkdir(parents=True)
        for i in range(n):
            arr = np.clip(rng.normal(value, 10, (16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(src / label / f"{i}.png")
    # A mislabelled image: a light picture filed under dark.
    Image.fromarray(np.full((16, 16, 3), 225, np.uint8)).save(src / "dark" / "wrong.png")
    home = tmp_path / "home"
    r = _run(["data", "import", str(src), "--name", "shades", "--json"], home)
    assert r.returncode == 0, r.stderr
    r = _run(["data", "report", "shades", "--out", str(tmp_path / "r.html"), "--json"], home)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["figures"]["overview"]["samples"] == 52
    assert any("`grey` has 3 samples" in f for f in d["findings"])
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") >= 2
    r = _run(["data", "issues", "shades", "--folds", "3", "--json"], home)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    wrong = [i for i in d["issues"] if i["name"].endswith("wrong.png")]
    assert wrong and wrong[0]["suggested"] == "light"
    assert d["new_version"] == "shades@2"
