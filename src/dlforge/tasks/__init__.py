"""Task recipes, one module per task, looked up by name.

Each recipe module reads top to bottom and exposes the same small set of
functions (the :class:`TaskRecipe` protocol); the CLI and the web layer call
them and nothing else.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from dlforge.errors import InputError

TASKS: dict[str, str] = {
    "image_classification": "dlforge.tasks.image_classification",
    "text_classification": "dlforge.tasks.text_classification",
    "object_detection": "dlforge.tasks.object_detection",
    "semantic_segmentation": "dlforge.tasks.semantic_segmentation",
    "instance_segmentation": "dlforge.tasks.instance_segmentation",
    "tabular": "dlforge.tasks.tabular",
}


class TaskRecipe(Protocol):
    """What every task module provides."""

    def train(self, ws: Any, data_ref: str, **params: Any) -> Any: ...

    def evaluate_run(self, run: Any, split: str = "test", report_path: Path | None = None) -> dict[str, Any]: ...

    def export_spec(self, run: Any) -> Any: ...


def get_task(name: str) -> ModuleType:
    """The recipe module of a task (``InputError`` for an unknown name)."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name])
