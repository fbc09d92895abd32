"""Device selection and mixed precision (autocast + GradScaler).

``bf16`` uses autocast on CPU and CUDA and needs no loss scaling (bf16 has
fp32's exponent range). ``fp16`` needs loss scaling against underflow, which
PyTorch's GradScaler provides on CUDA only, so fp16 on another device is a
user error rather than a silent fallback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from dlforge.errors import InputError


def resolve_device(spec: str = "auto") -> torch.device:
    """The torch device for a config's ``device`` value.

    Args:
        spec: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.

    Raises:
        InputError: The requested accelerator is not available.
    """
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"device {spec!r} requested but CUDA is not available; use device='cpu' or 'auto'")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
        return dev
    if spec == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise InputError("device 'mps' requested but MPS is not available; use device='cpu'")
        return torch.device("mps")
    if spec == "cpu":
        return torch.device("cpu")
    raise InputError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")


class Precision:
    """Autocast context and (for fp16) gradient scaler for one precision mode.

    Args:
        mode: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: The training device.

    Raises:
        InputError: fp16 on a non-CUDA device.
    """

    def __init__(self, mode: str, device: torch.device) -> None:
        if mode not in ("fp32", "bf16", "fp16"):
            raise InputError(f"unknown precision {mode!r}; use fp32, bf16 or fp16")
        if mode == "fp16" and device.type != "cuda":
            raise InputError(
                f"precision 'fp16' needs a CUDA device (GradScaler), got {device.type!r}; use 'bf16' or 'fp32'"
            )
        self.mode = mode
        self.device = device
        self.dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
        self.scaler: torch.amp.GradScaler | None = torch.amp.GradScaler("cuda") if mode == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Run the forward pass (and loss) under autocast; no-op in fp32."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(device_type=self.device.type, dtype=self.dtype):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        """Backward, through the scaler when there is one."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring gradients back to their true scale before clipping or measuring them."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Optimizer step (the scaler skips it when gradients overflowed) and scale update."""
        if self.scaler is not None:
            self.scaler.step(optimizer)
            self.scaler.update()
        else:
            optimizer.step()

    def state_dict(self) -> dict[str, Any] | None:
        return self.scaler.state_dict() if self.scaler is not None else None

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
