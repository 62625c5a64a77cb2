"""Pages of sessions filtered by owner, state and function: ``GET /v1/sessions`` and the
dashboard's Sessions page.

Built on ``TaskStore.list_sessions`` (newest first, by offset), so it works on every backend.
A filter is applied to the session records as they are read; the page's cursor is the offset
of the first session not yet read. One call reads at most ``scan_limit`` records, so a filter
that matches rarely answers a short (even empty) page with a cursor to go on from, never an
unbounded scan. Counts per state are read only for the sessions of the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from htcgrid.errors import ValidationError
from htcgrid.models import SessionInfo
from htcgrid.service import GridService, SessionStatus

STATES = ("active", "complete", "cancelled")  # not yet complete; complete, not cancelled; …
MAX_PAGE = 1000
SCAN_LIMIT = 5000
BATCH = 500


@dataclass(frozen=True)
class SessionFilter:
    owner: str | None = None
    state: str | None = None
    function: str | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise ValidationError(f"state must be one of {', '.join(STATES)}, not {self.state!r}")

    @property
    def empty(self) -> bool:
        return self.state is None and self.function is None

    def matches(self, info: SessionInfo) -> bool:
        if self.function is not None and info.spec.function != self.function:
            return False
        return self.state is None or session_state(info) == self.state


def session_state(info: SessionInfo) -> str:
    if info.cancelled:
        return "cancelled"
    return "complete" if info.complete else "active"


@dataclass(frozen=True)
class SessionPage:
    sessions: list[SessionStatus]
    cursor: int | None  # where the next page starts; None when there is no more


def session_page(
    service: GridService,
    caller_owner: str | None,
    wanted: SessionFilter,
    limit: int = 100,
    cursor: int = 0,
    scan_limit: int = SCAN_LIMIT,
) -> SessionPage:
    """Up to ``limit`` sessions from position ``cursor`` that match ``wanted``. A caller with
    an ``caller_owner`` (not an admin) sees only theirs, whatever owner ``wanted`` names."""
    if cursor < 0:
        raise ValidationError("cursor must not be negative")
    limit = max(1, min(limit, MAX_PAGE))
    owner = caller_owner if caller_owner is not None else wanted.owner
    if wanted.owner is not None and owner != wanted.owner:
        return SessionPage([], None)
    found: list[SessionInfo] = []
    position, scanned = cursor, 0
    while len(found) < limit and scanned < scan_limit:
        ask = limit - len(found) if wanted.empty else min(BATCH, scan_limit - scanned)
        batch = service.store.list_sessions(owner, ask, position)
        for info in batch:
            position += 1
            if wanted.matches(info):
                found.append(info)
                if len(found) == limit:
                    break
        scanned += len(batch)
        if len(batch) < ask and position == cursor + scanned:
            return SessionPage(_statuses(service, found), None)
    return SessionPage(_statuses(service, found), position)


def _statuses(service: GridService, found: list[SessionInfo]) -> list[SessionStatus]:
    return [SessionStatus(info, service.store.count_states(info.id)) for info in found]
