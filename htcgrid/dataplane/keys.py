"""The one place data-plane keys are built: ``<session_id>/<task_id>/<name>``."""

from __future__ import annotations

from htcgrid.models import NAME_PATTERN, SESSION_ID_PATTERN, task_id


def _session(session_id: str) -> str:
    if not SESSION_ID_PATTERN.fullmatch(session_id):
        raise ValueError(f"not a session id: {session_id!r}")
    return session_id


def session_prefix(session_id: str) -> str:
    return f"sessions/{_session(session_id)}/"


def session_common(session_id: str) -> str:
    """The session's common data (``htcgrid.common_data``), removed with the session."""
    return f"{session_prefix(session_id)}common"


def session_common_owner(session_id: str) -> str:
    """Who put the session's common data: only they may submit the session that reads it."""
    return f"{session_prefix(session_id)}common.owner"


def task_input(session_id: str, index: int) -> str:
    return f"{session_prefix(session_id)}{task_id(session_id, index)}/input"


def task_output(session_id: str, index: int, attempt: int) -> str:
    """Keyed by attempt, so a zombie's late upload can never overwrite the recorded result."""
    return f"{session_prefix(session_id)}{task_id(session_id, index)}/output.{attempt}"


def function_package(name: str, version: int) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"not a function name: {name!r}")
    return f"functions/{name}/{version}.zip"


def check(key: str) -> str:
    """Refuse keys that could escape a folder-backed store."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"bad data-plane key: {key!r}")
    return key


def function_index(name: str) -> str:
    """A function's versions and which one is current (JSON)."""
    if not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"not a function name: {name!r}")
    return f"functions/{name}/index.json"


def function_catalog() -> str:
    """The names of every deployed function; ``_`` keeps it apart from any function name."""
    return "functions/_catalog.json"


def upload_prefix(session_id: str) -> str:
    """A session being uploaded in parts: its owner, its parts and its payloads' digests."""
    return f"uploads/{_session(session_id)}/"


def upload_owner(session_id: str) -> str:
    return f"{upload_prefix(session_id)}owner.json"


def upload_part(session_id: str, part: int) -> str:
    return f"{upload_prefix(session_id)}part.{part}"


def upload_digest(session_id: str, index: int) -> str:
    """The size and sha256 of a payload uploaded on its own (the payload is at ``task_input``)."""
    return f"{upload_prefix(session_id)}digest.{index}"


def upload_expiry(bucket: int, slot: int) -> str:
    """The ``slot``-th upload begun in time ``bucket``: the sweeper's list of what may expire."""
    return f"uploads/_expiry/{bucket}/{slot}"


def upload_expiry_bucket(bucket: int) -> str:
    return f"uploads/_expiry/{bucket}/"


def upload_swept() -> str:
    """The last expiry bucket the sweeper has emptied."""
    return "uploads/_expiry/swept"


def session_graph(session_id: str) -> str:
    """The session's task graph (``htcgrid.graph``), removed with the session."""
    return f"{session_prefix(session_id)}graph"


def task_inputs(session_id: str, index: int, attempt: int) -> str:
    """A task graph's task's inputs bundled for its worker (``htcgrid.agent.inputs``)."""
    return f"{session_prefix(session_id)}{task_id(session_id, index)}/inputs.{attempt}"
