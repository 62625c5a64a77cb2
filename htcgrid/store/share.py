"""Fair share between owners: the rule every task store's claim follows, written once.

Within one owner (a session's ``spec.owner``) the queue is strict: highest priority first,
FIFO within a priority. Between owners, slots go by weight: the next task claimed is one of
the owner with the lowest ``running / share`` among owners with claimable tasks, where
``running`` is the number of that owner's tasks now ``processing``. A batch of ``k`` is split
the same way, one slot at a time. An owner may also have a quota (``max_running``): no claim
takes its tasks while that many run.

The weights live beside the tasks as grid metadata, one record ``share/<owner>`` (JSON
``{"share": 3, "max_running": null}``), written by the admin path (``htcgrid user set``) and
read by claimers at most once a second (``ShareBook``). An owner without a record has share 1
and no quota. A claim that finds one owner with claimable tasks and no quota claims as it
always did: the common case pays for two index probes, not for the rule.
"""

from __future__ import annotations

import heapq
import json
import math
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from htcgrid.errors import ValidationError

PREFIX = "share/"
REFRESH_SECONDS = 1.0
MAX_SHARE = 1_000_000.0


@dataclass(frozen=True)
class Share:
    """An owner's weight against other owners, and its optional quota of running tasks."""

    share: float = 1.0
    max_running: int | None = None

    def to_json(self) -> str:
        return json.dumps({"share": self.share, "max_running": self.max_running})

    @classmethod
    def from_json(cls, text: str) -> Share:
        try:
            found = json.loads(text)
            return check_share(found.get("share", 1.0), found.get("max_running"))
        except (ValueError, AttributeError, ValidationError):
            return DEFAULT  # a record this version cannot read counts as the default

    def public(self, owner: str) -> dict[str, Any]:
        return {"owner": owner, "share": self.share, "max_running": self.max_running}


DEFAULT = Share()


def check_share(share: object = 1.0, max_running: object = None) -> Share:
    """A valid ``Share``, or ValidationError naming the bad field."""
    if isinstance(share, bool) or not isinstance(share, int | float):
        raise ValidationError(f"share must be a number, not {share!r}")
    if not (math.isfinite(share) and 0 < share <= MAX_SHARE):
        raise ValidationError(f"share must be above 0 and at most {MAX_SHARE:g}, not {share}")
    if isinstance(max_running, float) and max_running.is_integer():
        max_running = int(max_running)  # JSON's 8.0 is 8
    if max_running is not None and (
        isinstance(max_running, bool) or not isinstance(max_running, int) or max_running < 0
    ):
        raise ValidationError(f"max_running must be a whole number ≥ 0, not {max_running!r}")
    return Share(float(share), max_running)


def share_key(owner: str) -> str:
    return PREFIX + owner


class ShareBook:
    """The grid's share records as one claimer sees them: read with ``load`` (one
    ``list_meta``) at most every ``REFRESH_SECONDS`` of the claim's own clock, so a change
    reaches every claimer within about a second."""

    def __init__(self, load: Callable[[], Mapping[str, str]]) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._shares: dict[str, Share] = {}
        self._read_at = -math.inf

    def shares(self, now: float) -> dict[str, Share]:
        with self._lock:
            if not self._read_at <= now < self._read_at + REFRESH_SECONDS:
                records = self._load()
                self._shares = {
                    key[len(PREFIX) :]: Share.from_json(value) for key, value in records.items()
                }
                self._read_at = now
            return self._shares

    def get(self, owner: str, now: float) -> Share:
        return self.shares(now).get(owner, DEFAULT)

    def plain(self, owners: Collection[str], now: float) -> bool:
        """Whether a claim over ``owners`` needs no rule: one owner, without a quota."""
        if len(owners) != 1:
            return False
        (owner,) = owners
        return self.get(owner, now).max_running is None


class MetaShares:
    """``_shares()`` for a store whose share records are its own grid metadata: one
    ``ShareBook`` per store, made on first use."""

    if TYPE_CHECKING:

        def list_meta(self, prefix: str) -> dict[str, str]: ...

    def _shares(self) -> ShareBook:
        book: ShareBook | None = getattr(self, "_share_book", None)
        if book is None:
            book = self._share_book = ShareBook(lambda: self.list_meta(PREFIX))
        return book


def split_claim(
    wanted: int,
    owners: Collection[str],
    running: Mapping[str, int],
    shares: Mapping[str, Share],
) -> dict[str, int]:
    """How many of ``wanted`` slots each owner gets: one at a time to the lowest
    ``(running + given) / share`` (ties to the lower name), never past an owner's quota.
    Owners that get nothing are left out."""
    given: dict[str, int] = {}
    heap: list[tuple[float, str]] = []
    for owner in owners:
        if _room(owner, 0, running, shares) > 0:
            heap.append((running.get(owner, 0) / shares.get(owner, DEFAULT).share, owner))
    heapq.heapify(heap)
    for _ in range(wanted):
        if not heap:
            break
        _, owner = heapq.heappop(heap)
        n = given[owner] = given.get(owner, 0) + 1
        if _room(owner, n, running, shares) > 0:
            load = (running.get(owner, 0) + n) / shares.get(owner, DEFAULT).share
            heapq.heappush(heap, (load, owner))
    return given


def _room(owner: str, given: int, running: Mapping[str, int], shares: Mapping[str, Share]) -> float:
    quota = shares.get(owner, DEFAULT).max_running
    return math.inf if quota is None else quota - running.get(owner, 0) - given


Round = Callable[[dict[str, int]], Mapping[str, int]]


def fair_claim(
    wanted: int,
    owners: Collection[str],
    running: Mapping[str, int],
    shares: Mapping[str, Share],
    take: Round,
) -> int:
    """Claim up to ``wanted`` tasks split by ``split_claim``, in rounds: ``take(plan)`` claims
    up to ``plan[owner]`` of each owner's tasks in that owner's queue order and says how many
    it got of each. An owner that gives fewer than asked has no more (of the claimer's
    functions); what it left is split again among the others. Returns how many were claimed."""
    now_running = dict(running)
    active = set(owners)
    claimed = 0
    while active and claimed < wanted:
        plan = split_claim(wanted - claimed, active, now_running, shares)
        if not plan:
            break
        got = take(plan)
        for owner, n in plan.items():
            now_running[owner] = now_running.get(owner, 0) + got.get(owner, 0)
            claimed += got.get(owner, 0)
            if got.get(owner, 0) < n:
                active.discard(owner)
        active = {o for o in active if _room(o, 0, now_running, shares) > 0}
    return claimed


def one_by_one(take: Callable[[str, int], int]) -> Round:
    """A round of ``fair_claim`` as one ``take(owner, n)`` per owner."""
    return lambda plan: {owner: take(owner, n) for owner, n in sorted(plan.items())}
