"""A task graph at submit: checked against the store (dependencies on other sessions), stored
once on the data plane, and marked open for the releaser (``htcgrid.graph_release``).

The blob lives under the session's own data-plane prefix (``keys.session_graph``), so deleting
or purging the session removes it; the marker is a store meta record ``graphs/<session_id>``,
removed by the releaser once the session is complete (or gone).
"""

from __future__ import annotations

import hashlib

from htcgrid.dataplane import DataPlane, keys
from htcgrid.errors import NotFound, ValidationError
from htcgrid.graph import Graph, decode
from htcgrid.store import TaskStore

MARKER_PREFIX = "graphs/"


def marker(session_id: str) -> str:
    return f"{MARKER_PREFIX}{session_id}"


def check_graph(store: TaskStore, graph: Graph | None, owner: str) -> Graph | None:
    """The one check of a session's graph, on every path: no cycle, and every task it depends
    on in another session is a task of an existing session of ``owner``."""
    if graph is not None:
        graph.check()
        check_outside(store, graph, owner)
    return graph


def check_outside(store: TaskStore, graph: Graph, owner: str) -> None:
    """Refuse a dependency on a task that is not in an existing session of ``owner``: another
    owner's session is as unknown as a missing one (it is not even said to exist)."""
    for session_id, named in graph.external_sessions().items():
        info = store.get_session(session_id)
        for number, index in named:
            if info is None or info.spec.owner != owner or index >= info.spec.task_count:
                first = graph.first_naming(number)
                raise ValidationError(f"task {first}: unknown dependency {graph.externals[number]}")


def with_graph(content_hash: str, graph: Graph | None) -> str:
    """A session's content hash with its graph in it (unchanged for a session without)."""
    if graph is None:
        return content_hash
    return hashlib.sha256(content_hash.encode() + graph.digest()).hexdigest()


def store_graph(
    store: TaskStore, data: DataPlane, session_id: str, graph: Graph, now: float
) -> None:
    """Put the graph where the releaser and the agents read it, and mark it open (the marker
    holds ``now``); before the session is created, so no task of it ends before a releaser
    can find it."""
    data.put(keys.session_graph(session_id), graph.encode())
    store.put_meta(marker(session_id), repr(now))


def load_graph(data: DataPlane, session_id: str) -> Graph | None:
    """The session's graph; None when it has none."""
    try:
        return decode(data.get(keys.session_graph(session_id)))
    except NotFound:
        return None
