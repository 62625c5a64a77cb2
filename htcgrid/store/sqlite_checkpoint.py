"""Checkpoints of the grid file's WAL, off the commits' path.

Left to SQLite, the commit that takes the WAL past 1,000 pages copies the WAL into the file and
syncs both before it returns: ~4 ms on the project's disk, in one round trip out of ~40 (W5's
p99 was that commit). Each process's connections instead checkpoint only past
``sqlite_db.INLINE_FRAMES`` (4,000 pages: a burst of writes that outruns this thread), and one
thread of the process checkpoints every grid file it has open, ``PASSIVE`` (it waits for no
reader and no writer, and writers do not wait for it), every ``CHECKPOINT_SECONDS`` or sooner
after ``CHECKPOINT_COMMITS`` write transactions, then starts the WAL over when all of it is in
the file (``SQLiteFile.checkpoint``). Whatever one process leaves, the next pass of any process
with the file open takes; the last connection to close checkpoints too (SQLite).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Protocol

log = logging.getLogger("htcgrid.store")

CHECKPOINT_SECONDS = 0.25  # how often a process checkpoints the files it has open
CHECKPOINT_COMMITS = 64  # or sooner: after this many write transactions of the process


class Checkpointed(Protocol):
    def checkpoint(self) -> None: ...


class Checkpointer:
    """The process's checkpointing thread: runs while a registered file is alive."""

    def __init__(self, period_seconds: float = CHECKPOINT_SECONDS) -> None:
        self.period_seconds = period_seconds
        self._files: weakref.WeakSet[Checkpointed] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._due = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._commits = 0

    def add(self, file: Checkpointed) -> None:
        with self._lock:
            if self._pid != os.getpid():  # a forked child: its parent's thread is not here
                self._files, self._thread, self._pid = weakref.WeakSet(), None, os.getpid()
            self._files.add(file)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="htcgrid-checkpoint", daemon=True
                )
                self._thread.start()

    def remove(self, file: Checkpointed) -> None:
        with self._lock:
            self._files.discard(file)
        self._due.set()  # so a thread with nothing left ends now

    def committed(self) -> None:
        """A write transaction committed; every ``CHECKPOINT_COMMITS`` the pass comes early."""
        self._commits += 1  # a count lost to a race only delays a pass to its period
        if self._commits >= CHECKPOINT_COMMITS:
            self._commits = 0
            self._due.set()

    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def _run(self) -> None:
        while True:
            self._due.wait(self.period_seconds)
            self._due.clear()
            with self._lock:
                if not self._files:
                    self._thread = None
                    return
            self._pass()  # in a call of its own: no file is kept alive between passes

    def _pass(self) -> None:
        with self._lock:
            files = list(self._files)
        for file in files:
            try:
                file.checkpoint()
            except Exception:  # never lose the thread: the next pass tries again
                log.debug("checkpoint failed", exc_info=True)


CHECKPOINTS = Checkpointer()
