"""Pages of sessions filtered by owner, state and function: ``GET /v1/sessions`` and the
dashboard's Sessions page.

Built on ``TaskStore.list_sessions`` (newest first, by offset), so it works on every backend.
A filter is applied to the session records as they are read; the page's cursor is the offset
of the first session not yet read. One call reads at most ``scan_limit`` records, so a filter
that matches rarely answers a short (even empty) page with a cursor to go on from, never an
unbounded scan. Counts per state are read only for the sessions of the page.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

from htcgrid.errors import ValidationError
from htcgrid.models import MAX_CURSOR, SessionInfo, TaskState
from htcgrid.service import GridService, SessionStatus
from htcgrid.store.base import TaskStore

STATES = ("active", "complete", "cancelled")  # not yet complete; complete, not cancelled; …
MAX_PAGE = 1000
SCAN_LIMIT = 5000
BATCH = 500
KEPT = 10_000  # counts of complete sessions remembered per store


class EndedCounts:
    """The counts per state of complete sessions, which change only when ``retry`` sends
    tasks back (and so moves ``done_count``): read once, not on every page that shows them."""

    def __init__(self, store: TaskStore, kept: int = KEPT) -> None:
        self.store = store
        self.kept = kept
        self._lock = threading.Lock()
        self._found: OrderedDict[tuple[str, int, int], dict[TaskState, int]] = OrderedDict()

    def __call__(self, info: SessionInfo) -> dict[TaskState, int]:
        if not info.complete:
            return self.store.count_states(info.id)
        key = (info.id, info.done_count, info.retried)
        with self._lock:
            found = self._found.get(key)
        if found is None:
            found = self.store.count_states(info.id)
            with self._lock:
                self._found[key] = found
                while len(self._found) > self.kept:
                    self._found.popitem(last=False)
        return found


_counts: weakref.WeakKeyDictionary[TaskStore, EndedCounts] = weakref.WeakKeyDictionary()


def counts_of(store: TaskStore) -> EndedCounts:
    """The one ``EndedCounts`` of ``store`` in this process."""
    found = _counts.get(store)
    if found is None:
        found = _counts.setdefault(store, EndedCounts(store))
    return found


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
    if not 0 <= cursor <= MAX_CURSOR:
        raise ValidationError(f"cursor must be between 0 and {MAX_CURSOR}")
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
    counts = counts_of(service.store)
    return [SessionStatus(info, counts(info)) for info in found]
