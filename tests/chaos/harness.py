"""What every chaos scenario shares: grid processes it can kill, and the one final check.

A scenario starts a server and agents as real processes (each tagged in its environment, so
the check finds every process the grid or its tasks left behind), submits sessions of
``chaos_handlers.counted``, injects its faults, and ends with ``check``: every task terminal,
every finished task recorded exactly once with the answer its input calls for, no task run
more often than its attempts allow, nothing left in the store or the data plane once the
sessions are deleted, no process left running. ``check`` returns the scenario's row of
docs/reliability.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_handlers import expected
from leftovers import leftover_objects, settle_queues
from procs import stop_all, until

from htcgrid.backends import open_grid
from htcgrid.models import TaskState, json_loads
from htcgrid.service import GridService
from htcgrid.store.aws_layout import VISIBILITY_SECONDS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
HANDLER = ["--path", str(HERE), "--handler", "chaos_handlers.counted"]
LONG = os.environ.get("HTCGRID_CHAOS", "short") == "long"
TAG_VARIABLE = "HTCGRID_CHAOS_TAG"


def scale(short: int, long: int) -> int:
    """A size for the short form (in ``make test``) or the long one (``make chaos``)."""
    return long if LONG else short


@dataclass
class Row:
    """One line of the reliability table."""

    scenario: str
    backend: str
    tasks: int = 0
    faults: int = 0
    lost: int = 0
    duplicate_results: int = 0
    duplicate_executions: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass
class Grid:
    """A server and agents on one backend URL, started and ended by the scenario."""

    url: str
    runs: Path
    timing: list[str]
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    server: subprocess.Popen[str] | None = None
    api: str = ""
    agents: list[subprocess.Popen[str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def _spawn(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        env = {**os.environ, TAG_VARIABLE: self.tag}
        return subprocess.Popen(
            [sys.executable, "-m", "htcgrid", *args], env=env, cwd=ROOT, text=True, **kw
        )

    def start_server(self) -> str:
        self.server = self._spawn(
            "server", "--url", self.url, "--port", "0", "--no-auth", *self.timing,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert self.server.stdout is not None
        self.api = self.server.stdout.readline().strip()
        assert self.api.startswith("http://"), f"htcgrid server printed {self.api!r}"
        return self.api

    def start_agent(self, *extra: str) -> subprocess.Popen[str]:
        log = self.runs.with_name(f"agent-{len(self.agents)}.log").open("w")
        agent = self._spawn(
            "agent", "--url", self.url, "--slots", "2", *HANDLER, *self.timing, *extra,
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        log.close()
        self.agents.append(agent)
        return agent

    def live_agents(self) -> list[subprocess.Popen[str]]:
        return [a for a in self.agents if a.poll() is None]

    def stop(self) -> None:
        """SIGTERM everything still running (SIGCONT first: a frozen agent cannot stop)."""
        stop_all([*self.agents, *([self.server] if self.server else [])])


@contextmanager
def grid(url: str, tmp_path: Path, timing: list[str]) -> Iterator[Grid]:
    g = Grid(url, tmp_path / "runs.log", timing)
    g.start_server()  # its TTL checker gives a dead agent's tasks to the others
    try:
        yield g
    finally:
        g.stop()


def events(runs: Path, count: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"i": i, "runs": str(runs), **extra} for i in range(count)]


def tagged_processes(tag: str) -> list[int]:
    """Every process whose environment carries the grid's tag: the grid's and its tasks'."""
    needle = f"{TAG_VARIABLE}={tag}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return [pid for pid in found if pid != os.getpid()]


def _commands(pids: list[int]) -> list[str]:
    found = []
    for pid in pids:
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def executions(runs: Path) -> dict[str, list[int]]:
    """Attempt numbers of every run of every task, as the handler wrote them."""
    found: dict[str, list[int]] = defaultdict(list)
    if runs.exists():
        for line in runs.read_text().splitlines():
            tid, attempt, _ = line.split()
            found[tid].append(int(attempt))
    return found


def check(g: Grid, session_ids: list[str], row: Row, max_attempts: int = 6) -> Row:
    """The end of every scenario (see the module's docstring); fills in and returns ``row``."""
    g.stop()
    store, data = open_grid(g.url)  # the data plane the grid recorded (an S3 bucket for AWS)
    runs = executions(g.runs)
    try:
        for sid in session_ids:
            info = store.get_session(sid)
            assert info is not None, f"session {sid} is lost"
            row.tasks += info.spec.task_count
            counts = store.count_states(sid)
            assert counts[TaskState.PENDING] == counts[TaskState.PROCESSING] == 0, counts
            recorded: Counter[str] = Counter()
            cursor = 0
            while page := store.results(sid, cursor, 1000):
                for record in page:
                    recorded[record.task_id] += 1
                    _check_record(record, data, runs, max_attempts)
                cursor = page[-1].cursor or cursor
            row.lost += info.spec.task_count - len(recorded)
            row.duplicate_results += sum(n - 1 for n in recorded.values())
            row.duplicate_executions += sum(
                len(runs.get(f"{sid}_{i}", [])) > 1 for i in range(info.spec.task_count)
            )
            GridService(store, data).delete(sid)
        if kind(g.url) == "aws":
            hidden = settle_queues(g.url, scale(0, VISIBILITY_SECONDS + 20))
            assert not (LONG and hidden), f"{hidden} SQS messages hidden past their timeout"
            if hidden:  # the short form does not wait out the visibility timeout
                row.notes.append(f"{hidden} SQS messages still hidden by killed agents' receives")
        left = leftover_objects(g.url)
        assert left == 0, f"{left} objects left in the store or data plane"
        try:
            until(lambda: not tagged_processes(g.tag), 20, "the grid's processes to end")
        except AssertionError:
            raise AssertionError(f"left running: {_commands(tagged_processes(g.tag))}") from None
    finally:
        store.close()
        data.close()
    row.seconds = round(time.monotonic() - g.started, 1)
    assert row.lost == 0 and row.duplicate_results == 0, row
    return row


def _check_record(record: Any, data: Any, runs: dict[str, list[int]], max_attempts: int) -> None:
    attempts = runs.get(record.task_id, [])
    assert len(attempts) == len(set(attempts)), f"{record.task_id} ran twice as one attempt"
    assert len(attempts) <= max_attempts and max(attempts, default=0) <= max_attempts
    if record.state is TaskState.FINISHED:
        output = record.output if record.output_ref is None else data.get(record.output_ref)
        assert json_loads(output) == expected(record.index), f"{record.task_id}: wrong result"
        assert record.attempt in attempts, f"{record.task_id}: result of a run never made"
    else:
        raise AssertionError(f"{record.task_id} ended {record.state.value}: {record.error}")


def kind(url: str) -> str:
    return url.split(":", 1)[0]


def done(url: str, session_id: str) -> int:
    """The session's done count, asked as a client would."""
    import htcgrid

    with htcgrid.connect(url) as client:
        return progress(client.session(session_id))


def progress(session: Any) -> int:
    """The done count of a session of an open client (a client per look is dear on AWS)."""
    return int(session.status()["done_count"])
