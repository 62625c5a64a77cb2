"""Python callables as tasks: the built-in function ``htcgrid.python`` and its wire format.

A task of this function carries its calls by value (cloudpickle), so nothing needs deploying::

    {"fn": "<base64 pickle of the callable>", "calls": "<base64 pickle of [(args, kwargs), …]>",
     "python": "3.11", "cloudpickle": "3.1"}

Its output is ``{"results": "<base64 pickle of [value, …]>"}``, one value per call. A call
that raises fails the task with that exception: its traceback is the worker's, and a note at
its end carries the exception pickled, so ``htcgrid.Executor`` raises it again, whole.

The client (``htcgrid.client.executor``) writes these events and reads these outputs; the
agents run ``lambda_handler`` below in their worker processes. The major.minor versions of
Python and cloudpickle must match on both sides: pickled code is not portable across them.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

import cloudpickle

from htcgrid import pickled_packages

PYTHON_FUNCTION = "htcgrid.python"  # reserved: no deployed function may take this name
HANDLER = "htcgrid.pickled:lambda_handler"
NOTE_PREFIX = "htcgrid-pickled-exception: "
MAX_NOTE_BYTES = 256 * 1024  # an exception bigger than this pickled travels as text only

Call = tuple[tuple[Any, ...], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class Input:
    """Stands, in a call's arguments, for the value of the task it depends on: the task's
    ``number``-th dependency (``context.inputs[number]``). ``pickled`` says that task was a
    call of this runtime, whose value is unpickled from its output; else its output is the
    value. ``htcgrid.Executor`` writes these for futures passed as arguments."""

    number: int
    pickled: bool = True


def with_values(call: Call, inputs: Sequence[Any]) -> Call:
    """``call`` with each ``Input`` among its arguments (at the top level) replaced by its
    value."""

    def value(arg: Any) -> Any:
        if not isinstance(arg, Input):
            return arg
        output = inputs[arg.number]
        return read_results(output)[0] if arg.pickled else output

    args, kwargs = call
    return tuple(map(value, args)), {k: value(v) for k, v in kwargs.items()}


@functools.cache
def local_versions() -> dict[str, str]:
    """This interpreter's Python and cloudpickle versions, as agents report and clients send."""
    return {
        "python": "{}.{}.{}".format(*sys.version_info[:3]),
        "cloudpickle": metadata.version("cloudpickle"),
    }


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def version_mismatch(mine: Mapping[str, str], theirs: Mapping[str, str]) -> str | None:
    """What differs between two sides' versions (major.minor), in words; None if nothing."""
    differ = [
        f"{name} {_major_minor(mine.get(name, '?'))} here, {_major_minor(theirs.get(name, '?'))} there"
        for name in ("python", "cloudpickle")
        if _major_minor(mine.get(name, "?")) != _major_minor(theirs.get(name, "?"))
    ]
    return "; ".join(differ) or None


def agents_mismatch(mine: Mapping[str, str], agents: Sequence[Mapping[str, Any]]) -> str | None:
    """None if an agent runs ``mine``'s versions, or no agent is known; else how ``mine``
    differs from the first agent's, in words."""
    if not agents or any(version_mismatch(mine, a) is None for a in agents):
        return None
    return version_mismatch(mine, agents[0])


# ---- the client's side ------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def dumps(value: Any) -> bytes:
    return cloudpickle.dumps(value)  # type: ignore[no-any-return]


def call_event(
    fn_pickle: str,
    calls: Sequence[Call],
    versions: Mapping[str, str],
    packages: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The event of one task running ``calls`` of the callable pickled in ``fn_pickle``;
    ``packages`` are those the callable needs (``pickled_packages.packages_of``), to which
    those its calls' arguments import are added."""
    data = dumps(list(calls))
    event: dict[str, Any] = {"fn": fn_pickle, "calls": b64(data), **versions}
    needed = {**(packages or {}), **pickled_packages.packages_of([data])}
    if needed:
        event["packages"] = needed
    return event


def read_results(output: Any) -> list[Any]:
    """The values a task of ``htcgrid.python`` returned, one per call."""
    values: list[Any] = cloudpickle.loads(base64.b64decode(output["results"]))
    return values


def rebuild_exception(error: Mapping[str, str]) -> BaseException:
    """The exception a task raised, from its recorded error: the original object when it
    travelled pickled, else a ``RemoteException`` with its type name and message. The remote
    traceback is its ``__cause__`` (as ``concurrent.futures.ProcessPoolExecutor`` does)."""
    text = error.get("traceback", "")
    exc: BaseException | None = None
    lines = text.rstrip("\n").split("\n")
    if lines and lines[-1].startswith(NOTE_PREFIX):
        text = "\n".join(lines[:-1]) + "\n"
        try:
            exc = cloudpickle.loads(base64.b64decode(lines[-1][len(NOTE_PREFIX) :]))
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = RemoteException(f"{error.get('type', 'Error')}: {error.get('message', '')}")
    notes = getattr(exc, "__notes__", None)
    if notes:
        exc.__notes__ = [n for n in notes if not n.startswith(NOTE_PREFIX)]
    exc.__cause__ = RemoteTraceback(text)
    return exc


class RemoteException(Exception):
    """A task's exception that could not travel pickled: its type name and message."""


class RemoteTraceback(Exception):
    """The traceback of a task's exception, as the worker printed it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


# ---- the worker's side ------------------------------------------------------------------

_lock = threading.Lock()


@functools.lru_cache(maxsize=32)
def _load_callable(digest: str, fn_pickle: str) -> Callable[..., Any]:
    del digest  # the cache key: a pickle is read once per worker
    fn: Callable[..., Any] = cloudpickle.loads(base64.b64decode(fn_pickle))
    return fn


def _check_versions(event: Mapping[str, Any]) -> None:
    sent = {k: str(event.get(k, "?")) for k in ("python", "cloudpickle")}
    mismatch = version_mismatch(sent, local_versions())
    if mismatch:
        raise RuntimeError(
            f"this pickled call was made with other versions than this worker's ({mismatch}; "
            "'here' is the client): run the client and the agents on the same major.minor "
            "versions of Python and cloudpickle"
        )
    packages = event.get("packages")
    if isinstance(packages, dict) and packages:
        pickled_packages.check_worker(packages)


_running = threading.local()


def context() -> Any:
    """Inside a pickled call: its task's Lambda context (``context().common`` is the
    session's common data, ``context().task_id`` its task)."""
    return getattr(_running, "context", None)


def lambda_handler(event: Mapping[str, Any], context: Any) -> dict[str, str]:
    """Run the pickled calls of one task; raise the first exception a call raises, with
    itself pickled in a note for the client."""
    _check_versions(event)
    _running.context = context
    fn_pickle = event["fn"]
    with _lock:
        fn = _load_callable(hashlib.sha256(fn_pickle.encode()).hexdigest(), fn_pickle)
    calls: list[Call] = cloudpickle.loads(base64.b64decode(event["calls"]))
    inputs = getattr(context, "inputs", None) or []
    results = []
    for call in calls:
        args, kwargs = with_values(call, inputs) if inputs else call
        try:
            results.append(fn(*args, **kwargs))
        except Exception as exc:
            _attach_pickle(exc)
            raise
    return {"results": b64(dumps(results))}


def _attach_pickle(exc: BaseException) -> None:
    try:
        data = dumps(exc)
    except Exception:
        return
    if len(data) <= MAX_NOTE_BYTES:
        exc.add_note(NOTE_PREFIX + b64(data))
