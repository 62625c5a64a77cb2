"""Waiting on PostgreSQL: one LISTEN connection per store wakes all of its waiting threads."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg import sql

T = TypeVar("T")
RECHECK_SECONDS = 0.5  # a waiter looks again this often even if no notification arrives
LISTENER_POLL_SECONDS = 0.1  # how soon the listener thread notices close()


def channel_names(schema: str) -> tuple[str, str]:
    """The (tasks, sessions) NOTIFY channels of a schema: stores in other schemas never hear
    them. Channel names are identifiers of at most 63 bytes, so long schemas are hashed."""
    stem = schema if len(schema) <= 48 else hashlib.sha256(schema.encode()).hexdigest()[:32]
    return f"{stem}.tasks", f"{stem}.sessions"


class Listener:
    """One background connection LISTENing on a store's two channels, for all its waiters.

    A topic is ``"tasks"`` or ``"session:<id>"``; each watched topic has a generation that
    every matching notification moves. A waiter reads the generation, checks the database,
    then sleeps until the generation moves, so a notification that lands between its check
    and its sleep still wakes it. Reconnecting moves every generation, since notifications
    sent while nobody listened are lost.
    """

    def __init__(
        self, conninfo: str, tasks_channel: str, sessions_channel: str, recheck_seconds: float
    ) -> None:
        self._conninfo = conninfo
        self._recheck_seconds = recheck_seconds
        self._tasks_channel = tasks_channel
        self._sessions_channel = sessions_channel
        self._cond = threading.Condition()
        self._generations: dict[str, int] = {}
        self._watchers: Counter[str] = Counter()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None

    def wait_until(
        self, topic: str, probe: Callable[[], T | None], timeout_seconds: float
    ) -> T | None:
        """Call ``probe`` until it returns something other than None or the timeout passes,
        again after every notification on ``topic`` and at least every ``recheck_seconds``."""
        self._start()
        deadline = time.monotonic() + timeout_seconds
        with self._watching(topic):
            while True:
                with self._cond:
                    seen = self._generations[topic]
                value = probe()
                remaining = deadline - time.monotonic()
                if value is not None or remaining <= 0:
                    return value
                self._sleep(topic, seen, min(remaining, self._recheck_seconds))

    def _sleep(self, topic: str, seen: int, timeout_seconds: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._generations[topic] != seen, timeout_seconds)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @contextmanager
    def _watching(self, topic: str) -> Iterator[None]:
        with self._cond:
            self._watchers[topic] += 1
            self._generations.setdefault(topic, 0)
        try:
            yield
        finally:
            with self._cond:
                self._watchers[topic] -= 1
                if not self._watchers[topic]:
                    del self._watchers[topic], self._generations[topic]

    def _start(self) -> None:
        """Start the listener thread once; wait (briefly) until it listens, so that the first
        check of a waiter is already covered by notifications."""
        with self._cond:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="htcgrid-pg-listener", daemon=True
                )
                self._thread.start()
        self._listening.wait(self._recheck_seconds)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except psycopg.Error:
                self._listening.clear()
                self._stop.wait(self._recheck_seconds)  # server away: waiters re-check meanwhile

    def _listen(self) -> None:
        with psycopg.connect(self._conninfo, autocommit=True) as conn:
            for channel in (self._tasks_channel, self._sessions_channel):
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self._listening.set()
            self._wake(None)
            while not self._stop.is_set():
                for note in conn.notifies(timeout=LISTENER_POLL_SECONDS):
                    tasks = note.channel == self._tasks_channel
                    self._wake("tasks" if tasks else f"session:{note.payload}")

    def _wake(self, topic: str | None) -> None:
        """Move ``topic``'s generation (every topic's for None) and wake the waiters."""
        with self._cond:
            for watched in [topic] if topic is not None else list(self._generations):
                if watched in self._generations:
                    self._generations[watched] += 1
            self._cond.notify_all()
