"""Values the file data plane appends to one file per session and writer (``put_ref``).

Creating a file is the dearest thing a put does on a file system: on the grid's own disk it
costs 0.35-0.6 ms of CPU, ten times the write of 100 KiB into a file already open, and a
task's payload and result each made one (with a folder for the task besides). Values that
are read back only through the reference their writer returns (a task's payload, its
result) are appended instead to ``<session folder>/.pack-<token>``, one file per session
and per writer (``token`` is the writer's own, so no two processes append to one file),
and their reference names the range: ``<session folder>/.pack-<token>~<offset>~<length>``.

A value is complete before its reference is returned, and nothing is ever written over, so
a reader that holds a reference reads finished bytes. Packs go with their session's folder
(``delete_prefix``); a pack deleted while its writer keeps it open is noticed by its inode
after the next write, which is then written again into a new one, so a session id used again
never hands out a reference into the deleted file.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections import OrderedDict
from pathlib import Path

from htcgrid.errors import NotFound

PACK_PREFIX = ".pack-"
OPEN_PACKS = 8  # packs a writer keeps open (a deleted one holds its disk until closed)
_REF = re.compile(r"\.pack-([0-9a-f]{16})~([0-9]+)~([0-9]+)")


def parse_ref(key: str) -> tuple[str, int, int] | None:
    """``(pack key, offset, length)`` of a packed value's reference; None for a plain key."""
    folder, _, name = key.rpartition("/")
    found = _REF.fullmatch(name)
    if found is None or not folder:
        return None
    return f"{folder}/{PACK_PREFIX}{found[1]}", int(found[2]), int(found[3])


def pack_folder(key: str) -> str | None:
    """The session folder whose pack holds ``key``'s value: the key's first two segments,
    for a key below them (``sessions/<id>/<task>/input``); None for any other key."""
    parts = key.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else None


class PackWriter:
    """One writer's open packs under ``root``, appended to under a lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.token = secrets.token_hex(8)
        self._lock = threading.Lock()
        self._open: OrderedDict[str, tuple[int, int]] = OrderedDict()  # folder: (fd, inode)

    def append(self, folder: str, data: bytes) -> str:
        """Append ``data`` to this writer's pack in ``folder``; returns its reference. One
        ``stat`` a value: a pack deleted since the last append is found after the write (its
        inode is gone or another's), and the value is written again into a new one."""
        pack = f"{folder}/{PACK_PREFIX}{self.token}"
        path = f"{self.root}/{pack}"
        with self._lock:
            for _ in range(3):
                fd, inode = self._pack(folder, path)
                offset = os.lseek(fd, 0, os.SEEK_END)
                _write_all(fd, data)
                if _inode(path) == inode:  # not deleted under us meanwhile
                    return f"{pack}~{offset}~{len(data)}"
                self._close(folder)
            raise OSError(f"the pack {pack} was deleted three times while written to")

    def close(self) -> None:
        with self._lock:
            for folder in list(self._open):
                self._close(folder)

    def _pack(self, folder: str, path: str) -> tuple[int, int]:
        """The open pack of ``folder`` (a new one once ``append`` closed a deleted one), most
        recent last."""
        found = self._open.get(folder)
        if found is not None:
            self._open.move_to_end(folder)
            return found
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, flags, 0o600)
        self._open[folder] = (fd, os.fstat(fd).st_ino)
        while len(self._open) > OPEN_PACKS:
            self._close(next(iter(self._open)))
        return self._open[folder]

    def _close(self, folder: str) -> None:
        fd, _ = self._open.pop(folder)
        os.close(fd)


def read_range(root: Path, pack: str, offset: int, length: int) -> bytes:
    """``length`` bytes at ``offset`` of a pack; NotFound if they are not all there."""
    try:
        fd = os.open(f"{root}/{pack}", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise NotFound(f"no data at {pack}~{offset}~{length}") from None
    try:
        chunks = []
        got = 0
        while got < length:
            chunk = os.pread(fd, length - got, offset + got)
            if not chunk:
                raise NotFound(f"no data at {pack}~{offset}~{length}")
            chunks.append(chunk)
            got += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
