"""Workspace flow: COCO shapes import -> split -> detection and segmentation runs -> eval, predict, export spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dlforge.data.synthetic import make_shapes
from dlforge.tasks import object_detection as od
from dlforge.tasks import semantic_segmentation as ss
from dlforge.workspace import Workspace


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_detection_and_segmentation_runs_from_a_coco_import(tmp_path):
    make_shapes(tmp_path / "coco", 20, size=(64, 64), seed=0, max_objects=2)
    ws = Workspace.open(home=tmp_path / "home")
    ws.import_data(tmp_path / "coco", "shapes", format="coco")
    ref = ws.version("shapes").split(val=0.2, test=0.2, seed=0).ref

    run = od.train(
        ws,
        ref,
        epochs=1,
        batch_size=8,
        image_size=64,
        score_threshold=0.25,
        nms_iou=0.45,
        max_detections=20,
        model_kwargs={"width": 0.5, "head_width": 32},
    )
    assert run.status == "completed"
    assert run.params["score_threshold"] == 0.25 and run.params["max_detections"] == 20
    metrics = od.evaluate_run(run, "test", tmp_path / "det.html")
    assert {"map", "map_50", "map_75", "per_class"} <= set(metrics) and (tmp_path / "det.html").exists()
    path = ws.version(ref).records(split="test")[0].path
    pred = od.predict_images(run, [path], draw_dir=tmp_path / "drawn")[0]
    assert "detections" in pred and (tmp_path / "drawn").exists()
    # The CLI predicts from a run id as well as from a bundle, drawing when asked; a bad file is
    # skipped and reported, the rest predicted.
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    proc = subprocess.run(
        [sys.executable, "-m", "dlforge.cli.main", "predict", run.id, str(path), str(bad)]
        + ["--draw", str(tmp_path / "cli"), "--json"],
        env={**os.environ, "DLFORGE_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["run"] == run.id and [p["input"] for p in res["predictions"]] == [str(path)]
    assert res["skipped"][0]["input"] == str(bad) and Path(res["predictions"][0]["drawn"]).is_file()
    spec = od.export_spec(run)
    boxes, scores, labels = spec.model(spec.example_inputs)
    n = spec.example_inputs.shape[0]
    assert boxes.shape == (n, 20, 4) and scores.shape == (n, 20) and labels.dtype == torch.int64
    assert spec.output_names == ["boxes", "scores", "labels"] and spec.postprocess["iou_threshold"] == 0.45

    srun = ss.train(
        ws, ref, model="unet-small", epochs=1, batch_size=8, image_size=64, model_kwargs={"base": 8, "depth": 3}
    )
    assert srun.status == "completed"
    smetrics = ss.evaluate_run(srun, "test", tmp_path / "seg.html")
    assert "miou" in smetrics and (tmp_path / "seg.html").exists()
    sspec = ss.export_spec(srun)
    assert sspec.labels == ["background", "circle", "square", "triangle"]
    assert sspec.model(sspec.example_inputs).shape[1:] == (4, 64, 64)


def test_export_specs_build_deployable_bundles(tmp_path):
    from dlforge.deploy.bundle import build_bundle

    make_shapes(tmp_path / "coco", 16, size=(64, 64), seed=1, max_objects=2)
    ws = Workspace.open(home=tmp_path / "home")
    ws.import_data(tmp_path / "coco", "shapes", format="coco")
    ref = ws.version("shapes").split(val=0.25, test=0.0, seed=0).ref
    run = od.train(
        ws,
        ref,
        epochs=1,
        batch_size=8,
        image_size=64,
        score_threshold=0.0,
        model_kwargs={"width": 0.5, "head_width": 32},
    )
    info = build_bundle(od.export_spec(run), tmp_path / "det-bundle")
    assert (tmp_path / "det-bundle" / "model.onnx").exists(), info
    srun = ss.train(
        ws, ref, model="unet-small", epochs=1, batch_size=8, image_size=64, model_kwargs={"base": 8, "depth": 3}
    )
    build_bundle(ss.export_spec(srun), tmp_path / "seg-bundle")
    assert (tmp_path / "seg-bundle" / "model.onnx").exists()
