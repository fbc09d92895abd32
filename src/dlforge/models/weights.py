"""Pretrained weights, freezing and gradual unfreezing.

Fine-tuning starts from a local file (a state dict, a dlforge checkpoint such as a
finished run's ``checkpoints/best.pt``, or a ``.safetensors`` file) or from torchvision
weights already in the torch hub cache. Nothing is downloaded.

Loading is by parameter name: tensors whose shape differs from the model's (the
classifier head when the class count changes, a first conv with other ``in_chans``)
are skipped and reported, so a 1000-class ImageNet checkpoint or another run's
10-class model both load into a 3-class model. An RGB input conv loaded into a model
built with ``in_chans=1`` (or 4, ...) is converted (summed / repeated) rather than dropped.

Example::

    model = create_model("resnet18", num_classes=3)
    report = load_pretrained(model, "hub")             # ~/.cache/torch/hub/checkpoints/resnet18-*.pth
    report = load_pretrained(model, "runs/abc/checkpoints/best.pt")
    freeze_backbone(model)                             # train the head only
    for epoch in range(10):
        gradual_unfreeze(model, stage=epoch // 2)      # then open groups from the top down

Create the optimizer over *all* parameters: frozen ones have no gradient and torch
optimizers skip them, so unfreezing later needs no new optimizer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlforge.errors import InputError, NotFoundError

__all__ = [
    "LoadReport",
    "freeze_backbone",
    "gradual_unfreeze",
    "head_module",
    "hub_weights_path",
    "layer_groups",
    "load_pretrained",
    "unfreeze_all",
]


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        source: the file the weights came from.
        loaded: model keys filled from the checkpoint.
        missing: model keys the checkpoint lacks (left as initialised).
        unexpected: checkpoint keys the model lacks (ignored).
        skipped: ``(key, checkpoint_shape, model_shape)`` for shape mismatches.
        adapted: input-conv kernels converted to the model's channel count.
    """

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "loaded": len(self.loaded),
            "missing": self.missing,
            "unexpected": self.unexpected,
            "skipped": [{"key": k, "checkpoint": list(a), "model": list(b)} for k, a, b in self.skipped],
            "adapted": self.adapted,
        }

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"loaded {len(self.loaded)} tensors from {self.source} ({len(self.adapted)} channel-adapted); "
            f"{len(self.skipped)} skipped (shape), "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected"
        )


def _torchvision_weights_file(arch: str) -> str:
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(arch).DEFAULT
    except (ValueError, KeyError) as exc:
        raise InputError(f"source: 'hub' has no torchvision weights for architecture {arch!r}") from exc
    return weights.url.rsplit("/", 1)[-1]


