"""What only the Redis task store promises: no eviction, its own key space, waking on the
server, exact FIFO at any count, one script call per batch.

Tests that change a server's configuration, or stop it, start their own ``redis-server``;
the shared server's configuration is never touched.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from backends import backend_url

if importlib.util.find_spec("redis") is None:
    if os.environ.get("CI"):
        raise ImportError("redis is not importable in CI")
    pytest.skip("redis is not installed", allow_module_level=True)

import redis

from htcgrid.dataplane import keys
from htcgrid.dataplane.redis import RedisDataPlane
from htcgrid.errors import BackendUnavailable, ConfigurationError
from htcgrid.models import Lease, NewTask, Outcome, SessionSpec, TaskState
from htcgrid.store.redis import RedisTaskStore
from htcgrid.store.redis_connect import split_url

NOW = 1_000_000.0
LEASE = 10.0


def submit(store: RedisTaskStore, sid: str, n: int = 1, priority: int = 0) -> None:
    spec = SessionSpec(id=sid, task_count=n, priority=priority, content_hash=sid)
    tasks = [NewTask(i, priority, payload=b"%d" % i) for i in range(n)]
    assert store.create_session(spec, tasks, NOW)


# ---- servers of our own --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server(tmp: Path, *options: str) -> Iterator[str]:
    """A private ``redis-server`` on a free loopback port, stopped (by its pid) on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed in CI")
        pytest.skip("redis-server is not installed")
    port = _free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    proc = subprocess.Popen(
        [*args, "no", "--dir", str(tmp), *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _await_ready(proc, port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _await_ready(proc: subprocess.Popen[bytes], port: int) -> None:
    client = redis.Redis(port=port, socket_connect_timeout=1)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            client.close()
            return
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start") from None
            time.sleep(0.01)


@pytest.fixture(scope="module")
def private_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def private(private_url: str) -> Iterator[redis.Redis]:
    """A raw client on the private server, emptied and back to noeviction after the test."""
    client = redis.Redis.from_url(private_url)
    client.flushall()
    yield client
    client.config_set("maxmemory-policy", "noeviction")
    client.flushall()
    client.close()


@pytest.fixture
def shared_url(tmp_path: Path) -> Iterator[str]:
    """The shared test server, under a key prefix of this test's own."""
    with backend_url("redis", tmp_path) as url:
        yield url


@pytest.fixture
def store(shared_url: str) -> Iterator[RedisTaskStore]:
    s = RedisTaskStore(shared_url)
    yield s
    s.close()


# ---- no data loss through eviction ---------------------------------------------------------


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu", "allkeys-random"])
def test_an_evicting_policy_is_refused_with_the_fix(
    private: redis.Redis, private_url: str, policy: str
) -> None:
    private.config_set("maxmemory-policy", policy)
    for backend in (RedisTaskStore, RedisDataPlane):
        with pytest.raises(ConfigurationError) as caught:
            backend(private_url)
        message = str(caught.value)
        assert policy in message and "CONFIG SET maxmemory-policy noeviction" in message
        assert "redis.conf" in message


@pytest.mark.parametrize("policy", ["noeviction", "volatile-lru", "volatile-ttl"])
def test_policies_that_spare_keys_without_ttl_are_accepted(
    private: redis.Redis, private_url: str, policy: str
) -> None:
    private.config_set("maxmemory-policy", policy)
    RedisTaskStore(private_url).close()
    RedisDataPlane(private_url).close()


def test_without_config_the_policy_is_read_from_info(tmp_path: Path) -> None:
    options = ("--rename-command", "CONFIG", "", "--maxmemory-policy", "allkeys-lru")
    with redis_server(tmp_path, *options) as url:
        raw = redis.Redis.from_url(url)
        with pytest.raises(redis.ResponseError):
            raw.config_get("maxmemory-policy")
        raw.close()
        with pytest.raises(ConfigurationError, match="allkeys-lru"):
            RedisTaskStore(url)


def test_an_unreadable_policy_needs_an_explicit_opt_out(tmp_path: Path) -> None:
    options = ("--rename-command", "CONFIG", "", "--rename-command", "INFO", "")
    with redis_server(tmp_path, *options) as url:
        with pytest.raises(ConfigurationError, match="allow_eviction_check_failure=1"):
            RedisTaskStore(url)
        store = RedisTaskStore(url + "?allow_eviction_check_failure=1&prefix=p:")
        submit(store, "s1")
        assert [le.task_id for le in store.claim("a", 5, LEASE, NOW)] == ["s1_0"]
        store.close()


# ---- the key space -------------------------------------------------------------------------


def test_only_keys_under_the_prefix_change(private: redis.Redis, private_url: str) -> None:
    db1 = redis.Redis.from_url(private_url.removesuffix("/0") + "/1")
    private.set("other:key", b"untouched")
    private.hset("htcgrid:task:s1_0", "st", "foreign")  # the default prefix, not ours
    db1.set("other:key", b"in another db")
    before = _snapshot(private, db1)
    url = private_url + "?prefix=mine%3A"
    store, data = RedisTaskStore(url), RedisDataPlane(url)

    submit(store, "s1", n=4)
    submit(store, "s2", n=2)
    a, b, _, _ = store.claim("agent", 4, LEASE, NOW)
    store.heartbeat("agent", [(a.task_id, 1)], LEASE, NOW + 1)
    data.put(keys.task_output("s1", 0, 1), b"big result")
    finished = Outcome(a.task_id, 1, TaskState.FINISHED, output_ref=keys.task_output("s1", 0, 1))
    retried = Outcome(b.task_id, 1, TaskState.PENDING, log="crash")
    assert store.complete("agent", [finished, retried], NOW + 2) == [True, True]
    assert len(store.expire_leases(NOW + LEASE + 5).requeued) == 2
    store.cancel_session("s2", NOW + 6)
    store.wait_for_tasks(0.01)
    store.wait_for_session("s1", 0, 0.01)

    after = _snapshot(private, db1)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert changed and all(db == 0 and key.startswith(b"mine:") for db, key in changed)

    store.delete_session("s1")
    store.delete_session("s2")
    assert data.delete_prefix(keys.session_prefix("s1")) == 1
    left = {b"mine:seq", b"mine:functions", b"mine:owners:default"}  # sets of names
    assert set(private.keys("mine:*")) == left
    store.close()
    data.close()
    db1.close()


def _snapshot(*clients: redis.Redis) -> dict[tuple[int, bytes], bytes | None]:
    """Every key of every database given, with its serialised value."""
    return {
        (db, key): client.dump(key)
        for db, client in enumerate(clients)
        for key in client.scan_iter(count=1000)
    }


def test_our_url_options_do_not_reach_redis_py() -> None:
    url = (
        "rediss://u:pw@host:7000/3?prefix=a%3Ab%3A&socket_timeout=5&allow_eviction_check_failure=1"
    )
    client_url, prefix, allow = split_url(url)
    assert client_url == "rediss://u:pw@host:7000/3?socket_timeout=5"
    assert (prefix, allow) == ("a:b:", True)
    assert split_url("redis://h/0") == ("redis://h/0", "htcgrid:", False)


# ---- failures at the edge -------------------------------------------------------------------


def test_an_unreachable_server_is_backend_unavailable() -> None:
    url = f"redis://127.0.0.1:{_free_port()}/0"
    for backend in (RedisTaskStore, RedisDataPlane):
        with pytest.raises(BackendUnavailable) as caught:
            backend(url)
        assert isinstance(caught.value.__cause__, redis.ConnectionError)


def test_a_server_that_goes_away_is_backend_unavailable(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        store, data = RedisTaskStore(url), RedisDataPlane(url)
        submit(store, "s1")
    with pytest.raises(BackendUnavailable):
        store.claim("a", 1, LEASE, NOW)
    with pytest.raises(BackendUnavailable):
        store.wait_for_tasks(0.5)
    with pytest.raises(BackendUnavailable):
        data.get("sessions/s1/s1_0/input")
    store.close()
    data.close()


# ---- waking on the server -------------------------------------------------------------------


def _await_subscribers(store: RedisTaskStore, channel: str) -> None:
    client = redis.Redis.from_url(split_url(store.url)[0])
    deadline = time.monotonic() + 5
    while dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) < 1:
        assert time.monotonic() < deadline, f"nobody subscribed to {channel}"
        time.sleep(0.001)
    client.close()


def _wake_latency(
    store: RedisTaskStore, wait: Callable[[], object], channel: str, wake: Callable[[], object]
) -> tuple[object, float]:
    """Block ``wait()`` in a thread, ``wake()`` once it listens on ``channel``; returns the
    waiter's answer and the seconds from ``wake()`` being called to the waiter returning."""
    answer: list[object] = []
    thread = threading.Thread(target=lambda: answer.extend((wait(), time.perf_counter())))
    thread.start()
    _await_subscribers(store, channel)
    started = time.perf_counter()
    wake()
    thread.join(35)
    return answer[0], float(answer[1]) - started  # type: ignore[arg-type]


def _assert_prompt(latencies: list[float]) -> None:
    # A missed wake-up would sit out the waiter's 30 s timeout; the bounds leave room for a
    # machine busy with other work (a push lands in milliseconds when it is quiet; the speed
    # itself is measured in benchmarks/, not here).
    assert max(latencies) < 5.0, latencies
    assert statistics.median(latencies) < 0.5, latencies


@pytest.mark.parametrize("functions", [None, ["default"]])
def test_an_idle_waiter_wakes_within_milliseconds_of_a_submit(
    store: RedisTaskStore, functions: list[str] | None
) -> None:
    channel = store.keys.wake_any if functions is None else store.keys.wake("default")
    latencies = []
    for i in range(5):
        answer, latency = _wake_latency(
            store,
            lambda: store.wait_for_tasks(30, functions),
            channel,
            lambda: submit(store, f"s{i}"),  # noqa: B023 - called within the round
        )
        assert answer is True
        assert len(store.claim("agent", 5, LEASE, NOW)) == 1
        latencies.append(latency)
    _assert_prompt(latencies)


def test_a_waiting_client_wakes_within_milliseconds_of_a_completion(
    store: RedisTaskStore,
) -> None:
    submit(store, "s1", n=5)
    leases = store.claim("agent", 5, LEASE, NOW)
    latencies = []
    for seen, lease in enumerate(leases):
        answer, latency = _wake_latency(
            store,
            lambda: store.wait_for_session("s1", seen, 30),  # noqa: B023
            store.keys.progress("s1"),
            lambda: store.complete("agent", [finish(lease)], NOW),  # noqa: B023
        )
        assert answer == seen + 1
        latencies.append(latency)
    _assert_prompt(latencies)


def finish(lease: Lease) -> Outcome:
    return Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, b"1")


def test_waiting_for_another_function_sleeps_through_a_submit(store: RedisTaskStore) -> None:
    timer = threading.Timer(0.05, lambda: submit(store, "s1"))
    timer.start()
    assert store.wait_for_tasks(0.3, functions=["other"]) is False
    timer.join()
    assert store.wait_for_tasks(0.3, functions=["other", "default"]) is True


# ---- exact order at any count ---------------------------------------------------------------


@pytest.mark.parametrize("start", [2**53 - 3, 2**63 - 10])
def test_priority_and_fifo_stay_exact_beyond_2_to_the_53(
    store: RedisTaskStore, shared_url: str, start: int
) -> None:
    raw = redis.Redis.from_url(split_url(shared_url)[0])
    raw.set(store.keys.seq, start)
    raw.close()
    # Names sort against submission order, so a tie in the score could not hide by luck.
    names = ["s-z", "s-y", "s-x", "s-w", "s-v"]
    for name in names:
        submit(store, name, n=2)
    submit(store, "s-urgent", n=1, priority=9)
    order = [store.claim("a", 1, LEASE, NOW)[0].task_id for _ in range(11)]
    assert order == ["s-urgent_0"] + [f"{name}_{i}" for name in names for i in (0, 1)]


def test_a_retried_task_keeps_its_place_in_the_queue(store: RedisTaskStore) -> None:
    submit(store, "first", n=2)
    submit(store, "second", n=1)
    (lease,) = store.claim("a", 1, LEASE, NOW)
    store.complete("a", [Outcome(lease.task_id, 1, TaskState.PENDING)], NOW)
    order = [le.task_id for le in store.claim("a", 3, LEASE, NOW)]
    assert order == ["first_0", "first_1", "second_0"]


def test_a_small_task_stays_in_the_compact_encoding(store: RedisTaskStore, shared_url: str) -> None:
    sid = "8c4f3e2a-1b7d-4c1e-9f00-123456789abc"  # ids are UUIDs: the longest usual case
    submit(store, sid, n=1)
    raw = redis.Redis.from_url(split_url(shared_url)[0])
    key = store.keys.task(f"{sid}_0")
    assert raw.object("encoding", key) == b"listpack"
    (lease,) = store.claim("agent-with-a-long-name-0123456789", 1, LEASE, NOW)
    assert store.complete("agent-with-a-long-name-0123456789", [finish(lease)], NOW) == [True]
    assert raw.object("encoding", key) == b"listpack"
    raw.close()


# ---- one script call per batch --------------------------------------------------------------


def test_batches_are_one_script_call_each(
    private: redis.Redis, private_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisTaskStore(private_url)
    submit(store, "warm")
    (warm,) = store.claim("a", 1, LEASE, NOW)  # loads the scripts into the server
    store.complete("a", [Outcome(warm.task_id, 1, TaskState.FINISHED, b"1")], NOW)
    submit(store, "s1", n=300)
    sent: list[object] = []
    send = store._client.execute_command

    def counted(*args: Any, **options: Any) -> Any:
        sent.append(args[0])
        return send(*args, **options)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(store._client, "execute_command", counted)
    evalsha = _evalsha_calls(private)
    leases = store.claim("a", 300, LEASE, NOW)
    outcomes = [Outcome(le.task_id, 1, TaskState.FINISHED, b"1") for le in leases]
    assert all(store.complete("a", outcomes, NOW))
    assert len(leases) == 300 and sent == ["EVALSHA", "EVALSHA"]
    assert _evalsha_calls(private) - evalsha == 2
    store.close()


def _evalsha_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats")["cmdstat_evalsha"]["calls"])
