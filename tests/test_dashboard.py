"""The dashboard's server side through TestClient over the memory backends: its page and
files, who sees what, the filtered session pages, and the aggregates of its pages, read with
a bounded number of store reads whatever a session's size."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from htcgrid.api import create_app
from htcgrid.api import dashboard_data as dd
from htcgrid.api.dashboard import STATIC
from htcgrid.api.dashboard_history import BUCKET_SECONDS, KEEP_SECONDS, PREFIX
from htcgrid.auth.principals import Authenticator
from htcgrid.dataplane import open_data_plane
from htcgrid.errors import ValidationError
from htcgrid.models import ErrorInfo, Outcome, TaskState
from htcgrid.presence import AgentPresence
from htcgrid.service import GridService, SubmitRequest
from htcgrid.session_pages import SessionFilter, session_page
from htcgrid.settings import SecurityConfig, Settings
from htcgrid.store import open_store

NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(clock: Clock) -> GridService:
    settings = Settings(heartbeat_seconds=1.0, lease_seconds=5.0)
    return GridService(open_store("memory://"), open_data_plane("memory://"), settings, clock)


@pytest.fixture
def users(service: GridService) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    auth = Authenticator(service.data, SecurityConfig())
    headers = {}
    for name, role in (("root", "admin"), ("alice", "user"), ("bob", "user")):
        token = auth.issue(auth.add_user(name, "a long password", role)).access_token
        headers[name] = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(service, auth=auth)) as client:
        yield client, headers


def submit(service: GridService, n: int, owner: str = "alice", **options: Any) -> str:
    request = SubmitRequest(tasks=[{"i": i} for i in range(n)], **options)
    return service.submit(request, owner=owner).session_id


def run(service: GridService, clock: Clock, count: int, fail_every: int = 0) -> None:
    """Run ``count`` tasks one after the other, a second apart, each for 0.5 s."""
    for _ in range(count):
        clock.now += 1
        [lease] = service.store.claim("agent", 1, 60, clock.now)
        failed = fail_every and lease.index % fail_every == 0
        outcome = (
            Outcome(lease.task_id, lease.attempt, TaskState.FAILED, error=ErrorInfo("E", "boom"))
            if failed
            else Outcome(lease.task_id, lease.attempt, TaskState.FINISHED, output=b"1")
        )
        assert service.store.complete("agent", [outcome], clock.now + 0.5) == [True]


# ---- the page ------------------------------------------------------------------------------


def test_the_page_and_its_files_are_served_with_a_policy_that_allows_only_this_server(
    service: GridService,
) -> None:
    http = TestClient(create_app(service))
    page = http.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in re.findall(r'(?:src|href)="(/dashboard/[^"]+)"', page.text):
        answer = http.get(asset)
        assert answer.status_code == 200, asset
        assert "content-security-policy" in answer.headers
    assert http.get("/dashboard/../api/app.py").status_code == 404
    assert http.get("/dashboard/nothing.js").status_code == 404


def test_no_file_of_the_dashboard_loads_anything_from_elsewhere() -> None:
    for path in STATIC.iterdir():
        text = path.read_text().replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://|//cdn", text), path.name


def test_every_dashboard_answer_needs_a_signed_in_caller(users: tuple[TestClient, Any]) -> None:
    http, _ = users
    for path in ("/v1/dashboard/overview", "/v1/dashboard/agents"):
        assert http.get(path).status_code == 401, path


# ---- sessions ------------------------------------------------------------------------------


def test_a_user_sees_only_their_sessions_and_an_admin_filters_by_owner(
    service: GridService, users: tuple[TestClient, Any]
) -> None:
    http, headers = users
    mine, theirs = submit(service, 3, "alice"), submit(service, 2, "bob")
    page = http.get("/v1/sessions", headers=headers["alice"]).json()
    assert [s["session_id"] for s in page["sessions"]] == [mine]
    assert page["cursor"] is None
    asked = http.get("/v1/sessions?owner=bob", headers=headers["alice"]).json()
    assert asked["sessions"] == []
    admin = http.get("/v1/sessions?owner=bob", headers=headers["root"]).json()
    assert [s["session_id"] for s in admin["sessions"]] == [theirs]
    assert admin["sessions"][0]["counts"]["pending"] == 2
    first = http.get("/v1/sessions?state=active&limit=1", headers=headers["root"]).json()
    assert len(first["sessions"]) == 1 and first["cursor"] == 1
    rest = http.get("/v1/sessions?state=active&cursor=1", headers=headers["root"]).json()
    assert [s["session_id"] for s in first["sessions"] + rest["sessions"]] == [theirs, mine]
    assert http.get("/v1/sessions?state=done", headers=headers["root"]).status_code == 400
    detail = http.get(f"/v1/dashboard/sessions/{theirs}", headers=headers["alice"])
    assert detail.status_code == 404


def test_pages_of_filtered_sessions_cover_every_match_once(
    service: GridService, clock: Clock
) -> None:
    made = []
    for i in range(23):
        clock.now += 1
        made.append(submit(service, 1, "alice", function="default", priority=i % 3))
    cancelled = made[4]
    service.cancel(cancelled, "alice")
    seen: list[str] = []
    cursor: int | None = 0
    while cursor is not None:
        page = session_page(service, None, SessionFilter(state="active"), 5, cursor)
        seen.extend(s.info.id for s in page.sessions)
        cursor = page.cursor
    assert seen == [s for s in reversed(made) if s != cancelled]
    only = session_page(service, None, SessionFilter(state="cancelled"), 5, 0)
    assert [s.info.id for s in only.sessions] == [cancelled]
    none = session_page(service, None, SessionFilter(function="other"), 5, 0)
    assert none.sessions == [] and none.cursor is None


def test_a_rare_match_answers_a_short_page_with_a_cursor_to_go_on_from(
    service: GridService, clock: Clock
) -> None:
    for _ in range(12):
        clock.now += 1
        submit(service, 1)
    page = session_page(service, None, SessionFilter(state="cancelled"), 5, 0, scan_limit=4)
    assert page.sessions == [] and page.cursor is not None and page.cursor >= 4
    with pytest.raises(ValidationError, match="state must be one of"):
        SessionFilter(state="done")


# ---- a session -----------------------------------------------------------------------------


def test_a_sessions_charts_and_failures_come_from_its_results(
    service: GridService, clock: Clock, users: tuple[TestClient, Any]
) -> None:
    http, headers = users
    sid = submit(service, 60)
    run(service, clock, 50, fail_every=10)
    d = http.get(f"/v1/dashboard/sessions/{sid}", headers=headers["alice"]).json()
    assert d["session"]["counts"] == {
        "pending": 10,
        "processing": 0,
        "finished": 45,
        "failed": 5,
        "cancelled": 0,
    }
    done = [point[1] for point in d["completion"]]
    assert done[0] == 0 and done[-1] == 50 and done == sorted(done)
    assert sum(d["durations"]["counts"]) == d["durations"]["sampled"] == 50
    assert d["durations"]["edges"][0] == pytest.approx(0.5)
    assert sum(d["queue_waits"]["counts"]) == 50
    assert [t["index"] for t in d["failed"]] == [0, 10, 20, 30, 40]
    assert d["failed"][0]["error"] == {"type": "E", "message": "boom"}
    assert d["scan_complete"] and d["scanned"] == 50


def test_a_big_session_opens_with_a_bounded_number_of_reads(
    service: GridService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dd, "SCAN_PER_CALL", 1000)
    sid = submit(service, 5000)
    leases = service.store.claim("agent", 3000, 60, clock.now)
    ended = [Outcome(le.task_id, le.attempt, TaskState.FINISHED, output=b"1") for le in leases]
    assert all(service.store.complete("agent", ended, clock.now + 1))
    reads: list[int] = []
    results = service.store.results

    def counted(session_id: str, cursor: int = 0, limit: int = 1000) -> Any:
        page = results(session_id, cursor, limit)
        reads.append(len(page))
        return page

    monkeypatch.setattr(service.store, "results", counted)
    sessions = dd.Sessions(service.store, clock)
    first = sessions.detail(service.session(sid))
    assert sum(reads) <= dd.PROBES * dd.PROBE_TASKS + 1 + dd.SCAN_PER_CALL
    assert first["scanned"] == dd.SCAN_PER_CALL and not first["scan_complete"]
    assert first["completion"][-1][1] == 3000
    reads.clear()
    assert sessions.detail(service.session(sid))["scanned"] == dd.SCAN_PER_CALL
    assert reads == []  # within REFRESH_SECONDS: nothing read again
    clock.now += dd.REFRESH_SECONDS
    again = sessions.detail(service.session(sid))  # same completion number: charts cached
    assert sum(reads) <= dd.SCAN_PER_CALL and again["scanned"] == 2 * dd.SCAN_PER_CALL


def test_a_big_sessions_failed_tasks_are_listed_on_the_first_look(
    service: GridService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The failed tasks come from the store's index of tasks by state, not from the bounded
    scan of results: the last tasks to end are listed before the scan reaches them."""
    monkeypatch.setattr(dd, "SCAN_PER_CALL", 1000)
    monkeypatch.setattr(dd, "LISTED", 2)
    sid = submit(service, 5000)
    bad = {4990, 4995, 4999}
    outcomes = [
        Outcome(le.task_id, le.attempt, TaskState.FAILED, error=ErrorInfo("E", f"bad {le.index}"))
        if le.index in bad
        else Outcome(le.task_id, le.attempt, TaskState.FINISHED, output=b"1")
        for le in service.store.claim("agent", 5000, 60, clock.now)
    ]
    assert all(service.store.complete("agent", outcomes, clock.now + 1))
    d = dd.Sessions(service.store, clock).detail(service.session(sid))
    assert not d["scan_complete"]
    assert [t["index"] for t in d["failed"]] == [4990, 4995]
    assert d["failed"][1]["error"] == {"type": "E", "message": "bad 4995"}
    rest, cursor = service.store.tasks_in_state(sid, TaskState.FAILED, d["failed_cursor"], 2)
    assert [r.index for r in rest] == [4999] and cursor is None


