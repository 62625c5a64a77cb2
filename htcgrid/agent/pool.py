"""Worker processes of one agent: a slot each, started, fed, killed and replaced here, and
the pool that keeps at most N of them, each running one function version's config."""

from __future__ import annotations

import contextlib
import itertools
import math
import multiprocessing
import os
import signal
import stat
from collections import deque
from collections.abc import Callable, Iterable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import BinaryIO

from htcgrid.agent.leftovers import kill_descendants
from htcgrid.agent.messages import Task, ToAgent, Withdraw
from htcgrid.agent.worker import WorkerConfig, main
from htcgrid.models import Lease

_CTX = multiprocessing.get_context("spawn")
OUTPUT_TRIES = 50  # deadline passes that look for a worker's capture file before giving up
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class WorkerSlot:
    """One worker process and the tasks sent to it, oldest (the running one) first."""

    def __init__(self, number: int, config: WorkerConfig) -> None:
        self.number = number
        self.config = config
        self.inflight: deque[Lease] = deque()
        self.withdrawing: set[str] = set()  # queued tasks we asked the worker to give back
        self.queued_bytes = 0  # inline payload bytes sent behind the running task
        self.head_started = 0.0  # monotonic time the running task started
        self.peak_rss_mb = 0  # the worker's highest sampled RSS since the running task started
        self.last_exit: tuple[int | None, int, str] = (None, 0, "")  # see ``restart``
        self._output: BinaryIO | None = None
        self._statm: tuple[int | None, int] | None = None  # (pid, open fd of its statm)
        self.ready = False
        self.tasks_run = 0
        self._sizes: dict[str, int] = {}
        self._outbox: list[Task] = []  # sent at the next flush, in one message
        self._start()

    def _start(self) -> None:
        parent, child = _CTX.Pipe()
        self.conn: Connection = parent
        self.process: BaseProcess = _CTX.Process(
            target=main,
            args=(child, self.config),
            name=f"htcgrid-worker-{self.number}",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.ready = False
        self._output_tries = 0

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def sentinel(self) -> int:
        return self.process.sentinel

    @property
    def idle(self) -> bool:
        return self.ready and not self.inflight

    def running_since_before(self, moment: float) -> bool:
        """Whether the task it runs now started before ``moment`` (False when idle)."""
        return bool(self.inflight) and self.head_started < moment

    def queued(self) -> list[Lease]:
        """Tasks sent behind the running one that can still be withdrawn."""
        return [le for le in list(self.inflight)[1:] if le.task_id not in self.withdrawing]

    def send(self, lease: Lease, task: Task, now: float) -> None:
        """Hand ``task`` to the worker at the next ``flush``: the tasks of one dispatch pass
        go in one message (one pickle and one write for a batch of short tasks, not one
        each). Never blocks for long: the worker drains its pipe on a thread, and callers keep
        what is queued behind a running task small."""
        if not self.inflight:
            self.head_started = now
            self.peak_rss_mb = 0
        else:
            self.queued_bytes += task.size_bytes
            self._sizes[lease.task_id] = task.size_bytes
        self.inflight.append(lease)
        self._outbox.append(task)

    def flush(self) -> None:
        """Send what ``send`` gathered; raises OSError if the worker died (``restart``)."""
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        self.conn.send(batch[0] if len(batch) == 1 else batch)

    def withdraw(self, lease: Lease) -> None:
        self.withdrawing.add(lease.task_id)
        self.conn.send(Withdraw(lease.task_id))

    def receive(self) -> list[ToAgent]:
        """Every message waiting on the pipe (empty if the worker died)."""
        messages = []
        with contextlib.suppress(EOFError, OSError):
            while self.conn.poll():
                messages.append(self.conn.recv())
        return messages

    def take(self, task_id: str, now: float) -> Lease | None:
        """Remove ``task_id`` (answered or withdrawn) from the tasks in flight."""
        for i, lease in enumerate(self.inflight):
            if lease.task_id == task_id:
                del self.inflight[i]
                break
        else:
            return None
        self.withdrawing.discard(task_id)
        self.queued_bytes -= self._sizes.pop(task_id, 0)
        if i == 0:
            self.head_started = now
            self.peak_rss_mb = 0
            if self.inflight:  # the next one starts now: it no longer counts as queued
                self.queued_bytes -= self._sizes.pop(self.inflight[0].task_id, 0)
        return lease

    def rss_mb(self) -> int:
        """The worker's resident memory now, in MiB (0 once it is gone). Its ``statm`` stays
        open while the process lives: the loop samples every busy worker on every turn, and
        a read at offset 0 of the open file costs a seventh of opening it each time."""
        pid = self.process.pid
        try:
            if self._statm is None or self._statm[0] != pid:
                self._close_statm()
                self._statm = (pid, os.open(f"/proc/{pid}/statm", os.O_RDONLY | os.O_CLOEXEC))
            pages = int(os.pread(self._statm[1], 128, 0).split()[1])
        except (OSError, ValueError, IndexError):
            self._close_statm()
            return 0
        return pages * PAGE_BYTES // (1024 * 1024)

    def _close_statm(self) -> None:
        if self._statm is not None:
            with contextlib.suppress(OSError):
                os.close(self._statm[1])
            self._statm = None

    def sample_rss(self) -> int:
        """The worker's RSS now, kept in ``peak_rss_mb`` if it is the highest yet; also looks
        for the worker's output file (``watch_output``)."""
        used = self.rss_mb()
        self.peak_rss_mb = max(self.peak_rss_mb, used)
        self.watch_output()
        return used

    def watch_output(self) -> None:
        """Open the worker's output file (see ``_output_tail``) if it is not open yet: when the
        worker says it is ready (a Python worker has its capture file by then), else on a
        deadline pass, up to ``OUTPUT_TRIES`` times."""
        if self._output is None and self._output_tries < OUTPUT_TRIES:
            self._output_tries += 1
            with contextlib.suppress(OSError):
                output = open(f"/proc/{self.process.pid}/fd/1", "rb")  # noqa: SIM115
                if stat.S_ISREG(os.fstat(output.fileno()).st_mode):
                    self._output = output  # the worker's capture file: readable after it dies
                else:
                    output.close()  # not captured yet (a pipe or terminal): next time

    def _output_tail(self, limit: int = 4096) -> str:
        """The last bytes of the worker's file descriptor 1, held open since the worker was
        ready: what the task printed (the worker's ``sys.stdout`` writes through), and what C
        code and subprocesses wrote."""
        output, self._output = self._output, None
        if output is None:
            return ""
        with output, contextlib.suppress(OSError, ValueError):
            size = output.seek(0, os.SEEK_END)
            output.seek(max(0, size - limit))
            return output.read(limit).decode(errors="replace")
        return ""

    def alive(self) -> bool:
        return self.process.is_alive()

    def exit_reason(self) -> str:
        self.process.join(timeout=1)
        code = self.process.exitcode
        if code is not None and code < 0:
            with contextlib.suppress(ValueError):
                return f"worker process killed by {signal.Signals(-code).name}"
        return f"worker process exited with code {code}"

    def restart(self) -> list[Lease]:
        """Kill the process (if alive) and start a fresh one; returns the tasks it held. How the
        old process ended is kept in ``last_exit`` (exit code, peak RSS in MiB, output tail)."""
        self.kill()
        self.last_exit = (self.process.exitcode, self.peak_rss_mb, self._output_tail())
        self.peak_rss_mb = 0
        held = list(self.inflight)
        self.inflight.clear()
        self.withdrawing.clear()
        self._sizes.clear()
        self._outbox.clear()
        self.queued_bytes = 0
        self._start()
        return held

    def kill(self) -> None:
        if self.process.pid and self.process.is_alive():
            kill_descendants(self.process.pid)
        if self.config.runtime == "provided" and self.process.pid:
            # the worker leads a group holding its bootstrap and what that started
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()
        self._close_statm()

    def stop(self, timeout: float = 1.0) -> None:
        """Ask an idle worker to exit, then make sure it has."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout)
        self.kill()
        if self._output is not None:
            self._output.close()
            self._output = None


class PoolSet:
    """At most ``limit`` worker slots, started, reused and retired by the config they run."""

    def __init__(self, limit: int) -> None:
        self.slots: list[WorkerSlot] = []
        self.limit = limit
        self._numbers = itertools.count()

    def start(self, config: WorkerConfig) -> None:
        """Fill every slot with a worker for ``config`` (the agent's own handler)."""
        while len(self.slots) < self.limit:
            self.slots.append(WorkerSlot(next(self._numbers), config))

    def resize(self, limit: int) -> None:
        """Change the number of slots allowed. Growing starts nothing (``balance`` does, for
        tasks waiting); shrinking retires idle slots now, busy ones never."""
        self.limit = limit
        for slot in [s for s in self.slots if not s.inflight][: max(0, len(self.slots) - limit)]:
            self.remove(slot)

    def best_slot(
        self, config: WorkerConfig, depth: int, budget_bytes: int, long_since: float
    ) -> WorkerSlot | None:
        """The least loaded ready slot of ``config`` that may take one more task: an idle one
        first; one with a running task only while fewer than ``depth`` are in flight, what
        waits behind the running task stays under ``budget_bytes``, and the running task
        started after ``long_since`` (nothing queues behind a task that has turned out long)."""
        best: WorkerSlot | None = None
        for slot in self.slots:
            if slot.config != config or not slot.ready:
                continue
            if slot.inflight and (
                len(slot.inflight) >= depth
                or slot.queued_bytes >= budget_bytes
                or slot.running_since_before(long_since)
            ):
                continue
            if best is None or len(slot.inflight) < len(best.inflight):
                best = slot
        return best

    def balance(self, demand: dict[WorkerConfig, int], depth: int) -> None:
        """Start slots for configs with waiting tasks, replacing idle slots nobody needs."""
        for config, waiting in demand.items():
            have = sum(1 for s in self.slots if s.config == config)
            for _ in range(min(math.ceil(waiting / depth), self.limit) - have):
                if len(self.slots) >= self.limit and not self._evict(demand, config):
                    break
                self.slots.append(WorkerSlot(next(self._numbers), config))

    def retire_idle(self, keep: Callable[[WorkerConfig], bool]) -> None:
        for slot in [s for s in self.slots if not s.inflight and not keep(s.config)]:
            self.remove(slot)

    def remove(self, slot: WorkerSlot) -> None:
        self.slots.remove(slot)
        slot.stop()

    def stop_all(self) -> None:
        for slot in self.slots:
            slot.stop()

    def _evict(self, demand: dict[WorkerConfig, int], wanted: WorkerConfig) -> bool:
        idle = [s for s in self.slots if not s.inflight]
        unwanted = [s for s in idle if s.config not in demand]
        counts = {c: sum(1 for s in self.slots if s.config == c) for c in demand}
        spare = [
            s
            for s in idle
            if s.ready and s.config != wanted and s.config in demand and counts[s.config] > 1
        ]
        for slot in itertools.chain(unwanted, spare):
            self.remove(slot)
            return True
        return False


def demand_of(configs: Iterable[WorkerConfig]) -> dict[WorkerConfig, int]:
    counts: dict[WorkerConfig, int] = {}
    for config in configs:
        counts[config] = counts.get(config, 0) + 1
    return counts


def wait_deadline(now: float, *deadlines: float | None) -> float:
    """Seconds from ``now`` to the earliest of ``deadlines`` (never negative)."""
    chosen = [d for d in deadlines if d is not None]
    return max(0.0, min(chosen) - now) if chosen else 0.5
