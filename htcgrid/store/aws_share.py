"""Fair share between owners on AWS (``htcgrid.store.share``): claim-time choice among the
messages a claim receives, since SQS has no per-owner view of a queue.

The queues are HTC-Grid's, one per priority, shared by every owner. A claimer keeps, at most a
second old (plus its own claims and completions since):

- the **census**: each owner's processing tasks, read from ``gsi_ttl_index`` (one query per
  state partition, task ids only; an owner is its session's, looked up once per session);
- the **active owners**: owners of the newest open sessions not yet complete (one listing of
  the sessions table a second, the only cost a grid of one owner pays), and of every session
  this process created.

With at most one active owner and no quota, a claim is the plain claim. Otherwise it receives
a **window** of messages, highest queue first, until it has seen every active owner or
``MAX_SCAN`` messages per queue, splits its batch among the owners in the window by the rule,
claims each owner's first messages (its highest priority first) and hands the rest back at
once. Limits, by design of SQS: an owner whose messages lie deeper in a queue than the window
waits (on real SQS a receive samples the queue, so it surfaces in proportion to its messages);
FIFO within a priority stays SQS's best effort; running counts of other processes are up to a
second old, so claimers racing each other may overshoot a share or a quota by what they claim
in that second.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from htcgrid.models import split_task_id
from htcgrid.store.aws_grid import Grid
from htcgrid.store.aws_items import S, text
from htcgrid.store.aws_layout import MAX_STATE_PARTITIONS
from htcgrid.store.aws_meta import Meta
from htcgrid.store.aws_queue import SQS_BATCH, Message, PriorityQueues
from htcgrid.store.aws_sessions import Sessions
from htcgrid.store.share import REFRESH_SECONDS, Share, ShareBook, fair_claim, one_by_one

NEWEST_SESSIONS = 200  # open sessions looked at for the owners with work
MAX_SCAN = 100  # messages looked at per queue in one claim's window
MAX_REMEMBERED = 100_000  # sessions whose owner a claimer keeps


class Census:
    """Running tasks per owner and the owners with work, as one claimer sees them."""

    def __init__(self, grid: Grid, sessions: Sessions, clock: Callable[[], float] = time.monotonic):
        self.grid = grid
        self.sessions = sessions
        self.clock = clock
        self.book = ShareBook(lambda: grid_meta(grid))
        self._lock = threading.Lock()
        self._owners: dict[str, str] = {}  # session id -> owner (never changes)
        self._running: Counter[str] = Counter()
        self._active: set[str] = set()
        self._created: set[str] = set()  # owners of sessions made here since the last read
        self._read_at = -float("inf")

    def plain(self, active: set[str]) -> bool:
        """Whether a claim needs no rule: at most one owner with work, without a quota."""
        return len(active) <= 1 and self.book.plain(active or {""}, self.clock())

    def at_quota(self) -> set[str]:
        running, _ = self.view()
        quotas = {o: s.max_running for o, s in self.shares().items() if s.max_running is not None}
        return {o for o, quota in quotas.items() if running.get(o, 0) >= quota}

    def shares(self) -> dict[str, Share]:
        return self.book.shares(self.clock())

    def owner_of(self, session_id: str) -> str | None:
        owner = self._owners.get(session_id)
        if owner is None:
            info = self.sessions.get(session_id)
            if info is None:
                return None
            if len(self._owners) >= MAX_REMEMBERED:
                self._owners.clear()  # owners of old sessions: read again when seen again
            owner = self._owners[session_id] = info.spec.owner
        return owner

    def created(self, session_id: str, owner: str) -> None:
        with self._lock:
            self._owners[session_id] = owner
            self._active.add(owner)
            self._created.add(owner)

    def claimed(self, session_ids: Iterable[str]) -> None:
        self._add(session_ids, 1)

    def ended(self, session_ids: Iterable[str]) -> None:
        self._add(session_ids, -1)

    def _add(self, session_ids: Iterable[str], step: int) -> None:
        owners = [self.owner_of(sid) for sid in session_ids]
        with self._lock:
            for owner in owners:
                if owner is not None:
                    self._running[owner] = max(0, self._running[owner] + step)

    def view(self) -> tuple[dict[str, int], set[str]]:
        """(running per owner, active owners), refreshed when a second old."""
        if self.clock() >= self._read_at + REFRESH_SECONDS:
            with self._lock:
                created, self._created = self._created, set()
            active = self._read_active() | created
            one = self.plain(active)
            running = self._running if one else self._read_running()  # one owner: no rule
            with self._lock:
                self._running, self._read_at = running, self.clock()
                self._active = active | {o for o, n in running.items() if n}
        with self._lock:
            return dict(self._running), set(self._active)

    def _read_running(self) -> Counter[str]:
        found: Counter[str] = Counter()
        for p in range(MAX_STATE_PARTITIONS):
            items = self.grid.query(
                TableName=self.grid.tasks,
                IndexName="gsi_ttl_index",
                KeyConditionExpression="task_status = :t",
                ExpressionAttributeValues={":t": S(f"processing{p}")},
                ProjectionExpression="task_id",
            )
            for item in items:
                owner = self.owner_of(split_task_id(str(text(item, "task_id")))[0])
                if owner is not None:
                    found[owner] += 1
        return found

    def _read_active(self) -> set[str]:
        newest = self.sessions.list_sessions(None, NEWEST_SESSIONS, 0)
        for info in newest:
            self._owners.setdefault(info.id, info.spec.owner)
        return {info.spec.owner for info in newest if not info.complete}


def grid_meta(grid: Grid) -> dict[str, str]:
    return Meta(grid).list_prefix("share/")


def gather(
    queues: PriorityQueues,
    functions: Sequence[str] | None,
    wanted: int,
    census: Census,
    active: set[str],
) -> tuple[list[Message], list[Message]]:
    """A window of messages of ``functions``, highest queue first, until it holds ``wanted``
    and every active owner, or ``MAX_SCAN`` per queue were seen; and those of other
    functions (to hand back)."""
    window: list[Message] = []
    others: list[Message] = []
    seen: set[str] = set()
    full = census.at_quota()
    usable = 0  # messages of owners below their quota

    def enough() -> bool:
        return usable >= wanted and active <= seen

    for queue in reversed(range(queues.count)):
        scanned = 0
        while scanned < MAX_SCAN and not enough():
            messages = queues.receive(queue, SQS_BATCH)
            if not messages:
                break
            scanned += len(messages)
            for m in messages:
                if functions is None or m.function in functions:
                    window.append(m)
                    owner = census.owner_of(session_of(m.task_id)) or ""
                    seen.add(owner)
                    usable += owner not in full
                else:
                    others.append(m)
        if enough():
            break
    return window, others


def choose(
    window: Sequence[Message], wanted: int, census: Census
) -> tuple[list[Message], list[Message]]:
    """The messages to claim (each owner's first, as many as the rule gives it) and the
    rest, to hand back."""
    running, _ = census.view()
    by_owner: dict[str, list[Message]] = {}
    for m in window:
        owner = census.owner_of(session_of(m.task_id)) or ""
        by_owner.setdefault(owner, []).append(m)
    take: list[Message] = []

    def give(owner: str, n: int) -> int:
        mine = by_owner[owner]
        got, by_owner[owner] = mine[:n], mine[n:]
        take.extend(got)
        return len(got)

    fair_claim(wanted, list(by_owner), running, census.shares(), one_by_one(give))
    chosen = set(map(id, take))
    return take, [m for m in window if id(m) not in chosen]


def session_of(tid: str) -> str:
    try:
        return split_task_id(tid)[0]
    except ValueError:
        return ""
