"""waimai-10k sentiment (stratified 80/20, seed 0): dlforge's text models vs. char 1-3-gram TF-IDF + LinearSVC.

Run: python benchmarks/text_sentiment.py [--budget SECONDS_PER_MODEL] [--models textcnn,bilstm,transformer]
Prints one JSON line. Each deep model gets the same CPU time budget; 10% of the 80% is held out as
validation to pick the best epoch. Needs ../shared/data/waimai-10k.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit  # noqa: E402

from dlforge.tasks import text_classification as tc  # noqa: E402
from dlforge.workspace import Workspace  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "waimai-10k" / "waimai_10k.csv"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=180.0)
    ap.add_argument("--models", default="textcnn,bilstm,transformer")
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"{DATA}: not found (needs ../shared/data)")
    df = pd.read_csv(DATA).dropna()
    df["review"] = df["review"].astype(str).str.replace(r"\s+", " ", regex=True)  # one CSV line per row
    idx = list(range(len(df)))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=df["label"], random_state=0)
    tr_idx, val_idx = train_test_split(train_idx, test_size=0.1, stratify=df["label"].iloc[train_idx], random_state=0)

    t0 = time.perf_counter()
    base = make_pipeline(TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True), LinearSVC(C=0.5))
    base.fit(df["review"].iloc[train_idx], df["label"].iloc[train_idx])
    base_s = time.perf_counter() - t0
    base_acc = float((base.predict(df["review"].iloc[test_idx]) == df["label"].iloc[test_idx]).mean())

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "waimai.csv"
        df[["label", "review"]].to_csv(csv, index=False)
        ws = Workspace.open(Path(tmp) / "ws")
        v = ws.import_data(csv, "waimai", text_column="review", label_column="label").version
        split_of = {i: "train" for i in tr_idx} | {i: "val" for i in val_idx} | {i: "test" for i in test_idx}
        # the CSV reader names samples "<file>#<line>"; line 2 is data row 0
        v = v.assign_splits({r.sample_id: split_of[int(r.name.rsplit("#", 1)[1]) - 2] for r in v.records()})
        for name in args.models.split(","):
            t0 = time.perf_counter()
            run = tc.train(ws, v.ref, model=name, epochs=30, time_budget=args.budget, seed=0)
            secs = time.perf_counter() - t0
            acc = tc.evaluate_run(run, "test")["accuracy"]
            results[name] = {
                "test_accuracy": round(acc, 4),
                "train_s": round(secs, 1),
                "epochs": run.info().summary.get("epochs_done"),
            }
        ws.close()
    best = max(results, key=lambda k: results[k]["test_accuracy"])
    emit(
        {
            "benchmark": "text_sentiment",
            "n_test": len(test_idx),
            "budget_s_per_model": args.budget,
            "baseline_tfidf_linearsvc": {"test_accuracy": round(base_acc, 4), "train_s": round(base_s, 1)},
            "models": results,
            "best": best,
            "best_minus_baseline_points": round(100 * (results[best]["test_accuracy"] - base_acc), 2),
            "target_points": 1.0,
        }
    )


if __name__ == "__main__":
    main()
