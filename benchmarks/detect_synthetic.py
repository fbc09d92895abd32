"""Synthetic shapes detection: det-tiny (from scratch) vs. Faster R-CNN MobileNetV3 (from scratch), same budget.

600 train / 150 val images, 3 classes, 1-4 objects each. Prints one JSON line.

    /work/venv/bin/python benchmarks/detect_synthetic.py [--budget 600] [--baseline-budget 0]

The baseline (torchvision Faster R-CNN, the region-based detector the field teaches)
runs only with ``--baseline-budget > 0``: on a 2-core CPU it needs far longer per step.
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
from dlforge.tasks.object_detection import (  # noqa: E402
    TRAIN_DEFAULTS,
    build_datasets,
    create_detector,
    fit_detector,
)

CLASSES = ("circle", "square", "triangle")


def run(name: str, train, val, size: int, budget: float, seed: int, augment: str, lr: float) -> dict:
    t0 = time.time()
    torch.manual_seed(seed)
    train_ds, val_ds = build_datasets(train, val, CLASSES, size, augment=augment)
    model = create_detector(name, len(CLASSES), size)
    cfg = TrainConfig(**{**TRAIN_DEFAULTS, "time_budget": budget, "device": "cpu", "seed": seed, "lr": lr})
    with tempfile.TemporaryDirectory() as tmp:
        fit = fit_detector(model, train_ds, val_ds, cfg, Path(tmp) / "run", epochs_from_budget=True)
    m = fit.metrics
    return {
        "model": name,
        "image_size": size,
        "mAP50": round(m["map_50"], 4),
        "mAP": round(m["map"], 4),
        "mAP75": round(m["map_75"], 4),
        "epochs": fit.result.epochs_completed,
        "stop_reason": fit.result.stop_reason,
        "seconds": round(time.time() - t0, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget", type=float, default=600.0)
    ap.add_argument("--baseline-budget", type=float, default=0.0)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: 1 when the machine is busy)")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    threads = args.threads or (1 if os.getloadavg()[0] > cores else cores)
    torch.set_num_threads(threads)
    tmp = Path(tempfile.mkdtemp(prefix="dlforge-detsyn-"))
    gen = {"size": (args.size, args.size), "classes": CLASSES, "max_objects": 4}
    train = shapes_to_records(generate_shapes(600, seed=args.seed, **gen), tmp / "train", CLASSES)
    val = shapes_to_records(generate_shapes(150, seed=args.seed + 1000, **gen), tmp / "val", CLASSES)
    out = {
        "benchmark": "detect_synthetic",
        "train_images": 600,
        "val_images": 150,
        "classes": len(CLASSES),
        "budget_s": args.budget,
        "threads": threads,
        "load_avg_start": round(os.getloadavg()[0], 1),
    }
    out["dlforge"] = run("det-tiny", train, val, args.size, args.budget, args.seed, "default", 3e-3)
    if args.baseline_budget > 0:
        out["fasterrcnn_mobilenet_v3"] = run(
            "fasterrcnn_mobilenet_v3_large_fpn", train, val, args.size, args.baseline_budget, args.seed, "default", 1e-3
        )
    out["load_avg_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
