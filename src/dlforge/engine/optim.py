"""Optimizers with weight decay kept off biases and normalisation parameters.

Decaying a bias or a BatchNorm/LayerNorm scale pulls it towards zero without
regularising anything useful (timm and torchvision reference recipes exclude
them too), so parameters are split into a decay and a no-decay group.
Frozen parameters (``requires_grad=False``, transfer learning) are in the
optimizer too: they get no gradient, which torch optimizers skip (no update, no
decay), and a layer unfrozen mid-fit (gradual unfreezing) starts training at once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dlforge.engine.config import TrainConfig
from dlforge.errors import InputError

# Module types whose own parameters are normalisation scales/shifts.
_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    *((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ()),
)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the model's parameters into a decayed group and a no-decay group.

    No decay for: parameters of normalisation layers, and every parameter with
    fewer than 2 dimensions (biases, scales, per-channel vectors).

    Args:
        model: The model.
        weight_decay: Decay of the first group.

    Returns:
        Optimizer param groups (empty groups omitted), each with a ``"name"``
        key (``"decay"``/``"no_decay"``) for logging.

    Raises:
        InputError: The model has no trainable parameter.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for module in model.modules():
        is_norm = isinstance(module, _NORM_TYPES)
        for p in module.parameters(recurse=False):
            if id(p) in seen:
                continue  # shared with an earlier module
            seen.add(id(p))
            (no_decay if is_norm or p.ndim < 2 else decay).append(p)
    if not any(p.requires_grad for p in (*decay, *no_decay)):
        raise InputError("model has no trainable parameters (all have requires_grad=False)")
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay, "name": "decay"})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "name": "no_decay"})
    return groups


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` over :func:`param_groups`."""
    groups = param_groups(model, config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
    raise InputError(f"unknown optimizer {config.optimizer!r}; use 'sgd' or 'adamw'")
