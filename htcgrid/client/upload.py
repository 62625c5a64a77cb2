"""How a client sends a session of any size: one request when it is small, else in parts.

A session whose tasks fit ``SINGLE_REQUEST_BYTES`` of JSON and ``SINGLE_REQUEST_TASKS`` tasks is
one submit. A bigger one (or an iterable that turns out bigger) is uploaded: payloads over
``STAGE_ALONE_BYTES`` one request each, the task list in parts of about ``PART_BYTES`` or
``PART_TASKS`` tasks, whichever comes first (so each request of a session of millions of tiny
tasks is quick, well within the client's timeout), then a commit that makes the session
visible all at once (``htcgrid.uploads`` is the server's side). Tasks are encoded one at a
time from any iterable, so a generator of big payloads is never held whole.
"""

from __future__ import annotations

import collections
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from htcgrid import frames
from htcgrid.errors import ValidationError
from htcgrid.models import json_dumps, task_json

if TYPE_CHECKING:
    from htcgrid.client.session import Transport

SINGLE_REQUEST_BYTES = 4 * 1024 * 1024
PART_BYTES = 2 * 1024 * 1024
SINGLE_REQUEST_TASKS = 10_000  # more tasks than this are uploaded even when they are tiny:
PART_TASKS = 5_000  # a part of tiny tasks costs the server ~6 MiB to parse, and well under 1 s
PROGRESS_EVERY_SECONDS = 0.5  # how often an upload to a terminal says how far it got
PARTS_IN_FLIGHT = 2  # the server takes one part while the client makes the next
STAGE_ALONE_BYTES = 1024 * 1024  # bigger payloads go one request each; smaller ride in parts
ENTRY_OVERHEAD_BYTES = 40  # {"index":…,"priority":…,…} around each payload of a part


@dataclass(frozen=True)
class PartTask:
    """One task of a part: its payload inline, or ``payload`` None when uploaded on its own."""

    index: int
    priority: int | None
    value: Any
    payload: bytes | None
    deps: list[int | str] | None = None


def send_session(
    transport: Transport,
    tasks: Iterable[Any],
    priorities: Iterable[int] | None,
    options: dict[str, Any],
    session_id: str | None,
    deps: Iterable[Any] | None = None,
    wait: float = 0.0,
) -> dict[str, Any]:
    """Submit ``tasks`` with ``options`` (priority, function, …) and each task's ``deps``
    (None: no task has any); returns the submit answer. A session sent in one request asks
    the grid to ``wait`` that long for its first page of results (the answer's
    ``results``); an upload in parts does not.

    The session id is chosen here when not given, so that every request may be retried.
    """
    if isinstance(tasks, str | bytes | dict) or not isinstance(tasks, Iterable):
        raise ValidationError("tasks must be a list (or any iterable) of JSON values, one per task")
    session_id = session_id or str(uuid.uuid4())
    if isinstance(tasks, list | tuple) and len(tasks) <= SINGLE_REQUEST_TASKS and _small(tasks):
        given = None if priorities is None else list(priorities)
        body = {**options, "session_id": session_id, "tasks": tasks, "task_priorities": given}
        if deps is not None:
            body["deps"] = _json_deps(deps)
        return transport.submit(body, wait)
    encoded = _encode(tasks, priorities, deps)
    head: collections.deque[PartTask] = collections.deque()
    size = 0
    for head_task in encoded:
        head.append(head_task)
        size += len(head_task.payload or b"")
        if size > SINGLE_REQUEST_BYTES or len(head) > SINGLE_REQUEST_TASKS:
            del head_task  # each task is let go of once sent
            return _upload(transport, session_id, _drain(head, encoded), options)
    body = {
        **options,
        "session_id": session_id,
        "tasks": [t.value for t in head],
        "task_priorities": None if priorities is None else [t.priority for t in head],
    }
    if deps is not None:
        body["deps"] = [t.deps for t in head]
    return transport.submit(body, wait)


def _json_deps(deps: Iterable[Any]) -> Any:
    """The ``deps`` of a submit as JSON takes them: a list per task (tuples too), else as given
    for the grid to refuse with its words."""
    if isinstance(deps, str | bytes | dict) or not isinstance(deps, Iterable):
        return deps
    return [list(d) if isinstance(d, tuple) else d for d in deps]


def _small(tasks: list[Any] | tuple[Any, ...]) -> bool:
    """Whether a list surely fits one request: encoded in slices that grow while the sizes
    seen so far leave room, so neither a long list of small tasks nor a big one costs much."""
    size = index = 0
    step = 1
    while index < len(tasks):
        try:
            size += len(json_dumps(list(tasks[index : index + step])))
        except (TypeError, ValueError):
            return False  # _encode then names the task at fault
        if size > SINGLE_REQUEST_BYTES:
            return False
        index += step
        room = (SINGLE_REQUEST_BYTES - size) * index // max(size, 1)
        step = max(1, min(step * 4, room))
    return True


def _drain(queued: collections.deque[PartTask], rest: Iterator[PartTask]) -> Iterator[PartTask]:
    while queued:
        yield queued.popleft()
    yield from rest


