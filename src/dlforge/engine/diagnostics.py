"""Training-health checks: gradient norms, vanishing/exploding gradients, loss spikes.

These run only on logging steps (every ``log_every`` optimizer steps) so a
healthy run pays nothing for them in between. Events are rate-limited per kind
so a run that explodes for a thousand steps records a handful of events and a
note that the rest were suppressed, not a thousand rows.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn


def layer_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters grouped by top-level module name.

    ``features.0.weight`` belongs to group ``features``; parameters registered
    directly on the root module go to the group of their own name.
    """
    groups: dict[str, list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(name.split(".", 1)[0], []).append(p)
    return groups


def grad_norms(groups: dict[str, list[nn.Parameter]]) -> tuple[float, dict[str, float]]:
    """Global and per-group L2 gradient norms (one device sync for all of them).

    Groups whose parameters have no gradient (unused this step) are omitted.
    """
    names: list[str] = []
    norms: list[torch.Tensor] = []
    for name, params in groups.items():
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            continue
        per_param = torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads])
        names.append(name)
        norms.append(torch.linalg.vector_norm(per_param))
    if not norms:
        return 0.0, {}
    stacked = torch.stack(norms)
    total = torch.linalg.vector_norm(stacked)
    values = torch.cat([total.reshape(1), stacked]).tolist()  # the one sync
    return values[0], dict(zip(names, values[1:]))


EventSink = Callable[[str, str, int, str], None]


@dataclass
class RateLimiter:
    """Allows an event kind at most once per ``min_gap`` steps and ``max_events`` times in all."""

    min_gap: int = 50
    max_events: int = 20
    _last: dict[str, int] = field(default_factory=dict)
    _count: dict[str, int] = field(default_factory=dict)

    def allow(self, kind: str, step: int) -> tuple[bool, bool]:
        """Returns ``(emit, is_last)``: whether to emit now and whether it is the final one allowed."""
        count = self._count.get(kind, 0)
        if count >= self.max_events:
            return False, False
        last = self._last.get(kind)
        if last is not None and step - last < self.min_gap:
            return False, False
        self._last[kind] = step
        self._count[kind] = count + 1
        return True, count + 1 == self.max_events


class Diagnostics:
    """Checks gradient norms and logged losses, reporting problems through ``emit``.

    Args:
        emit: Called as ``emit(kind, message, step, level)``.
        explode_threshold: Global gradient norm counted as exploding.
        vanish_threshold: Gradient norm (global or per group) counted as vanishing.
        spike_factor: Loss above this multiple of the running median is a spike.
        spike_window: Number of logged losses in the running median.
        min_gap: Minimum steps between two events of one kind.
        max_events: Events of one kind per run before suppression.
        clip_grad_norm: The run's clipping threshold, named in the advice of exploding events.
    """

    def __init__(
        self,
        emit: EventSink,
        explode_threshold: float = 1e3,
        vanish_threshold: float = 1e-7,
        spike_factor: float = 10.0,
        spike_window: int = 50,
        min_gap: int = 50,
        max_events: int = 20,
        clip_grad_norm: float | None = None,
    ) -> None:
        self.emit = emit
        self.clip_grad_norm = clip_grad_norm
        self.explode_threshold = explode_threshold
        self.vanish_threshold = vanish_threshold
        self.spike_factor = spike_factor
        self.losses: deque[float] = deque(maxlen=spike_window)
        self.limiter = RateLimiter(min_gap=min_gap, max_events=max_events)

    def _report(self, kind: str, message: str, step: int, level: str = "warning") -> None:
        ok, is_last = self.limiter.allow(kind, step)
        if ok:
            if is_last:
                message += " (further events of this kind are suppressed)"
            self.emit(kind, message, step, level)

    def check_grads(self, step: int, total: float, per_group: dict[str, float]) -> None:
        """Report exploding or vanishing gradients at optimizer step ``step``."""
        if total > self.explode_threshold:
            advice = (
                f"updates are clipped to norm {self.clip_grad_norm:g}; lower the learning rate if the loss diverges"
                if self.clip_grad_norm is not None
                else "lower the learning rate or set clip_grad_norm"
            )
            self._report(
                "exploding_gradients",
                f"global gradient norm {total:.3g} exceeds {self.explode_threshold:.3g} at step {step} "
                f"(before clipping); {advice}",
                step,
            )
        elif total < self.vanish_threshold:
            self._report(
                "vanishing_gradients",
                f"global gradient norm {total:.3g} is below {self.vanish_threshold:.3g} at step {step}",
                step,
            )
        else:
            vanishing = [name for name, v in per_group.items() if v < self.vanish_threshold]
            if vanishing:
                names = ", ".join(vanishing[:5]) + (" ..." if len(vanishing) > 5 else "")
                self._report(
                    "vanishing_gradients",
                    f"gradient norm below {self.vanish_threshold:.3g} in layer group(s) {names} at step {step}",
                    step,
                )

    def check_loss(self, step: int, loss: float) -> None:
        """Record a logged loss and report it when it spikes above the running median."""
        if len(self.losses) >= min(5, self.losses.maxlen or 5):
            median = statistics.median(self.losses)
            if median > 0 and loss > self.spike_factor * median:
                self._report(
                    "loss_spike",
                    f"loss {loss:.4g} at step {step} is {loss / median:.1f}x the running median {median:.4g}",
                    step,
                )
        self.losses.append(loss)
