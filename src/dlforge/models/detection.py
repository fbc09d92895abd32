"""Object detectors: torchvision Faster R-CNN and ``det-tiny``, a compact anchor-free detector.

Every detector here takes ``(B, 3, H, W)`` float RGB in 0..1 (normalisation is
inside the model) and offers the same three methods the detection recipe uses:

- ``compute_loss(images, targets) -> dict`` with a ``"loss"`` entry to back-propagate;
  ``targets`` is a list of ``{"boxes": (N, 4) xyxy input pixels, "labels": (N,) 0-based}``.
- ``predict(images, score_threshold, nms_iou, max_detections)`` ->
  ``boxes (B, K, 4)`` xyxy in input pixels, ``scores (B, K)``, ``labels (B, K)`` int64,
  padded with score 0 up to ``K = max_detections``.
- :class:`DetectionExport` wraps a detector so that ONNX gets exactly those three
  fixed-shape outputs (what the deployment handler expects).

``det-tiny`` is a TTFNet/CenterNet-style single-stage detector designed to learn
from scratch on a CPU from a few hundred images: a narrow residual backbone down
to stride 32, a light top-down neck back to stride 8 (or 4), a class heatmap
trained with Gaussian focal loss and a distance-to-box-sides regression trained
with GIoU loss on every cell of a Gaussian area around each object's centre (many
positive samples per object is what makes it converge in few epochs).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, generalized_box_iou_loss

from dlforge.errors import InputError
from dlforge.models.registry import register_model

Targets = list[dict[str, torch.Tensor]]


# --------------------------------------------------------------------------------------
# shared: fixed-shape padding after NMS
# --------------------------------------------------------------------------------------


def order_key(scores: torch.Tensor) -> torch.Tensor:
    """``scores`` as float64 with exact ties broken toward the lower index along the last axis.

    torch's ``topk``/``sort`` leave the order of equal values unspecified while ONNX's
    TopK puts the lower index first, so an exported detector could list tied detections
    in another order than torch (exact ties happen: identical proposals on flat image
    regions). Ranking by this key makes both orders the same.
    """
    n = scores.shape[-1]
    step = 1e-15 * (1.0 + scores.detach().abs().amax().double())  # far below a float32 gap
    return scores.double() - torch.arange(n, device=scores.device, dtype=torch.float64) * step


def rank_scores(scores: torch.Tensor) -> torch.Tensor:
    """Distinct float32 scores in (0, 1] with the order of :func:`order_key` (input to NMS).

    NMS keeps boxes by visiting them in score order; on exact ties torch and ONNX Runtime
    may visit them differently and keep different boxes. Feeding NMS the rank instead
    of the score fixes the visiting order without changing it otherwise.
    """
    flat = scores.reshape(-1)
    n = flat.shape[0]
    order = order_key(flat).topk(n).indices  # best first
    ranks = torch.zeros_like(flat)
    ranks[order] = 1.0 - torch.arange(n, device=flat.device, dtype=flat.dtype) / n
    return ranks.reshape(scores.shape)


def select_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    *,
    score_threshold: float,
    nms_iou: float,
    max_detections: int,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class NMS on ``(B, K, ...)`` candidates and fixed-shape top ``max_detections``.

    One ``batched_nms`` call covers the whole batch (ids offset per image), so the
    graph has no Python loop over the batch and exports to ONNX with a dynamic batch.

    Returns:
        ``boxes (B, M, 4)``, ``scores (B, M)``, ``labels (B, M)`` int64 with
        ``M = max_detections``; empty slots have score 0 and a zero box.
    """
    b, k = scores.shape
    if k < max_detections:  # pad candidates so top-k below always has M entries
        pad = max_detections - k
        boxes = torch.cat([boxes, boxes.new_zeros(b, pad, 4)], 1)
        scores = torch.cat([scores, scores.new_zeros(b, pad)], 1)
        labels = torch.cat([labels, labels.new_zeros(b, pad)], 1)
        k = max_detections
    flat_boxes = boxes.reshape(-1, 4)
    flat_scores = scores.reshape(-1)
    batch_ids = torch.arange(b, device=boxes.device).unsqueeze(1).expand(b, k).reshape(-1)
    groups = batch_ids * num_classes + labels.reshape(-1)
    keep = batched_nms(flat_boxes, rank_scores(flat_scores), groups, nms_iou)
    mask = torch.zeros_like(flat_scores, dtype=torch.bool)
    mask[keep] = True
    mask = mask & (flat_scores >= score_threshold)
    kept = torch.where(mask, flat_scores, torch.zeros_like(flat_scores)).reshape(b, k)
    top_idx = order_key(kept).topk(max_detections, dim=1).indices
    top_scores = kept.gather(1, top_idx)
    top_boxes = boxes.gather(1, top_idx.unsqueeze(-1).expand(b, max_detections, 4))
    top_labels = labels.gather(1, top_idx)
    valid = top_scores > 0
    top_boxes = top_boxes * valid.unsqueeze(-1).to(top_boxes.dtype)
    top_labels = top_labels * valid.to(top_labels.dtype)
    return top_boxes, top_scores, top_labels.to(torch.int64)


