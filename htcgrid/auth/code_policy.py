"""Who may run pickled Python code on a grid (the built-in function ``htcgrid.python``).

Pickled code is arbitrary code on the agents' machines, so the grid keeps one admin setting,
grid-wide, in its task store (metadata key ``settings/pickled_code``)::

    role   (the default) only users whose role has the ``pickle`` permission: admin, deployer
    all    every signed-in user
    off    nobody

A deployer may already put any code on the agents (``htcgrid deploy``), so pickling adds no
power to that role. Whoever opens the backends themselves (the in-process client) or calls a
server started without authentication holds everything already, and passes under ``role``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from htcgrid.auth.records import AuthRecords
from htcgrid.dataplane import DataPlane
from htcgrid.errors import Forbidden, ValidationError
from htcgrid.pickled import PYTHON_FUNCTION
from htcgrid.presence import QUIET_SECONDS, list_agents
from htcgrid.store import TaskStore

POLICIES = ("role", "all", "off")
DEFAULT_POLICY = "role"
SETTING_KEY = "settings/pickled_code"
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset({"deploy", "pickle"}),
    "deployer": frozenset({"deploy", "pickle"}),
    "user": frozenset(),
}
CACHE_SECONDS = 2.0


class PickledCode:
    """The setting, and the check a submit of ``htcgrid.python`` goes through."""

    def __init__(
        self, store: TaskStore, data: DataPlane, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.records = AuthRecords(data)
        self.clock = clock
        self._cached: tuple[float, str] = (-CACHE_SECONDS, DEFAULT_POLICY)

    def policy(self) -> str:
        checked_at, policy = self._cached
        now = self.clock()
        if now - checked_at >= CACHE_SECONDS or now < checked_at:
            policy = self.store.get_meta(SETTING_KEY) or DEFAULT_POLICY
            self._cached = (now, policy)
        return policy

    def set_policy(self, policy: str) -> str:
        if policy not in POLICIES:
            raise ValidationError(
                f"pickled_code must be one of {', '.join(POLICIES)}, not {policy!r}"
            )
        self.store.put_meta(SETTING_KEY, policy)
        self._cached = (self.clock(), policy)
        return policy

    def allows(self, owner: str) -> bool:
        policy = self.policy()
        if policy == "off":
            return False
        if policy == "all" or not owner:
            return True
        user = self.records.get_user(owner)
        return user is not None and "pickle" in PERMISSIONS.get(user.role, frozenset())

    def check(self, owner: str) -> None:
        """Raise Forbidden, saying why and what to do, unless ``owner`` may submit pickled code."""
        if self.allows(owner):
            return
        if self.policy() == "off":
            raise Forbidden(
                f"this grid refuses pickled Python code ({PYTHON_FUNCTION}): an admin turned it "
                "off (`htcgrid pickled-code role` turns it on for admins and deployers)"
            )
        raise Forbidden(
            f"user {owner!r} may not submit pickled Python code ({PYTHON_FUNCTION}): it needs "
            "the admin or deployer role (`htcgrid user add NAME --deployer`), or an admin's "
            "`htcgrid pickled-code all`"
        )

    def describe(self, owner: str) -> dict[str, Any]:
        """The setting, whether ``owner`` may use it, and the versions and installed packages
        the agents that serve ``htcgrid.python`` report (seen in the last ``QUIET_SECONDS``)."""
        now = self.clock()
        agents = [
            {"agent_id": a.agent_id, "host": a.host, **a.runtimes, "packages": a.packages}
            for a in list_agents(self.store, now)
            if now - a.last_seen <= QUIET_SECONDS
            and (a.functions is None or PYTHON_FUNCTION in a.functions)
        ]
        return {"policy": self.policy(), "allowed": self.allows(owner), "agents": agents}
