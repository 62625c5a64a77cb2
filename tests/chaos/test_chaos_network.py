"""A network split: an agent in its own network namespace, joined to the test's own PostgreSQL
by a veth pair with the test's own addresses. The link is cut while the agent runs tasks; the
leases expire and the tasks finish on another agent; the link heals, and the cut-off agent's
results are refused and its work stopped. Needs root and ``ip netns``; skipped otherwise."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from backends import require_module
from harness import HANDLER, HERE, ROOT, TAG_VARIABLE, Grid, Row, check, done, events, grid, scale
from own_servers import OwnPostgres
from procs import descendants, until

import htcgrid

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::htcgrid.errors.NoAgentWarning"),
]
TIMING = ["--heartbeat-seconds", "0.5", "--lease-seconds", "2"]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


class Namespace:
    """A network namespace joined to this one by a veth pair: 10.231.N.1 here, .2 there."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.name, self.host_end, self.ns_end = f"hg{tag}", f"vh{tag}", f"vn{tag}"
        subnet = random.randrange(1, 250)
        self.host_address, self.ns_address = f"10.231.{subnet}.1", f"10.231.{subnet}.2"

    def create(self) -> None:
        ip("netns", "add", self.name)
        ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.ns_end)
        ip("link", "set", self.ns_end, "netns", self.name)
        ip("addr", "add", f"{self.host_address}/30", "dev", self.host_end)
        ip("link", "set", self.host_end, "up")
        ip("-n", self.name, "addr", "add", f"{self.ns_address}/30", "dev", self.ns_end)
        ip("-n", self.name, "link", "set", self.ns_end, "up")
        ip("-n", self.name, "link", "set", "lo", "up")

    def cut(self) -> None:
        ip("link", "set", self.host_end, "down")

    def heal(self) -> None:
        ip("link", "set", self.host_end, "up")

    def remove(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "delete", self.host_end], capture_output=True, timeout=30)


class ReachablePostgres(OwnPostgres):
    """The test's own PostgreSQL, listening on loopback and on the veth's host end."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {address}/24 trust\n")

    def start(self) -> None:
        listen = f"127.0.0.1,{self.address}"
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={listen}"
        log = str(self.folder / "log")
        self._as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        until(self.answers, 20, "postgres to start")


@pytest.fixture
def split() -> Iterator[tuple[Namespace, ReachablePostgres]]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and ip(8) for a network namespace")
    require_module("htcgrid.store.postgres")
    namespace = Namespace()
    try:
        namespace.create()
    except subprocess.CalledProcessError as exc:
        namespace.remove()
        pytest.skip(f"ip netns does not work here: {exc.stderr!r}")
    database = ReachablePostgres(namespace.host_address)
    try:
        database.start()
        yield namespace, database
    finally:
        database.remove()
        namespace.remove()


def start_agent_in(
    g: Grid, namespace: Namespace, database: ReachablePostgres
) -> subprocess.Popen[str]:
    """An agent in the namespace, with the URL every other process uses: its 127.0.0.1 is
    the namespace's own, forwarded across the veth link to the database."""
    env = {**os.environ, TAG_VARIABLE: g.tag}
    inside = ["ip", "netns", "exec", namespace.name, sys.executable]
    forward = subprocess.Popen(
        [*inside, str(HERE / "tcp_forward.py"), str(database.port), namespace.host_address,
         str(database.port)],
        env=env, text=True, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert forward.stdout is not None and forward.stdout.readline().strip() == "ready"
    log = g.runs.with_name(f"agent-{len(g.agents)}.log").open("w")
    agent = subprocess.Popen(
        [*inside, "-m", "htcgrid", "agent", "--url", database.url, "--slots", "2", *HANDLER,
         *TIMING],
        env=env, cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    log.close()
    g.agents += [agent, forward]  # the forwarder ends with the grid
    return agent


def runs_of(g: Grid, agent_pid: int) -> int:
    workers = {str(pid) for pid in descendants(agent_pid)}
    text = g.runs.read_text() if g.runs.exists() else ""
    return sum(line.rsplit(" ", 1)[-1] in workers for line in text.splitlines())


def test_an_agent_cut_off_from_its_backend(
    split: tuple[Namespace, ReachablePostgres], tmp_path: Path, report: Callable[[Row], None]
) -> None:
    namespace, database = split
    tasks = scale(40, 400)
    row = Row(
        "agent cut off from PostgreSQL (netns, link down past the lease, then up)", "postgresql"
    )
    with grid(database.url, tmp_path, TIMING) as g:
        cut_off = start_agent_in(g, namespace, database)
        with htcgrid.connect(database.url) as client:
            session = client.submit(events(g.runs, tasks, sleep_ms=500))
            until(lambda: runs_of(g, cut_off.pid) > 0, 60, "the namespaced agent to run tasks")
            g.start_agent()  # on this side of the link
            namespace.cut()
            row.faults += 1
            until(lambda: done(database.url, session.id) >= tasks, 300, "the other agent")
            namespace.heal()
            log = g.runs.with_name("agent-0.log")
            until(lambda: "refused" in log.read_text(), 60, "the zombie's work to be refused")
        report(check(g, [session.id], row))
