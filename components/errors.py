"""Errors shared by the library and the stages."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(Exception):
    """A mistake the user can fix (missing folder, bad option): printed as one line, no traceback."""
