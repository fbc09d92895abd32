"""Faster R-CNN: batched inference equals torchvision's, and a trained run ships as a bundle.

The batched graph (:meth:`FasterRCNNDetector.predict`) is what ONNX gets; these tests hold it
to torchvision's own per-image inference and carry a briefly trained run all the way to the
torch-free :class:`~dlforge.deploy.predictor.Predictor`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dlforge.data.synthetic import make_shapes
from dlforge.models import create_model
from dlforge.tasks import object_detection as od
from dlforge.workspace import Workspace


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _informative(model: nn.Module, side: int) -> None:
    """BatchNorm stats from one batch and livelier heads, so a random-init model ranks boxes apart."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.rand(4, 3, side, side, generator=torch.Generator().manual_seed(3)))
        heads = model.net.roi_heads.box_predictor
        for layer in (heads.cls_score, heads.bbox_pred, model.net.rpn.head.cls_logits):
            nn.init.normal_(layer.weight, std=0.3)
            nn.init.normal_(layer.bias, std=0.5)
    model.eval()


def test_batched_inference_equals_torchvision_per_image_inference():
    torch.manual_seed(0)
    side = 100  # not a multiple of 32: covers the padding torchvision's transform adds
    model = create_model("fasterrcnn_mobilenet_v3_large_fpn", 3, image_size=side)
    _informative(model, side)
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model.predict(x, score_threshold=0.05, nms_iou=0.5, max_detections=50)
    ref = model.predict_native(x, score_threshold=0.05, nms_iou=0.5, max_detections=50)
    assert (ref[1] > 0).sum() > 20
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_fasterrcnn_run_exports_to_a_bundle_the_predictor_serves(tmp_path):
    from dlforge.deploy.bundle import build_bundle
    from dlforge.deploy.predictor import Predictor

    make_shapes(tmp_path / "coco", 16, size=(96, 96), seed=2, max_objects=2)
    ws = Workspace.open(home=tmp_path / "home")
    ws.import_data(tmp_path / "coco", "shapes", format="coco")
    ref = ws.version("shapes").split(val=0.25, test=0.0, seed=0).ref
    run = od.train(
        ws,
        ref,
        model="fasterrcnn_mobilenet_v3_large_fpn",
        epochs=2,
        batch_size=8,
        image_size=96,
        augment="none",
        multiscale=False,
        score_threshold=0.05,
        max_detections=20,
    )
    assert run.status == "completed"
    spec = od.export_spec(run)
    info = build_bundle(spec, tmp_path / "bundle")
    assert info.parity["passed"] and info.manifest["task"] == "object_detection"
    assert Predictor(tmp_path / "bundle").manifest.output_names == ["boxes", "scores", "labels"]

    predictor = Predictor(tmp_path / "bundle")
    paths = [r.path for r in ws.version(ref).records(split="val")]
    prepared = predictor.prepare(paths)
    got = predictor.run(prepared.feeds)
    with torch.no_grad():
        tb, ts, tl = (t.numpy() for t in spec.model(torch.from_numpy(prepared.feeds["image"])))
    assert got["boxes"].shape == (len(paths), 20, 4)
    assert (ts > 0).any(), "the trained model detects nothing: the parity check would be vacuous"
    np.testing.assert_allclose(got["scores"], ts, atol=1e-4)
    np.testing.assert_array_equal(got["labels"], tl)
    np.testing.assert_allclose(got["boxes"], tb, atol=1e-2)

    # the handler turns them into Detections at the original size (96 px here, so 1:1)
    results = predictor.predict(paths)
    thr = info.manifest["postprocess"]["score_threshold"]
    for k, dets in enumerate(results):
        keep = ts[k] >= thr
        assert len(dets) == int(keep.sum())
        assert [d.label for d in dets] == [run.manifest()["classes"][i] for i in tl[k][keep]]
        np.testing.assert_allclose([d.box for d in dets] or np.zeros((0, 4)), tb[k][keep], atol=1e-2)