# ---- the overview and agents ---------------------------------------------------------------


def test_the_overview_counts_queue_failures_and_throughput(
    service: GridService, clock: Clock
) -> None:
    grid = dd.Grid(service.store, 5.0, clock)
    submit(service, 10, priority=3)
    first = grid.overview()
    assert first["tasks"]["pending"] == 10 and first["failure_rate"] is None
    assert first["queue"] == [{"function": "default", "priority": 3, "pending": 10}]
    run(service, clock, 4, fail_every=2)
    clock.now += dd.SAMPLE_SECONDS
    assert grid.overview()["throughput"] == []  # the same minute: one record
    clock.now = NOW + BUCKET_SECONDS
    second = grid.overview()
    assert second["failure_rate"] == pytest.approx(0.5)
    [point] = second["throughput"]
    assert point["finished_per_second"] == pytest.approx(4 / BUCKET_SECONDS)
    assert point["submitted_per_second"] == 0


def test_throughput_history_outlives_a_restart_and_agrees_between_servers(
    service: GridService, clock: Clock
) -> None:
    first = dd.Grid(service.store, 5.0, clock)
    submit(service, 10)
    first.overview()
    run(service, clock, 6)
    clock.now = NOW + BUCKET_SECONDS
    [point] = first.overview()["throughput"]
    assert point["finished_per_second"] == pytest.approx(6 / BUCKET_SECONDS)
    # a restarted server (or a second one on the same store) draws the same history
    restarted = dd.Grid(service.store, 5.0, clock)
    assert restarted.overview()["throughput"] == [point]
    submit(service, 30)
    clock.now = NOW + 2 * BUCKET_SECONDS
    again = restarted.overview()["throughput"]
    assert again[0] == point and again[1]["submitted_per_second"] == pytest.approx(0.5)
    # hours later the old minutes are pruned from the store
    clock.now = NOW + KEEP_SECONDS + 3 * BUCKET_SECONDS
    assert restarted.overview()["throughput"] == []
    assert len(service.store.list_meta(PREFIX)) == 1