def hub_weights_path(arch: str) -> Path:
    """Where torchvision keeps ``arch``'s default weights in the torch hub cache.

    The file may not exist; :func:`load_pretrained` checks.
    """
    return Path(torch.hub.get_dir()) / "checkpoints" / _torchvision_weights_file(arch)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise NotFoundError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise InputError(f"{path}: reading .safetensors needs the safetensors package") from exc
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise InputError(f"{path}: not a readable safetensors file ({exc})") from exc
    try:
        # weights_only: a checkpoint is data, never code to run.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: not a loadable torch checkpoint ({first})") from exc
    if isinstance(obj, nn.Module):  # pragma: no cover - weights_only refuses modules
        obj = obj.state_dict()
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: holds no state dict (expected tensors, or a dict with a 'model' key)")
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    # Checkpoints saved from DataParallel/DDP or torch.compile carry a wrapper prefix.
    for prefix in ("module.", "_orig_mod."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def _adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Turn an RGB conv kernel (O, 3, k, k) into one for ``in_chans`` inputs (as timm does).

    One channel: the sum over RGB, so a grey image (R = G = B) gives the same response.
    More channels: RGB repeated, scaled by 3 / in_chans to keep the activation scale.
    """
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    reps = -(-in_chans // weight.shape[1])
    return weight.repeat(1, reps, 1, 1)[:, :in_chans] * (weight.shape[1] / in_chans)


def load_pretrained(model: nn.Module, source: str | os.PathLike[str], *, arch: str | None = None) -> LoadReport:
    """Load matching weights into ``model`` in place; skip and report the rest.

    Args:
        model: the model to fill (e.g. from :func:`dlforge.models.create_model`).
        source: a local file (state dict, dlforge checkpoint dict with a ``"model"``
            key, ``.safetensors``), or ``"hub"`` for torchvision's weights in
            ``torch.hub.get_dir()/checkpoints`` (never downloaded).
        arch: torchvision architecture for ``"hub"``; defaults to ``model.dlforge_arch``.

    Returns:
        A :class:`LoadReport`.

    Raises:
        InputError: ``"hub"`` without a cached file or known architecture, an unreadable
            file, or a checkpoint sharing no tensor with the model.
        NotFoundError: the file does not exist.
    """
    if str(source) == "hub":
        arch = arch or getattr(model, "dlforge_arch", None)
        if not arch:
            raise InputError("source: 'hub' needs arch= (the model does not name its torchvision architecture)")
        path = hub_weights_path(arch)
        if not path.is_file():
            raise InputError(
                f"source: torchvision weights for {arch} are not in the hub cache ({path}); "
                "dlforge never downloads - copy the file there or pass its path"
            )
    else:
        path = Path(source).expanduser()
    state = _read_state_dict(path)

    own = model.state_dict()
    report = LoadReport(source=str(path))
    usable: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif tuple(tensor.shape) != tuple(own[key].shape):
            want = tuple(own[key].shape)
            rgb_kernel = tensor.ndim == 4 and tensor.shape[1] == 3 and tensor.shape[0] == want[0]
            if rgb_kernel and tuple(tensor.shape[2:]) == want[2:] and tensor.is_floating_point():
                # An input conv of an RGB checkpoint loaded into a grey / multispectral model.
                usable[key] = _adapt_input_conv(tensor, want[1]).to(own[key].dtype)
                report.adapted.append(key)
            else:
                report.skipped.append((key, tuple(tensor.shape), want))
        else:
            usable[key] = tensor
    head = _head_name(model)
    backbone = [k for k in usable if head is None or not k.startswith(f"{head}.")]
    if not backbone:
        # A checkpoint of another architecture may still share e.g. "head.bias"; loading
        # only that would look like success while fine-tuning from scratch.
        raise InputError(
            f"{path}: no backbone tensor matches the model {type(model).__name__} by name and shape "
            f"(checkpoint keys look like {sorted(state)[:3]})"
        )
    model.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    report.missing = sorted(k for k in own if k not in usable)
    return report


# --- freezing -------------------------------------------------------------------------


def _has_params(m: nn.Module) -> bool:
    return any(True for _ in m.parameters())


def _head_name(model: nn.Module) -> str | None:
    name = getattr(model, "dlforge_head", None)
    if isinstance(name, str) and hasattr(model, name):
        return name
    kids = [(n, c) for n, c in model.named_children() if _has_params(c)]
    return kids[-1][0] if len(kids) > 1 else None


def head_module(model: nn.Module) -> nn.Module:
    """The classifier head: ``model.<dlforge_head>``, else the last child holding parameters.

    Raises:
        InputError: the model has no separable head.
    """
    name = _head_name(model)
    if name is None:
        raise InputError(f"model: {type(model).__name__} has no separable head to fine-tune")
    return getattr(model, name)


def layer_groups(model: nn.Module) -> list[nn.Module]:
    """Backbone module groups from input to output, head excluded.

    Uses ``model.dlforge_groups()`` when the model defines it; otherwise the top-level
    children holding parameters, with a long ``nn.Sequential`` (torchvision's
    ``features``) opened into its blocks.
    """
    groups_fn = getattr(model, "dlforge_groups", None)
    if callable(groups_fn):
        return [g for g in groups_fn() if _has_params(g)]
    head = _head_name(model)
    groups: list[nn.Module] = []
    for name, child in model.named_children():
        if name == head or not _has_params(child):
            continue
        blocks = [b for b in child.children() if _has_params(b)] if isinstance(child, nn.Sequential) else []
        if len(blocks) >= 3:
            groups.extend(blocks)
        else:
            groups.append(child)
    return groups


def _set_trainable(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def _count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def freeze_backbone(model: nn.Module) -> int:
    """Freeze every parameter except the head's; returns the trainable parameter count.

    BatchNorm running statistics still update in train mode; with very small
    datasets put frozen BatchNorm layers in eval mode as well.
    """
    _set_trainable(model, False)
    _set_trainable(head_module(model), True)
    return _count_trainable(model)


def freeze_lower_groups(model: nn.Module, n: int) -> int:
    """Freeze the first ``n`` layer groups counted from the input side; returns the trainable count.

    For a pretrained encoder the groups are its embeddings, then each transformer layer:
    the lower layers hold the most general features, and not back-propagating through
    them makes a step cheaper (about a sixth for 5 of e5-small's 13 groups).
    """
    groups = layer_groups(model)
    if not 0 <= n < len(groups):
        raise InputError(f"freeze_layers: must be in [0, {len(groups) - 1}] for this model, got {n}")
    for group in groups[:n]:
        _set_trainable(group, False)
    return _count_trainable(model)


def unfreeze_all(model: nn.Module) -> int:
    """Make every parameter trainable; returns the trainable parameter count."""
    _set_trainable(model, True)
    return _count_trainable(model)


def gradual_unfreeze(model: nn.Module, stage: int) -> int:
    """Train the head plus the last ``stage`` backbone groups (ULMFiT-style, head first).

    Stage 0 trains the head only; each later stage opens one more group counted from
    the output side; once ``stage`` reaches the number of groups the whole model trains
    (parameters outside any group, e.g. a standalone position table, open then).

    Returns:
        The number of backbone groups now trainable.
    """
    if stage < 0:
        raise InputError(f"stage: must be >= 0, got {stage}")
    groups = layer_groups(model)
    if stage >= len(groups):
        unfreeze_all(model)
        return len(groups)
    freeze_backbone(model)
    for g in groups[len(groups) - stage :]:
        _set_trainable(g, True)
    return stage
