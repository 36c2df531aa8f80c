"""A name → class registry filled by decorator, so variants plug in without editing the core model."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A config names a plug that nobody registered; the message lists the registered ones."""


class Registry(Generic[T]):
    """``@REG.register("name")`` on a class; ``REG.get("name")`` returns it."""

    def __init__(self, kind: str, config_key: str) -> None:
        self.kind = kind
        self.config_key = config_key
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered by {self._items[name].__qualname__}")
            self._items[name] = cls
            return cls

        return add

    def get(self, name: str) -> type[T]:
        if name not in self._items:
            raise UnknownNameError(f"unknown {self.kind} {name!r} in {self.config_key}; "
                                   f"choose from {', '.join(sorted(self._items))}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
