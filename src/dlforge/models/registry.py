"""The model registry: architectures register by name, tasks build them by name.

A model module decorates a factory ``factory(num_classes: int, **kwargs) -> nn.Module``
with :func:`register_model`; :func:`create_model` builds it. The registry is also the
test matrix: ``tests/models/test_model_conformance.py`` runs forward, backward and
ONNX-parity checks on every entry of :func:`list_models`, using each entry's
:meth:`ModelInfo.example_inputs` and :meth:`ModelInfo.check_output`.

Example::

    from dlforge.models.registry import register_model

    @register_model("tiny-net", task="image_classification", default_input_size=32,
                    min_input_size=8, description="two conv layers")
    def tiny_net(num_classes: int, **kwargs) -> nn.Module:
        ...

Tasks whose inputs or outputs are not the image/text defaults pass ``example_inputs``
and ``check_output`` hooks (and ``input_names``/``output_names`` for ONNX export).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from dlforge.errors import InputError

__all__ = [
    "ModelInfo",
    "TEXT_TASKS",
    "create_model",
    "get_model_info",
    "list_models",
    "register_model",
]

# Tasks whose models take token ids (B, L) int64 (+ attention mask) instead of images.
TEXT_TASKS = frozenset({"text_classification", "sentiment", "text_matching"})

Factory = Callable[..., nn.Module]
ExampleInputs = Callable[..., tuple[torch.Tensor, ...]]
CheckOutput = Callable[[Any, int, int], None]
TrainLoss = Callable[[nn.Module, tuple[torch.Tensor, ...], int], torch.Tensor]


def _image_inputs(info: ModelInfo, batch: int, *, size: int | None = None, **_: Any) -> tuple[torch.Tensor]:
    side = size or info.default_input_size or 224
    g = torch.Generator().manual_seed(0)
    return (torch.randn(batch, 3, side, side, generator=g),)  # (B, 3, H, W)


def _text_inputs(
    info: ModelInfo, batch: int, *, seq_len: int | None = None, vocab_size: int = 100, **_: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    length = seq_len or info.default_input_size or 32
    g = torch.Generator().manual_seed(0)
    # Ids start at 1: 0 is [PAD] by dlforge tokenizer convention.
    ids = torch.randint(1, vocab_size, (batch, length), generator=g, dtype=torch.int64)  # (B, L)
    mask = torch.ones(batch, length, dtype=torch.int64)  # (B, L)
    # Pad the tail of every other row so masking code paths run in tests.
    for b in range(1, batch, 2):
        cut = max(1, length // 2)
        ids[b, cut:] = 0
        mask[b, cut:] = 0
    return ids, mask


def _check_logits(out: Any, batch: int, num_classes: int) -> None:
    if not isinstance(out, torch.Tensor):
        raise AssertionError(f"expected a logits tensor, got {type(out).__name__}")
    if tuple(out.shape) != (batch, num_classes):
        raise AssertionError(f"expected logits of shape {(batch, num_classes)}, got {tuple(out.shape)}")
    if not torch.isfinite(out).all():
        raise AssertionError("logits contain non-finite values")


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about one architecture.

    Attributes:
        name: registry name, e.g. ``"resnet18"``.
        task: task name, e.g. ``"image_classification"``.
        factory: ``factory(num_classes, **kwargs) -> nn.Module``.
        default_input_size: image side in pixels (image tasks) or sequence length
            (text tasks) the model is meant for.
        min_input_size: smallest image side / sequence length that works.
        description: one line for listings.
        input_names: ONNX input names, in forward-argument order.
        output_names: ONNX output names.
        onnx_exportable: False for models whose export the conformance test skips.
        optional_extra: pip extra the model needs (e.g. ``"minilm"``), for listings.
    """

    name: str
    task: str
    factory: Factory
    default_input_size: int | None = None
    min_input_size: int | None = None
    description: str = ""
    input_names: tuple[str, ...] = ("image",)
    output_names: tuple[str, ...] = ("logits",)
    onnx_exportable: bool = True
    optional_extra: str | None = None
    example_inputs_fn: ExampleInputs | None = field(default=None, repr=False, compare=False)
    check_output_fn: CheckOutput | None = field(default=None, repr=False, compare=False)
    train_loss_fn: TrainLoss | None = field(default=None, repr=False, compare=False)

    @property
    def is_text(self) -> bool:
        return self.task in TEXT_TASKS

    def example_inputs(self, batch: int = 2, **kwargs: Any) -> tuple[torch.Tensor, ...]:
        """Random forward inputs for this model.

        Images: ``((B, 3, S, S) float32,)`` at ``default_input_size`` (override with
        ``size=``). Text: ``((B, L) int64 ids, (B, L) int64 mask)`` with ``L`` the
        default length (override with ``seq_len=``, ``vocab_size=``).
        """
        if self.example_inputs_fn is not None:
            return self.example_inputs_fn(batch, **kwargs)
        if self.is_text:
            return _text_inputs(self, batch, **kwargs)
        return _image_inputs(self, batch, **kwargs)

    def check_output(self, out: Any, batch: int, num_classes: int) -> None:
        """Raise AssertionError unless ``out`` is this task's documented output."""
        fn = self.check_output_fn or _check_logits
        fn(out, batch, num_classes)

    @property
    def has_train_loss(self) -> bool:
        """True when the loss is known to be the training loss (logits models or a hook).

        Otherwise :meth:`train_loss` falls back to the mean of the outputs, which the
        conformance test accepts only when it reaches every trainable parameter.
        """
        return self.train_loss_fn is not None or self.check_output_fn is None

    def train_loss(self, model: nn.Module, inputs: tuple[torch.Tensor, ...], num_classes: int) -> torch.Tensor:
        """A scalar training loss on ``inputs`` with arbitrary targets, for gradient checks.

        Uses the registered ``train_loss`` hook; models emitting logits get cross-entropy
        against fixed random labels; other models fall back to the mean of every float
        output of a train-mode forward.
        """
        if self.train_loss_fn is not None:
            return self.train_loss_fn(model, inputs, num_classes)
        out = model(*inputs)
        if self.check_output_fn is None:
            g = torch.Generator().manual_seed(1)
            target = torch.randint(0, num_classes, (out.shape[0],), generator=g).to(out.device)
            return nn.functional.cross_entropy(out, target)
        from dlforge.models.onnx_export import flatten_outputs

        floats = [t for t in flatten_outputs(out) if t.is_floating_point() and t.requires_grad]
        if not floats:
            raise AssertionError(f"model {self.name!r}: no differentiable output; register a train_loss hook")
        return sum(t.float().mean() for t in floats)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary for the CLI and web listings."""
        return {
            "name": self.name,
            "task": self.task,
            "default_input_size": self.default_input_size,
            "min_input_size": self.min_input_size,
            "description": self.description,
            "optional_extra": self.optional_extra,
        }


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    task: str,
    default_input_size: int | None = None,
    min_input_size: int | None = None,
    description: str = "",
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] = ("logits",),
    example_inputs: ExampleInputs | None = None,
    check_output: CheckOutput | None = None,
    train_loss: TrainLoss | None = None,
    onnx_exportable: bool = True,
    optional_extra: str | None = None,
) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(num_classes, **kwargs) -> nn.Module`` under ``name``.

    Args:
        name: unique registry name.
        task: task the model serves (``image_classification``, ``text_classification``, ...).
        default_input_size: image side or sequence length the model is meant for.
        min_input_size: smallest image side / sequence length that works.
        description: one line shown in listings.
        input_names: ONNX input names; defaults to ``("image",)`` for image tasks and
            ``("input_ids", "attention_mask")`` for text tasks.
        output_names: ONNX output names.
        example_inputs: ``fn(batch, **kw) -> tuple[Tensor, ...]`` for tasks whose inputs
            are not a (B, 3, S, S) image or (B, L) token batch.
        check_output: ``fn(out, batch, num_classes)`` raising AssertionError when the
            forward output (model in eval mode) is not what the task documents.
        train_loss: ``fn(model, inputs, num_classes) -> scalar`` (model in train mode)
            for models whose forward output is not a differentiable training signal
            (e.g. detectors returning post-NMS boxes); the conformance test checks
            every trainable parameter gets a finite gradient from it.
        onnx_exportable: set False to skip ONNX parity in the conformance test.
        optional_extra: pip extra needed by the model, shown in listings.

    Raises:
        ValueError: if ``name`` is already registered with a different factory.
    """
    if input_names is None:
        input_names = ("input_ids", "attention_mask") if task in TEXT_TASKS else ("image",)

    def decorate(factory: Factory) -> Factory:
        old = _REGISTRY.get(name)
        same = old is not None and (old.factory.__module__, old.factory.__qualname__) == (
            factory.__module__,
            factory.__qualname__,
        )
        if old is not None and not same:  # re-registering the same function (a reload) is fine
            raise ValueError(f"model {name!r} is already registered by {old.factory.__module__}")
        _REGISTRY[name] = ModelInfo(
            name=name,
            task=task,
            factory=factory,
            default_input_size=default_input_size,
            min_input_size=min_input_size,
            description=description,
            input_names=tuple(input_names),
            output_names=tuple(output_names),
            onnx_exportable=onnx_exportable,
            optional_extra=optional_extra,
            example_inputs_fn=example_inputs,
            check_output_fn=check_output,
            train_loss_fn=train_loss,
        )
        return factory

    return decorate


