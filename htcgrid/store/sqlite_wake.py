"""Push wake-ups between the processes and threads that share one SQLite grid file.

SQLite tells nobody about a commit, so a waiter (an idle agent waiting for work, a server's
long poll waiting for a result) would have to poll. Instead, each waiter binds a unix datagram
socket in a folder beside the grid file for as long as it waits, named after what it waits for
(its topic); whoever commits a change of that kind sends one byte to every socket of the topic.
The waiter then looks at the store again. A lost or refused datagram costs latency, never
correctness: waiters also look every ``fallback_seconds``, and a stale socket (its process
died) is removed by the first sender it refuses.

Binding a socket (and removing it after) cost ~170 us of CPU a wait here, a round trip's
largest single item in the agent: between waits a socket is parked instead, renamed to a
name no topic matches (``idle-<pid>-<n>``), and renamed back for the next wait (~18 us for
both renames). Parked sockets of a process that died are removed by the next board of the
folder that binds one.
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
PARKED = "idle"  # the name of a socket between two waits starts so: no topic's prefix
MAX_PARKED = 32  # parked sockets a board keeps (as many waits at once are then cheap)


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
            _drain(self.sock)


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while True:
            sock.recv(64)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


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
        self._parked: list[tuple[socket.socket, str]] = []  # (socket, its parked path)
        self._owner = os.getpid()  # a forked child must not use its parent's sockets
        self._swept = False

    # ---- waiting --------------------------------------------------------------------

    @contextlib.contextmanager
    def listening(self, topic: str) -> Iterator[Listener]:
        """A listener for ``topic``, registered before the caller first looks at the store
        (so no commit after that look goes unnoticed) and parked when the block ends."""
        held = self._take(topic) if self.enabled else None
        if held is None:
            yield Listener(None, self.poll_seconds)
            return
        sock, path = held
        try:
            yield Listener(sock, self.fallback_seconds)
        finally:
            self._park(sock, path)

    def _path(self, prefix: str) -> str:
        return f"{self.folder}/{prefix}-{os.getpid()}-{next(self._names)}"

    def _take(self, topic: str) -> tuple[socket.socket, str] | None:
        """A socket named for ``topic``: a parked one renamed, else a new one."""
        path = self._path(topic)
        with self._lock:
            if self._owner != os.getpid():
                self._parked, self._owner = [], os.getpid()
            parked = self._parked.pop() if self._parked else None
        if parked is not None:
            sock, old = parked
            try:
                os.rename(old, path)
            except OSError:  # its file was removed under it: bind a new one
                sock.close()
            else:
                _drain(sock)  # what came while it was parked, or in its last wait
                return sock, path
        fresh = self._bind(path)
        return None if fresh is None else (fresh, path)

    def _park(self, sock: socket.socket, path: str) -> None:
        parked = self._path(PARKED)
        with self._lock:
            keep = len(self._parked) < MAX_PARKED and self._owner == os.getpid()
        try:
            if not keep:
                raise OSError
            os.rename(path, parked)
        except OSError:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            return
        with self._lock:
            self._parked.append((sock, parked))

    def _bind(self, path: str) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.folder.mkdir(exist_ok=True)
            sock.bind(path)
            sock.setblocking(False)
        except OSError:  # a read-only folder, say: this waiter polls
            sock.close()
            return None
        if not self._swept:
            self._swept = True
            self._sweep()
        return sock

    def _sweep(self) -> None:
        """Remove the parked sockets of processes that died (nobody sends to them, so no
        sender's refusal removes them)."""
        with contextlib.suppress(OSError):
            for name in os.listdir(self.folder):
                owner = name.split("-")[1:2]
                if (
                    name.startswith(f"{PARKED}-")
                    and owner[0].isdigit()
                    and not _alive(int(owner[0]))
                ):
                    with contextlib.suppress(OSError):
                        os.unlink(self.folder / name)

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
            parked, self._parked = self._parked, []
            ours = self._owner == os.getpid()
        for sock, path in parked:
            sock.close()
            if ours:
                with contextlib.suppress(OSError):
                    os.unlink(path)
