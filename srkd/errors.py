"""Error hierarchy. Every error also subclasses the matching builtin so callers may catch either."""

from __future__ import annotations


class SrkdError(Exception):
    """Base class of every error srkd raises on purpose. The CLI turns it into exit code 1."""


class DataError(SrkdError, ValueError):
    """A scene, file or value on disk is missing, malformed or out of range."""


class ConfigError(SrkdError, ValueError):
    """A parameter, option, or configuration value is invalid."""


class CheckpointError(SrkdError, ValueError):
    """A model checkpoint is missing, malformed, or incompatible with the requested use."""


class CacheError(SrkdError, ValueError):
    """A teacher cache is missing, foreign, stale, corrupt, or was asked for something it lacks."""


class CacheMissError(CacheError, KeyError):
    """A scene or view was requested that the cache does not hold (or holds uncommitted)."""

    def __str__(self) -> str:  # KeyError would repr() the message; keep it readable
        return str(self.args[0]) if self.args else ""
