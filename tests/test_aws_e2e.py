"""A grid on the AWS backend end to end: `htcgrid server` and two `htcgrid agent` processes that
share only `aws://` (DynamoDB + SQS) and `s3://` URLs, all served by moto on loopback.

One session completes although an agent is SIGKILLed mid-run (its leases expire and the TTL
checker in the server hands its tasks to the other agent), big payloads travel through S3, and
a running session is cancelled: its tasks end `cancelled` and the agents are free again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from backends import AWS_REGION, aws_grid, moto_endpoint
from procs import stop_all, until

import htcgrid
from htcgrid.dataplane import keys, open_data_plane
from htcgrid.models import TaskState, json_dumps
from htcgrid.store import TaskStore, open_store

pytestmark = pytest.mark.slow
TIMING = ["--heartbeat-seconds", "0.5", "--lease-seconds", "3"]
TASKS = 60  # moto answers some 10 requests per task: enough to see a killed agent retried
TASK_MS = "200"  # long enough that both slots of an agent are nearly always busy


@pytest.fixture
def urls() -> Iterator[tuple[str, str]]:
    tag = f"e{uuid.uuid4().hex[:8]}"
    bucket = f"htcgrid-e2e-{tag}"
    with aws_grid(tag, bucket=bucket) as store_url:
        data_url = f"s3://{bucket}/grid?region={AWS_REGION}&endpoint_url={moto_endpoint()}"
        yield store_url, data_url


def held_by(store: TaskStore, session_id: str, agent_id: str) -> list[str]:
    """The tasks of the session that ``agent_id`` is running now, read from the state table."""
    tasks = [store.get_task(f"{session_id}_{i}") for i in range(TASKS)]
    return [
        t.task_id
        for t in tasks
        if t is not None and t.state is TaskState.PROCESSING and t.owner == agent_id
    ]


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "htcgrid", *args], stdout=subprocess.PIPE, text=True
    )


@pytest.mark.timeout(180)
def test_server_and_two_agents_on_aws(urls: tuple[str, str]) -> None:
    store_url, data_url = urls
    where = ["--url", store_url, "--data-url", data_url]
    server = spawn("server", *where, "--port", "0", *TIMING)
    agents = [
        spawn(
            "agent",
            *where,
            "--slots",
            "2",
            "--agent-id",
            f"agent-{i}",
            "--handler",
            "htcgrid.handlers.mock_compute",
            *TIMING,
        )
        for i in range(2)
    ]
    try:
        assert server.stdout is not None and server.stdout.readline().startswith("http://")
        with htcgrid.connect(store_url, data_url=data_url) as grid:
            big = {"worker_arguments": [TASK_MS], "blob": "z" * 100_000}
            session = grid.submit([big] + [{"worker_arguments": [TASK_MS]}] * (TASKS - 1))
            until(lambda: session.status()["done_count"] >= TASKS // 5, 60, "a fifth done")
            store = open_store(store_url, create=False)
            until(lambda: held_by(store, session.id, "agent-0"), 30, "agent-0 running a task")
            agents[0].send_signal(signal.SIGKILL)
            agents[0].wait(timeout=10)
            orphans = held_by(store, session.id, "agent-0")  # before their leases expire
            store.close()
            results = session.results(timeout=90)
            status = session.status()
            data = open_data_plane(data_url)
            assert data.get(keys.task_input(session.id, 0)) == json_dumps(big)
            data.close()

            long = grid.submit([{"worker_arguments": ["600000"]}] * 4)
            until(lambda: long.status()["counts"]["processing"] >= 2, 60, "long tasks running")
            long.cancel()
            until(lambda: long.status()["counts"]["cancelled"] == 4, 30, "all cancelled")
            after = grid.submit([{"worker_arguments": ["1"]}] * 4)
            freed = after.results(timeout=60)
    finally:
        stop_all([*agents, server])
    assert len(results) == TASKS and len({r.task_id for r in results}) == TASKS
    assert all(r.state is TaskState.FINISHED for r in results)
    assert [r.output for r in results] == [int(TASK_MS)] * TASKS
    assert orphans, "agent-0 was killed between tasks"
    assert {r.task_id for r in results if r.attempts == 2} >= set(orphans)
    assert status["done_count"] == TASKS and status["counts"]["finished"] == TASKS
    # the cancelled tasks' slots were freed: new work ran on the surviving agent at once
    assert [r.state for r in freed] == [TaskState.FINISHED] * 4
