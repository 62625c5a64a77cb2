"""A task graph's inputs: the outputs of the tasks a task depends on, given to its handler as
``context.inputs`` (and as ``event["inputs"]`` when the event is a JSON object without that
key), in the order its dependencies were named, each decoded as a client sees that result.

The agent (``AgentInputs``) reads each session's graph blob once (a few sessions kept) to learn
a claimed task's dependencies, and their outputs from the task store (recent ones kept, so a
fan-out reads its root once). A small output travels inline in the ``Task`` message; a big
one by its data-plane key, read by the worker (``read_inputs``). When a task's inline inputs
together pass ``PIPE_BUDGET_BYTES`` they go to the data plane as one bundle, so the pipe to
the worker only ever carries small messages (design §8).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from htcgrid.dataplane import DataPlane, keys
from htcgrid.graph import Graph
from htcgrid.graph_submit import load_graph
from htcgrid.models import ErrorInfo, Lease, TaskRecord, TaskState, json_loads
from htcgrid.store import TaskStore

GRAPHS_KEPT = 4  # sessions whose graph an agent keeps (a graph of 1,000,000 tasks: ~8 MB)
PLAIN_KEPT = 4096  # sessions an agent remembers have no graph
OUTPUTS_KEPT_BYTES = 32 * 1024 * 1024  # recent inline outputs an agent keeps for dependents
PIPE_BUDGET_BYTES = 256 * 1024  # inline inputs of one task beyond this go as a bundle
READ_AHEAD_FROM = 64  # dependencies in one session from which their outputs are read by page
READ_AHEAD_SHARE = 8  # … when they are at least an eighth of that session
READ_AHEAD_PAGE = 1000  # results with their outputs (64 KiB at most inline): bounded

Input = bytes | str  # an output's JSON, or the data-plane key it is at


class NotReady(Exception):
    """A dependency of a claimed task has not finished (a dependent retried before it)."""

    def __init__(self, dep: str, state: TaskState) -> None:
        super().__init__(f"dependency {dep} is {state.value}, not finished")

    def error(self) -> ErrorInfo:
        return ErrorInfo("DependencyFailed", str(self))


class AgentInputs:
    """What the agent adds to a claimed task of a graph: its dependencies' outputs."""

    def __init__(self, store: TaskStore, data: DataPlane, worker_reads_data: bool) -> None:
        self.store = store
        self.data = data
        self.worker_reads_data = worker_reads_data  # False: memory://, refs are read here
        self._graphs: OrderedDict[str, Graph] = OrderedDict()
        self._plain: OrderedDict[str, None] = OrderedDict()  # sessions without a graph
        self._outputs: OrderedDict[str, Input] = OrderedDict()
        self._kept_bytes = 0

    def for_lease(self, lease: Lease) -> tuple[tuple[Input, ...] | None, str | None]:
        """``(inputs, bundle key)`` for the ``Task`` message: (None, None) for a task without
        dependencies. Raises ``NotReady``, or a ``GridError`` of the store or data plane."""
        graph = self._graph(lease.session_id)
        if graph is None or lease.index >= graph.task_count or not graph.has_deps(lease.index):
            return None, None
        deps = graph.dep_ids(lease.session_id, lease.index)
        self._read_ahead(deps)
        found = tuple(self._output(dep) for dep in deps)
        inline = sum(len(x) for x in found if isinstance(x, bytes))
        if inline <= PIPE_BUDGET_BYTES or not self.worker_reads_data:
            return found, None
        key = keys.task_inputs(lease.session_id, lease.index, lease.attempt)
        self.data.put(key, bundle(found))
        return None, key

    def _graph(self, session_id: str) -> Graph | None:
        """The session's graph, read once while it is among the last few seen."""
        for kept in (self._graphs, self._plain):
            if session_id in kept:
                kept.move_to_end(session_id)
                return self._graphs.get(session_id)
        graph = load_graph(self.data, session_id)
        if graph is None:
            _keep_last(self._plain, session_id, None, PLAIN_KEPT)
        else:
            _keep_last(self._graphs, session_id, graph, GRAPHS_KEPT)
        return graph

    def _read_ahead(self, deps: list[str]) -> None:
        """A fan-in: many dependencies in one session are read from its results, a page of
        1,000 a query, rather than one task at a time (when they are a good part of it)."""
        wanted: dict[str, set[str]] = {}
        for dep in deps:
            if dep not in self._outputs:
                wanted.setdefault(dep.rpartition("_")[0], set()).add(dep)
        for session_id, ids in wanted.items():
            info = self.store.get_session(session_id) if len(ids) >= READ_AHEAD_FROM else None
            if info is None or info.spec.task_count > READ_AHEAD_SHARE * len(ids):
                continue
            cursor = 0
            while page := self.store.results(session_id, cursor, READ_AHEAD_PAGE):
                for record in page:
                    if record.task_id in ids and record.state is TaskState.FINISHED:
                        self._keep(record.task_id, self._input_of(record))
                cursor = page[-1].cursor or cursor + len(page)

    def _output(self, dep: str) -> Input:
        kept = self._outputs.get(dep)
        if kept is not None:
            self._outputs.move_to_end(dep)
            return kept
        record = self.store.get_task(dep)
        if record is None or record.state is not TaskState.FINISHED:
            state = TaskState.CANCELLED if record is None else record.state
            raise NotReady(dep, state)
        found = self._input_of(record)
        self._keep(dep, found)
        return found

    def _input_of(self, record: TaskRecord) -> Input:
        if record.output_ref is not None:
            ref = record.output_ref
            return ref if self.worker_reads_data else self.data.get(ref)
        return record.output if record.output is not None else b"null"

    def _keep(self, dep: str, found: Input) -> None:
        self._outputs[dep] = found
        self._kept_bytes += len(found)
        while self._kept_bytes > OUTPUTS_KEPT_BYTES and self._outputs:
            _, gone = self._outputs.popitem(last=False)
            self._kept_bytes -= len(gone)


