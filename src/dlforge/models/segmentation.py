"""Semantic segmentation models: torchvision FCN / LR-ASPP / DeepLabV3 and ``unet-small``.

Every model takes ``(B, 3, H, W)`` float RGB in 0..1 (normalisation is inside the
model) and returns logits ``(B, C, H, W)`` at the input resolution, where ``C``
counts the background class (``num_classes`` passed to the factory is that ``C``).
That tensor is also the ONNX output the deployment handler expects.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlforge.models.registry import register_model

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Normalize(nn.Module):
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class TorchvisionSegmenter(nn.Module):
    """A torchvision segmentation model returning only its ``"out"`` logits.

    Args:
        arch: ``fcn_resnet50``, ``lraspp_mobilenet_v3_large`` or ``deeplabv3_mobilenet_v3_large``.
        num_classes: output channels (background included).
        weights_path: optional local state dict of a pretrained torchvision model (nothing downloads).
    """

    def __init__(self, arch: str, num_classes: int, *, weights_path: str | None = None) -> None:
        super().__init__()
        import torchvision.models.segmentation as tvs

        kw: dict[str, Any] = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
        if arch != "lraspp_mobilenet_v3_large":
            kw["aux_loss"] = False
        self.net = getattr(tvs, arch)(**kw)
        self.norm = _Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self.config = {"arch": arch}
        if weights_path:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            own = self.net.state_dict()
            # keep what fits: a pretrained backbone loads, a head with other classes does not
            state = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
            self.net.load_state_dict(state, strict=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(image))["out"]  # (B, C, H, W)


class _DoubleConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class UNetSmall(nn.Module):
    """A narrow four-level U-Net that trains from scratch on a CPU.

    Args:
        num_classes: output channels (background included).
        base: channels of the first level (doubled per level). 8 by default: on a CPU it
            learns as much per epoch as 16 at a third of the cost (measured on synthetic shapes).
        depth: number of down-sampling steps (input sides must divide ``2**depth``;
            other sizes are padded and cropped back).
    """

    def __init__(self, num_classes: int, *, base: int = 8, depth: int = 4) -> None:
        super().__init__()
        self.depth = depth
        self.config = {"base": base, "depth": depth}
        self.norm = _Normalize((0.45, 0.45, 0.45), (0.25, 0.25, 0.25))
        chans = [base * 2**i for i in range(depth + 1)]
        self.inc = _DoubleConv(3, chans[0])
        self.down = nn.ModuleList(_DoubleConv(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in range(depth))
        self.dec = nn.ModuleList(_DoubleConv(chans[i] * 2, chans[i]) for i in range(depth))
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        x = self.norm(image)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        y = skips.pop()
        for i in reversed(range(self.depth)):
            y = self.dec[i](torch.cat([skips[i], self.up[i](y)], 1))
        return self.head(y)[..., :h, :w]  # (B, C, H, W)


def _seg_example_inputs(size: int):
    def fn(batch: int, *, size: int | None = size, **_: Any) -> tuple[torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return (torch.rand(batch, 3, size, size, generator=g),)

    return fn


def _check_seg(out: Any, batch: int, num_classes: int) -> None:
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        raise AssertionError(f"expected (B, C, H, W) logits, got {type(out).__name__}")
    if tuple(out.shape[:2]) != (batch, num_classes):
        raise AssertionError(f"expected logits (B={batch}, C={num_classes}, H, W), got {tuple(out.shape)}")
    if not torch.isfinite(out).all():
        raise AssertionError("logits contain non-finite values")


_COMMON = {"task": "semantic_segmentation", "min_input_size": 32, "check_output": _check_seg}


@register_model(
    "unet-small",
    default_input_size=256,
    description="small U-Net, trains from scratch on CPU",
    example_inputs=_seg_example_inputs(64),
    **_COMMON,
)
def unet_small(num_classes: int, **kwargs: Any) -> UNetSmall:
    return UNetSmall(num_classes, **kwargs)


@register_model(
    "fcn_resnet50",
    default_input_size=384,
    description="torchvision FCN, ResNet-50 backbone",
    example_inputs=_seg_example_inputs(64),
    **_COMMON,
)
def fcn_resnet50(num_classes: int, **kwargs: Any) -> TorchvisionSegmenter:
    return TorchvisionSegmenter("fcn_resnet50", num_classes, **kwargs)


@register_model(
    "lraspp_mobilenet_v3_large",
    default_input_size=320,
    description="torchvision LR-ASPP, MobileNetV3-Large backbone",
    example_inputs=_seg_example_inputs(64),
    **_COMMON,
)
def lraspp_mobilenet_v3_large(num_classes: int, **kwargs: Any) -> TorchvisionSegmenter:
    return TorchvisionSegmenter("lraspp_mobilenet_v3_large", num_classes, **kwargs)


@register_model(
    "deeplabv3_mobilenet_v3_large",
    default_input_size=320,
    description="torchvision DeepLabV3, MobileNetV3-Large backbone",
    example_inputs=_seg_example_inputs(64),
    **_COMMON,
)
def deeplabv3_mobilenet_v3_large(num_classes: int, **kwargs: Any) -> TorchvisionSegmenter:
    return TorchvisionSegmenter("deeplabv3_mobilenet_v3_large", num_classes, **kwargs)
