"""Push wake-ups between the processes and threads that share one SQLite grid file.

SQLite tells nobody about a commit, so a waiter (an idle agent waiting for work, a server's
long poll waiting for a result) would have to poll. Instead, each waiter binds a unix datagram
socket in a folder beside the grid file for as long as it waits, named after what it waits for
(its topic); whoever commits a change of that kind sends one byte to every socket of the topic.
The waiter then looks at the store again. A lost or refused datagram costs latency, never
correctness: waiters also look every ``fallback_seconds``, and a stale socket (its process
died) is removed by the first sender it refuses.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import select
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

WORK = "work"  # pending tasks appeared: idle agents look for them
DONE = "done"  # a session's done count moved: long polls for results and status look
MAX_SOCKET_PATH = 103  # bytes of an AF_UNIX path: 107 on Linux, 103 on macOS
NAME_BYTES = 24  # "<topic>-<pid>-<n>" and the slash before it
FALLBACK_SECONDS = 0.05  # how often a waiter looks anyway (a datagram lost, an old writer)


def wake_folder(grid_file: Path) -> Path:
    """Where the waiters of ``grid_file`` bind their sockets: beside it, or, when that path
    is too long for a unix socket, in the temporary folder under a name made from it."""
    beside = grid_file.with_name(grid_file.name + ".wake")
    if len(os.fsencode(beside)) + NAME_BYTES <= MAX_SOCKET_PATH:
        return beside
    digest = hashlib.sha256(os.fsencode(grid_file.resolve())).hexdigest()[:24]
    return Path(tempfile.gettempdir()) / f"htcgrid-wake-{digest}"


class Listener:
    """One waiter's socket; ``wait`` returns when woken, after ``step_seconds`` (to look
    anyway), or at the caller's timeout, whichever comes first."""

    def __init__(self, sock: socket.socket | None, step_seconds: float) -> None:
        self.sock = sock
        self.step_seconds = step_seconds

    def wait(self, timeout_seconds: float) -> None:
        seconds = max(0.0, min(timeout_seconds, self.step_seconds))
        if self.sock is None:
            time.sleep(seconds)
            return
        readable, _, _ = select.select([self.sock], [], [], seconds)
        if readable:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while True:
                    self.sock.recv(64)


class WakeBoard:
    """The wake-up sockets of one grid file: ``folder`` holds one socket per waiter.

    Without unix sockets (another OS) or with a folder path too long for them, waiters poll
    every ``poll_seconds`` instead, as they did before push wake-ups existed."""

    def __init__(
        self,
        folder: Path,
        poll_seconds: float,
        fallback_seconds: float = FALLBACK_SECONDS,
    ) -> None:
        self.folder = folder
        self.poll_seconds = poll_seconds
        self.fallback_seconds = max(poll_seconds, fallback_seconds)
        fits = len(os.fsencode(folder)) + NAME_BYTES <= MAX_SOCKET_PATH
        self.enabled = hasattr(socket, "AF_UNIX") and fits
        self._names = itertools.count()
        self._sender: socket.socket | None = None
        self._lock = threading.Lock()

    # ---- waiting --------------------------------------------------------------------

    @contextlib.contextmanager
    def listening(self, topic: str) -> Iterator[Listener]:
        """A listener for ``topic``, registered before the caller first looks at the store
        (so no commit after that look goes unnoticed) and removed when the block ends."""
        sock = self._bind(topic) if self.enabled else None
        if sock is None:
            yield Listener(None, self.poll_seconds)
            return
        path = sock.getsockname()
        try:
            yield Listener(sock, self.fallback_seconds)
        finally:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _bind(self, topic: str) -> socket.socket | None:
        name = f"{topic}-{os.getpid()}-{next(self._names)}"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.folder.mkdir(exist_ok=True)
            sock.bind(str(self.folder / name))
            sock.setblocking(False)
        except OSError:  # a read-only folder, say: this waiter polls
            sock.close()
            return None
        return sock

    # ---- waking ---------------------------------------------------------------------

    def notify(self, *topics: str) -> None:
        """Wake every waiter of ``topics``; never raises, never blocks."""
        if not self.enabled:
            return
        try:
            names = os.listdir(self.folder)
        except OSError:
            return
        prefixes = tuple(f"{t}-" for t in topics)
        targets = [n for n in names if n.startswith(prefixes)]
        if not targets:
            return
        sender = self._sender_socket()
        for name in targets:
            path = str(self.folder / name)
            try:
                sender.sendto(b"!", path)
            except ConnectionRefusedError:  # its process is gone and left its socket behind
                with contextlib.suppress(OSError):
                    os.unlink(path)
            except OSError:  # a full buffer means it is awake already; anything else: it polls
                pass

    def _sender_socket(self) -> socket.socket:
        with self._lock:
            if self._sender is None:
                self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sender.setblocking(False)
            return self._sender

    def close(self) -> None:
        with self._lock:
            if self._sender is not None:
                self._sender.close()
                self._sender = None