def test_agents_are_for_admins_and_a_silent_one_is_lost(
    service: GridService, clock: Clock, users: tuple[TestClient, Any]
) -> None:
    http, headers = users
    AgentPresence(service.store, "a1", slots=4, host="h", pid=1).beat(clock.now, running=3)
    assert http.get("/v1/dashboard/agents", headers=headers["alice"]).status_code == 403
    [alive] = http.get("/v1/dashboard/agents", headers=headers["root"]).json()["agents"]
    assert alive["agent_id"] == "a1" and alive["slots"] == 4 and not alive["lost"]
    assert alive["running"] == 3
    clock.now += 5.5  # past max(3 heartbeats, a lease)
    [lost] = http.get("/v1/dashboard/agents", headers=headers["root"]).json()["agents"]
    assert lost["lost"] and lost["heartbeat_age"] == pytest.approx(5.5)
    overview = http.get("/v1/dashboard/overview", headers=headers["root"]).json()
    assert overview["agents"] == 0 and overview["lost_agents"] == 1
    json.dumps(overview)


def test_an_ended_sessions_counts_are_read_once_until_a_retry_moves_them(
    service: GridService, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = submit(service, 4)
    run(service, clock, 4, fail_every=2)
    reads: list[str] = []
    count_states = service.store.count_states

    def counted(session_id: str) -> Any:
        reads.append(session_id)
        return count_states(session_id)

    monkeypatch.setattr(service.store, "count_states", counted)
    for _ in range(3):
        [status] = session_page(service, None, SessionFilter(), 10).sessions
    assert reads == [sid] and status.counts[TaskState.FAILED] == 2
    service.retry(sid, owner="alice")
    [status] = session_page(service, None, SessionFilter(), 10).sessions
    assert status.counts[TaskState.PENDING] == 2 and len(reads) == 2
