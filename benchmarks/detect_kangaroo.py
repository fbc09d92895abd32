"""Kangaroo detection from scratch on a CPU: dlforge det-tiny vs. Ultralytics YOLOv8n.

Data: ``../shared/data/kangaroo-voc`` (164 photos, Pascal VOC boxes), split by sorted
file name with every 5th image in val. Both detectors train on the same split with the
same wall-clock budget, the same number of torch threads and no pretrained weights, and
both are scored twice: by their own evaluator and by dlforge's COCO evaluator on the same
ground truth (original pixels, 100 detections per image), so the two mAPs are comparable.
Prints one JSON line.

    /work/venv/bin/python benchmarks/detect_kangaroo.py [--budget 1200] [--threads 1]
        [--with-ultralytics --ultralytics-python /tmp/ultra-venv/bin/python [--concurrent]]

Ultralytics is not a dlforge dependency (it pins its own torch): install it into a
throwaway venv layered on this one and point ``--ultralytics-python`` at it::

    python -m venv /tmp/ultra-venv
    echo /work/venv/lib/python3.11/site-packages > /tmp/ultra-venv/lib/python3.11/site-packages/zz.pth
    echo /work/main/src >> /tmp/ultra-venv/lib/python3.11/site-packages/zz.pth
    /tmp/ultra-venv/bin/pip install --no-deps ultralytics ultralytics-thop ultralytics-platform
    /tmp/ultra-venv/bin/pip install opencv-python-headless requests polars

The Ultralytics side runs in that interpreter as a subprocess (``--concurrent`` runs it
beside the dlforge side, one thread each, so the whole benchmark takes one budget of wall
time). Nothing downloads: ``YOLO_OFFLINE=1``, a private ``YOLO_CONFIG_DIR``, the model
built from ``yolov8n.yaml``, ``pretrained=False``, ``amp=False`` (no AMP check weights),
``plots=False`` (no Arial.ttf).
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting make a shared 2-core machine crawl; sleep instead
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import xml.etree.ElementTree as ET  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from dlforge.data.records import Annotation, SampleRecord  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent / ".." / "shared" / "data" / "kangaroo-voc"
CLASSES = ["kangaroo"]
MAX_DETECTIONS = 100  # COCO's cap, used by both sides when dlforge's evaluator scores them


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


def run_dlforge(train, val_ds, budget: float, size: int, seed: int) -> dict:
    """det-tiny from scratch through the object-detection recipe's own pieces."""
    from dlforge.engine import TrainConfig
    from dlforge.tasks.object_detection import TRAIN_DEFAULTS, build_datasets, create_detector, fit_detector

    torch.manual_seed(seed)
    t0 = time.time()
    train_ds, _ = build_datasets(train, [], CLASSES, size, augment="strong")
    model = create_detector("det-tiny", len(CLASSES), size)
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
        "evaluator": "dlforge COCO",
        "epochs": fit.result.epochs_completed,
        "stop_reason": fit.result.stop_reason,
        "seconds": round(time.time() - t0, 1),
    }


# ---- Ultralytics side (runs in the interpreter that has ultralytics) ---------------------


def _write_yolo_dataset(root: Path, train, val) -> Path:
    """The same split as YOLO txt labels (class cx cy w h, normalised), images copied.

    Copied, not symlinked: Ultralytics rewrites JPEGs it finds corrupt in place, and the
    shared data must stay as it is.
    """
    import shutil

    from PIL import Image

    for split, recs in (("train", train), ("val", val)):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for r in recs:
            with Image.open(r.path) as im:
                w, h = im.size
            shutil.copyfile(r.path, root / "images" / split / r.path.name)
            lines = []
            for a in r.annotations:
                x1, y1, x2, y2 = a.data["bbox"]
                cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
                lines.append(f"0 {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
            (root / "labels" / split / f"{r.path.stem}.txt").write_text("\n".join(lines))
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: kangaroo\n")
    return yaml


def ultralytics_worker(out_path: Path, budget: float, size: int, seed: int, threads: int) -> None:
    """Train YOLOv8n from scratch, validate it, and write metrics + val predictions as JSON."""
    tmp = Path(tempfile.mkdtemp(prefix="dlforge-yolo-"))
    try:
        _ultralytics_train_and_predict(tmp, out_path, budget, size, seed, threads)
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _ultralytics_train_and_predict(tmp: Path, out_path: Path, budget: float, size: int, seed: int, threads: int):
    # before importing ultralytics: no network checks, settings kept out of the user's home
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(tmp / "config"))
    import ultralytics.utils.torch_utils as tu
    from ultralytics import YOLO, settings

    settings.update({"sync": False})
    tu.NUM_THREADS = threads  # select_device() resets torch threads to this
    torch.set_num_threads(threads)
    train, val = load_records(ROOT)
    t0 = time.time()
    data = _write_yolo_dataset(tmp / "data", train, val)
    model = YOLO("yolov8n.yaml")  # architecture only: no weights
    model.train(
        data=str(data),
        imgsz=size,
        time=budget / 3600,  # hours; Ultralytics refits its epoch count and LR schedule to it
        epochs=1000,
        pretrained=False,
        device="cpu",
        workers=0,
        seed=seed,
        plots=False,
        amp=False,
        project=str(tmp / "runs"),
        name="train",
        verbose=False,
    )
    train_seconds = time.time() - t0
    epochs = model.trainer.epoch + 1
    best = Path(model.trainer.best)
    model = YOLO(str(best if best.exists() else model.trainer.last))
    m = model.val(data=str(data), imgsz=size, device="cpu", plots=False, verbose=False, batch=16)
    from dlforge.errors import InputError
    from dlforge.tasks.detection_data import load_rgb

    preds = {}
    for r in val:
        # decoded by dlforge's loader, so both sides see the same pixels; what it cannot read
        # is skipped here as it is in dlforge's val set
        try:
            image = load_rgb(Path(r.path))
        except InputError:
            continue
        res = model.predict(image, imgsz=size, conf=0.001, iou=0.7, max_det=MAX_DETECTIONS, verbose=False)[0]
        preds[r.path.name] = {
            "boxes": res.boxes.xyxy.cpu().tolist(),  # original pixels
            "scores": res.boxes.conf.cpu().tolist(),
            "labels": res.boxes.cls.cpu().int().tolist(),
        }
    result = {
        "model": "yolov8n (scratch)",
        "ultralytics": __import__("ultralytics").__version__,
        "image_size": size,
        "mAP50_own": round(float(m.box.map50), 4),
        "mAP_own": round(float(m.box.map), 4),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 1),
        "seconds": round(time.time() - t0, 1),
        "predictions": preds,
    }
    tmp_out = out_path.with_suffix(".tmp")
    tmp_out.write_text(json.dumps(result))
    os.replace(tmp_out, out_path)


