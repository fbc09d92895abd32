"""Kangaroo detection from scratch on a CPU: dlforge det-tiny vs. Ultralytics YOLOv8n (optional).

Data: ``../shared/data/kangaroo-voc`` (164 photos, Pascal VOC boxes), split by sorted
file name with every 5th image in val. Both detectors get the same wall-clock budget
and no pretrained weights. Prints one JSON line.

    /work/venv/bin/python benchmarks/detect_kangaroo.py [--budget 1200] [--with-ultralytics]

``--with-ultralytics`` needs ``pip install ultralytics`` (installed only for this benchmark).
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make a shared 2-core machine crawl; sleep instead
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from dlforge.data.records import Annotation, SampleRecord  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "kangaroo-voc"


def load_records(root: Path) -> tuple[list[SampleRecord], list[SampleRecord]]:
    """VOC XML -> SampleRecords; every 5th image (sorted by name) goes to val."""
    train, val = [], []
    for i, xml in enumerate(sorted((root / "annots").glob("*.xml"))):
        tree = ET.parse(xml).getroot()
        img = root / "images" / (tree.findtext("filename") or f"{xml.stem}.jpg")
        if not img.exists():
            img = root / "images" / f"{xml.stem}.jpg"
        anns = []
        for obj in tree.findall("object"):
            bb = obj.find("bndbox")
            box = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            anns.append(Annotation("box", obj.findtext("name"), {"bbox": box}))
        rec = SampleRecord(i, "", "image", img.name, img, annotations=anns, split="val" if i % 5 == 4 else "train")
        (val if i % 5 == 4 else train).append(rec)
    return train, val


def run_dlforge(train, val, budget: float, size: int, seed: int) -> dict:
    from dlforge.engine import TrainConfig
    from dlforge.tasks.object_detection import TRAIN_DEFAULTS, build_datasets, create_detector, fit_detector

    classes = ["kangaroo"]
    torch.manual_seed(seed)
    t0 = time.time()
    train_ds, val_ds = build_datasets(train, val, classes, size, augment="strong")
    model = create_detector("det-tiny", len(classes), size)
    cfg = TrainConfig(
        **{**TRAIN_DEFAULTS, "time_budget": budget, "device": "cpu", "seed": seed, "lr": 3e-3, "batch_size": 16}
    )
    with tempfile.TemporaryDirectory() as tmp:
        fit = fit_detector(model, train_ds, val_ds, cfg, Path(tmp) / "run", epochs_from_budget=True)
    return {
        "model": "det-tiny",
        "image_size": size,
        "mAP50": round(fit.metrics["map_50"], 4),
        "mAP": round(fit.metrics["map"], 4),
        "epochs": fit.result.epochs_completed,
        "stop_reason": fit.result.stop_reason,
        "seconds": round(time.time() - t0, 1),
    }


def run_ultralytics(train, val, budget: float, size: int, seed: int) -> dict:
    from ultralytics import YOLO  # optional: pip install ultralytics

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for split, recs in (("train", train), ("val", val)):
            (root / "images" / split).mkdir(parents=True)
            (root / "labels" / split).mkdir(parents=True)
            for r in recs:
                from PIL import Image

                with Image.open(r.path) as im:
                    w, h = im.size
                (root / "images" / split / r.path.name).symlink_to(r.path.resolve())
                lines = []
                for a in r.annotations:
                    x1, y1, x2, y2 = a.data["bbox"]
                    lines.append(
                        f"0 {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                    )
                (root / "labels" / split / f"{r.path.stem}.txt").write_text("\n".join(lines))
        (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: kangaroo\n")
        model = YOLO("yolov8n.yaml")
        model.train(
            data=str(root / "data.yaml"),
            imgsz=size,
            time=budget / 3600,
            epochs=1000,
            pretrained=False,
            device="cpu",
            workers=0,
            seed=seed,
            plots=False,
            project=str(root / "runs"),
            verbose=False,
            amp=False,
        )
        m = model.val(data=str(root / "data.yaml"), imgsz=size, device="cpu", plots=False, verbose=False)
        return {
            "model": "yolov8n (scratch)",
            "image_size": size,
            "mAP50": round(float(m.box.map50), 4),
            "mAP": round(float(m.box.map), 4),
            "seconds": round(time.time() - t0, 1),
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--budget", type=float, default=1200.0, help="training seconds per detector")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: 1 when the machine is busy)")
    ap.add_argument("--with-ultralytics", action="store_true")
    args = ap.parse_args()
    if not ROOT.exists():
        print(json.dumps({"benchmark": "detect_kangaroo", "skipped": f"{ROOT} not found"}))
        return
    cores = os.cpu_count() or 1
    threads = args.threads or (1 if os.getloadavg()[0] > cores else cores)
    torch.set_num_threads(threads)
    train, val = load_records(ROOT)
    out = {
        "benchmark": "detect_kangaroo",
        "train_images": len(train),
        "val_images": len(val),
        "budget_s": args.budget,
        "threads": threads,
        "load_avg_start": round(os.getloadavg()[0], 1),
    }
    out["dlforge"] = run_dlforge(train, val, args.budget, args.size, args.seed)
    if args.with_ultralytics:
        try:
            out["ultralytics"] = run_ultralytics(train, val, args.budget, 320, args.seed)
        except ImportError:
            out["ultralytics"] = {"skipped": "pip install ultralytics"}
    out["load_avg_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(out), file=sys.stdout)


if __name__ == "__main__":
    main()
