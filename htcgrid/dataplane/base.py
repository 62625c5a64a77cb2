"""The data plane role: bytes by key, for payloads and results too big for the task store.

Keys are built only by ``htcgrid.dataplane.keys`` so that every backend sees the same layout.
"""

from __future__ import annotations

from abc import ABC, abstractmethod


class DataPlane(ABC):
    url: str = ""

    @abstractmethod
    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any previous value; durable on return."""

    @abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` only if nothing is there yet; durable on return.

        Atomic across threads and processes: of writers racing for one key exactly one gets
        True, and the value every reader then sees is that writer's. False leaves the key as
        it was.
        """

    def put_ref(self, key: str, data: bytes) -> str:
        """Store ``data`` for ``key`` and return the reference to read it by (``get(ref)``):
        for a value read back only through that reference and never replaced (a task's
        payload or result). A backend may return another name than ``key`` (the file data
        plane appends such values to one file per session: ``htcgrid.dataplane.packs``);
        ``delete`` of that name may then leave the bytes until the session's
        ``delete_prefix``. Here: ``put(key, data)``, and the reference is ``key``."""
        self.put(key, data)
        return key

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; raises ``NotFound`` if there are none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix`` (a session's folder); returns how many."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
