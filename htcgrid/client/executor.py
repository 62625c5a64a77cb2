"""``htcgrid.Executor``: the grid as a ``concurrent.futures.Executor``.

    with htcgrid.Executor("http://127.0.0.1:8080") as grid:
        future = grid.submit(pow, 2, 10)                 # any picklable callable, by value
        print(future.result(), list(grid.map(abs, [-1, -2], chunksize=2)))

    with htcgrid.Executor(url, function="pricing") as grid:   # a deployed function
        prices = list(grid.map(events))

Calls made within ``batch_seconds`` of each other travel as one session (``Client.submit``,
the fast path, uploaded in parts when big); one collector thread pages through the results
of every open session (``htcgrid.client.batches``), so nothing polls per future.
Python callables run as the built-in function ``htcgrid.python`` (``htcgrid.pickled``).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from typing import Any

from htcgrid import pickled, pickled_packages
from htcgrid.client.batches import Batches, GridFuture
from htcgrid.client.http import HTTPTransport
from htcgrid.client.session import Client, connect
from htcgrid.errors import Forbidden, NotFound, RuntimeMismatch, ValidationError

RUNTIME_CHECK_SECONDS = 30.0  # how long a check of the agents' versions holds
FN_CACHE = 64  # callables whose pickle is kept, so a loop of submits pickles each once


class Executor(futures.Executor):
    """Run Python callables, or the events of a deployed ``function``, on a grid.

    ``url`` and ``connect_options`` are those of ``htcgrid.connect`` (or pass a ``client``);
    ``priority``, ``max_attempts``, ``timeout_seconds`` and ``retry_on_error`` are the
    sessions' options. Calls are gathered for ``batch_seconds`` (or ``max_batch`` calls)
    into one session. ``common`` (a JSON value or bytes) is each session's common data,
    stored once per session. ``cache`` (True, or the oldest answer's age in seconds) answers
    a call from an earlier identical one (same callable, arguments and runtime) that
    finished, without running it: memoization, as ``Client.submit(cache=…)``."""

    def __init__(
        self,
        url: str | None = None,
        *,
        function: str | None = None,
        client: Client | None = None,
        priority: int = 0,
        max_attempts: int | None = None,
        timeout_seconds: float | None = None,
        retry_on_error: bool = False,
        batch_seconds: float = 0.02,
        max_batch: int = 10_000,
        common: Any = None,
        cache: bool | float = False,
        **connect_options: Any,
    ) -> None:
        self.client = client or connect(url, **connect_options)
        self.function = function
        options: dict[str, Any] = {
            "function": function or pickled.PYTHON_FUNCTION,
            "priority": priority,
            "max_attempts": max_attempts,
            "timeout_seconds": timeout_seconds,
            "retry_on_error": retry_on_error,
            "common": common,  # every session's context.common (pickled calls: pickled.context())
            "cache": cache,
        }
        self._batches = Batches(self.client, options, batch_seconds, max_batch)
        self._batches.close_client = client is None
        self._versions = pickled.local_versions()
        self._checked_at = -RUNTIME_CHECK_SECONDS
        self._pickles: dict[int, tuple[Any, str, dict[str, str]]] = {}
        self._agents: list[dict[str, Any]] = []  # those serving pickled calls, last looked at

    # ---- concurrent.futures.Executor ---------------------------------------------------

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        """Run ``fn(*args, **kwargs)`` on the grid; with a named ``function``, ``fn`` is the
        event (a JSON value) and takes no further arguments."""
        if self.function is not None:
            if args or kwargs:
                raise TypeError(f"a task of {self.function!r} is one event: submit(event)")
            return self._batches.add(fn, unpack=True)
        deps, args, kwargs = _futures_as_inputs(args, kwargs)
        fn_pickle, packages = self._pickle(fn)
        event = pickled.call_event(fn_pickle, [(args, kwargs)], self._versions, packages)
        self._check_packages(event)
        return self._batches.add(event, unpack=True, deps=deps)

    def map(
        self,
        fn: Any,
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """``fn`` over the iterables, results in order, as ``concurrent.futures`` does;
        ``chunksize`` calls travel as one task. With a named ``function``, ``fn`` is the
        iterable of events, one task each: ``Executor(url, function="pricing").map(events)``."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1")
        if self.function is not None:
            if iterables:
                raise TypeError(f"map over {self.function!r} takes one iterable of events")
            chunks: list[futures.Future[Any]] = [self.submit(event) for event in fn]
            return _results(chunks, timeout, flatten=False)
        fn_pickle, packages = self._pickle(fn)
        calls: Iterator[pickled.Call] = ((args, {}) for args in zip(*iterables, strict=False))
        chunks = []
        for chunk in _chunked(calls, chunksize):
            deps: list[GridFuture] = []  # futures among the chunk's arguments: its task's deps
            chunk = [_futures_as_inputs(args, kwargs, deps)[1:] for args, kwargs in chunk]
            event = pickled.call_event(fn_pickle, chunk, self._versions, packages)
            self._check_packages(event)
            chunks.append(self._batches.add(event, unpack=False, deps=deps))
        return _results(chunks, timeout, flatten=True)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls; ``cancel_futures`` cancels those not done, on the grid too;
        ``wait`` waits for the rest. The client is closed once nothing is left to collect
        (unless it was handed in)."""
        self._batches.shutdown(wait, cancel_futures)

    # ---- pickled calls -----------------------------------------------------------------

    def _pickle(self, fn: Callable[..., Any]) -> tuple[str, dict[str, str]]:
        """``fn`` pickled, with the packages it imports (once per callable), after checking
        the grid takes it."""
        if not callable(fn):
            raise TypeError(f"{type(fn).__name__} is not callable")
        self._check_runtime()
        found = self._pickles.get(id(fn))
        if found is not None and found[0] is fn:
            return found[1], found[2]
        try:
            data = pickled.dumps(fn)
        except Exception as exc:
            raise ValidationError(f"{fn!r} cannot be pickled: {exc}") from exc
        if len(self._pickles) >= FN_CACHE:
            self._pickles.clear()
        text, packages = pickled.b64(data), pickled_packages.packages_of([data])
        self._pickles[id(fn)] = (fn, text, packages)
        return text, packages

    def _check_packages(self, event: dict[str, Any]) -> None:
        """Refuse now a call whose packages no agent serving it has (major.minor)."""
        lacking = pickled_packages.agents_lacking(event.get("packages") or {}, self._agents)
        if lacking:
            hosts = ", ".join(sorted({a.get("host", "?") for a in self._agents}))
            raise RuntimeMismatch(
                f"the agents serving {pickled.PYTHON_FUNCTION} ({hosts}) lack packages this "
                f"call imports: {lacking}. Install the client's versions where the agents "
                "run, or run the client where the agents' versions are"
            )

    def _check_runtime(self) -> None:
        """Refuse now, not deep in a worker: when the grid refuses this caller's pickled
        code, or no agent serving it runs this Python and cloudpickle (major.minor)."""
        now = time.monotonic()
        if now - self._checked_at < RUNTIME_CHECK_SECONDS:
            return
        info = runtime_info(self.client)
        if not info["allowed"]:
            raise Forbidden(
                f"this grid does not take pickled Python code from you (its setting: "
                f"{info['policy']}); an admin may allow it, or deploy a function and use "
                "Executor(url, function=NAME)"
            )
        self._agents = info["agents"]
        mismatch = pickled.agents_mismatch(self._versions, info["agents"])
        if mismatch:
            hosts = ", ".join(sorted({a.get("host", "?") for a in info["agents"]}))
            raise RuntimeMismatch(
                f"the agents serving {pickled.PYTHON_FUNCTION} ({hosts}) cannot load what this "
                f"client pickles: {mismatch}. Run the client on the agents' major.minor "
                "versions of Python and cloudpickle, or start agents on yours"
            )
        self._checked_at = now


def runtime_info(client: Client) -> dict[str, Any]:
    """The grid's answer on pickled code: ``policy``, ``allowed`` (for this caller) and the
    ``agents`` serving it with their versions."""
    transport = client._t
    if isinstance(transport, HTTPTransport):
        try:
            return transport.call("GET", RUNTIME_PATH)  # type: ignore[no-any-return]
        except NotFound:  # a server from before this answer: it checks at submit alone
            return {"policy": "unknown", "allowed": True, "agents": []}
    service = transport.service  # type: ignore[attr-defined]  # the in-process transport
    return service.pickled.describe("")  # type: ignore[no-any-return]


RUNTIME_PATH = "/v1/runtimes/python"


def set_pickle_policy(client: Client, policy: str) -> dict[str, Any]:
    """Set who may send pickled code to the grid (``role``, ``all`` or ``off``; admins only
    over HTTP); returns ``runtime_info``'s answer."""
    transport = client._t
    if isinstance(transport, HTTPTransport):
        return transport.call("PUT", RUNTIME_PATH, json={"policy": policy})  # type: ignore[no-any-return]
    transport.service.pickled.set_policy(policy)  # type: ignore[attr-defined]
    return runtime_info(client)