def _encode(
    tasks: Iterable[Any], priorities: Iterable[int] | None, deps: Iterable[Any] | None = None
) -> Iterator[PartTask]:
    given = iter(priorities) if priorities is not None else None
    edges = iter(_json_deps(deps)) if deps is not None else None
    for index, value in enumerate(tasks):
        priority = next(given, None) if given is not None else None
        if given is not None and priority is None:
            raise ValidationError("task_priorities needs one entry per task")
        payload = task_json(index, value)
        yield PartTask(index, priority, value, payload, next(edges, None) if edges else None)
        del value, payload  # not held while the next task is made and encoded
    if given is not None and next(given, None) is not None:
        raise ValidationError("task_priorities needs one entry per task")


def _upload(
    transport: Transport, session_id: str, tasks: Iterator[PartTask], options: dict[str, Any]
) -> dict[str, Any]:
    part: list[PartTask] = []
    size = parts = count = 0
    progress = Progress(sys.stderr)
    with PartSender(transport, session_id) as sender:
        for task in tasks:
            count += 1
            if task.payload is not None and len(task.payload) > STAGE_ALONE_BYTES:
                transport.stage_payload(session_id, task.index, task.payload)
                task = PartTask(task.index, task.priority, None, None, task.deps)
            elif task.payload is not None:  # a part carries the JSON only, at its exact size:
                # an encoder's output may keep spare capacity (orjson's does), which a part
                # holding many payloads would multiply
                exact = bytes(memoryview(task.payload))
                task = PartTask(task.index, task.priority, None, exact, task.deps)
            part.append(task)
            size += len(task.payload or b"") + ENTRY_OVERHEAD_BYTES
            if size >= PART_BYTES or len(part) >= PART_TASKS:
                sender.send(parts, part)
                parts, part, size = parts + 1, [], 0
                progress.show(count)
        if part:
            sender.send(parts, part)
            parts += 1
    progress.show(count, final=True)
    return transport.commit(session_id, {**options, "task_count": count, "parts": parts})


class Progress:
    """How far an upload got, on one line rewritten in place, when ``stream`` is a terminal
    (never in a pipe or a log file)."""

    def __init__(self, stream: Any, clock: Any = time.monotonic) -> None:
        isatty = getattr(stream, "isatty", None)
        self.stream = stream if isatty is not None and isatty() else None
        self.clock = clock
        self.next_at = clock() + PROGRESS_EVERY_SECONDS
        self.shown = False

    def show(self, count: int, final: bool = False) -> None:
        if self.stream is None or not ((final and self.shown) or self.clock() >= self.next_at):
            return
        self.next_at = self.clock() + PROGRESS_EVERY_SECONDS
        self.shown = True
        end = ", committing\n" if final else ""
        self.stream.write(f"\rhtcgrid: uploaded {count:,} tasks{end}")
        self.stream.flush()


class PartSender:
    """Sends parts while the next one is made: at most ``PARTS_IN_FLIGHT`` at a time, so the
    memory they hold stays bounded; the first failure is raised (on ``send`` or on exit)."""

    def __init__(self, transport: Transport, session_id: str) -> None:
        self.transport = transport
        self.session_id = session_id
        self.pool = ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="htcgrid-upload")
        self.in_flight: collections.deque[Future[dict[str, Any]]] = collections.deque()

    def send(self, number: int, part: list[PartTask]) -> None:
        while len(self.in_flight) >= PARTS_IN_FLIGHT:
            self.in_flight.popleft().result()
        call = self.transport.stage_part
        self.in_flight.append(self.pool.submit(call, self.session_id, number, part))

    def __enter__(self) -> PartSender:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            while self.in_flight:
                self.in_flight.popleft().result()
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)


def part_frames(tasks: list[PartTask]) -> bytes:
    """A part as the API takes it framed (``htcgrid.frames``): the task list, then the
    payloads already encoded, which the server stores without parsing them into objects."""
    entries: list[dict[str, Any]] = []
    for t in tasks:
        entry: dict[str, Any] = {"index": t.index}
        if t.priority is not None:
            entry["priority"] = t.priority
        if t.deps is not None:
            entry["deps"] = t.deps
        if t.payload is None:
            entry["staged"] = True
        else:
            entry["payload_bytes"] = len(t.payload)
        entries.append(entry)
    header = json_dumps({"tasks": entries})
    return frames.join(header, [t.payload for t in tasks if t.payload is not None])


def part_entries(tasks: list[PartTask]) -> list[dict[str, Any]]:
    """A part as ``SessionUploads.stage_part`` takes it, in process: each payload as its
    JSON (``payload_json``), as a framed part gives it."""
    entries: list[dict[str, Any]] = []
    for t in tasks:
        entry: dict[str, Any] = {"index": t.index, "priority": t.priority}
        if t.deps is not None:
            entry["deps"] = t.deps
        entry.update({"staged": True} if t.payload is None else {"payload_json": t.payload})
        entries.append(entry)
    return entries
