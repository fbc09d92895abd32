"""What a task recipe hands to deployment for one trained run.

Task recipes implement ``export_spec(run) -> ExportSpec``; :func:`dlforge.deploy.bundle.build_bundle`
turns the spec into a bundle. The spec holds torch objects, but this module does
not import torch so that the deploy package stays importable without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import torch
    from tokenizers import Tokenizer


@dataclass
class ImageInput:
    """How raw images become the model's input tensor (NCHW float32).

    Attributes:
        size: Model input ``(height, width)``.
        resize: ``"stretch"`` (resize to size), ``"letterbox"`` (keep aspect, pad
            bottom/right with ``pad_value``) or ``"center_crop"`` (resize the
            short side, then crop the centre).
        mean: Per-channel mean subtracted after scaling pixels to [0, 1].
        std: Per-channel std divided by after subtracting the mean.
        channels: 3 (RGB) or 1 (grayscale).
    """

    size: tuple[int, int]
    resize: str = "stretch"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    channels: int = 3
    pad_value: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "image",
            "size": [int(self.size[0]), int(self.size[1])],
            "resize": self.resize,
            "mean": [float(m) for m in self.mean],
            "std": [float(s) for s in self.std],
            "channels": int(self.channels),
            "pad_value": float(self.pad_value),
        }


@dataclass
class TextInput:
    """How raw text becomes token ids.

    Attributes:
        tokenizer: A ``tokenizers.Tokenizer``; saved as ``tokenizer.json`` in the bundle.
        max_len: Sequence length the model sees (longer token lists are truncated,
            shorter ones padded with ``pad_id``).
        max_chars: Texts longer than this are refused as too long.
        pad_id: Token id used for padding.
        lowercase: Lower-case the text before tokenizing (for tokenizers that do
            not normalise themselves).
    """

    tokenizer: Tokenizer
    max_len: int = 128
    max_chars: int = 20000
    pad_id: int = 0
    lowercase: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "text",
            "tokenizer": "tokenizer.json",
            "max_len": int(self.max_len),
            "max_chars": int(self.max_chars),
            "pad_id": int(self.pad_id),
            "lowercase": bool(self.lowercase),
        }


@dataclass
class TabularInput:
    """Named feature columns in model input order (the tabular handler defines the rest)."""

    columns: list[str]
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "tabular", "columns": list(self.columns), **self.extra}


@dataclass
class ExportSpec:
    """Everything needed to build a bundle from a trained model.

    Attributes:
        model: The trained ``torch.nn.Module`` (put in eval mode by the exporter).
        task: Task name; selects the bundle's pre/post-processing handler.
        labels: Class names in output order.
        input: An :class:`ImageInput`, :class:`TextInput` or :class:`TabularInput`.
        example_inputs: Real samples from the run's data as the model takes them:
            a tensor batch or a tuple of tensors. Used for export and parity.
        calibration_inputs: Training-split samples (same structure) to calibrate int8.
        validation_inputs: Validation-split samples (same structure) for edge accuracy.
        validation_targets: Labels of ``validation_inputs`` (class indices, shape (N,)).
        metrics: The run's evaluation metrics, copied into the manifest.
        data_version: Dataset version reference the run trained on (``name@3``).
        run_id: The run's id.
        postprocess: Task settings: detection ``score_threshold``, ``iou_threshold``,
            ``max_detections``; multi-label ``threshold``.
        multi_label: Outputs are independent sigmoids rather than one softmax.
        input_names: ONNX input names, one per tensor in ``example_inputs``.
        output_names: ONNX output names (detection: ``boxes``, ``scores``, ``labels``).
        name: Model name for the manifest and the server's routes.
        max_batch: Largest batch the Predictor accepts in one call.
    """

    model: torch.nn.Module
    task: str
    labels: list[str]
    input: ImageInput | TextInput | TabularInput
    example_inputs: Any
    calibration_inputs: Any = None
    validation_inputs: Any = None
    validation_targets: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    data_version: str | None = None
    run_id: str | None = None
    postprocess: dict[str, Any] = field(default_factory=dict)
    multi_label: bool = False
    input_names: list[str] = field(default_factory=lambda: ["input"])
    output_names: list[str] = field(default_factory=lambda: ["logits"])
    name: str = "model"
    max_batch: int = 64
