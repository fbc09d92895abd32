"""Model architectures and the model registry.

Importing this package registers every built-in model; use
:func:`create_model` / :func:`list_models` / :func:`get_model_info`.
"""

from __future__ import annotations

import importlib
import warnings

from dlforge.models.registry import ModelInfo, create_model, get_model_info, list_models, register_model

__all__ = ["ModelInfo", "create_model", "get_model_info", "list_models", "register_model"]

# Each import registers that module's models. A module that does not exist yet is
# skipped quietly; one that exists but fails to import is skipped with a warning, so
# one broken task does not take the image and text models down with it.
for _mod in ("image_classifiers", "text_classifiers", "detection", "segmentation", "instance_segmentation"):
    try:
        importlib.import_module(f"dlforge.models.{_mod}")
    except ImportError as _exc:
        if getattr(_exc, "name", None) != f"dlforge.models.{_mod}":
            warnings.warn(f"dlforge.models.{_mod} not loaded: {_exc}", RuntimeWarning, stacklevel=1)
del _mod
