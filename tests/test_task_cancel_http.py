"""Per-task cancel over HTTP against a real ``htcgrid up``: ``Session.cancel(tasks=...)`` of
the HTTP client, ``htcgrid cancel SESSION --task ID|INDEX`` and ``Future.cancel()`` of an
``htcgrid.Executor`` call; running tasks are stopped by their agent, the rest run on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from grid_process import htcgrid_up
from test_executor import nap, until

import htcgrid
from htcgrid.errors import ValidationError

HERE = str(Path(__file__).parent)


@pytest.mark.slow
def test_cancel_of_some_tasks_over_http_from_the_cli_and_an_executor(tmp_path: Path) -> None:
    handler = ["--path", HERE, "--handler", "sample_handlers.sleep"]
    with htcgrid_up(tmp_path / "grid", *handler) as grid, htcgrid.connect(grid.url) as client:
        seconds = [60, 0.05, 60, 60, 60]
        session = client.submit([{"seconds": s} for s in seconds])
        until(lambda: session.status()["counts"]["processing"] > 0)  # the agent took them
        assert session.cancel(tasks=[0])["total_cancelled_tasks"] == 1
        with pytest.raises(ValidationError, match="is not a task of session"):
            session.cancel(tasks=[len(seconds)])
        command = [sys.executable, "-m", "htcgrid", "cancel", session.id, "--task", "2",
                   "--task", f"{session.id}_3", "--url", grid.url, "--json"]  # fmt: skip
        answer = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        assert json.loads(answer.stdout)["total_cancelled_tasks"] == 2
        session.cancel(tasks=[4])
        until(lambda: session.status()["complete"], seconds=30)  # nothing waited its 60 s
        counts = session.status()["counts"]
        assert (counts["cancelled"], counts["finished"]) == (4, 1)

        with htcgrid.Executor(grid.url, batch_seconds=1.0) as executor:
            executor.submit(nap, 0.0).result(60)
            slow, quick = executor.submit(nap, 60), executor.submit(nap, 0.05)
            until(lambda: slow.session_id is not None)  # type: ignore[attr-defined]
            assert slow.session_id == quick.session_id  # type: ignore[attr-defined]
            assert slow.cancel()
            assert quick.result(60) == 0.05
            calls = client.session(slow.session_id, 2)  # type: ignore[attr-defined]
            until(lambda: calls.status()["complete"], seconds=30)
            assert calls.status()["counts"]["cancelled"] == 1
