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


def _conv_bn(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class _Residual(nn.Module):
    """Two 3x3 convolutions with an identity shortcut (deep stages train faster with it)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(c, c), nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class _Context(nn.Module):
    """Dilated convolutions plus a global-pooling branch at the coarsest level.

    The shape of an object (a circle's curve, a triangle's corners) is decided by
    pixels far from the one being labelled; dilation and the image-wide average give
    every position that context for the price of a few 8x8 convolutions.
    """

    def __init__(self, c: int) -> None:
        super().__init__()
        self.d2 = _conv_bn(c, c, dilation=2)
        self.d4 = _conv_bn(c, c, dilation=4)
        self.pool = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(nn.Conv2d(3 * c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.d2(x)
        b = self.d4(a)
        g = self.pool(x.mean((2, 3), keepdim=True)).expand_as(x)  # (B, C, h, w) image-wide context
        return x + self.fuse(torch.cat([a, b, g], 1))


class SegLite(nn.Module):
    """A light encoder-decoder that works at reduced resolution and upsamples its logits.

    A stride-2 stem puts every convolution at half the input side or less (the
    full-resolution layers of a U-Net are what makes it slow on a CPU), four stride-2
    stages reach 1/16 for a receptive field larger than the objects, a dilated +
    global-pooling context module sits at the bottom, and a light decoder with skips
    comes back to 1/``out_stride``, from where the logits are bilinearly upsampled to
    the input size.

    Args:
        num_classes: output channels (background included).
        width: channels of the stem; stages double it up to ``max_width``.
        max_width: cap on the channels of the deep stages (keeps the step cheap).
        out_stride: resolution of the decoder output, 2 or 4 (2: sharper edges, more cost).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        width: int = 16,
        max_width: int = 96,
        out_stride: int = 2,
        blocks: tuple[int, ...] | list[int] = (0, 0, 0, 0),
    ) -> None:
        super().__init__()
        if out_stride not in (2, 4):
            raise ValueError(f"out_stride must be 2 or 4, got {out_stride}")
        if len(blocks) != 4:
            raise ValueError(f"blocks must give 4 residual-block counts (one per stage), got {list(blocks)}")
        self.out_stride = out_stride
        self.config = {"width": width, "max_width": max_width, "out_stride": out_stride, "blocks": list(blocks)}
        self.norm = _Normalize((0.45, 0.45, 0.45), (0.25, 0.25, 0.25))
        chans = [min(width * 2**i, max_width) for i in range(4)]  # at 1/2, 1/4, 1/8, 1/16
        self.stages = nn.ModuleList()
        c_prev = 3
        for c, n in zip(chans, blocks):
            layers = [_conv_bn(c_prev, c, stride=2), _conv_bn(c, c), *(_Residual(c) for _ in range(n))]
            self.stages.append(nn.Sequential(*layers))
            c_prev = c
        self.context = _Context(chans[-1])
        # decoder: 1/16 -> 1/8 -> 1/4 (-> 1/2), each step fuses the encoder skip of that level
        n_up = 3 if out_stride == 2 else 2
        self.dec = nn.ModuleList(
            _conv_bn(chans[3 - i] + chans[2 - i], chans[2 - i]) for i in range(n_up)
        )
        self.head = nn.Conv2d(chans[3 - n_up], num_classes, 1)
        # deep supervision: a class map straight from the 1/16 context features gives the
        # shape-deciding layers a short gradient path (PSPNet-style auxiliary head)
        self.aux_head = nn.Conv2d(chans[-1], num_classes, 1)
        self.aux_stride = 16
        self.aux_logits: torch.Tensor | None = None
        """``(B, C, H/16, W/16)`` logits of the last training-mode forward (None in eval mode);
        the segmentation recipe adds their loss and clears them."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        ph, pw = (-h) % 16, (-w) % 16
        x = self.norm(image)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        y = self.context(skips.pop())
        self.aux_logits = self.aux_head(y) if self.training else None
        for dec in self.dec:
            y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = dec(torch.cat([y, skips.pop()], 1))
        y = self.head(y)
        y = F.interpolate(y, scale_factor=float(self.out_stride), mode="bilinear", align_corners=False)
        return y[..., :h, :w]  # (B, C, H, W)


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


def _seg_lite_train_loss(model: nn.Module, inputs: tuple[torch.Tensor, ...], num_classes: int) -> torch.Tensor:
    # The loss the recipe trains with: per-pixel cross-entropy plus the auxiliary head's, so a
    # gradient check reaches every parameter (the aux head only runs in training mode).
    (image,) = inputs
    logits = model(image)
    g = torch.Generator().manual_seed(1)
    target = torch.randint(0, num_classes, (image.shape[0], *logits.shape[-2:]), generator=g)
    loss = nn.functional.cross_entropy(logits, target)
    if model.aux_logits is not None:
        aux = model.aux_logits
        coarse = nn.functional.interpolate(target[:, None].float(), size=aux.shape[-2:], mode="nearest")
        loss = loss + nn.functional.cross_entropy(aux, coarse[:, 0].long())
    return loss


@register_model(
    "seg-lite",
    default_input_size=128,
    description="light encoder-decoder at 1/2 resolution with dilated + global context, fast from scratch on CPU",
    example_inputs=_seg_example_inputs(64),
    train_loss=_seg_lite_train_loss,
    **_COMMON,
)
def seg_lite(num_classes: int, **kwargs: Any) -> SegLite:
    return SegLite(num_classes, **kwargs)


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
