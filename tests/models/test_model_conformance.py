"""Every registered model: forward shape, finite gradients, ONNX parity with dynamic batch.

The registry is the test matrix: a model registered anywhere (image, text, detection,
segmentation modules) is checked here without writing a test for it. Inputs come from
``ModelInfo.example_inputs``, output checks from ``ModelInfo.check_output``, the
training loss from ``ModelInfo.train_loss``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from dlforge.models import create_model, list_models
from dlforge.models.onnx_export import export_onnx, flatten_outputs, onnx_max_abs_diff
from dlforge.models.registry import ModelInfo

NUM_CLASSES = 3
VOCAB = 100
# Big torchvision classifiers run at 64 px here: the shapes and ops are the same as at
# 224 px, at a tenth of the cost.
MAX_IMAGE_SIDE = 64
MAX_SEQ = 32

MODELS = list_models()
IDS = [m.name for m in MODELS]


_BUILT: dict[str, nn.Module] = {}


def _build(info: ModelInfo) -> nn.Module:
    """The model for ``info``, built once per session (pretrained ones load in seconds)."""
    if info.name not in _BUILT:
        torch.manual_seed(0)
        if info.is_text:
            kw = {"vocab_size": VOCAB, "max_len": info.default_input_size}
            _BUILT[info.name] = create_model(info.name, NUM_CLASSES, **kw)
        else:
            _BUILT[info.name] = create_model(info.name, NUM_CLASSES)
    model = _BUILT[info.name]
    model.zero_grad(set_to_none=True)
    return model


def _inputs(info: ModelInfo, batch: int) -> tuple[torch.Tensor, ...]:
    if info.is_text:
        seq_len = min(info.default_input_size or MAX_SEQ, MAX_SEQ)
        return info.example_inputs(batch, seq_len=seq_len, vocab_size=VOCAB)
    if info.task == "image_classification":
        side = min(info.default_input_size or MAX_IMAGE_SIDE, MAX_IMAGE_SIDE)
        return info.example_inputs(batch, size=max(side, info.min_input_size or 1))
    return info.example_inputs(batch)


def _calibrate_batchnorm(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    """Set BatchNorm running stats from one batch.

    Fresh BN stats (mean 0, var 1) make deep random nets emit ~1e-16 logits in eval
    mode, which would turn the ONNX parity check into 0 == 0.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average: one batch -> exactly its statistics
    model.train()
    with torch.no_grad():
        model(*inputs)
    for bn, m in zip(bns, saved):
        bn.momentum = m
    model.eval()


def test_registry_has_the_core_models() -> None:
    names = set(IDS)
    assert {"cnn-small", "resnet18", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0"} <= names
    assert {"textcnn", "bilstm", "transformer"} <= names


@pytest.mark.parametrize("info", MODELS, ids=IDS)
def test_forward_output(info: ModelInfo) -> None:
    model = _build(info).eval()
    with torch.no_grad():
        out = model(*_inputs(info, 2))
    info.check_output(out, 2, NUM_CLASSES)


@pytest.mark.parametrize("info", MODELS, ids=IDS)
def test_backward_gives_finite_grads_on_all_trainable_params(info: ModelInfo) -> None:
    model = _build(info).train()
    loss = info.train_loss(model, _inputs(info, 2), NUM_CLASSES)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    if missing and not info.has_train_loss:
        # Without a train_loss hook the loss is the mean of the forward outputs, which for
        # e.g. detectors returning post-NMS boxes is not the training path.
        pytest.skip(f"{info.name}: outputs do not reach {missing[:3]}...; register a train_loss hook")
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)
    model.zero_grad(set_to_none=True)  # the model stays cached; don't keep its gradients


@pytest.mark.parametrize("info", MODELS, ids=IDS)
def test_onnx_export_matches_torch_at_other_batch_sizes(info: ModelInfo, tmp_path) -> None:
    if not info.onnx_exportable:
        pytest.skip(f"{info.name}: registered with onnx_exportable=False")
    model = _build(info)
    _calibrate_batchnorm(model, _inputs(info, 4))
    model.eval()
    example = _inputs(info, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = export_onnx(
            model, example, tmp_path / "model.onnx", info.input_names[: len(example)], info.output_names
        )
    cases = [_inputs(info, 1), _inputs(info, 3)]
    if info.task == "object_detection" and info.output_names == ("boxes", "scores", "labels"):
        _assert_detections_match(model, path, cases)
        assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
        return
    with torch.no_grad():
        outs = [t for case in cases for t in flatten_outputs(model(*case)) if t.is_floating_point()]
    scale = max(float(t.abs().max()) for t in outs)
    diff = onnx_max_abs_diff(model, path, cases)
    assert diff <= 1e-4 * max(1.0, scale), f"batches 1 and 3: max |onnx - torch| = {diff} (scale {scale})"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def _assert_detections_match(model: nn.Module, path, cases: list[tuple[torch.Tensor, ...]]) -> None:
    """Fixed-shape detector outputs: same scores, and every ONNX box is a torch box of its label and score.

    Exact ties are ordered alike by the models themselves; a random-init detector also has
    near-ties (scores equal to 1e-7) that float differences between torch and ONNX Runtime may
    swap, so boxes are matched by (label, score) rather than by slot.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for case in cases:
        with torch.no_grad():
            rb, rs, rl = (t.numpy() for t in model(*case))
        gb, gs, gl = session.run(None, {name: case[0].numpy()})
        assert gb.shape == rb.shape and gs.shape == rs.shape and gl.shape == rl.shape
        assert (rs > 0).any(), "no detections: the comparison would be vacuous"
        np.testing.assert_allclose(np.sort(gs, 1), np.sort(rs, 1), atol=1e-4)
        scale = max(1.0, float(np.abs(rb).max()))
        for b in range(rb.shape[0]):
            for i in np.flatnonzero(gs[b] > 0):
                same = (rl[b] == gl[b, i]) & (np.abs(rs[b] - gs[b, i]) <= 1e-4)
                assert same.any(), f"image {b}: ONNX detection {i} has no torch counterpart"
                diff = np.abs(rb[b][same] - gb[b, i]).max(1).min()
                assert diff <= 1e-4 * scale, f"image {b}, detection {i}: box differs by {diff}"
