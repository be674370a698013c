"""A name -> factory registry (timm style): a dict plus a decorator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from srkd.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. `register` is a decorator; `get` fails with the known names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}

    def register(self, fn: Callable[..., T] | None = None, *, name: str | None = None):
        """Register `fn` under `name` (default: the function's name). Usable as @register."""

        def wrap(f: Callable[..., T]) -> Callable[..., T]:
            key = name or f.__name__
            if key in self._items:
                raise ConfigError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = f
            return f

        return wrap(fn) if fn is not None else wrap

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as `name`; ConfigError listing the known names otherwise."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
