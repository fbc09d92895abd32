"""The sample workspace ``make run`` builds: scikit-learn's digits, end to end.

Digits (1,797 real 8x8 handwritten digits bundled with scikit-learn, so nothing
downloads) are written as PNG files in class folders, imported, cleaned, split,
trained on with the compact CNN, evaluated, and exported as a deployable bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dlforge.workspace import Workspace

DATASET = "digits"


def write_digits(out: Path) -> Path:
    """Write sklearn digits as ``out/<digit>/<i>.png`` (8x8 grayscale, 0-255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images, d.target)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * (255 / 16)).astype(np.uint8), mode="L").save(folder / f"{i:04d}.png")
    return out


def quickstart(ws: Workspace, *, epochs: int = 12, train: bool = True, export: bool = True,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """Build (or reuse) the sample dataset, train and export; returns what was made."""
    result: dict[str, Any] = {"workspace": str(ws.home)}
    names = {d.name for d in ws.datasets()}
    if DATASET in names:
        version = ws.version(DATASET)
        log(f"sample dataset already there: {version.ref}")
    else:
        src = write_digits(ws.settings.tmp_dir / "digits-src")
        imported = ws.import_data(src, DATASET, message="scikit-learn digits as PNG class folders")
        log(f"imported {imported.imported} images as {imported.version.ref} (format {imported.format}, detected)")
        cleaned = imported.version.clean(min_side=8)  # digits are 8x8 by nature, not "tiny"
        log(f"cleaned -> {cleaned.version.ref}: excluded {len(cleaned.report.excluded)} items")
        version = cleaned.version.split(val=0.1, test=0.1, seed=0)
        log(f"split -> {version.ref}: {version.counts()['splits']}")
    result["dataset"] = version.ref
    if not train:
        return result
    from dlforge.tasks import image_classification

    done = [r for r in ws.runs("image_classification") if r.status == "completed" and r.data_ref == version.ref]
    if done:
        run = done[-1]
        log(f"reusing trained run {run.id}")
    else:
        log("training cnn-small on the digits (CPU, about a minute)...")
        # 16 px keeps every pixel of the 8x8 digits at a quarter of the compute of 32 px.
        run = image_classification.train(ws, version.ref, model="cnn-small", epochs=epochs, image_size=16,
                                         hflip=False, augment="light", batch_size=64, lr=3e-3, seed=0)
    metrics = image_classification.evaluate_run(run, "test", run.dir / "report.html")
    log(f"run {run.id}: test accuracy {metrics['accuracy']:.4f}; report {run.dir / 'report.html'}")
    result.update({"run": run.id, "test_accuracy": metrics["accuracy"], "report": str(run.dir / "report.html")})
    if export:
        from dlforge.deploy.export import export_run

        bundle = ws.home / "bundles" / DATASET
        export_run(ws, run.id, "bundle", bundle, overwrite=True)
        result["bundle"] = str(bundle)
        log(f"bundle: {bundle}")
        log(f"serve it:  dlforge serve {bundle} --port 8000")
    return result
