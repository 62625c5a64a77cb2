"""Riding out backend outages: retry with capped exponential backoff, log once per outage."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from htcgrid.errors import BackendUnavailable

T = TypeVar("T")


class Retrier:
    def __init__(
        self,
        log: logging.Logger,
        first_delay_seconds: float = 0.1,
        max_delay_seconds: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        give_up: Callable[[], bool] = lambda: False,
    ) -> None:
        self.log = log
        self.first_delay_seconds = first_delay_seconds
        self.max_delay_seconds = max_delay_seconds
        self.sleep = sleep
        self.give_up = give_up
        self.outages = 0

    def __call__(self, fn: Callable[[], T]) -> T:
        delay = self.first_delay_seconds
        down_since: float | None = None
        while True:
            try:
                result = fn()
            except BackendUnavailable as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    self.outages += 1
                    self.log.warning("backend unavailable, retrying until it is back: %s", exc)
                if self.give_up():
                    raise
                self.sleep(delay)
                delay = min(delay * 2, self.max_delay_seconds)
                continue
            if down_since is not None:
                self.log.warning("backend back after %.1f s", time.monotonic() - down_since)
            return result
