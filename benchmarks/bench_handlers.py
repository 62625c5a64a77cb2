"""The worker function of the benchmarks' timed workloads (W2, W3, W7): an event
``{"cpu_ms": x}`` spends x ms of the worker's own CPU time, ``{"sleep_ms": y}`` sleeps y ms;
other events are echoed, so one handler serves every workload."""

from __future__ import annotations

import time
from typing import Any


def work(event: Any, context: Any) -> Any:
    if not isinstance(event, dict):
        return event
    if "cpu_ms" in event:
        until = time.thread_time() + event["cpu_ms"] / 1000
        spins = 0
        while time.thread_time() < until:
            spins += 1
        return spins
    if "sleep_ms" in event:
        time.sleep(event["sleep_ms"] / 1000)
    return event