def start_ultralytics(python: str, out_path: Path, budget: float, size: int, seed: int, threads: int):
    """Start the Ultralytics side as a subprocess of ``python`` (its logs go to our stderr)."""
    cmd = [python, str(Path(__file__).resolve()), "--ultralytics-worker", str(out_path)]
    cmd += ["--budget", str(budget), "--yolo-size", str(size), "--seed", str(seed), "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "YOLO_OFFLINE": "1"}
    return subprocess.Popen(cmd, stdout=sys.stderr, env=env)


def score_predictions(val_ds, preds: dict) -> dict:
    """dlforge's COCO evaluator on file-name-keyed predictions in original pixels."""
    import numpy as np

    from dlforge.evaluate.detection import DetectionEvaluator

    ev = DetectionEvaluator(CLASSES)
    for i, item in enumerate(val_ds.items):
        p = preds.get(Path(item.name).name, {"boxes": [], "scores": [], "labels": []})
        h, w = item.orig_size
        boxes = np.asarray(p["boxes"], dtype=np.float64).reshape(-1, 4)
        ev.add(i, item.orig_boxes, item.labels.numpy(), boxes, p["scores"], p["labels"], image_size=(w, h))
    m = ev.compute()
    return {"mAP50": round(m["map_50"], 4), "mAP": round(m["map"], 4), "evaluator": "dlforge COCO"}


def finish_ultralytics(proc, out_path: Path, val_ds) -> dict:
    rc = proc.wait()
    if rc != 0 or not out_path.exists():
        return {"failed": f"ultralytics worker exited with {rc}"}
    res = json.loads(out_path.read_text())
    preds = res.pop("predictions")
    return {**res, **score_predictions(val_ds, preds)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=1200.0, help="training seconds per detector")
    ap.add_argument("--size", type=int, default=224, help="det-tiny input side")
    ap.add_argument("--yolo-size", type=int, default=320, help="YOLOv8n imgsz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per side (0: 1 when the machine is busy)")
    ap.add_argument("--with-ultralytics", action="store_true")
    ap.add_argument(
        "--ultralytics-python",
        default=os.environ.get("DLFORGE_ULTRALYTICS_PYTHON", sys.executable),
        help="interpreter that can import ultralytics",
    )
    ap.add_argument("--concurrent", action="store_true", help="run both sides at once (one budget of wall time)")
    ap.add_argument("--ultralytics-worker", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ultralytics_worker:
        ultralytics_worker(args.ultralytics_worker, args.budget, args.yolo_size, args.seed, max(args.threads, 1))
        return
    if not ROOT.exists():
        print(json.dumps({"benchmark": "detect_kangaroo", "skipped": f"{ROOT} not found"}))
        return
    from dlforge.tasks.detection_data import DetectionDataset

    cores = os.cpu_count() or 1
    threads = args.threads or (1 if os.getloadavg()[0] > cores else cores)
    torch.set_num_threads(threads)
    train, val = load_records(ROOT)
    # one val dataset: its original-pixel ground truth scores both detectors
    val_ds = DetectionDataset(val, CLASSES, args.size, train=False)
    skipped = [sk.source for sk in val_ds.stats.skipped]
    out = {
        "benchmark": "detect_kangaroo",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{cores} cpu, no GPU" if not torch.cuda.is_available() else f"{cores} cpu + GPU",
        "train_images": len(train),
        "val_images": len(val),
        "val_images_scored": len(val_ds),
        "val_skipped": skipped,
        "budget_s": args.budget,
        "threads": threads,
        "concurrent": bool(args.with_ultralytics and args.concurrent),
        "load_avg_start": round(os.getloadavg()[0], 1),
    }
    with tempfile.TemporaryDirectory() as tmp:
        yolo_out = Path(tmp) / "ultralytics.json"
        proc = None
        if args.with_ultralytics and args.concurrent:
            proc = start_ultralytics(args.ultralytics_python, yolo_out, args.budget, args.yolo_size, args.seed, threads)
        out["dlforge"] = run_dlforge(train, val_ds, args.budget, args.size, args.seed)
        if args.with_ultralytics:
            if proc is None:
                proc = start_ultralytics(
                    args.ultralytics_python, yolo_out, args.budget, args.yolo_size, args.seed, threads
                )
            out["ultralytics"] = finish_ultralytics(proc, yolo_out, val_ds)
    out["load_avg_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(out), file=sys.stdout)


if __name__ == "__main__":
    main()
