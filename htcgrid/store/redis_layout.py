"""How the Redis task store lays out its data: every key name under the store's prefix, and
the fields of a task's and a session's hash turned back into records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from htcgrid.models import (
    ErrorInfo,
    SessionInfo,
    SessionSpec,
    TaskRecord,
    TaskState,
    expired_error,
    split_task_id,
)


class Keys:
    """Every key and channel name of one store, all under its prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.seq = prefix + "seq"
        self.sessions = prefix + "sessions"
        self.wake_any = prefix + "wake"
        self.meta = prefix + "meta"

    def task(self, tid: str) -> str:
        return f"{self.prefix}task:{tid}"

    def session(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def owner(self, owner: str) -> str:
        return f"{self.prefix}owner:{owner}"

    def wake(self, function: str) -> str:
        return f"{self.prefix}wake:{function}"

    def progress(self, session_id: str) -> str:
        return f"{self.prefix}progress:{session_id}"


RECORD_FIELDS = (
    "st", "at", "pri", "ow", "out", "oref", "err", "xa", "log", "ds", "sub", "sta", "fin", "le",
    "ev", "ca",
)  # fmt: skip
PAYLOAD_FIELDS = ("pl", "pr")


def text_of(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def float_of(value: bytes | None) -> float | None:
    return None if value is None else float(value)


def task_record(
    tid: str, values: Sequence[bytes | None], max_attempts: int, payload: Sequence[Any] = ()
) -> TaskRecord:
    f = dict(zip(RECORD_FIELDS, values, strict=True))
    session_id, index = split_task_id(tid)
    attempt = int(f["at"] or 0)
    error = expired_error(attempt) if f["xa"] else ErrorInfo.from_json(text_of(f["err"]))
    pl, pr = payload or (None, None)
    return TaskRecord(
        task_id=tid,
        session_id=session_id,
        index=index,
        state=TaskState((f["st"] or b"").decode()),
        attempt=attempt,
        max_attempts=max_attempts,
        priority=int(f["pri"] or 0),
        owner=text_of(f["ow"]),
        output=f["out"],
        output_ref=text_of(f["oref"]),
        error=error,
        log=text_of(f["log"]) or "",
        cursor=None if f["ds"] is None else int(f["ds"]),
        submitted_at=float(f["sub"] or 0),
        started_at=float_of(f["sta"]),
        finished_at=float_of(f["fin"]),
        lease_expires_at=float_of(f["le"]),
        payload=pl,
        payload_ref=text_of(pr),
        evidence=text_of(f["ev"]) or "",
        cached=f["ca"] is not None,
    )


def session_info(session_id: str, h: Mapping[bytes, bytes]) -> SessionInfo:
    def get(name: str) -> str:
        return h[name.encode()].decode()

    spec = SessionSpec(
        id=session_id,
        task_count=int(get("tc")),
        function=get("fn"),
        priority=int(get("pri")),
        max_attempts=int(get("ma")),
        timeout_seconds=float(get("to")),
        retry_on_error=get("re") == "1",
        owner=get("owner"),
        content_hash=get("hash"),
        created_at=float(get("at")),
        retention_seconds=float(h[b"rs"]) if b"rs" in h else None,
        poison_after=int(h[b"pa"]) if b"pa" in h else None,
        cache_seconds=float(h[b"cs"]) if b"cs" in h else None,
    )
    retried = int(h.get(b"rt", b"0"))  # "done" counts completion numbers: retried ones too
    return SessionInfo(spec, int(get("done")) - retried, get("cx") == "1", retried=retried)
