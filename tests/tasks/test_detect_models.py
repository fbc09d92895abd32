"""Detector models: det-tiny ONNX export parity, fixed-shape outputs, Faster R-CNN smoke."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

from dlforge.models import create_model, list_models
from dlforge.models.detection import DetectionExport, select_detections


def test_detectors_and_segmenters_are_registered():
    det = {m.name for m in list_models("object_detection")}
    seg = {m.name for m in list_models("semantic_segmentation")}
    assert {"det-tiny", "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn"} <= det
    assert {"unet-small", "fcn_resnet50", "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large"} <= seg


def test_select_detections_pads_with_zero_scores_and_runs_per_class_nms():
    boxes = torch.tensor([[[0.0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]]])
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.2]])
    labels = torch.tensor([[0, 0, 1, 0]])
    b, s, lab = select_detections(
        boxes, scores, labels, score_threshold=0.3, nms_iou=0.5, max_detections=6, num_classes=2
    )
    assert b.shape == (1, 6, 4) and s.shape == (1, 6) and lab.dtype == torch.int64
    # box 1 is suppressed by box 0 (same class); box 2 survives (other class); box 3 is below threshold
    assert s[0].tolist()[:2] == [0.9, 0.699999988079071] or torch.allclose(s[0, :2], torch.tensor([0.9, 0.7]))
    assert lab[0, :2].tolist() == [0, 1]
    assert (s[0, 2:] == 0).all() and (b[0, 2:] == 0).all()


def test_det_tiny_onnx_export_matches_torch(tmp_path):
    torch.manual_seed(0)
    model = create_model("det-tiny", 3, task="object_detection", width=0.5, head_width=32).eval()
    # make the heads confident somewhere so real boxes come out, not only padding
    with torch.no_grad():
        model.cls_head[-1].bias.fill_(0.0)
    wrapper = DetectionExport(model, score_threshold=0.05, nms_iou=0.5, max_detections=20).eval()
    x = torch.rand(2, 3, 96, 96)
    path = tmp_path / "det.onnx"
    torch.onnx.export(
        wrapper,
        (x,),
        str(path),
        input_names=["image"],
        output_names=["boxes", "scores", "labels"],
        dynamic_axes={"image": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (x, torch.rand(1, 3, 96, 96)):
        with torch.no_grad():
            tb, ts, tl = wrapper(batch)
        ob, os_, ol = sess.run(None, {"image": batch.numpy()})
        assert ob.shape == (batch.shape[0], 20, 4) and os_.shape == (batch.shape[0], 20) and ol.dtype == np.int64
        assert (ts > 0).any()
        np.testing.assert_allclose(os_, ts.numpy(), atol=1e-4)
        np.testing.assert_allclose(ob, tb.numpy(), atol=1e-3)
        np.testing.assert_array_equal(ol, tl.numpy())


def test_det_tiny_learns_one_batch_and_handles_empty_targets():
    torch.manual_seed(0)
    model = create_model("det-tiny", 2, task="object_detection", width=0.5, head_width=32)
    x = torch.rand(2, 3, 64, 64)
    targets = [
        {"boxes": torch.tensor([[8.0, 8, 40, 40]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    opt = torch.optim.AdamW(model.parameters(), 3e-3)
    first = None
    for _ in range(10):
        loss = model.compute_loss(x, targets)["loss"]
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first * 0.7


def test_faster_rcnn_forward_backward_smoke():
    torch.manual_seed(0)
    model = create_model("fasterrcnn_mobilenet_v3_large_fpn", 2, task="object_detection", image_size=96)
    x = torch.rand(2, 3, 96, 96)
    targets = [
        {"boxes": torch.tensor([[10.0, 10, 50, 60]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    losses = model.compute_loss(x, targets)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    model.eval()
    boxes, scores, labels = model.predict(x, score_threshold=0.0, max_detections=5)
    assert boxes.shape == (2, 5, 4) and scores.shape == (2, 5) and labels.dtype == torch.int64
