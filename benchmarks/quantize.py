"""fp32 vs int8 ONNX for a CNN: batch-1 latency, model size, validation accuracy.

A resnet18 (dlforge's registered ``resnet18``, 11M parameters) is trained briefly on
scikit-learn's digits upsampled to 64x64 RGB, exported through dlforge's edge
package (which quantizes with ONNX Runtime static quantization: QDQ, per-channel,
calibrated on training samples and scores both models on the validation split),
then both models are timed at batch size 1 with ONNX Runtime on the CPU.

Targets: int8 >= 1.8x faster, <= 30% of the fp32 size, <= 1 point accuracy drop.

    python benchmarks/quantize.py [--epochs 2] [--size 64] [--threads 1]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def digits(size: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]:
    """sklearn digits as normalised (N, 3, size, size) tensors, split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits

    d = load_digits()
    imgs = []
    for im in d.images:
        small = Image.fromarray((im * (255.0 / 16.0)).astype(np.uint8)).convert("RGB")
        imgs.append(np.asarray(small.resize((size, size), Image.BILINEAR)))
    x = torch.from_numpy(np.stack(imgs)).float().div(255.0)
    x = ((x - torch.tensor(MEAN)) / torch.tensor(STD)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(d.target.astype(np.int64))
    order = np.random.default_rng(0).permutation(len(y))
    return x, y, order[: int(0.8 * len(y))], order[int(0.8 * len(y)) :]


def build_model() -> nn.Module:
    try:
        from dlforge.models import create_model

        return create_model("resnet18", 10)
    except Exception:  # noqa: BLE001 - the registry is optional for this benchmark
        import torchvision

        return torchvision.models.resnet18(num_classes=10)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, budget_s: float) -> float:
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    model.train()
    start = time.time()
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for i in range(0, len(y), 64):
            idx = perm[i : i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if time.time() - start > budget_s:
                break
    model.eval()
    return time.time() - start


def _session(path: Path, threads: int):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def latencies_ms(paths: dict[str, Path], x: np.ndarray, threads: int, runs: int) -> dict[str, dict[str, float]]:
    """Batch-1 latency of each model; runs alternate between the models so both see the same load."""
    sessions = {k: _session(p, threads) for k, p in paths.items()}
    names = {k: s.get_inputs()[0].name for k, s in sessions.items()}
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for i in range(20 + runs):
        for k, sess in sessions.items():
            t = time.perf_counter()
            sess.run(None, {names[k]: x[i % len(x)][None]})
            if i >= 20:
                times[k].append((time.perf_counter() - t) * 1000)
    return {
        k: {"p50": statistics.median(v), "mean": statistics.fmean(v), "p90": float(np.percentile(v, 90))}
        for k, v in times.items()
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--budget", type=float, default=240.0, help="training time limit in seconds")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads for the latency runs")
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from dlforge.deploy.edge import build_edge_package
    from dlforge.deploy.spec import ExportSpec, ImageInput

    x, y, tr, va = digits(args.size)
    model = build_model()
    train_s = train(model, x[tr], y[tr], args.epochs, args.budget)
    spec = ExportSpec(
        model=model,
        task="image_classification",
        labels=[str(i) for i in range(10)],
        input=ImageInput(size=(args.size, args.size), mean=MEAN, std=STD),
        example_inputs=x[va[:32]],
        calibration_inputs=x[tr[:256]],
        validation_inputs=x[va],
        validation_targets=y[va],
        name="digits-resnet18",
    )
    with tempfile.TemporaryDirectory() as tmp:
        t = time.time()
        summary = build_edge_package(spec, Path(tmp) / "edge")
        export_s = time.time() - t
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(summary["path"]) as zf:
            zf.extractall(unpacked)
        xs = x[va[:64]].numpy()
        lat = latencies_ms(
            {"fp32": unpacked / "model.onnx", "int8": unpacked / "model.int8.onnx"}, xs, args.threads, args.runs
        )
        fp32, int8 = lat["fp32"], lat["int8"]
    acc = summary["accuracy"]
    sizes = summary["model_bytes"]
    speedup = fp32["p50"] / int8["p50"]
    size_ratio = sizes["int8"] / sizes["fp32"]
    drop_pts = 100 * (acc["fp32_accuracy"] - acc["int8_accuracy"])
    result = {
        "benchmark": "quantize",
        "model": f"resnet18 @ {args.size}x{args.size}, digits (sklearn), {args.epochs} epochs",
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "train_s": round(train_s, 1),
        "export_s": round(export_s, 1),
        "threads": args.threads,
        "batch1_latency_ms": {"fp32": {k: round(v, 3) for k, v in fp32.items()},
                              "int8": {k: round(v, 3) for k, v in int8.items()}},
        "speedup_p50": round(speedup, 2),
        "size_mb": {"fp32": round(sizes["fp32"] / 1e6, 2), "int8": round(sizes["int8"] / 1e6, 2)},
        "size_ratio": round(size_ratio, 3),
        "val_accuracy": {"fp32": round(acc["fp32_accuracy"], 4), "int8": round(acc["int8_accuracy"], 4)},
        "val_samples": acc["validation_samples"],
        "accuracy_drop_points": round(drop_pts, 2),
        "targets": {"speedup>=1.8": speedup >= 1.8, "size<=30%": size_ratio <= 0.30, "drop<=1pt": drop_pts <= 1.0},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
