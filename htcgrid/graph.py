"""Task graphs: the dependencies of a session's tasks, checked, and stored as one compact blob.

A task may name the tasks it depends on: by index within its own session, or by task id (its
own session's or an earlier session's of the same owner). ``GraphBuilder`` takes them a task
at a time (a session of a million tasks is read part by part), ``Graph.check`` refuses self
edges and cycles in O(V+E) without recursion, and ``encode``/``decode`` turn the graph into the
blob the grid keeps on the data plane under the session's own prefix (``keys.session_graph``):
the releaser (``htcgrid.graph_release``) and the agents (``htcgrid.agent.inputs``) read it.

In memory and in the blob a graph is two arrays (CSR): ``offsets[i]:offsets[i+1]`` slices
``targets``, the dependencies of task ``i`` in the order they were named; a target ``>= 0`` is
an index of the session, ``-(k+1)`` is ``externals[k]``, a task of another session.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from htcgrid.errors import ValidationError
from htcgrid.models import split_task_id, task_id

MAGIC = b"HGG1"
TYPECODE = "i"  # 32 bits: a session has at most a few million tasks
MAX_CYCLE_SHOWN = 8


def _ints() -> array[int]:
    return array(TYPECODE)


@dataclass
class Graph:
    """The dependencies of a session of ``task_count`` tasks (see the module's docstring)."""

    task_count: int
    offsets: array[int]
    targets: array[int]
    externals: list[str] = field(default_factory=list)
    _blob: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def edges(self) -> int:
        return len(self.targets)

    def deps(self, index: int) -> array[int]:
        """Task ``index``'s raw targets, in the order they were named."""
        return self.targets[self.offsets[index] : self.offsets[index + 1]]

    def has_deps(self, index: int) -> bool:
        return self.offsets[index + 1] > self.offsets[index]

    def dep_ids(self, session_id: str, index: int) -> list[str]:
        """The task ids task ``index`` depends on, in the order they were named."""
        return [self.target_id(session_id, t) for t in self.deps(index)]

    def target_id(self, session_id: str, target: int) -> str:
        return task_id(session_id, target) if target >= 0 else self.externals[-target - 1]

    def dependents(self) -> tuple[array[int], array[int]]:
        """The reverse of the local edges, as CSR: who depends on each task of the session."""
        counts = array(TYPECODE, bytes(4 * (self.task_count + 1)))
        for t in self.targets:
            if t >= 0:
                counts[t + 1] += 1
        for i in range(self.task_count):
            counts[i + 1] += counts[i]
        fill = array(TYPECODE, counts)
        out = array(TYPECODE, bytes(4 * counts[-1]))
        offsets, targets = self.offsets, self.targets
        for i in range(self.task_count):
            for e in range(offsets[i], offsets[i + 1]):
                t = targets[e]
                if t >= 0:
                    out[fill[t]] = i
                    fill[t] += 1
        return counts, out

    def check(self) -> None:
        """Refuse a cycle (Kahn's algorithm over the local edges; self edges are refused as
        the builder reads them), naming the tasks on one cycle."""
        waiting = array(TYPECODE, bytes(4 * self.task_count))
        for i in range(self.task_count):
            waiting[i] = sum(1 for t in self.deps(i) if t >= 0)
        rev_offsets, rev = self.dependents()
        ready = [i for i in range(self.task_count) if waiting[i] == 0]
        done = 0
        while ready:
            u = ready.pop()
            done += 1
            for e in range(rev_offsets[u], rev_offsets[u + 1]):
                v = rev[e]
                waiting[v] -= 1
                if waiting[v] == 0:
                    ready.append(v)
        if done < self.task_count:
            raise ValidationError(f"the dependencies form a cycle: {self._a_cycle(waiting)}")

    def _a_cycle(self, waiting: array[int]) -> str:
        """One cycle among the tasks left waiting: each of them waits for one that waits."""
        start = next(i for i in range(self.task_count) if waiting[i] > 0)
        seen: dict[int, int] = {}
        path: list[int] = []
        node = start
        while node not in seen:
            seen[node] = len(path)
            path.append(node)
            node = next(t for t in self.deps(node) if t >= 0 and waiting[t] > 0)
        cycle = [f"task {i}" for i in [*path[seen[node] :], node]]
        shown = cycle if len(cycle) <= MAX_CYCLE_SHOWN else [*cycle[:MAX_CYCLE_SHOWN], "…"]
        return " needs ".join(shown)

    def external_sessions(self) -> dict[str, list[tuple[int, int]]]:
        """Per other session, its tasks this graph names: ``(external number, index)``."""
        found: dict[str, list[tuple[int, int]]] = {}
        for k, tid in enumerate(self.externals):
            sid, index = split_task_id(tid)
            found.setdefault(sid, []).append((k, index))
        return found

    def first_naming(self, external: int) -> int:
        """The first task that names ``externals[external]`` (for an error message)."""
        target = -external - 1
        for i in range(self.task_count):
            if target in self.deps(i):
                return i
        return 0

    def encode(self) -> bytes:
        """The blob (kept: the digest and the data plane both need it)."""
        if self._blob is None:
            self._blob = self._encode()
        return self._blob

    def _encode(self) -> bytes:
        header = json.dumps({"n": self.task_count, "externals": self.externals}).encode()
        body = [MAGIC, len(header).to_bytes(4, "little"), header]
        for values in (self.offsets, self.targets):
            raw = array(TYPECODE, values)
            if sys.byteorder != "little":
                raw.byteswap()
            body.append(raw.tobytes())
        return zlib.compress(b"".join(body), 1)

    def digest(self) -> bytes:
        """What the graph adds to its session's content hash."""
        return hashlib.sha256(self.encode()).digest()


def decode(blob: bytes) -> Graph:
    raw = zlib.decompress(blob)
    if raw[:4] != MAGIC:
        raise ValueError("not a task graph")
    size = int.from_bytes(raw[4:8], "little")
    header = json.loads(raw[8 : 8 + size])
    n = int(header["n"])
    offsets, targets = _ints(), _ints()
    start = 8 + size
    offsets.frombytes(raw[start : start + 4 * (n + 1)])
    targets.frombytes(raw[start + 4 * (n + 1) :])
    if sys.byteorder != "little":
        offsets.byteswap()
        targets.byteswap()
    return Graph(n, offsets, targets, list(header["externals"]))


class GraphBuilder:
    """Reads each task's ``deps`` (a list of indexes and task ids, or None) as it comes, in
    any order, into arrays; ``build`` then lays them out by task. Every rule on one task's
    dependencies is checked here, with the task's index in the message."""

    def __init__(self, session_id: str, task_count: int) -> None:
        self.session_id = session_id
        self.task_count = task_count
        self.sources, self.targets = _ints(), _ints()
        self._externals: dict[str, int] = {}

    def add(self, index: int, deps: Any) -> None:
        if deps is None:
            return
        if not isinstance(deps, list | tuple):
            raise ValidationError(f"task {index}: deps must be a list of task indexes or task ids")
        for dep in deps:
            target = self._target(index, dep)
            self.sources.append(index)
            self.targets.append(target)

    def _target(self, index: int, dep: Any) -> int:
        if isinstance(dep, str):
            try:
                sid, number = split_task_id(dep)
            except ValueError:
                raise ValidationError(f"task {index}: unknown dependency {dep!r}") from None
            if sid != self.session_id:
                return -self._externals.setdefault(dep, len(self._externals)) - 1
            dep = number
        elif not isinstance(dep, int) or isinstance(dep, bool):
            raise ValidationError(
                f"task {index}: a dependency is a task index or a task id, not {dep!r}"
            )
        if not 0 <= dep < self.task_count:
            raise ValidationError(
                f"task {index}: dependency {dep} is not a task of this session "
                f"(indexes 0 to {self.task_count - 1})"
            )
        if dep == index:
            raise ValidationError(f"task {index} depends on itself")
        return int(dep)

    @property
    def empty(self) -> bool:
        return not self.sources

    def build(self) -> Graph:
        """The graph, its tasks' dependencies in the order each task named them."""
        n = self.task_count
        offsets = array(TYPECODE, bytes(4 * (n + 1)))
        for s in self.sources:
            offsets[s + 1] += 1
        for i in range(n):
            offsets[i + 1] += offsets[i]
        fill = array(TYPECODE, offsets)
        targets = array(TYPECODE, bytes(4 * len(self.targets)))
        for s, t in zip(self.sources, self.targets, strict=True):
            targets[fill[s]] = t
            fill[s] += 1
        self.sources, self.targets = _ints(), _ints()  # let them go
        return Graph(n, offsets, targets, list(self._externals))


def from_lists(session_id: str, deps: Sequence[Any] | None, task_count: int) -> Graph | None:
    """The graph of a one-request submit's ``deps`` (one entry per task); None without edges."""
    if deps is None:
        return None
    if not isinstance(deps, list | tuple) or len(deps) != task_count:
        raise ValidationError("deps needs one entry per task (a list, or null for none)")
    builder = GraphBuilder(session_id, task_count)
    for index, entry in enumerate(deps):
        builder.add(index, entry)
    return None if builder.empty else builder.build()
