"""``file:///path``: one file per key under a folder; writes are atomic (temp file + rename).

Values stored by ``put_ref`` (payloads, results) are appended to one file per session and
writer instead (``htcgrid.dataplane.packs``): creating a file costs more than writing it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from htcgrid.dataplane.base import DataPlane
from htcgrid.dataplane.keys import check
from htcgrid.dataplane.packs import PackWriter, pack_folder, parse_ref, read_range
from htcgrid.errors import NotFound
from htcgrid.urls import local_path


class FileDataPlane(DataPlane):
    def __init__(self, url: str) -> None:
        self.url = url
        self.root = local_path(url).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._packs: PackWriter | None = None

    def _path(self, key: str) -> Path:
        # check() refuses absolute keys and "." / ".." segments, so the path stays under root
        # without resolving it (a realpath per key cost more than the write)
        return self.root / check(key)

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._staged(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_if_absent(self, key: str, data: bytes) -> bool:
        """A hard link of a complete temp file: link() refuses an existing name atomically,
        and readers never see a half-written value."""
        path = self._path(key)
        tmp = self._staged(path, data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _staged(path: Path, data: bytes) -> Path:
        """``data`` in a temp file beside ``path`` (so a rename or link stays on one disk)."""
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return Path(tmp)

    def put_ref(self, key: str, data: bytes) -> str:
        folder = pack_folder(check(key))
        if folder is None:
            return super().put_ref(key, data)
        if self._packs is None:
            self._packs = PackWriter(self.root)
        return self._packs.append(folder, data)

    def get(self, key: str) -> bytes:
        packed = parse_ref(check(key))
        if packed is not None:
            return read_range(self.root, *packed)
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no data at {key}") from None

    def delete(self, key: str) -> None:
        if parse_ref(check(key)) is None:  # a packed value goes with its session's folder
            self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        folder = prefix.rstrip("/")
        if not folder:
            raise ValueError("refusing to delete the whole data plane")
        path = self._path(folder)
        # os.walk skips what vanishes under it: another delete of this prefix may run meanwhile
        count = sum(len(files) for _, _, files in os.walk(path))
        if not count and not path.exists():
            return 0
        shutil.rmtree(path, onerror=_unless_gone)
        return count

    def close(self) -> None:
        if self._packs is not None:
            self._packs.close()


def _unless_gone(
    function: object, path: str, info: tuple[type[BaseException], BaseException, object]
) -> None:
    """``rmtree``'s error handler: what is already gone is what we wanted."""
    if not issubclass(info[0], FileNotFoundError):
        raise info[1]
