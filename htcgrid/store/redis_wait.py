"""Blocking on the Redis server: a wait subscribes to the channels a change is announced on,
then probes again, so no change between a probe and the block is missed. One subscriber
connection per thread (a PubSub is not thread-safe), kept for the next wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import redis
from redis.client import PubSub

from htcgrid.errors import GridError

T = TypeVar("T")


class Waiter:
    """The waits of one store, over its client."""

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._local = threading.local()
        self._pubsubs: set[PubSub] = set()
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            for pubsub in self._pubsubs:
                pubsub.close()
            self._pubsubs.clear()
        self._local = threading.local()

    def wait(
        self,
        channels: Iterable[str],
        probe: Callable[[], T],
        ready: Callable[[T], bool],
        timeout_seconds: float,
    ) -> T:
        """``probe()`` until ``ready`` says yes or the timeout passes; returns its last value.

        Subscribes before probing again, so a change between that probe and the block still
        wakes us; a message on any channel only means "probe again".
        """
        value = probe()  # the common case, already ready, needs no subscription
        if ready(value) or timeout_seconds <= 0:
            return value
        deadline = time.monotonic() + timeout_seconds
        pubsub = self._pubsub()
        subscribed = False
        try:
            subscribed = _subscribe(pubsub, sorted(set(channels)), deadline)
            value = probe()
            while not ready(value) and (remaining := deadline - time.monotonic()) > 0:
                pubsub.get_message(timeout=remaining)
                value = probe()
            return value
        except GridError:
            raise  # our own answer (NotFound): the connection is fine
        except BaseException:
            subscribed = False  # the connection may have died mid-reply: never reuse it
            raise
        finally:
            if subscribed:
                # The confirmation is left for the next wait on this connection to ignore.
                pubsub.unsubscribe()  # type: ignore[no-untyped-call]
            else:
                self._drop_pubsub(pubsub)  # a late confirmation must not fool the next wait

    def _pubsub(self) -> PubSub:
        """This thread's subscriber connection (a PubSub is not thread-safe)."""
        pubsub: PubSub | None = getattr(self._local, "pubsub", None)
        if pubsub is None:
            pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
            self._local.pubsub = pubsub
            with self._lock:
                self._pubsubs.add(pubsub)
        return pubsub

    def _drop_pubsub(self, pubsub: PubSub) -> None:
        self._local.pubsub = None
        with self._lock:
            self._pubsubs.discard(pubsub)
        pubsub.close()


def _subscribe(pubsub: PubSub, channels: list[str], deadline: float) -> bool:
    """Subscribe and wait for the server to confirm; False if the deadline came first."""
    pubsub.subscribe(*channels)
    unconfirmed = {c.encode() for c in channels}
    while unconfirmed:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        message = pubsub.get_message(timeout=remaining)
        if message is not None and message["type"] == "subscribe":
            unconfirmed.discard(message["channel"])
    return True
