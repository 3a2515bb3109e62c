"""The project's own error types. Only these become user-facing messages (CLI, REST, UI); any
other exception is a bug and keeps its traceback."""

from __future__ import annotations


class GenRLError(Exception):
    """Base of every error a user can cause and fix: bad input, a missing or stale file."""


class ConfigError(GenRLError, ValueError):
    """A bad preset name, setting key or setting value."""


class DataError(GenRLError, ValueError):
    """A dataset that cannot be used as asked: too short, inconsistent, or empty."""


class MissingFileError(GenRLError, FileNotFoundError):
    """A file or folder the command needs is not there; the message says how to make it."""


class BundleError(GenRLError, ValueError):
    """A bundle is missing, incomplete, or does not match the code or the request."""
