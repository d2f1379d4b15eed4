"""Storage errors, shared by every repository and backend."""

from __future__ import annotations


class StoreError(Exception):
    """Base of storage errors."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass
