"""What an agent and its worker processes say to each other over their pipe.

Every message is small: a payload or a result above the inline limit travels through the
data plane, and the message carries only its key. The worker drains its pipe on a thread of
its own, so the agent's sends never wait for a task to finish.

    agent → worker   Task | list[Task] (one dispatch pass's) | Withdraw | None (exit when idle)
    worker → agent   Ready | InitError | Result | Withdrawn
"""

from __future__ import annotations

from dataclasses import dataclass

from htcgrid.models import ErrorInfo


@dataclass(frozen=True)
class Task:
    """Run this attempt. Exactly one of ``payload`` (the event's JSON) and ``payload_ref``
    (its data-plane key) is set; ``output_key`` is where a big result goes. A task of a graph
    has ``inputs`` (its dependencies' outputs: JSON, or a data-plane key each) or
    ``inputs_ref`` (their bundle's key), see ``htcgrid.agent.inputs``."""

    task_id: str
    session_id: str
    attempt: int
    timeout_seconds: float
    output_key: str
    payload: bytes | None = None
    payload_ref: str | None = None
    inputs: tuple[bytes | str, ...] | None = None
    inputs_ref: str | None = None

    @property
    def size_bytes(self) -> int:
        inputs = sum(len(x) for x in self.inputs or ())
        return inputs + (len(self.payload) if self.payload is not None else 0)

    @property
    def has_inputs(self) -> bool:
        return self.inputs is not None or self.inputs_ref is not None


@dataclass(frozen=True)
class Withdraw:
    """Give ``task_id`` back if it has not started yet."""

    task_id: str


@dataclass(frozen=True)
class Ready:
    """The handler is loaded; tasks may come."""


@dataclass(frozen=True)
class InitError:
    """The handler cannot be loaded; the worker exits."""

    error: ErrorInfo


@dataclass(frozen=True)
class Result:
    """How one attempt ended.

    ``ok``: ``output`` (JSON, inline) or ``output_ref`` (written to the data plane) is the
    handler's return value. Not ``ok``: ``error`` says why; ``infrastructure`` is True when
    the grid, not the handler, failed (the payload could not be read, say), so the attempt
    counts as an infrastructure failure and is retried.
    """

    task_id: str
    attempt: int
    ok: bool
    output: bytes | None = None
    output_ref: str | None = None
    error: ErrorInfo | None = None
    log: str = ""
    infrastructure: bool = False


@dataclass(frozen=True)
class Withdrawn:
    """The answer to ``Withdraw``: ``withdrawn`` False means the task had already started
    (its ``Result`` comes, or came, as usual)."""

    task_id: str
    withdrawn: bool


ToAgent = Ready | InitError | Result | Withdrawn
