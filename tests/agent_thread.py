"""Running an agent on a thread of the test, stopping it after, and raising what it raised."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from htcgrid.agent.agent import Agent


@contextmanager
def running(runner: Agent) -> Iterator[Agent]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "agent did not stop"
    if errors:
        raise errors[0]
