"""det-tiny and unet-small learn a tiny synthetic set from scratch; images without objects train."""

from __future__ import annotations

import pytest
import torch

from dlforge.data.synthetic import generate_shapes, shapes_to_records
from dlforge.engine import TrainConfig
from dlforge.tasks.object_detection import build_datasets, create_detector, fit_detector

CLASSES = ("circle", "square", "triangle")


@pytest.fixture(autouse=True)
def one_thread():
    # a shared 2-core machine makes spinning OpenMP threads crawl; one thread is steadier
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _records(tmp_path, n, seed, empty_fraction=0.0):
    samples = generate_shapes(
        n,
        size=(64, 64),
        classes=CLASSES,
        max_objects=1,
        object_size=(0.45, 0.75),
        empty_fraction=empty_fraction,
        seed=seed,
    )
    return shapes_to_records(samples, tmp_path / f"s{seed}", CLASSES)


def _config(epochs: int) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=16,
        lr=4e-3,
        optimizer="adamw",
        weight_decay=5e-4,
        warmup_epochs=0.5,
        monitor="val/mAP50",
        monitor_mode="max",
        device="cpu",
        log_every=5,
    )


def test_det_tiny_learns_synthetic_shapes(tmp_path):
    train_ds, val_ds = build_datasets(_records(tmp_path, 96, 1), _records(tmp_path, 32, 2), CLASSES, 64, augment="none")
    torch.manual_seed(0)
    model = create_detector("det-tiny", 3, 64, width=0.5, head_width=32)
    fit = fit_detector(model, train_ds, val_ds, _config(14), tmp_path / "run", multiscale=False)
    assert fit.metrics["map_50"] >= 0.5, fit.result.history


def test_training_with_images_without_objects(tmp_path):
    train = _records(tmp_path, 24, 3, empty_fraction=0.5)
    assert any(not r.annotations for r in train)
    train_ds, val_ds = build_datasets(train, _records(tmp_path, 8, 4, empty_fraction=0.5), CLASSES, 64)
    assert train_ds.stats.empty_images >= 4
    model = create_detector("det-tiny", 3, 64, width=0.5, head_width=32)
    fit = fit_detector(model, train_ds, val_ds, _config(1), tmp_path / "run")
    assert fit.result.stop_reason == "completed"
    assert torch.isfinite(torch.tensor(fit.result.history[-1]["train/epoch_loss"]))
