"""Checkpoint files of a run: ``checkpoints/last.pt`` (full state) and ``best.pt`` (weights).

Both are written atomically (temp file in the same directory, fsync, then
``os.replace``) so a crash mid-write never leaves a truncated checkpoint in
place of a good one. Everything stored is a tensor or a plain python value,
so files load with ``torch.load(weights_only=True)`` (no arbitrary unpickling).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlforge.errors import InputError, NotFoundError

CHECKPOINT_FORMAT = "dlforge-checkpoint"
CHECKPOINT_VERSION = 1


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def last_path(run_dir: Path) -> Path:
    """Path of the full-state checkpoint written after every epoch."""
    return checkpoint_dir(run_dir) / "last.pt"


def best_path(run_dir: Path) -> Path:
    """Path of the best-epoch weights."""
    return checkpoint_dir(run_dir) / "best.pt"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file next to ``path``, fsync it, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a dlforge checkpoint file safely (``weights_only=True``).

    Raises:
        NotFoundError: The file does not exist.
        InputError: The file is not a readable dlforge checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"checkpoint {path} does not exist")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or foreign file: one clear line
        raise InputError(f"checkpoint {path} cannot be read: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "model" not in data:
        raise InputError(f"checkpoint {path} is not a dlforge checkpoint (missing format marker or model)")
    return data


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module whose state dict is saved (strips DDP/DataParallel and torch.compile wrappers)."""
    inner = getattr(model, "module", None)
    if isinstance(inner, nn.Module):
        model = inner
    orig = getattr(model, "_orig_mod", None)
    return orig if isinstance(orig, nn.Module) else model


def load_best(model: nn.Module, run_dir: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load the best epoch's weights of a run into ``model``.

    Args:
        model: A model with the run's architecture.
        run_dir: The run directory (holding ``checkpoints/best.pt``).
        map_location: Where tensors are loaded before copying into the model.

    Returns:
        The checkpoint's metadata: ``epoch``, ``metric`` (name), ``value``, ``metrics``.

    Raises:
        NotFoundError: The run has no best checkpoint.
        InputError: The weights do not fit the model.
    """
    path = best_path(run_dir)
    data = load_checkpoint(path, map_location=map_location)
    try:
        unwrap_model(model).load_state_dict(data["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "state dict mismatch"
        raise InputError(f"checkpoint {path} does not fit the model: {first}") from None
    return {k: v for k, v in data.items() if k not in ("model", "format", "version")}
