"""The grid metadata of the in-process store (``memory://``): a dict under the store's lock."""

from __future__ import annotations

import threading


class MemoryMeta:
    """Small grid-wide records beside the tasks; see ``TaskStore.get_meta`` and the rest."""

    _cond: threading.Condition
    _meta: dict[str, str]

    def get_meta(self, key: str) -> str | None:
        with self._cond:
            return self._meta.get(key)

    def set_meta_if_absent(self, key: str, value: str) -> str:
        with self._cond:
            return self._meta.setdefault(key, value)

    def put_meta(self, key: str, value: str) -> None:
        with self._cond:
            self._meta[key] = value

    def list_meta(self, prefix: str) -> dict[str, str]:
        with self._cond:
            return {k: v for k, v in self._meta.items() if k.startswith(prefix)}

    def delete_meta(self, key: str) -> None:
        with self._cond:
            self._meta.pop(key, None)
