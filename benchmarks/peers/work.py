"""The task bodies every system runs: importable by workers as ``peers.work``."""

from __future__ import annotations

import time
from typing import Any


def noop(arg: Any = None) -> None:
    return None


def spin(ms: float) -> float:
    """Burn ``ms`` milliseconds of this thread's CPU (not wall: a starved worker does the same work)."""
    end = time.thread_time() + ms / 1000
    while time.thread_time() < end:
        pass
    return ms


def nap(ms: float) -> float:
    time.sleep(ms / 1000)
    return ms


def echo(data: Any) -> Any:
    return data


FUNCTIONS = {"noop": noop, "spin": spin, "nap": nap, "echo": echo}


def handler(event: list[Any], context: Any) -> Any:
    """htcgrid's worker function: ``[name, argument]`` runs ``FUNCTIONS[name](argument)``."""
    name, arg = event
    return FUNCTIONS[name](arg)
