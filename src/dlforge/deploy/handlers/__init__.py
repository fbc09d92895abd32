"""Per-task pre- and post-processing for bundles, registered by task name.

A handler turns raw inputs into ONNX feeds and ONNX outputs into typed results.
Each task has one module ``dlforge.deploy.handlers.<task>`` that calls
:func:`register_handler` at import time; :func:`get_handler` imports the module
on first use, so adding a task means adding one file. Handlers must not import
torch (bundles run where torch is absent).

The protocol, for a new handler module::

    from dlforge.deploy.handlers import Prepared, register_handler

    def preprocess(inputs: list, manifest: Manifest) -> Prepared:
        # one feed array per ONNX input, batch axis first; one meta dict per input
        return Prepared(feeds={"input": batch}, meta=[{...}, ...])

    def postprocess(outputs: dict[str, np.ndarray], manifest: Manifest, meta: list[dict],
                    **options) -> list:
        # one typed result per input, in order; options: top_k (ignore what you do not use)
        ...

    register_handler("my_task", preprocess=preprocess, postprocess=postprocess)

``inputs`` is always a list (the Predictor wraps a single input). Handlers raise
:class:`~dlforge.deploy.manifest.BundleError` for an input they cannot use,
naming the item. ``manifest.cache`` is a per-bundle dict for loaded resources
(``manifest.bundle_dir`` is where side files live).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dlforge.deploy.manifest import BundleError, Manifest


@dataclass
class Prepared:
    """Model feeds for a batch plus per-item facts that postprocessing needs.

    Attributes:
        feeds: ONNX input name -> array with the batch axis first.
        meta: One dict per input item (e.g. the original image size).
    """

    feeds: dict[str, np.ndarray]
    meta: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.meta)


Preprocess = Callable[[Sequence[Any], Manifest], Prepared]
Postprocess = Callable[..., list[Any]]  # (outputs, manifest, meta, **options) -> results


@dataclass(frozen=True)
class Handler:
    """A task's registered pre/post-processing functions."""

    task: str
    preprocess: Preprocess
    postprocess: Postprocess


_HANDLERS: dict[str, Handler] = {}


def register_handler(task: str, *, preprocess: Preprocess, postprocess: Postprocess) -> Handler:
    """Register the handler for ``task`` (called by each handler module at import)."""
    handler = Handler(task=task, preprocess=preprocess, postprocess=postprocess)
    _HANDLERS[task] = handler
    return handler


def get_handler(task: str) -> Handler:
    """The handler for ``task``, importing ``dlforge.deploy.handlers.<task>`` on first use.

    Raises:
        BundleError: when no handler exists for the task.
    """
    if task not in _HANDLERS:
        if not task.isidentifier():
            raise BundleError(f"manifest: task {task!r} is not a valid task name")
        try:
            importlib.import_module(f"{__name__}.{task}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{task}":
                raise
        if task not in _HANDLERS:
            raise BundleError(f"manifest: no deployment handler for task {task!r}")
    return _HANDLERS[task]


def split_batch(prepared: Prepared, size: int) -> list[Prepared]:
    """Split prepared feeds into chunks of at most ``size`` items."""
    n = len(prepared)
    if n <= size:
        return [prepared]
    return [
        Prepared({k: v[i : i + size] for k, v in prepared.feeds.items()}, prepared.meta[i : i + size])
        for i in range(0, n, size)
    ]


def concat_prepared(parts: Sequence[Prepared]) -> Prepared:
    """Join prepared chunks along the batch axis (shapes past the batch axis must match)."""
    if len(parts) == 1:
        return parts[0]
    feeds = {k: np.concatenate([p.feeds[k] for p in parts], axis=0) for k in parts[0].feeds}
    meta = [m for p in parts for m in p.meta]
    return Prepared(feeds, meta)