def _keep_last(kept: OrderedDict[str, Any], key: str, value: Any, most: int) -> None:
    kept[key] = value
    while len(kept) > most:
        kept.popitem(last=False)


def bundle(found: tuple[Input, ...]) -> bytes:
    """Inputs as one JSON array: ``{"output": value}`` or ``{"ref": key}`` each."""
    parts = [
        b'{"output":' + x + b"}" if isinstance(x, bytes) else json.dumps({"ref": x}).encode()
        for x in found
    ]
    return b"[" + b",".join(parts) + b"]"


def read_inputs(
    inputs: tuple[Input, ...] | None, bundle_key: str | None, read: Callable[[str], bytes]
) -> list[Any]:
    """The worker's side: the inputs' values, big ones read from the data plane with
    ``read``."""
    if bundle_key is not None:
        entries = json_loads(read(bundle_key))
        return [json_loads(read(e["ref"])) if "ref" in e else e["output"] for e in entries]
    return [json_loads(read(x) if isinstance(x, str) else x) for x in inputs or ()]


_running = threading.local()


@contextmanager
def running_with(inputs: list[Any] | None) -> Iterator[None]:
    """While a worker runs a task: its inputs, for ``context.inputs`` (``current``)."""
    _running.inputs = inputs
    try:
        yield
    finally:
        _running.inputs = None


def current() -> list[Any]:
    """The inputs of the task this worker runs now (none: an empty list)."""
    return getattr(_running, "inputs", None) or []


def with_inputs(event: Any, inputs: list[Any]) -> Any:
    """The event a handler gets: a JSON object without an ``inputs`` key gains one holding
    the inputs; any other event is left exactly as the client sent it."""
    if isinstance(event, dict) and "inputs" not in event:
        return {**event, "inputs": inputs}
    return event
