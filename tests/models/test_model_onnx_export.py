"""export_onnx: both exporters, extra dynamic axes, atomic failure, argument errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlforge.errors import InputError
from dlforge.models import create_model, get_model_info
from dlforge.models.onnx_export import export_onnx, onnx_max_abs_diff


@pytest.mark.parametrize("method", ["torchscript", "dynamo"])
def test_both_exporters_match_torch_with_dynamic_batch(method: str, tmp_path) -> None:
    info = get_model_info("cnn-small")
    model = create_model("cnn-small", 4, width=8).eval()
    path = export_onnx(
        model, info.example_inputs(2, size=16), tmp_path / "m.onnx", ["image"], ["logits"], method=method
    )
    assert path == tmp_path / "m.onnx" and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    assert onnx_max_abs_diff(model, path, [info.example_inputs(1, size=16), info.example_inputs(5, size=16)]) < 1e-5


def test_text_model_with_dynamic_sequence_axis(tmp_path) -> None:
    info = get_model_info("transformer")
    model = create_model("transformer", 2, vocab_size=50, max_len=40).eval()
    path = export_onnx(
        model,
        info.example_inputs(2, seq_len=16, vocab_size=50),
        tmp_path / "t.onnx",
        info.input_names,
        info.output_names,
        dynamic_axes={"input_ids": {1: "seq"}, "attention_mask": {1: "seq"}},
    )
    cases = [info.example_inputs(3, seq_len=n, vocab_size=50) for n in (5, 16, 40)]
    assert onnx_max_abs_diff(model, path, cases) < 1e-4


class _NotExportable(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x)[1]  # no ONNX symbolic for aten::linalg_svd at opset 17


def test_failed_export_leaves_nothing_behind(tmp_path) -> None:
    target = tmp_path / "bad.onnx"
    target_dir_before = set(tmp_path.iterdir())
    with pytest.raises(RuntimeError, match="torchscript") as exc:
        export_onnx(_NotExportable(), (torch.randn(2, 3, 3),), target, ["x"], ["y"], method="torchscript")
    assert "bad.onnx" in str(exc.value) and "linalg_svd" in str(exc.value)
    assert set(tmp_path.iterdir()) == target_dir_before


def test_argument_errors(tmp_path) -> None:
    model = create_model("cnn-small", 2, width=4)
    with pytest.raises(InputError, match="input_names"):
        export_onnx(model, (torch.randn(1, 3, 8, 8),), tmp_path / "a.onnx", ["a", "b"], ["y"])
    with pytest.raises(InputError, match="method"):
        export_onnx(model, (torch.randn(1, 3, 8, 8),), tmp_path / "a.onnx", ["a"], ["y"], method="tflite")
    path = export_onnx(model, (torch.randn(1, 3, 8, 8),), tmp_path / "a.onnx", ["a"], ["y"])
    with pytest.raises(InputError, match="inputs"):
        onnx_max_abs_diff(model, path, (torch.randn(1, 3, 8, 8), torch.randn(1)))
