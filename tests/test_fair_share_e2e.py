"""Fair share end to end: ``htcgrid up`` (SQLite, agents, the API over HTTP, auth on).
Alice queues 2,000 tasks; then Bob, with the default share, submits a few: his tasks start
and finish while most of Alice's backlog still waits, instead of after it."""

from __future__ import annotations

from pathlib import Path

import httpx
from click.testing import CliRunner
from grid_process import htcgrid_up

import htcgrid
from htcgrid.cli import main

PASSWORD = "a password long enough"


def add_user(url: str, admin_key: str, name: str) -> str:
    """Add user ``name`` through the API as the admin; returns an API key of theirs."""
    heads = {"x-api-key": admin_key}
    body = {"name": name, "password": PASSWORD, "role": "user"}
    assert httpx.post(f"{url}/v1/users", json=body, headers=heads).status_code == 201
    key = httpx.post(f"{url}/v1/keys", json={"user": name}, headers=heads)
    assert key.status_code == 201, key.text
    return str(key.json()["api_key"])


def test_a_second_user_runs_before_the_first_users_backlog_drains(tmp_path: Path) -> None:
    with htcgrid_up(tmp_path / "grid", auth=True) as grid:
        admin_key = grid.credentials["api_key"]
        alice_key, bob_key = (add_user(grid.url, admin_key, n) for n in ("alice", "bob"))
        admin = ["--url", grid.url, "--token", admin_key]
        set_alice = CliRunner().invoke(main, ["user", "set", "alice", "--share", "1", *admin])
        assert set_alice.exit_code == 0 and "alice: share 1, no quota" in set_alice.output
        task = {"worker_arguments": ["10", "1", "1"]}  # 10 ms each
        with (
            htcgrid.connect(grid.url, api_key=alice_key) as alice,
            htcgrid.connect(grid.url, api_key=bob_key) as bob,
        ):
            backlog = alice.submit([task] * 2000)
            few = bob.submit([task] * 20)
            assert few.wait(timeout=120)["counts"]["finished"] == 20
            left = backlog.status()["counts"]
            # First in, first out, Bob would wait for all 2,000; with fair share he runs
            # on half the slots at once, so most of Alice's tasks are still to come.
            assert left["pending"] > 1000, left
            backlog.cancel()
        assert grid.stop() == 0
