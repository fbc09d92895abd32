"""Dataset formats: one module per format, registered by name.

A format is a class with ``name``, ``detect(root) -> bool``,
``read(root, **options) -> ImportBatch`` and
``write(records, classes, out, **options) -> dict`` (a summary: files written,
annotations written, items it could not hold). Register it with
``@register_format``; :func:`get_format` and :func:`detect_format` look them up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from dlforge.data.records import ImportBatch, SampleRecord
from dlforge.errors import InputError


class DatasetFormat(Protocol):
    name: str
    #: detection order: lower is tried first (specific formats before generic ones)
    priority: int

    @staticmethod
    def detect(root: Any) -> bool: ...

    @staticmethod
    def read(root: Any, **options: Any) -> ImportBatch: ...

    @staticmethod
    def write(records: list[SampleRecord], classes: list[str], out: Any, **options: Any) -> dict: ...


FORMATS: dict[str, type] = {}


def register_format(cls: type) -> type:
    FORMATS[cls.name] = cls
    return cls


def _load_builtin() -> None:
    # Imported for their registration side effect.
    from dlforge.data.formats import (  # noqa: F401
        coco,
        imagefolder,
        labelstudio,
        text,
        unlabelled,
        voc,
        yolo,
    )


def get_format(name: str) -> type:
    _load_builtin()
    if name not in FORMATS:
        raise InputError(f"unknown format {name!r}; known formats: {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def detect_format(root: Any) -> str:
    """Name of the first format (by priority) whose ``detect`` accepts ``root``."""
    _load_builtin()
    for cls in sorted(FORMATS.values(), key=lambda c: c.priority):
        if cls.detect(root):
            return cls.name
    raise InputError(f"{root}: could not detect a dataset format; pass --format (one of {', '.join(sorted(FORMATS))})")


def format_names() -> list[str]:
    _load_builtin()
    return sorted(FORMATS)


Writer = Callable[..., dict]