class DetectionExport(nn.Module):
    """ONNX-ready view of a detector: ``image -> boxes (B,M,4), scores (B,M), labels (B,M)``.

    Args:
        model: a detector from this module.
        score_threshold: detections below are zeroed out.
        nms_iou: per-class NMS IoU.
        max_detections: ``M``, the fixed number of output slots.
    """

    def __init__(
        self, model: nn.Module, score_threshold: float = 0.3, nms_iou: float = 0.5, max_detections: int = 100
    ) -> None:
        super().__init__()
        self.model = model
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.max_detections = int(max_detections)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.model.predict(
            image,
            score_threshold=self.score_threshold,
            nms_iou=self.nms_iou,
            max_detections=self.max_detections,
        )


# --------------------------------------------------------------------------------------
# det-tiny
# --------------------------------------------------------------------------------------


class ConvBNAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(c, c)
        self.conv2 = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.conv2(self.conv1(x)))


class DetTiny(nn.Module):
    """Compact anchor-free detector (TTFNet-style) for training from scratch.

    Args:
        num_classes: object classes (no background class).
        width: channel multiplier of the backbone (1.0 = 16-32-64-128-192).
        depth: residual blocks per stage from stride 8 on.
        stride: output stride of the heads, 4 or 8.
        head_width: channels of the neck and the heads.
        candidates: peaks kept from the heatmap before NMS.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        width: float = 1.0,
        depth: int = 2,
        stride: int = 8,
        head_width: int = 64,
        candidates: int = 100,
    ) -> None:
        super().__init__()
        if stride not in (4, 8):
            raise InputError(f"det-tiny: stride must be 4 or 8, got {stride}")
        self.num_classes = num_classes
        self.stride = stride
        self.candidates = candidates
        self.config = {
            "width": width,
            "depth": depth,
            "stride": stride,
            "head_width": head_width,
            "candidates": candidates,
        }
        c = [max(8, int(round(v * width / 8)) * 8) for v in (16, 32, 64, 128, 192)]
        self.register_buffer("mean", torch.tensor([0.45, 0.45, 0.45]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.25, 0.25, 0.25]).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(ConvBNAct(3, c[0], 3, 2), ConvBNAct(c[0], c[0]))  # /2
        self.s4 = nn.Sequential(ConvBNAct(c[0], c[1], 3, 2), ResBlock(c[1]))  # /4
        self.s8 = nn.Sequential(ConvBNAct(c[1], c[2], 3, 2), *[ResBlock(c[2]) for _ in range(depth)])  # /8
        self.s16 = nn.Sequential(ConvBNAct(c[2], c[3], 3, 2), *[ResBlock(c[3]) for _ in range(depth)])  # /16
        self.s32 = nn.Sequential(ConvBNAct(c[3], c[4], 3, 2), *[ResBlock(c[4]) for _ in range(depth)])  # /32
        hw = head_width
        self.lat32 = ConvBNAct(c[4], hw, 1)
        self.lat16 = ConvBNAct(c[3], hw, 1)
        self.lat8 = ConvBNAct(c[2], hw, 1)
        self.smooth16 = ConvBNAct(hw, hw)
        self.smooth8 = ConvBNAct(hw, hw)
        if stride == 4:
            self.lat4 = ConvBNAct(c[1], hw, 1)
            self.smooth4 = ConvBNAct(hw, hw)
        self.cls_head = nn.Sequential(ConvBNAct(hw, hw), nn.Conv2d(hw, num_classes, 1))
        self.box_head = nn.Sequential(ConvBNAct(hw, hw), nn.Conv2d(hw, 4, 1))
        # start with a low object prior so the focal loss is not swamped by negatives
        nn.init.constant_(self.cls_head[-1].bias, -math.log((1 - 0.01) / 0.01))
        nn.init.normal_(self.box_head[-1].weight, std=0.01)
        nn.init.constant_(self.box_head[-1].bias, 0.0)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw head outputs: heatmap logits ``(B, C, h, w)`` and box side distances ``(B, 4, h, w)`` in px."""
        x = (image - self.mean) / self.std
        x2 = self.stem(x)
        x4 = self.s4(x2)
        x8 = self.s8(x4)
        x16 = self.s16(x8)
        x32 = self.s32(x16)
        p = self.lat32(x32)
        p = self.smooth16(self.lat16(x16) + F.interpolate(p, size=x16.shape[-2:], mode="nearest"))
        p = self.smooth8(self.lat8(x8) + F.interpolate(p, size=x8.shape[-2:], mode="nearest"))
        if self.stride == 4:
            p = self.smooth4(self.lat4(x4) + F.interpolate(p, size=x4.shape[-2:], mode="nearest"))
        heat = self.cls_head(p)  # (B, C, h, w)
        # exp keeps distances positive; the unit is 4 strides so that raw 0 is a mid-size box
        ltrb = torch.exp(self.box_head(p).clamp(max=6.0)) * (4.0 * self.stride)  # (B, 4, h, w)
        return heat, ltrb

    # ---- training targets and loss ----------------------------------------------------

    def _targets(self, targets: Targets, h: int, w: int, device: torch.device):
        """Gaussian heatmaps, box targets and regression weights per cell (TTFNet)."""
        b = len(targets)
        s = self.stride
        heat = torch.zeros(b, self.num_classes, h, w, device=device)
        box_t = torch.zeros(b, h, w, 4, device=device)
        weight = torch.zeros(b, h, w, device=device)
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) * s
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) * s
        alpha = 0.54
        for i, t in enumerate(targets):
            boxes = t["boxes"].to(device).float()
            labels = t["labels"].to(device)
            if len(boxes) == 0:
                continue
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            # large objects first, so smaller ones overwrite them where they overlap
            for j in torch.argsort(areas, descending=True).tolist():
                x1, y1, x2, y2 = boxes[j].tolist()
                bw, bh = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                ci = min(max(int(cx // s), 0), w - 1)
                cj = min(max(int(cy // s), 0), h - 1)
                sx, sy = max(alpha * bw / 6, s / 4), max(alpha * bh / 6, s / 4)
                # Gaussian centred on the centre cell so that cell is exactly 1 (the focal positive)
                gx = torch.exp(-((xs - (ci + 0.5) * s) ** 2) / (2 * sx**2))
                gy = torch.exp(-((ys - (cj + 0.5) * s) ** 2) / (2 * sy**2))
                g = gy[:, None] * gx[None, :]  # (h, w)
                c = int(labels[j])
                heat[i, c] = torch.maximum(heat[i, c], g)
                inside = (xs[None, :] > x1) & (xs[None, :] < x2) & (ys[:, None] > y1) & (ys[:, None] < y2)
                region = (g > 0.05) & inside
                region[cj, ci] = True
                gw = g * region
                gw = gw / gw.sum() * math.log(max(bw * bh, 2.0))
                box_t[i][region] = boxes[j]
                weight[i][region] = gw[region]
        return heat, box_t, weight

    def compute_loss(self, images: torch.Tensor, targets: Targets) -> dict[str, torch.Tensor]:
        heat_logits, ltrb = self(images)
        b, _, h, w = heat_logits.shape
        heat_t, box_t, weight = self._targets(targets, h, w, images.device)
        # Gaussian focal loss (CenterNet), normalised by the number of objects
        p = heat_logits.sigmoid().clamp(1e-4, 1 - 1e-4)
        pos = heat_t.eq(1).float()
        neg = 1.0 - pos
        pos_loss = torch.log(p) * (1 - p) ** 2 * pos
        neg_loss = torch.log(1 - p) * p**2 * (1 - heat_t) ** 4 * neg
        n_pos = pos.sum().clamp(min=1.0)
        cls_loss = -(pos_loss.sum() + neg_loss.sum()) / n_pos
        # GIoU on every weighted cell
        s = self.stride
        mask = weight > 0
        if mask.any():
            ys = (torch.arange(h, device=images.device, dtype=torch.float32) + 0.5) * s
            xs = (torch.arange(w, device=images.device, dtype=torch.float32) + 0.5) * s
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            d = ltrb.permute(0, 2, 3, 1)  # (B, h, w, 4)
            pred = torch.stack([cx - d[..., 0], cy - d[..., 1], cx + d[..., 2], cy + d[..., 3]], -1)
            giou = generalized_box_iou_loss(pred[mask], box_t[mask], reduction="none")
            box_loss = (giou * weight[mask]).sum() / weight.sum().clamp(min=1e-6)
        else:
            box_loss = ltrb.sum() * 0.0
        loss = cls_loss + 5.0 * box_loss
        return {"loss": loss, "cls_loss": cls_loss.detach(), "box_loss": box_loss.detach()}

    # ---- inference ----------------------------------------------------------------------

    def decode(self, heat_logits: torch.Tensor, ltrb: torch.Tensor):
        """Heatmap peaks -> ``(B, K, 4)`` boxes, ``(B, K)`` scores and labels (before NMS)."""
        b, c, h, w = heat_logits.shape
        s = self.stride
        prob = heat_logits.sigmoid()
        peaks = F.max_pool2d(prob, 3, stride=1, padding=1)
        prob = prob * (peaks == prob).to(prob.dtype)
        k = min(self.candidates, c * h * w)
        scores, idx = prob.reshape(b, -1).topk(k, dim=1)  # (B, K)
        labels = torch.div(idx, h * w, rounding_mode="floor")
        cell = idx - labels * (h * w)
        cy = (torch.div(cell, w, rounding_mode="floor").to(prob.dtype) + 0.5) * s
        cx = ((cell % w).to(prob.dtype) + 0.5) * s
        d = ltrb.reshape(b, 4, h * w).gather(2, cell.unsqueeze(1).expand(b, 4, k))  # (B, 4, K)
        boxes = torch.stack([cx - d[:, 0], cy - d[:, 1], cx + d[:, 2], cy + d[:, 3]], -1)
        height, width = h * s, w * s
        boxes = torch.stack(
            [
                boxes[..., 0].clamp(0, width),
                boxes[..., 1].clamp(0, height),
                boxes[..., 2].clamp(0, width),
                boxes[..., 3].clamp(0, height),
            ],
            -1,
        )
        return boxes, scores, labels

    def predict(
        self,
        images: torch.Tensor,
        score_threshold: float = 0.3,
        nms_iou: float = 0.5,
        max_detections: int = 100,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        heat, ltrb = self(images)
        boxes, scores, labels = self.decode(heat, ltrb)
        return select_detections(
            boxes,
            scores,
            labels,
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            max_detections=max_detections,
            num_classes=self.num_classes,
        )


# --------------------------------------------------------------------------------------
# Faster R-CNN
# --------------------------------------------------------------------------------------


class FasterRCNNDetector(nn.Module):
    """torchvision Faster R-CNN behind the dlforge detector interface (0-based labels, tensors in/out).

    Args:
        arch: ``"fasterrcnn_mobilenet_v3_large_fpn"`` or ``"fasterrcnn_resnet50_fpn"``.
        num_classes: object classes; the torchvision head gets one more for background.
        image_size: side the inputs are trained at; the internal resize keeps it.
        weights_path: optional local state dict of a pretrained torchvision model (nothing downloads).
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        *,
        image_size: int = 512,
        weights_path: str | None = None,
        trainable_backbone_layers: int | None = None,
    ) -> None:
        super().__init__()
        import torchvision.models.detection as tvd

        builder = getattr(tvd, arch)
        self.num_classes = num_classes
        self.config = {"arch": arch, "image_size": image_size}
        kw: dict[str, Any] = {}
        if trainable_backbone_layers is not None:
            kw["trainable_backbone_layers"] = trainable_backbone_layers
        # min_size/max_size = our input size: the images are already resized by the pipeline
        self.net = builder(
            weights=None,
            weights_backbone=None,
            num_classes=num_classes + 1,
            min_size=image_size,
            max_size=image_size,
            **kw,
        )
        if weights_path:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("roi_heads.box_predictor")}
            self.net.load_state_dict(state, strict=False)

    @staticmethod
    def _tv_targets(targets: Targets) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": t["boxes"].float().reshape(-1, 4), "labels": t["labels"].long() + 1} for t in targets]

    def _no_resize(self, images: torch.Tensor) -> None:
        # the dlforge pipeline already sized the batch (multi-scale included): make torchvision's
        # internal transform keep it as it is instead of resizing to a fixed min_size
        h, w = images.shape[-2:]
        self.net.transform.min_size = (int(min(h, w)),)
        self.net.transform.max_size = int(max(h, w))

    def compute_loss(self, images: torch.Tensor, targets: Targets) -> dict[str, torch.Tensor]:
        self._no_resize(images)
        was = self.net.training
        self.net.train()
        losses = self.net(list(images), self._tv_targets(targets))
        self.net.train(was)
        total = sum(losses.values())
        return {"loss": total, **{k: v.detach() for k, v in losses.items()}}

    # ---- inference: one batched graph (what ONNX gets) ----------------------------------

    def _features(self, images: torch.Tensor) -> tuple[dict[str, torch.Tensor], tuple[int, int]]:
        """Normalise, pad to the backbone's stride multiple as torchvision does, run backbone + FPN."""
        t = self.net.transform
        h, w = int(images.shape[-2]), int(images.shape[-1])
        mean = torch.tensor(t.image_mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(t.image_std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        x = (images - mean) / std  # (B, 3, H, W)
        d = t.size_divisible
        ph, pw = (d - h % d) % d, (d - w % d) % d
        if ph or pw:  # zero padding at the bottom/right, like GeneralizedRCNNTransform.batch_images
            x = F.pad(x, (0, pw, 0, ph))
        return self.net.backbone(x), (h, w)

    def _proposals(
        self, images: torch.Tensor, features: dict[str, torch.Tensor], size: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """RPN at test settings for the whole batch: ``(B, P, 4)`` proposals and ``(B, P)`` validity.

        torchvision filters proposals image by image (a Python loop that ONNX tracing
        unrolls to a fixed batch); here the same filters are masks on fixed-size tensors
        and one NMS call covers the batch, so the exported graph keeps a dynamic batch.
        """
        from torchvision.models.detection.image_list import ImageList
        from torchvision.models.detection.rpn import concat_box_prediction_layers
        from torchvision.ops import boxes as box_ops

        rpn = self.net.rpn
        b = images.shape[0]
        feats = list(features.values())
        objectness, deltas = rpn.head(feats)
        # anchors depend only on the (fixed) sizes, so one image's set serves the batch
        image_list = ImageList(images.new_zeros(1, 3, *self._padded(size)), [size])
        anchors = rpn.anchor_generator(image_list, feats)[0]  # (A, 4)
        per_level = [o[0].numel() for o in objectness]  # anchors per level (one image)
        objectness, deltas = concat_box_prediction_layers(objectness, deltas)  # (B*A, 1), (B*A, 4)
        n_anchors = anchors.shape[0]
        boxes = rpn.box_coder.decode_single(deltas.detach(), anchors.repeat(b, 1)).reshape(b, n_anchors, 4)
        scores = objectness.detach().reshape(b, n_anchors)
        dev = images.device
        levels = torch.cat([torch.full((n,), i, dtype=torch.int64, device=dev) for i, n in enumerate(per_level)])
        pre_n, post_n = rpn._pre_nms_top_n["testing"], rpn._post_nms_top_n["testing"]  # whatever the mode
        top, offset = [], 0
        for level_scores in scores.split(per_level, 1):  # top-n per level, as torchvision does
            n = level_scores.shape[1]
            top.append(order_key(level_scores).topk(min(pre_n, n), dim=1).indices + offset)
            offset += n
        top = torch.cat(top, 1)  # (B, T)
        scores = scores.gather(1, top).sigmoid()
        levels = levels[top]
        boxes = boxes.gather(1, top.unsqueeze(-1).expand(-1, -1, 4))
        boxes = box_ops.clip_boxes_to_image(boxes, size)
        ws, hs = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        ok = (ws >= rpn.min_size) & (hs >= rpn.min_size) & (scores >= rpn.score_thresh)
        # invalid proposals rank below every valid one, so they can never suppress one
        scores = torch.where(ok, scores, torch.full_like(scores, -1.0))
        t = scores.shape[1]
        batch_ids = torch.arange(b, device=images.device).unsqueeze(1).expand(b, t)
        groups = (batch_ids * len(per_level) + levels).reshape(-1)
        keep = box_ops.batched_nms(boxes.reshape(-1, 4), rank_scores(scores.reshape(-1)), groups, rpn.nms_thresh)
        kept = torch.zeros_like(ok.reshape(-1))
        kept[keep] = True
        kept = kept.reshape(b, t) & ok
        ranked = torch.where(kept, scores, torch.full_like(scores, -2.0))
        idx = order_key(ranked).topk(min(post_n, t), dim=1).indices
        proposals = boxes.gather(1, idx.unsqueeze(-1).expand(-1, -1, 4))
        return proposals, ranked.gather(1, idx) > -1.5

    def _padded(self, size: tuple[int, int]) -> tuple[int, int]:
        d = self.net.transform.size_divisible
        return (size[0] + (d - size[0] % d) % d, size[1] + (d - size[1] % d) % d)

    def _roi_features(
        self, features: dict[str, torch.Tensor], proposals: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """MultiScaleRoIAlign on ``(B, P, 4)`` proposals -> ``(B*P, C, 7, 7)``, batch index from position."""
        from torchvision.ops import roi_align
        from torchvision.ops.poolers import _setup_scales

        pool = self.net.roi_heads.box_roi_pool
        feats = [v for k, v in features.items() if k in pool.featmap_names]  # as torchvision filters
        if pool.scales is None or pool.map_levels is None:
            pool.scales, pool.map_levels = _setup_scales(feats, [size], pool.canonical_scale, pool.canonical_level)
        b, p = proposals.shape[:2]
        flat = proposals.reshape(-1, 4)
        ids = torch.arange(b, device=flat.device, dtype=flat.dtype).unsqueeze(1).expand(b, p).reshape(-1, 1)
        rois = torch.cat([ids, flat], 1)  # (B*P, 5): image index, x1, y1, x2, y2
        kw = {"output_size": pool.output_size, "sampling_ratio": pool.sampling_ratio}
        if len(feats) == 1:
            return roi_align(feats[0], rois, spatial_scale=pool.scales[0], **kw)
        levels = pool.map_levels([flat])  # (B*P,) FPN level of each box
        result = feats[0].new_zeros(rois.shape[0], feats[0].shape[1], *pool.output_size)
        for level, (feat, scale) in enumerate(zip(feats, pool.scales)):
            idx = torch.where(levels == level)[0]
            result[idx] = roi_align(feat, rois[idx], spatial_scale=scale, **kw)
        return result

    def predict(
        self,
        images: torch.Tensor,
        score_threshold: float = 0.05,
        nms_iou: float = 0.5,
        max_detections: int = 100,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched Faster R-CNN inference -> fixed-shape ``boxes (B,M,4)``, ``scores (B,M)``, ``labels (B,M)``.

        Same filters as torchvision's per-image inference (tested against
        :meth:`predict_native`), written on batched tensors so that the traced ONNX graph
        works for any batch size. The default threshold is torchvision's ``box_score_thresh``.
        """
        from torchvision.ops import boxes as box_ops

        rh = self.net.roi_heads
        features, size = self._features(images)
        proposals, valid = self._proposals(images, features, size)  # (B, P, 4), (B, P)
        b, p = valid.shape
        x = rh.box_head(self._roi_features(features, proposals, size))
        class_logits, box_regression = rh.box_predictor(x)  # (B*P, K+1), (B*P, (K+1)*4)
        k = class_logits.shape[-1] - 1
        boxes = rh.box_coder.decode_single(box_regression, proposals.reshape(-1, 4)).reshape(b, p, k + 1, 4)
        boxes = box_ops.clip_boxes_to_image(boxes, size)[:, :, 1:]  # drop the background column
        scores = F.softmax(class_logits, -1).reshape(b, p, k + 1)[:, :, 1:]
        labels = torch.arange(k, device=images.device).view(1, 1, k).expand(b, p, k)
        ws, hs = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        ok = valid.unsqueeze(-1) & (scores > score_threshold) & (ws >= 1e-2) & (hs >= 1e-2)
        scores = torch.where(ok, scores, torch.zeros_like(scores))
        return select_detections(
            boxes.reshape(b, p * k, 4),
            scores.reshape(b, p * k),
            labels.reshape(b, p * k),
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            max_detections=max_detections,
            num_classes=k,
        )

    @torch.no_grad()
    def predict_native(
        self,
        images: torch.Tensor,
        score_threshold: float = 0.05,
        nms_iou: float = 0.5,
        max_detections: int = 100,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """torchvision's own per-image inference, padded like :meth:`predict` (the reference it is tested against)."""
        rh = self.net.roi_heads
        saved = (rh.score_thresh, rh.nms_thresh, rh.detections_per_img)
        rh.score_thresh, rh.nms_thresh, rh.detections_per_img = score_threshold, nms_iou, max_detections
        self._no_resize(images)
        was = self.net.training
        self.net.eval()  # torchvision returns losses, not detections, in train mode
        try:
            outs = self.net(list(images))
        finally:
            rh.score_thresh, rh.nms_thresh, rh.detections_per_img = saved
            self.net.train(was)
        b = len(outs)
        boxes = images.new_zeros(b, max_detections, 4)
        scores = images.new_zeros(b, max_detections)
        labels = torch.zeros(b, max_detections, dtype=torch.int64, device=images.device)
        for i, o in enumerate(outs):
            n = min(len(o["scores"]), max_detections)
            boxes[i, :n] = o["boxes"][:n]
            scores[i, :n] = o["scores"][:n]
            labels[i, :n] = o["labels"][:n] - 1
        return boxes, scores, labels

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.predict(image)


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------


def _det_example_inputs(size: int):
    def fn(batch: int, *, size: int | None = size, **_: Any) -> tuple[torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return (torch.rand(batch, 3, size, size, generator=g),)

    return fn


def _detector_train_loss(model: nn.Module, inputs: tuple[torch.Tensor, ...], num_classes: int) -> torch.Tensor:
    """The detector's own training loss against two fixed random boxes per image (conformance hook)."""
    images = inputs[0]  # (B, 3, S, S)
    side = float(images.shape[-1])
    g = torch.Generator().manual_seed(1)
    targets = []
    for _ in range(images.shape[0]):
        xy = torch.rand(2, 2, generator=g) * side * 0.5
        wh = torch.rand(2, 2, generator=g) * side * 0.4 + side * 0.1
        boxes = torch.cat([xy, xy + wh], 1).to(images.device)  # (2, 4) xyxy inside the image
        targets.append({"boxes": boxes, "labels": torch.randint(0, num_classes, (2,), generator=g).to(images.device)})
    return model.compute_loss(images, targets)["loss"]


def _check_raw(out: Any, batch: int, num_classes: int) -> None:
    heat, ltrb = out
    assert heat.shape[:2] == (batch, num_classes), f"heatmap shape {tuple(heat.shape)}"
    assert ltrb.shape[:2] == (batch, 4), f"box shape {tuple(ltrb.shape)}"
    assert torch.isfinite(heat).all() and torch.isfinite(ltrb).all(), "non-finite outputs"


def _check_padded(out: Any, batch: int, num_classes: int) -> None:
    boxes, scores, labels = out
    assert boxes.shape[0] == batch and boxes.shape[-1] == 4, f"boxes shape {tuple(boxes.shape)}"
    assert scores.shape == boxes.shape[:2] and labels.shape == boxes.shape[:2]
    assert labels.dtype == torch.int64


@register_model(
    "det-tiny",
    task="object_detection",
    default_input_size=320,
    min_input_size=64,
    description="compact anchor-free detector (TTFNet-style), trains from scratch on CPU",
    output_names=("heatmap", "box_ltrb"),
    example_inputs=_det_example_inputs(128),
    check_output=_check_raw,
    train_loss=_detector_train_loss,
)
def det_tiny(num_classes: int, **kwargs: Any) -> DetTiny:
    return DetTiny(num_classes, **kwargs)


@register_model(
    "fasterrcnn_mobilenet_v3_large_fpn",
    task="object_detection",
    default_input_size=320,
    min_input_size=64,
    description="torchvision Faster R-CNN, MobileNetV3-Large FPN backbone",
    output_names=("boxes", "scores", "labels"),
    example_inputs=_det_example_inputs(128),
    check_output=_check_padded,
    train_loss=_detector_train_loss,
)
def fasterrcnn_mobilenet_v3_large_fpn(num_classes: int, **kwargs: Any) -> FasterRCNNDetector:
    return FasterRCNNDetector("fasterrcnn_mobilenet_v3_large_fpn", num_classes, **kwargs)


@register_model(
    "fasterrcnn_resnet50_fpn",
    task="object_detection",
    default_input_size=512,
    min_input_size=64,
    description="torchvision Faster R-CNN, ResNet-50 FPN backbone (the classic two-stage detector)",
    output_names=("boxes", "scores", "labels"),
    # 64 px keeps the conformance checks of this 41M-parameter model to seconds; same graph as 512
    example_inputs=_det_example_inputs(64),
    check_output=_check_padded,
    train_loss=_detector_train_loss,
)
def fasterrcnn_resnet50_fpn(num_classes: int, **kwargs: Any) -> FasterRCNNDetector:
    return FasterRCNNDetector("fasterrcnn_resnet50_fpn", num_classes, **kwargs)
