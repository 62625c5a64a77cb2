"""URL scheme → backend class, imported lazily, with an install hint for a missing extra."""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

from htcgrid.errors import ConfigurationError
from htcgrid.urls import scheme_of

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, role: str, entries: dict[str, tuple[str, str | None]]) -> None:
        self.role = role
        self.entries = entries

    def schemes(self) -> list[str]:
        return sorted(self.entries)

    def load(self, scheme: str) -> type[T]:
        try:
            target, extra = self.entries[scheme]
        except KeyError:
            known = ", ".join(f"{s}://" for s in self.schemes())
            raise ConfigurationError(
                f"no {self.role} for '{scheme}://' URLs; known: {known}"
            ) from None
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if extra is None or exc.name == module_name:
                raise
            raise ConfigurationError(
                f"the {scheme}:// {self.role} needs extra packages: "
                f"pip install 'htcgrid[{extra}]' (missing: {exc.name})"
            ) from exc
        cls: type[T] = getattr(module, class_name)
        return cls

    def open(self, url: str, **options: Any) -> T:
        cls = self.load(scheme_of(url))
        return cls(url, **options)  # type: ignore[call-arg]
