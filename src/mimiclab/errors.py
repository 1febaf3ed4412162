"""Errors a user can act on. Each message says what went wrong, where, and what to do.

Imports nothing from mimiclab, so every layer (the catalog included) can raise these.
"""

from __future__ import annotations


class MimiclabError(Exception):
    """Base of every expected failure; the CLI prints these without a traceback."""


class NotBuiltError(MimiclabError):
    """A dataset was asked for that has not been built; the message has the command to build it."""


class BuildError(MimiclabError):
    """A source file could not be loaded; names file, line and column where known."""


class QueryError(MimiclabError):
    """A query failed or was refused."""
