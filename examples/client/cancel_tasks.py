"""HTC-Grid's cancellation example on htcgrid: start work, cancel its session, show the answer.

    python cancel_tasks.py --test_cancel_many_small_tasks 1
    python cancel_tasks.py --test_cancel_one_long_task 1

The grid runs HTC-Grid's mock engine (``htcgrid.handlers.mock_compute`` or
``examples/workloads/mock_computation``). The agent config JSON is read from
``$AGENT_CONFIG_FILE`` and the credentials from ``$USERNAME`` / ``$PASSWORD``. As in HTC-Grid
the flags take a value (any non-empty one means yes), and each answer is printed as it comes:
here as one line of JSON.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from htcgrid.connector import AWSConnector

DEFAULT_AGENT_CONFIG_FILE = "/etc/agent/Agent_config.tfvars.json"


def connect() -> AWSConnector:
    config_file = os.environ.get("AGENT_CONFIG_FILE", DEFAULT_AGENT_CONFIG_FILE)
    config = json.loads(Path(config_file).read_text())
    connector = AWSConnector()
    connector.init(
        config,
        username=os.environ.get("USERNAME", ""),
        password=os.environ.get("PASSWORD", ""),
    )
    connector.authenticate()
    return connector


def show(title: str, value: Any) -> None:
    print(f"{title}: {json.dumps(value, sort_keys=True)}", flush=True)


def cancel_many_small_tasks(connector: AWSConnector, wait_sec: float) -> None:
    """Ten one-second tasks; cancel the session while some still run and most still wait."""
    submission = connector.send([{"worker_arguments": ["1000", "1", "1"]}] * 10)
    show("Submitted", submission)
    time.sleep(wait_sec)
    show("Cancelled", connector.cancel_sessions([submission["session_id"]]))
    show("Results", connector.get_results(submission, timeout_sec=10))


def cancel_one_long_task(connector: AWSConnector, wait_sec: float) -> None:
    """One two-minute task; cancel it once an agent is running it."""
    submission = connector.send([{"worker_arguments": ["120000", "1", "1"]}])
    show("Submitted", submission)
    time.sleep(wait_sec)
    show("Cancelled", connector.cancel_sessions([submission["session_id"]]))


def get_construction_arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Sample client, demonstrates the cancellation of sessions. For accurate "
        "tests make sure that only 1 worker is running and the task queue is empty.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--test_cancel_many_small_tasks",
        type=bool,
        default=False,
        help="Many small tasks are launched, then the entire session is cancelled.",
    )
    parser.add_argument(
        "--test_cancel_one_long_task",
        type=bool,
        default=False,
        help="One long-running task is cancelled during its execution.",
    )
    parser.add_argument(
        "--cancel_after_sec",
        type=float,
        default=None,
        help="Seconds between sending and cancelling (HTC-Grid's: 2 for the small tasks, "
        "30 for the long one).",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    flags = get_construction_arguments().parse_args(argv)
    if not (flags.test_cancel_many_small_tasks or flags.test_cancel_one_long_task):
        get_construction_arguments().print_help()
        return 2
    connector = connect()
    if flags.test_cancel_many_small_tasks:
        wait = 2.0 if flags.cancel_after_sec is None else flags.cancel_after_sec
        cancel_many_small_tasks(connector, wait)
    if flags.test_cancel_one_long_task:
        wait = 30.0 if flags.cancel_after_sec is None else flags.cancel_after_sec
        cancel_one_long_task(connector, wait)
    connector.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
