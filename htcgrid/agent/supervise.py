"""An agent started by ``htcgrid up`` leaves with it, whatever it is doing.

A thread of its own watches the parent, so a loop blocked on a store or a worker cannot keep
the agent alive: once the parent is gone the agent is asked to abort (workers killed, held
tasks handed back), and one heartbeat later the agent's whole process group is killed, with
whatever its handlers started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from htcgrid.agent.agent import Agent

log = logging.getLogger("htcgrid.agent")


class ParentWatch:
    def __init__(self, agent: Agent, parent_pid: int, check_seconds: float = 0.2) -> None:
        self.agent = agent
        self.parent_pid = parent_pid
        self.check_seconds = check_seconds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="htcgrid-parent", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finished(self) -> None:
        """The agent's loop has returned."""
        self._done.set()

    def orphaned(self) -> bool:
        return os.getppid() != self.parent_pid

    def _watch(self) -> None:
        while not self.orphaned():
            if self._done.wait(self.check_seconds):
                return
        log.warning("the grid that started this agent (pid %d) is gone: stopping", self.parent_pid)
        self.agent.abort()
        if not self._done.wait(self.agent.settings.heartbeat_seconds):
            log.error("agent did not stop within a heartbeat: killing it")
        self._end()

    def _end(self) -> None:
        for slot in list(self.agent.slots):
            if slot.pid:
                with contextlib.suppress(OSError):
                    os.kill(slot.pid, signal.SIGKILL)
        if os.getpgrp() == os.getpid():  # we lead our group: take our handlers' children too
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(1)
