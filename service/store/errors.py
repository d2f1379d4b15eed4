"""Storage errors, shared by every repository and backend."""

from __future__ import annotations


class StoreError(Exception):
    """Base of storage errors."""


class NotFound(StoreError):
    pass


class Conflict(StoreError):
    pass


class StoreUnavailable(StoreError):
    """The database cannot be reached now: it is down, restarting, failing over or out of
    connections. Nothing is wrong with the request, and the same request may succeed
    later. Each backend decides which of its driver's errors mean this, in one place;
    the message says where the database is, never what was being read or written."""


class EngineUnavailable(Exception):
    """The query engine cannot run a query now: a distributed engine's runtime is missing,
    its cluster unreachable or without executors, or a query outlived its time limit. The
    message says what is wrong and what to do; it never holds data or SQL."""
