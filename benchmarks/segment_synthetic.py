"""Synthetic shapes segmentation: the recipe's CPU default (or --model) vs. LR-ASPP MobileNetV3, from scratch.

400 train / 100 val images, 3 classes + background, 128 px. Prints one JSON line.

    /work/venv/bin/python benchmarks/segment_synthetic.py [--budget 600] [--model seg-lite] [--baseline-budget 0]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads crawl on a shared CPU

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from dlforge.data.synthetic import generate_shapes, shapes_to_records  # noqa: E402
from dlforge.engine import TrainConfig  # noqa: E402
from dlforge.tasks.semantic_segmentation import (  # noqa: E402
    DEFAULTS,
    TRAIN_DEFAULTS,
    build_datasets,
    create_segmenter,
    default_model,
    fit_segmenter,
)

CLASSES = ("circle", "square", "triangle")


def run(name: str, train, val, size: int, budget: float, seed: int, **kw) -> dict:
    t0 = time.time()
    torch.manual_seed(seed)
    train_ds, val_ds = build_datasets(train, val, CLASSES, size, augment=DEFAULTS["augment"])
    model = create_segmenter(name, len(CLASSES) + 1, size, **kw)
    cfg = TrainConfig(**{**TRAIN_DEFAULTS, "time_budget": budget, "device": "cpu", "seed": seed})
    with tempfile.TemporaryDirectory() as tmp:
        fit = fit_segmenter(model, train_ds, val_ds, cfg, Path(tmp) / "run", loss="dice", epochs_from_budget=True)
    m = fit.metrics
    return {
        "model": name,
        "image_size": size,
        "augment": DEFAULTS["augment"],
        "batch_size": cfg.batch_size,
        "lr": cfg.lr,
        "mIoU": round(m["miou"], 4),
        "pixel_accuracy": round(m["pixel_accuracy"], 4),
        "mean_dice": round(m["mean_dice"], 4),
        "epochs": fit.result.epochs_completed,
        "stop_reason": fit.result.stop_reason,
        "seconds": round(time.time() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--baseline-budget", type=float, default=0.0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=default_model(), help="registered segmenter (default: the recipe's CPU pick)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: 1 when the machine is busy)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    threads = args.threads or (1 if os.getloadavg()[0] > cores else cores)
    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="dlforge-segsyn-"))
    gen = {"size": (args.size, args.size), "classes": CLASSES, "max_objects": 3, "object_size": (0.2, 0.45)}
    train = shapes_to_records(generate_shapes(400, seed=args.seed, **gen), tmp / "train", CLASSES)
    val = shapes_to_records(generate_shapes(100, seed=args.seed + 1000, **gen), tmp / "val", CLASSES)
    out = {
        "benchmark": "segment_synthetic",
        "train_images": 400,
        "val_images": 100,
        "classes": len(CLASSES),
        "budget_s": args.budget,
        "threads": threads,
        "load_avg_start": round(os.getloadavg()[0], 1),
    }
    out["dlforge"] = run(args.model, train, val, args.size, args.budget, args.seed)
    if args.baseline_budget > 0:
        out["lraspp_mobilenet_v3"] = run(
            "lraspp_mobilenet_v3_large", train, val, args.size, args.baseline_budget, args.seed
        )
    out["load_avg_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
