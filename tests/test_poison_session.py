"""A session's own ``poison_after``: stored with the session on every path, and the rule the
agent applies when a task of that session kills its worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from agent_thread import running

import htcgrid
from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.backends import open_grid
from htcgrid.service import GridService, SubmitRequest
from htcgrid.settings import Settings

HERE = str(Path(__file__).parent)
SETTINGS = Settings(heartbeat_seconds=0.2, lease_seconds=5.0, poison_after=3)


@pytest.mark.filterwarnings("ignore::htcgrid.errors.NoAgentWarning")
def test_a_session_sets_how_soon_a_task_is_poison(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'grid.db'}"
    store, data = open_grid(url)
    worker = WorkerConfig(handler="sample_handlers.exit_now", paths=(HERE,))
    try:
        with running(Agent(store, data, SETTINGS, worker, 1)), htcgrid.connect(url) as client:
            strict = client.submit([1], max_attempts=6, poison_after=1)
            lenient = client.submit([2], max_attempts=6)
            (first,) = strict.results(timeout=60)
            (second,) = lenient.results(timeout=60)
        assert first.error is not None and first.error["type"] == "PoisonTask"
        assert first.attempts == 1  # the session's own rule: the first death is enough
        assert second.error is not None and second.error["type"] == "PoisonTask"
        assert second.attempts == 3  # the agent's poison_after
        info = store.get_session(strict.id)
        assert info is not None and info.spec.poison_after == 1
    finally:
        store.close()
        data.close()


def test_poison_after_is_checked_like_max_attempts(tmp_path: Path) -> None:
    store, data = open_grid(f"sqlite://{tmp_path / 'grid.db'}")
    service = GridService(store, data)
    with pytest.raises(htcgrid.ValidationError, match="poison_after"):
        service.submit(SubmitRequest(tasks=[1], poison_after=0))
    sid = service.submit(SubmitRequest(tasks=[1], poison_after=5)).session_id
    assert service.session(sid).spec.poison_after == 5
    store.close()