def _ensure_loaded() -> None:
    # Importing the package registers the built-in models; doing it lazily lets
    # model modules import this one without a cycle.
    import dlforge.models  # noqa: F401


def list_models(task: str | None = None) -> list[ModelInfo]:
    """Registered models, sorted by task then name; only ``task``'s when given."""
    _ensure_loaded()
    infos = [i for i in _REGISTRY.values() if task is None or i.task == task]
    return sorted(infos, key=lambda i: (i.task, i.name))


def get_model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of ``name``.

    Raises:
        InputError: unknown name (the message lists the registered names).
    """
    _ensure_loaded()
    info = _REGISTRY.get(name)
    if info is None:
        names = ", ".join(sorted(_REGISTRY)) or "none"
        raise InputError(f"model: unknown model {name!r}; registered models: {names}")
    return info


def create_model(name: str, num_classes: int, *, task: str | None = None, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with a head for ``num_classes`` classes.

    Args:
        name: registry name.
        num_classes: number of output classes (for detection/segmentation: as the
            task documents, e.g. including background).
        task: when given, ``name`` must belong to this task.
        **kwargs: architecture options passed to the factory (``dropout``,
            ``in_chans``, ``vocab_size``, ...).

    Raises:
        InputError: unknown name, a name of another task, or a bad ``num_classes``.
    """
    _ensure_loaded()
    info = _REGISTRY.get(name)
    if info is None or (task is not None and info.task != task):
        want = task if task is not None else (info.task if info else None)
        pool = [i.name for i in list_models(want)] if want else sorted(_REGISTRY)
        scope = f" for task {want!r}" if want else ""
        raise InputError(
            f"model: unknown model {name!r}{scope}; choose one of: {', '.join(pool) or 'none'}"
        )
    if not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"num_classes: must be a positive integer, got {num_classes!r}")
    try:
        return info.factory(num_classes, **kwargs)
    except TypeError as exc:
        # Only an unknown option is the user's fault; other TypeErrors are bugs.
        if "unexpected keyword argument" not in str(exc):
            raise
        raise InputError(f"model {name!r}: {exc}") from exc
