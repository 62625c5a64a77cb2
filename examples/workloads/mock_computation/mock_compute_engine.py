"""HTC-Grid's mock compute engine: sleep ``worker_arguments[0]`` milliseconds, return that number.

``worker_arguments`` is ``[delay_ms, ram_gb, iterations_millions]``; only the delay is used.
"""

from __future__ import annotations

import time
from typing import Any


def lambda_handler(event: dict[str, Any], context: Any) -> int:
    print(f"Starting task processing... ({event['worker_arguments'][0]}) {event}!")
    delay_ms = int(event["worker_arguments"][0])
    time.sleep(delay_ms / 1000)
    return delay_ms
