"""dlforge: a local-first deep-learning engineering platform."""

from __future__ import annotations

__version__ = "0.1.0"

from dlforge.errors import ConflictError, DlforgeError, InputError, NotFoundError

__all__ = ["__version__", "DlforgeError", "InputError", "NotFoundError", "ConflictError"]
