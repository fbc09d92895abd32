"""Deployment: bundles, the Predictor SDK, REST serving, edge and web packages.

``Predictor`` and the result types import without torch; the export side
(``build_bundle``, ``ExportSpec``, ``export_run``) is loaded lazily because it
needs torch.
"""

from __future__ import annotations

from typing import Any

from dlforge.deploy.manifest import BundleError, Manifest, read_manifest
from dlforge.deploy.predictor import Predictor
from dlforge.deploy.results import Classification, Detection, MultiLabel, Segmentation

_LAZY = {
    "ExportSpec": "dlforge.deploy.spec",
    "ImageInput": "dlforge.deploy.spec",
    "TextInput": "dlforge.deploy.spec",
    "TabularInput": "dlforge.deploy.spec",
    "BundleInfo": "dlforge.deploy.bundle",
    "build_bundle": "dlforge.deploy.bundle",
    "export_onnx_file": "dlforge.deploy.bundle",
    "build_edge_package": "dlforge.deploy.edge",
    "build_web_package": "dlforge.deploy.web",
    "export_run": "dlforge.deploy.export",
    "create_app": "dlforge.deploy.server",
    "serve": "dlforge.deploy.server",
}

__all__ = [
    "BundleError",
    "Manifest",
    "read_manifest",
    "Predictor",
    "Classification",
    "MultiLabel",
    "Detection",
    "Segmentation",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dlforge.deploy' has no attribute {name!r}")
