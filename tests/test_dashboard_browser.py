"""The dashboard as a person sees it: headless Chromium (Debian's ``/usr/bin/chromium``, driven
by Playwright; no browser is ever downloaded) against a real ``htcgrid up`` with logins.
Each test leaves a screenshot in ``tests/artifacts/``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grid_process import MOCK, ROOT, GridProcess, htcgrid_up
from procs import until

import htcgrid

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridProcess]:
    with htcgrid_up(tmp_path_factory.mktemp("dashboard"), auth=True) as grid:
        yield grid
        grid.stop()


@pytest.fixture(scope="module")
def client(grid: GridProcess) -> Iterator[htcgrid.Client]:
    with htcgrid.connect(grid.url, api_key=grid.credentials["api_key"]) as client:
        yield client


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is missing: apt-get install -y chromium")
        pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any, grid: GridProcess, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1300, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(grid.url + "/")
    credentials = grid.credentials
    page.fill("#username", credentials["user"])
    page.fill("#password", credentials["password"])
    page.click("#login-button")
    page.wait_for_selector("#overview-page:not([hidden])")
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    try:
        yield page
        assert page.evaluate("window.loadedOnce === true"), "the page reloaded"
        assert not errors, errors
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
        context.close()


def open_session(page: Any, session_id: str) -> None:
    page.goto(page.url.split("#")[0] + f"#/session/{session_id}")
    expect(page.locator("#session-id")).to_have_text(session_id)


def session_state(page: Any) -> str:
    return str(page.get_attribute("#session-id", "data-state"))


def test_a_wrong_password_is_refused_on_the_login_page(browser: Any, grid: GridProcess) -> None:
    page = browser.new_page()
    try:
        page.goto(grid.url + "/")
        page.fill("#username", "admin")
        page.fill("#password", "not the password")
        page.click("#login-button")
        expect(page.locator("#login-error")).to_have_text(re.compile(r"wrong"))
        assert page.is_hidden("#overview-page")
    finally:
        page.close()


def test_a_session_of_20000_tasks_progresses_to_done_without_a_reload(
    page: Any, client: htcgrid.Client
) -> None:
    # the last two tasks take 4 s, so the session is seen running for two refreshes (every
    # 2 s) however fast the rest goes, and the page must then move on to done by itself
    slow = {19_998, 19_999}
    session = client.submit(
        [{"worker_arguments": [4000 if i in slow else 0]} for i in range(20_000)]
    )
    page.click("#nav a[data-page=sessions]")
    row = page.wait_for_selector(f"tr[data-session-id='{session.id}']")
    assert row.query_selector(".progress .bar") is not None
    open_session(page, session.id)
    seen = set()

    def done() -> bool:
        text = page.text_content("#session-counts") or ""
        seen.add(text)
        return session_state(page) == "complete"

    until(done, 90, "the dashboard to show the session complete")
    assert "finished 20,000" in (page.text_content("#session-counts") or "")
    assert len(seen) >= 2, "the counts never changed while the page was open"
    width = page.evaluate("document.querySelector('#session-bar .bar').style.width")
    assert float(width.rstrip("%")) == 100
    page.wait_for_selector("#completion-chart path.done")


def test_a_failed_tasks_traceback_and_log_are_one_click_away(
    page: Any, client: htcgrid.Client
) -> None:
    session = client.submit([{"worker_arguments": [0]}, {"worker_arguments": ["not a number"]}])
    session.wait(timeout=60)
    open_session(page, session.id)
    link = page.wait_for_selector(f"#failed-table tr[data-task-id='{session.id}_1'] a")
    assert "ValueError" in (page.text_content("#failed-table") or "")
    link.click()
    page.wait_for_selector("#task-panel:not([hidden])")
    assert "int(" in (page.text_content("#task-traceback") or "")
    assert "Starting task processing" in (page.text_content("#task-log") or "")


def test_a_running_session_is_cancelled_after_a_confirmation(
    page: Any, client: htcgrid.Client
) -> None:
    session = client.submit([{"worker_arguments": [1000]} for _ in range(40)])
    open_session(page, session.id)
    page.click("#cancel-session")
    page.wait_for_selector("#confirm:not([hidden])")
    assert session.id in (page.text_content("#confirm-text") or "")
    page.click("#confirm-yes")
    until(lambda: session_state(page) == "cancelled", 30, "the session shown cancelled")
    status = session.status()
    assert status["cancelled"] and status["counts"]["cancelled"] > 0


def test_a_task_is_found_by_id_and_by_index_in_a_big_session(
    page: Any, client: htcgrid.Client
) -> None:
    find_in_big_session(page, client, 100_000)


@pytest.mark.long
@pytest.mark.timeout(900)
def test_a_task_is_found_in_a_session_of_a_million_tasks(page: Any, client: htcgrid.Client) -> None:
    find_in_big_session(page, client, 1_000_000)


def find_in_big_session(page: Any, client: htcgrid.Client, n: int) -> None:
    session = client.submit(({"worker_arguments": [0]} for _ in range(n)), priority=0)
    try:
        open_session(page, session.id)
        page.fill("#task-search", str(n - 7))
        page.click("#task-search-button")
        expect(page.locator("#task-id")).to_have_text(f"{session.id}_{n - 7}")
        page.fill("#task-search", f"{session.id}_3")
        page.click("#task-search-button")
        expect(page.locator("#task-id")).to_have_text(f"{session.id}_3")
        page.fill("#task-search", f"{session.id}_{n}")
        page.click("#task-search-button")
        expect(page.locator("#task-search-error")).to_have_text(re.compile(r"no task"))
        assert re.search(rf"{n:,}", page.text_content("#session-meta") or "")
    finally:
        session.cancel()


def test_an_agent_killed_with_sigkill_is_shown_lost(page: Any, grid: GridProcess) -> None:
    url = f"sqlite:///{grid.data_dir / 'grid.db'}"
    agent = subprocess.Popen(
        [sys.executable, "-m", "htcgrid", "agent", "--url", url, "--slots", "1", "--path",
         str(MOCK), "--handler", "mock_compute_engine.lambda_handler",
         "--heartbeat-seconds", "0.5", "--lease-seconds", "3"],
        stderr=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    try:
        page.click("#nav a[data-page=agents]")
        row = f"#agents-table tr:has(td:text-is('{agent.pid}'))"
        page.wait_for_selector(row)
        assert page.text_content(f"{row} td.status") == "alive"
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        page.wait_for_selector(f"{row}.lost")
        assert page.text_content(f"{row} td.status") == "lost"
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait(timeout=10)


def test_failed_tasks_page_past_the_first_hundred(page: Any, client: htcgrid.Client) -> None:
    session = client.submit([{"worker_arguments": ["not a number"]}] * 102)
    session.wait(timeout=90)
    open_session(page, session.id)
    rows = "#failed-table tbody tr"
    until(lambda: len(page.query_selector_all(rows)) == 100, 30, "the first 100 failed tasks")
    assert "102 failed" in (page.text_content("#failed-note") or "")
    page.click("#failed-next")
    until(lambda: len(page.query_selector_all(rows)) == 2, 30, "the last 2 failed tasks")
    assert page.query_selector(f"{rows}[data-task-id='{session.id}_101']") is not None
    page.click("#failed-first")
    until(lambda: len(page.query_selector_all(rows)) == 100, 30, "the first page again")
