"""The installed packages a pickled call needs, and whether a worker has them.

cloudpickle sends a function by value but the modules it uses by reference: a call that uses
``numpy`` unpickles only where ``numpy`` is installed, and behaves as written only where its
version matches. So the client names, in each event, the distributions (with versions) of the
modules its pickles import; agents report the distributions they have; ``htcgrid.Executor``
refuses at submit when no agent has them, and a worker refuses a call whose packages it lacks
before unpickling it, in one line naming each package on both sides (major.minor).
"""

from __future__ import annotations

import functools
import pickletools
import sys
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from typing import Any

STACK_GLOBAL = b"\x93"  # the opcode by which protocols 4 and 5 import a module's attribute
STRING_PUSHES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"}
MEMO_READS = {"BINGET", "LONG_BINGET", "GET"}
SUBIMPORT = "\0subimport"  # stands for cloudpickle's subimport function on the pushes read


@functools.cache
def installed_packages() -> dict[str, str]:
    """Every distribution this interpreter has: normalised name → version (agents report it)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(_normal(name), dist.version)
    return found


@functools.cache
def _distributions_of_module() -> dict[str, list[str]]:
    return {
        top: [_normal(d) for d in dists] for top, dists in metadata.packages_distributions().items()
    }


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def imported_modules(data: bytes) -> set[str]:
    """The modules a pickle imports (the module of each global it loads), read from its
    opcodes without loading it. Only protocols 4 and 5 (cloudpickle's) are read."""
    if STACK_GLOBAL not in data:  # plain values: numbers, strings, lists, dicts
        return set()
    modules: set[str] = set()
    memo: dict[int, str | None] = {}
    last: str | None = None  # what the last opcode pushed, when it was a string
    before: str | None = None  # and the push before it
    expect_module = False  # after cloudpickle's subimport: the next string names a module
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name == "MEMOIZE":
                memo[len(memo)] = last
                continue
            value: str | None = None
            if op.name in STRING_PUSHES:
                value = str(arg)
            elif op.name in MEMO_READS:
                value = memo.get(int(arg or 0))
                if value == SUBIMPORT:  # the subimport function again, from the memo
                    expect_module, before, last = True, None, None
                    continue
            elif op.name == "STACK_GLOBAL":
                if before:
                    modules.add(before)
                expect_module = last == "subimport"
                before, last = None, SUBIMPORT if expect_module else None
                continue
            if expect_module and value:
                modules.add(value)
                expect_module = False
            before, last = last, value
    except Exception:  # not a pickle we can read: the worker's own check still holds
        return modules
    return modules


def packages_of(pickles: Iterable[bytes]) -> dict[str, str]:
    """The distributions (normalised name → this side's version) that provide the modules
    ``pickles`` import, leaving out Python's own modules."""
    owners = _distributions_of_module()
    have = installed_packages()
    found: dict[str, str] = {}
    for data in pickles:
        for module in imported_modules(data):
            top = module.partition(".")[0]
            if top in sys.stdlib_module_names or top in ("__main__", "builtins"):
                continue
            for dist in owners.get(top, ()):
                if dist in have:
                    found[dist] = have[dist]
    return found


def _major_minor(version: str | None) -> str:
    return "not installed" if version is None else ".".join(version.split(".")[:2])


def packages_mismatch(wanted: Mapping[str, str], have: Mapping[str, str]) -> str | None:
    """How ``have`` (a worker's packages) falls short of ``wanted`` (a client's), in words:
    ``numpy 2.1 here, 1.26 there; pandas 2.2 here, not installed there``; None if it does not."""
    differ = [
        f"{name} {_major_minor(version)} here, {_major_minor(have.get(name))} there"
        for name, version in sorted(wanted.items())
        if _major_minor(version) != _major_minor(have.get(name))
    ]
    return "; ".join(differ) or None


def agents_lacking(wanted: Mapping[str, str], agents: Sequence[Mapping[str, Any]]) -> str | None:
    """None if some agent has ``wanted`` (or no agent reports its packages); else what the
    first reporting agent lacks, in words."""
    reporting = [
        a["packages"] for a in agents if isinstance(a.get("packages"), dict) and a["packages"]
    ]
    if not wanted or not reporting or any(packages_mismatch(wanted, p) is None for p in reporting):
        return None
    return packages_mismatch(wanted, reporting[0])


def check_worker(wanted: Mapping[str, str]) -> None:
    """In a worker, before a call is unpickled: raise if this interpreter lacks ``wanted``."""
    mismatch = packages_mismatch(wanted, installed_packages())
    if mismatch:
        raise ImportError(
            f"this pickled call needs packages this worker does not have ({mismatch}; 'here' "
            "is the client): install the client's versions on the agents' machines, or run "
            "the client where the agents' versions are"
        )
