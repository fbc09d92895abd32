"""waimai-10k sentiment (stratified 80/20, seed 0): dlforge's text models vs. char 1-3-gram TF-IDF + LinearSVC.

Run: python benchmarks/text_sentiment.py [--budget SECONDS_PER_MODEL] [--models ngram-bilstm,textcnn,bilstm]
                                         [--model-budget ngram-bilstm=600] [--threads N]
Prints one JSON line. Each deep model trains within its CPU time budget (``--budget``, or its own
``--model-budget NAME=SECONDS``); 10% of the 80% is held out as validation to pick the best epoch.
Each model's accuracy and train time are reported next to the baseline's, from the same run.
Needs ../shared/data/waimai-10k.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.svm import LinearSVC

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit  # noqa: E402

from dlforge.tasks import text_classification as tc  # noqa: E402
from dlforge.workspace import Workspace  # noqa: E402

# Per-model training settings (the recipe's defaults otherwise). max_len 128 keeps ~99% of reviews
# whole (the default 95th percentile cuts the n-grams of the longest). Label smoothing keeps the
# wide & deep model's linear part from driving confident n-grams to extreme weights.
MODEL_PARAMS: dict[str, dict] = {
    "ngram-bilstm": {"label_smoothing": 0.1, "epochs": 4, "max_len": 128},
}

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "waimai-10k" / "waimai_10k.csv"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=float, default=180.0, help="seconds of training per deep model")
    ap.add_argument("--models", default="ngram-bilstm,textcnn,bilstm,transformer")
    ap.add_argument(
        "--model-budget", action="append", default=[], metavar="NAME=SECONDS", help="a model's own budget"
    )
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    ap.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of the 80%% held out as the validation split that picks the best epoch (> 0)",
    )
    ap.add_argument("--seed", type=int, default=0, help="training seed of the deep models")
    ap.add_argument("--ema-decay", type=float, default=None, help="average the weights (engine ema_decay)")
    args = ap.parse_args()
    load_at_start = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    budgets = {}
    for item in args.model_budget:
        name, _, secs = item.partition("=")
        budgets[name] = float(secs)
    if not DATA.exists():
        sys.exit(f"{DATA}: not found (needs ../shared/data)")
    df = pd.read_csv(DATA).dropna()
    df["review"] = df["review"].astype(str).str.replace(r"\s+", " ", regex=True)  # one CSV line per row
    idx = list(range(len(df)))
    train_idx, test_idx = train_test_split(idx, test_size=0.2, stratify=df["label"], random_state=0)
    tr_idx, val_idx = train_test_split(
        train_idx, test_size=args.val_fraction, stratify=df["label"].iloc[train_idx], random_state=0
    )

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
            budget = budgets.get(name, args.budget)
            params = {**MODEL_PARAMS.get(name, {}), **({"ema_decay": args.ema_decay} if args.ema_decay else {})}
            run = tc.train(ws, v.ref, model=name, time_budget=budget, seed=args.seed, **{"epochs": 30, **params})
            secs = time.perf_counter() - t0
            acc = tc.evaluate_run(run, "test")["accuracy"]
            results[name] = {
                "test_accuracy": round(acc, 4),
                "train_s": round(secs, 1),
                "budget_s": budget,
                "epochs": run.info().summary.get("epochs_done"),
                "best_epoch": run.info().summary.get("best_epoch"),
                **params,
            }
        ws.close()
    best = max(results, key=lambda k: results[k]["test_accuracy"])
    emit(
        {
            "benchmark": "text_sentiment",
            "n_test": len(test_idx),
            "budget_s_per_model": args.budget,
            "threads": args.threads,
            "val_fraction": args.val_fraction,
            "seed": args.seed,
            "load_avg_1m_at_start": round(load_at_start, 2),
            "baseline_tfidf_linearsvc": {"test_accuracy": round(base_acc, 4), "train_s": round(base_s, 1)},
            "models": results,
            "best": best,
            "best_minus_baseline_points": round(100 * (results[best]["test_accuracy"] - base_acc), 2),
            "target_points": 1.0,
        }
    )


if __name__ == "__main__":
    main()