def _futures_as_inputs(
    args: tuple[Any, ...], kwargs: dict[str, Any], deps: list[GridFuture] | None = None
) -> tuple[list[GridFuture], tuple[Any, ...], dict[str, Any]]:
    """The grid futures among a call's arguments (at the top level) become its task's
    dependencies, each replaced by a ``pickled.Input`` that the worker fills with its value;
    ``deps`` gathers those of several calls of one task (a ``map`` chunk)."""
    deps = [] if deps is None else deps

    def stand_in(arg: Any) -> Any:
        if not isinstance(arg, GridFuture):
            return arg
        if not any(d is arg for d in deps):
            deps.append(arg)
        number = next(i for i, d in enumerate(deps) if d is arg)
        is_call = arg.unpack and arg.batches.options.get("function") == pickled.PYTHON_FUNCTION
        return pickled.Input(number, pickled=is_call)

    args = tuple(map(stand_in, args))
    kwargs = {k: stand_in(v) for k, v in kwargs.items()}
    return deps, args, kwargs


def _chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _results(
    chunks: list[futures.Future[Any]], timeout: float | None, flatten: bool
) -> Iterator[Any]:
    """Each chunk's result in order; futures not reached are cancelled if the caller stops."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        chunks.reverse()
        while chunks:
            left = None if deadline is None else deadline - time.monotonic()
            value = chunks[-1].result(left)
            chunks.pop()
            if flatten:
                yield from value
            else:
                yield value
    finally:
        for future in chunks:
            future.cancel()


__all__ = ["Executor", "GridFuture", "runtime_info", "set_pickle_policy"]
