"""Image classification models (task ``image_classification``).

Every model maps ``(B, in_chans, H, W)`` float images to ``(B, num_classes)`` logits;
multi-label training applies a sigmoid in the loss, not here. Each model carries
``dlforge_head`` (the attribute name of its classifier head), which
:mod:`dlforge.models.weights` uses to load backbone-only weights and to freeze.

Models:

- ``cnn-small``: a compact BatchNorm conv net for small images (8x8 to 64x64, e.g.
  digits, icons); trains in seconds on a CPU.
- ``resnet18``, ``mobilenet_v3_small``, ``mobilenet_v3_large``, ``efficientnet_b0``:
  torchvision architectures (random init; see :func:`dlforge.models.weights.load_pretrained`
  for pretrained weights from a local file or the torch hub cache).
"""

from __future__ import annotations

from typing import Any

import torchvision
from torch import nn

from dlforge.errors import InputError
from dlforge.models.registry import register_model

TASK = "image_classification"


def _check_common(num_classes: int, in_chans: int, dropout: float) -> None:
    if in_chans < 1:
        raise InputError(f"in_chans: must be >= 1, got {in_chans}")
    if not 0.0 <= dropout < 1.0:
        raise InputError(f"dropout: must be in [0, 1), got {dropout}")


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Three conv stages (two convs each past the first) with BatchNorm, global pooling, a linear head.

    Two 2x max-pools, then adaptive average pooling, so any input side >= 8 works.
    """

    dlforge_head = "head"

    def __init__(self, num_classes: int, in_chans: int = 3, width: int = 32, dropout: float = 0.1) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(*_conv_bn(in_chans, w), *_conv_bn(w, w))
        self.stage1 = nn.Sequential(nn.MaxPool2d(2), *_conv_bn(w, 2 * w), *_conv_bn(2 * w, 2 * w))
        self.stage2 = nn.Sequential(nn.MaxPool2d(2), *_conv_bn(2 * w, 4 * w), *_conv_bn(4 * w, 4 * w))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x):  # x: (B, C, H, W)
        x = self.stage2(self.stage1(self.stem(x)))  # (B, 4w, H/4, W/4)
        x = self.pool(x).flatten(1)  # (B, 4w)
        return self.head(self.dropout(x))  # (B, num_classes)


@register_model(
    "cnn-small",
    task=TASK,
    default_input_size=32,
    min_input_size=8,
    description="compact BatchNorm CNN for small images (8-64 px); fast on CPU",
)
def cnn_small(num_classes: int, *, in_chans: int = 3, width: int = 32, dropout: float = 0.1) -> nn.Module:
    """Small CNN; ``width`` sets the first stage's channels (stages use w, 2w, 4w)."""
    _check_common(num_classes, in_chans, dropout)
    if width < 4:
        raise InputError(f"width: must be >= 4, got {width}")
    return SmallCNN(num_classes, in_chans=in_chans, width=width, dropout=dropout)


def _replace_first_conv(parent: nn.Module, attr: str, in_chans: int) -> None:
    """Swap ``parent.<attr>`` (a Conv2d taking 3 channels) for one taking ``in_chans``."""
    if in_chans == 3:
        return
    old: nn.Conv2d = getattr(parent, attr) if not attr.isdigit() else parent[int(attr)]
    new = nn.Conv2d(
        in_chans,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    if attr.isdigit():
        parent[int(attr)] = new
    else:
        setattr(parent, attr, new)


@register_model(
    "resnet18",
    task=TASK,
    default_input_size=224,
    min_input_size=32,
    description="torchvision ResNet-18 (11.7M params)",
)
def resnet18(num_classes: int, *, in_chans: int = 3, dropout: float = 0.0, **kwargs: Any) -> nn.Module:
    """ResNet-18 with a ``num_classes`` head; dropout sits before ``fc``."""
    _check_common(num_classes, in_chans, dropout)
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes, **kwargs)
    _replace_first_conv(model, "conv1", in_chans)
    if dropout > 0:
        # Put dropout in the (parameter-free) pooling slot so ``fc.*`` keys stay those of
        # torchvision's checkpoints.
        model.avgpool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Dropout(dropout))
    model.dlforge_head = "fc"
    model.dlforge_arch = "resnet18"  # names its torchvision weights for load_pretrained(.., "hub")
    return model


def _torchvision_with_classifier(ctor, num_classes: int, in_chans: int, dropout: float, **kwargs: Any):
    model = ctor(weights=None, num_classes=num_classes, dropout=dropout, **kwargs)
    _replace_first_conv(model.features[0], "0", in_chans)
    model.dlforge_head = "classifier"
    model.dlforge_arch = ctor.__name__  # names its torchvision weights for load_pretrained(.., "hub")
    return model


@register_model(
    "mobilenet_v3_small",
    task=TASK,
    default_input_size=224,
    min_input_size=32,
    description="torchvision MobileNetV3-Small (2.5M params); edge devices",
)
def mobilenet_v3_small(
    num_classes: int, *, in_chans: int = 3, dropout: float = 0.2, **kwargs: Any
) -> nn.Module:
    """MobileNetV3-Small with a ``num_classes`` head."""
    _check_common(num_classes, in_chans, dropout)
    return _torchvision_with_classifier(
        torchvision.models.mobilenet_v3_small, num_classes, in_chans, dropout, **kwargs
    )


@register_model(
    "mobilenet_v3_large",
    task=TASK,
    default_input_size=224,
    min_input_size=32,
    description="torchvision MobileNetV3-Large (5.5M params)",
)
def mobilenet_v3_large(
    num_classes: int, *, in_chans: int = 3, dropout: float = 0.2, **kwargs: Any
) -> nn.Module:
    """MobileNetV3-Large with a ``num_classes`` head."""
    _check_common(num_classes, in_chans, dropout)
    return _torchvision_with_classifier(
        torchvision.models.mobilenet_v3_large, num_classes, in_chans, dropout, **kwargs
    )


@register_model(
    "efficientnet_b0",
    task=TASK,
    default_input_size=224,
    min_input_size=32,
    description="torchvision EfficientNet-B0 (5.3M params)",
)
def efficientnet_b0(num_classes: int, *, in_chans: int = 3, dropout: float = 0.2, **kwargs: Any) -> nn.Module:
    """EfficientNet-B0 with a ``num_classes`` head."""
    _check_common(num_classes, in_chans, dropout)
    return _torchvision_with_classifier(
        torchvision.models.efficientnet_b0, num_classes, in_chans, dropout, **kwargs
    )
