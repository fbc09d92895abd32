"""Exceptions the library raises for problems a user can fix.

Everything a user can cause (a missing file, a malformed annotation, an unknown
name) raises a subclass of :class:`DlforgeError` with one line that names the
file or field and the problem; the CLI prints it and exits non-zero, the web
layer turns it into a 4xx JSON error.
"""

from __future__ import annotations


class DlforgeError(Exception):
    """Base class of every user-facing dlforge error."""

    status_code = 400


class NotFoundError(DlforgeError):
    """A named thing (dataset, version, run, bundle, file) does not exist."""

    status_code = 404


class InputError(DlforgeError):
    """Input data or an argument is malformed or inconsistent."""

    status_code = 422


class ConflictError(DlforgeError):
    """The operation conflicts with existing state (a name taken, a run finished)."""

    status_code = 409
