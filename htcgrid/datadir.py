"""The data dir of a grid that ``htcgrid up`` runs: made ready and locked before anything is
written to it, so two grids never share one (and overwrite each other's admin credentials)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from htcgrid.errors import ConfigurationError

LOCK_FILE = "grid.lock"  # holds the pid of the grid using the data dir, locked while it runs


class DataDirLock:
    """An exclusive ``flock`` on the data dir's lock file, held until ``release()`` or until
    this process ends (the kernel drops it, so a killed grid leaves no stale lock)."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd = fd
        self.path = path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def claim_data_dir(path: Path) -> DataDirLock:
    """Create ``path`` (mode 0700) if needed and lock it for this process.

    Raises ``ConfigurationError`` saying what to do when it cannot be created or written, or
    when a live grid already uses it.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "permission denied", str(path))
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except FileExistsError:
        raise ConfigurationError(f"data dir {path} is a file; choose another --data-dir") from None
    except OSError as exc:
        reason = (
            "a read-only file system"
            if exc.errno == errno.EROFS
            else (exc.strerror or str(exc)).lower()
        )
        raise ConfigurationError(
            f"cannot use data dir {path}: {reason}; choose a --data-dir you can write to"
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigurationError(
            f"a grid (pid {holder}) is already running on data dir {path}; stop it first, "
            "or choose another --data-dir"
        ) from None
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return DataDirLock(fd, path / LOCK_FILE)
