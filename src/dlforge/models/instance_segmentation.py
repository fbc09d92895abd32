"""Instance segmentation models: torchvision Mask R-CNN behind the dlforge detector interface.

A Mask R-CNN is a Faster R-CNN with a mask branch, so :class:`MaskRCNNSegmenter`
extends :class:`~dlforge.models.detection.FasterRCNNDetector`: the batched box
inference (``predict``, identical to torchvision's per-image path), the input
handling and the loss plumbing are inherited; this module adds the mask targets,
the mask branch at inference and the construction of the two architectures:

- ``maskrcnn_resnet50_fpn``: torchvision's classic Mask R-CNN (ResNet-50 FPN).
- ``maskrcnn_mobilenet_v3_large_fpn``: Mask R-CNN on the MobileNetV3-Large backbone
  (torchvision ships no builder for it; it is assembled from torchvision's parts) with
  CPU-sized FPN and heads; meant for fine-tuning from local ImageNet/COCO weights (from
  scratch its deep backbone does not learn in CPU minutes).
- ``maskrcnn-tiny``: the Mask R-CNN heads on det-tiny's narrow residual backbone; it
  learns from scratch on a CPU (the default model of the recipe).

Both take ``(B, 3, H, W)`` float RGB in 0..1. Targets for :meth:`compute_loss` are
``{"boxes": (N, 4) xyxy, "labels": (N,) 0-based, "masks": (N, H, W) bool}`` in input
pixels. :meth:`MaskRCNNSegmenter.predict_with_masks` returns the padded detections
plus ``(B, M, 28, 28)`` mask probabilities in each box's frame, which
:func:`paste_masks` puts into an image of any size.

Nothing is downloaded: weights come from a local file or the torch hub cache
(:meth:`MaskRCNNSegmenter.load_weights`). ONNX export is not offered (see
:data:`EXPORT_REFUSAL`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlforge.errors import InputError
from dlforge.models.detection import FasterRCNNDetector, Targets, _det_example_inputs
from dlforge.models.registry import register_model

ARCHS = ("maskrcnn_resnet50_fpn", "maskrcnn_mobilenet_v3_large_fpn", "maskrcnn-tiny")

EXPORT_REFUSAL = (
    "Mask R-CNN ({model}) cannot be exported yet: bundles have no instance-mask output "
    "(per-box 28x28 masks pasted into the image) and no deploy handler for it; "
    "use `dlforge eval RUN --report` or dlforge.tasks.instance_segmentation.predict_images(run, files) "
    "for masks, or train object_detection with fasterrcnn_mobilenet_v3_large_fpn for an exportable box model"
)
"""Why ``dlforge export`` refuses instance segmentation runs, and what works instead."""


def _build_net(arch: str, num_classes: int, image_size: int, trainable_backbone_layers: int | None) -> nn.Module:
    """A torchvision Mask R-CNN with ``num_classes + 1`` outputs (background first), random init."""
    import torchvision.models.detection as tvd

    # the pipeline already resized the images: torchvision's transform must keep the size
    size_kw = {"min_size": image_size, "max_size": image_size}
    if arch == "maskrcnn_resnet50_fpn":
        kw: dict[str, Any] = {}
        if trainable_backbone_layers is not None:
            kw["trainable_backbone_layers"] = trainable_backbone_layers
        return tvd.maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=num_classes + 1, **size_kw, **kw
        )
    if arch == "maskrcnn_mobilenet_v3_large_fpn":
        return _mobilenet_maskrcnn(num_classes, size_kw, trainable_backbone_layers)
    if arch == "maskrcnn-tiny":
        return _tiny_maskrcnn(num_classes, size_kw)
    raise InputError(f"model: unknown Mask R-CNN architecture {arch!r}; choose {', '.join(ARCHS)}")


def _mobilenet_maskrcnn(num_classes: int, size_kw: dict[str, int], trainable_layers: int | None) -> nn.Module:
    """Mask R-CNN on MobileNetV3-Large with CPU-sized FPN and heads.

    torchvision's Mask R-CNN heads (256-channel FPN, 1024-wide box MLP, four 256-channel
    mask convolutions, 512 sampled RoIs per image) cost ~10 s per step of eight 96 px
    images on one CPU thread; with 128 channels, a 256-wide box MLP, two mask
    convolutions and 128 RoIs the same step takes a fraction of that. The FPN also takes
    the stride-8 stage, which small images and masks need (stride 32 leaves a 3x3 map at
    96 px).
    """
    import torchvision.models.detection as tvd
    from torchvision.models import mobilenet_v3_large
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    # plain BatchNorm: frozen BN only makes sense with pretrained statistics
    features = mobilenet_v3_large(weights=None, norm_layer=nn.BatchNorm2d).features
    # as torchvision's _mobilenet_extractor: stage starts are the blocks marked _is_cn
    stages = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    trainable = len(stages) if trainable_layers is None else trainable_layers
    if not 0 <= trainable <= len(stages):
        raise InputError(f"trainable_backbone_layers: expected 0..{len(stages)}, got {trainable}")
    freeze_before = len(features) if trainable == 0 else stages[len(stages) - trainable]
    for block in features[:freeze_before]:
        block.requires_grad_(False)
    returned = stages[-3:]  # strides 8, 16, 32
    channels = 128
    backbone = BackboneWithFPN(
        features,
        {str(i): str(k) for k, i in enumerate(returned)},
        [features[i].out_channels for i in returned],
        channels,
        extra_blocks=LastLevelMaxPool(),
    )
    levels = ["0", "1", "2"]
    anchor_sizes = ((16, 32, 64, 128, 256),) * (len(levels) + 1)  # + the max-pool level
    return tvd.MaskRCNN(
        backbone,
        None,  # the predictors below carry the class count
        rpn_anchor_generator=AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes)),
        rpn_score_thresh=0.05,
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=300,
        box_batch_size_per_image=128,
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(channels * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes + 1),
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(channels, [channels, channels], 1),
        mask_predictor=MaskRCNNPredictor(channels, channels, num_classes + 1),
        **size_kw,
    )


def _tiny_maskrcnn(num_classes: int, size_kw: dict[str, int], width: int = 64) -> nn.Module:
    """Mask R-CNN heads on det-tiny's narrow residual backbone (strides 4, 8, 16) with a 64-channel FPN.

    Deep ImageNet backbones need pretrained weights to be useful in minutes; this one is
    shallow enough to learn from scratch on a CPU, and its stride-4 level keeps the
    masks of small objects sharp.
    """
    from collections import OrderedDict

    import torchvision.models.detection as tvd
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    from dlforge.models.detection import ConvBNAct, ResBlock

    body = nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(ConvBNAct(3, 16, 3, 2), ConvBNAct(16, 16)),  # /2
            s4=nn.Sequential(ConvBNAct(16, 32, 3, 2), ResBlock(32)),  # /4
            s8=nn.Sequential(ConvBNAct(32, 64, 3, 2), ResBlock(64), ResBlock(64)),  # /8
            s16=nn.Sequential(ConvBNAct(64, 128, 3, 2), ResBlock(128), ResBlock(128)),  # /16
        )
    )
    backbone = BackboneWithFPN(
        body, {"s4": "0", "s8": "1", "s16": "2"}, [32, 64, 128], width, extra_blocks=LastLevelMaxPool()
    )
    levels = ["0", "1", "2"]
    anchor_sizes = ((16,), (32,), (64,), (128,))  # one size per level (+ the max-pool level), as FPN does
    return tvd.MaskRCNN(
        backbone,
        None,  # the predictors below carry the class count
        rpn_anchor_generator=AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes)),
        rpn_pre_nms_top_n_train=1000,
        rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=100,
        box_batch_size_per_image=64,
        box_roi_pool=MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        box_head=TwoMLPHead(width * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes + 1),
        mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
        mask_head=MaskRCNNHeads(width, [width, width], 1),
        mask_predictor=MaskRCNNPredictor(width, width, num_classes + 1),
        **size_kw,
    )


class MaskRCNNSegmenter(FasterRCNNDetector):
    """torchvision Mask R-CNN with dlforge's detector interface (0-based labels, tensors in/out).

    Args:
        arch: one of :data:`ARCHS`.
        num_classes: object classes; the torchvision heads get one more for background.
        image_size: side the inputs are trained at; the internal resize keeps it.
        weights_path: optional local weights (a torchvision Mask R-CNN state dict or a dlforge
            checkpoint); tensors whose shape does not fit (the class-specific heads) are skipped.
        trainable_backbone_layers: backbone stages to train counted from the top (default: all).
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        *,
        image_size: int = 320,
        weights_path: str | None = None,
        trainable_backbone_layers: int | None = None,
    ) -> None:
        # FasterRCNNDetector's methods need only ``net``, ``num_classes`` and ``config``; its
        # constructor builds a Faster R-CNN, so this one builds the Mask R-CNN itself
        nn.Module.__init__(self)
        self.num_classes = num_classes
        self.config = {"arch": arch, "image_size": image_size}
        self.dlforge_arch = arch  # names the torchvision weights for load_pretrained(..., "hub")
        self.net = _build_net(arch, num_classes, image_size, trainable_backbone_layers)
        if weights_path:
            self.load_weights(weights_path)

    def load_weights(self, source: str | Path) -> Any:
        """Fill matching tensors from a file or ``"hub"`` (torchvision's cached weights); returns the report.

        A torchvision state dict names tensors like ``backbone.body...`` (this model's
        ``net``), a dlforge checkpoint like ``net.backbone.body...``: both load.
        """
        from dlforge.models.weights import load_pretrained

        if str(source) == "hub":
            return load_pretrained(self.net, "hub", arch=self.dlforge_arch)
        try:
            return load_pretrained(self.net, source)
        except InputError:
            return load_pretrained(self, source)

    @staticmethod
    def _tv_targets(targets: Targets) -> list[dict[str, torch.Tensor]]:
        out = []
        for t in targets:
            boxes = t["boxes"].float().reshape(-1, 4)
            masks = t["masks"]
            if masks.shape[0] != boxes.shape[0]:
                raise InputError(f"targets: {masks.shape[0]} masks for {boxes.shape[0]} boxes")
            out.append({"boxes": boxes, "labels": t["labels"].long() + 1, "masks": masks.to(torch.uint8)})
        return out

    def mask_probabilities(
        self,
        features: dict[str, torch.Tensor],
        boxes: torch.Tensor,
        labels: torch.Tensor,
        size: tuple[int, int],
        valid: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mask branch on given boxes: ``(B, M, 4)`` boxes + ``(B, M)`` labels -> ``(B, M, 28, 28)`` probabilities.

        Only the slots where ``valid`` ``(B, M)`` is true are computed (the rest stay 0):
        the mask head is the costliest part of inference and most padded slots are empty.
        """
        rh = self.net.roi_heads
        b, m = labels.shape
        r = 2 * rh.mask_roi_pool.output_size[0]  # the predictor upsamples the pooled 14x14 to 28x28
        out = boxes.new_zeros(b, m, r, r)
        valid = torch.ones_like(labels, dtype=torch.bool) if valid is None else valid
        if not valid.any():
            return out
        x = rh.mask_roi_pool(features, [boxes[i][valid[i]] for i in range(b)], [size] * b)  # (V, C, 14, 14)
        logits = rh.mask_predictor(rh.mask_head(x))  # (V, K+1, 28, 28)
        idx = (labels[valid] + 1).view(-1, 1, 1, 1).expand(-1, 1, *logits.shape[-2:])
        out[valid] = logits.gather(1, idx)[:, 0].sigmoid()
        return out

    @torch.no_grad()
    def predict_with_masks(
        self,
        images: torch.Tensor,
        score_threshold: float = 0.05,
        nms_iou: float = 0.5,
        max_detections: int = 100,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Detections and their masks: ``boxes (B,M,4)``, ``scores (B,M)``, ``labels (B,M)``, ``masks (B,M,28,28)``.

        Boxes come from the inherited batched :meth:`predict` (torchvision's filters);
        masks are the mask branch's probabilities for each box's predicted class, in the
        box's own frame (paste them with :func:`paste_masks`). Empty slots have score 0.
        """
        features, size = self._features(images)
        # predict() computes the features itself; hand it these so the backbone runs once
        self._shared_features = (features, size)
        try:
            boxes, scores, labels = self.predict(
                images, score_threshold=score_threshold, nms_iou=nms_iou, max_detections=max_detections
            )
        finally:
            del self._shared_features
        masks = self.mask_probabilities(features, boxes, labels, size, valid=scores > 0)
        return boxes, scores, labels, masks

    def _features(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
        shared = self.__dict__.get("_shared_features")
        return shared if shared is not None else super()._features(images)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        return self.predict_with_masks(image)


def paste_masks(
    masks: torch.Tensor, boxes: torch.Tensor, height: int, width: int, threshold: float = 0.5
) -> torch.Tensor:
    """Paste ``(N, 28, 28)`` box-frame mask probabilities into an ``(N, H, W)`` bool image mask.

    ``boxes`` are ``(N, 4)`` xyxy in the target image's pixels (scale them first when the
    image is not the model's input size); torchvision's own pasting is used.
    """
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    if len(masks) == 0:
        return torch.zeros((0, height, width), dtype=torch.bool)
    pasted = paste_masks_in_image(masks[:, None].float(), boxes.float(), (height, width))  # (N, 1, H, W)
    return pasted[:, 0] > threshold


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------


def _instance_train_loss(model: nn.Module, inputs: tuple[torch.Tensor, ...], num_classes: int) -> torch.Tensor:
    """Mask R-CNN's own loss against two fixed random boxes (filled as masks) per image."""
    images = inputs[0]  # (B, 3, S, S)
    side = images.shape[-1]
    g = torch.Generator().manual_seed(1)
    targets = []
    for _ in range(images.shape[0]):
        xy = torch.rand(2, 2, generator=g) * side * 0.5
        wh = torch.rand(2, 2, generator=g) * side * 0.4 + side * 0.1
        boxes = torch.cat([xy, xy + wh], 1).floor()  # (2, 4) xyxy inside the image
        masks = torch.zeros(2, side, side, dtype=torch.bool)
        for k, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
            masks[k, y1:y2, x1:x2] = True
        labels = torch.randint(0, num_classes, (2,), generator=g)
        targets.append({"boxes": boxes.to(images.device), "labels": labels.to(images.device), "masks": masks})
    return model.compute_loss(images, targets)["loss"]


def _check_masks(out: Any, batch: int, num_classes: int) -> None:
    boxes, scores, labels, masks = out
    assert boxes.shape[0] == batch and boxes.shape[-1] == 4, f"boxes shape {tuple(boxes.shape)}"
    assert scores.shape == boxes.shape[:2] and labels.shape == boxes.shape[:2]
    assert labels.dtype == torch.int64
    assert masks.shape[:2] == boxes.shape[:2] and masks.shape[2:] == (28, 28), f"masks shape {tuple(masks.shape)}"
    assert torch.isfinite(masks).all() and (masks >= 0).all() and (masks <= 1).all(), "masks are not probabilities"


_COMMON = {
    "task": "instance_segmentation",
    "min_input_size": 64,
    "output_names": ("boxes", "scores", "labels", "masks"),
    "check_output": _check_masks,
    "train_loss": _instance_train_loss,
    # the per-box mask pasting has no deploy handler yet (EXPORT_REFUSAL): no ONNX parity to check
    "onnx_exportable": False,
}


@register_model(
    "maskrcnn_mobilenet_v3_large_fpn",
    default_input_size=320,
    description="Mask R-CNN on MobileNetV3-Large FPN with CPU-sized heads (fine-tune from local weights)",
    example_inputs=_det_example_inputs(128),
    **_COMMON,
)
def maskrcnn_mobilenet_v3_large_fpn(num_classes: int, **kwargs: Any) -> MaskRCNNSegmenter:
    return MaskRCNNSegmenter("maskrcnn_mobilenet_v3_large_fpn", num_classes, **kwargs)


@register_model(
    "maskrcnn-tiny",
    default_input_size=256,
    description="Mask R-CNN heads on a narrow residual backbone (strides 4-16), learns from scratch on CPU",
    example_inputs=_det_example_inputs(96),
    **_COMMON,
)
def maskrcnn_tiny(num_classes: int, **kwargs: Any) -> MaskRCNNSegmenter:
    return MaskRCNNSegmenter("maskrcnn-tiny", num_classes, **kwargs)


@register_model(
    "maskrcnn_resnet50_fpn",
    default_input_size=512,
    description="torchvision Mask R-CNN, ResNet-50 FPN backbone",
    # 64 px keeps the conformance checks of this 44M-parameter model to seconds; same graph as 512
    example_inputs=_det_example_inputs(64),
    **_COMMON,
)
def maskrcnn_resnet50_fpn(num_classes: int, **kwargs: Any) -> MaskRCNNSegmenter:
    return MaskRCNNSegmenter("maskrcnn_resnet50_fpn", num_classes, **kwargs)
