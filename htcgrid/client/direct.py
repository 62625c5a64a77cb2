"""The in-process transport: the client's one door to the server side (``htcgrid.service``),
opened lazily so that importing the client never imports the control plane."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from htcgrid import frames
from htcgrid.client.upload import PartTask, part_entries
from htcgrid.wire import FIRST_PAGE


class DirectTransport:
    """Calls the control-plane logic in this process, straight on the backends."""

    def __init__(self, url: str, data_url: str | None = None, create: bool = True) -> None:
        from htcgrid.backends import open_grid
        from htcgrid.service import GridService

        store, data = open_grid(url, data_url or default_data_url(), create=create)
        self.service = GridService(store, data)

    @classmethod
    def of(cls, service: Any) -> DirectTransport:
        """A transport over a ``GridService`` already open (one embedded in a program)."""
        transport = cls.__new__(cls)
        transport.service = service
        return transport

    def submit(self, body: dict[str, Any], wait: float = 0.0) -> dict[str, Any]:
        from htcgrid.service import SubmitRequest

        answer = self.service.submit(SubmitRequest.from_json(body)).as_dict()
        if wait > 0:  # as over HTTP: the first page of results, waited for
            answer["results"] = self.results(answer["session_id"], 0, FIRST_PAGE, wait)
        return answer

    def status(self, session_id: str, wait: float) -> dict[str, Any]:
        if wait > 0:
            self.service.releaser.waiting_on(session_id)
        return self.service.status(session_id, wait_seconds=wait).as_dict()

    def results(self, session_id: str, cursor: int, limit: int, wait: float) -> dict[str, Any]:
        from htcgrid.wire import results_json

        if wait > 0:
            self.service.releaser.waiting_on(session_id)
        page = self.service.results(session_id, cursor, limit, wait)
        return frames.results(results_json(page, framed=True))  # each output read on its own

    def tasks(self, session_id: str, state: str, cursor: str | None, limit: int) -> dict[str, Any]:
        from htcgrid.wire import result_dict

        records, after = self.service.tasks_in_state(session_id, state, cursor, limit)
        return {"tasks": [result_dict(r) for r in records], "cursor": after}

    def cancel(self, session_id: str, tasks: Sequence[str | int] | None = None) -> dict[str, Any]:
        from htcgrid.wire import cancel_dict

        return cancel_dict(session_id, self.service.cancel(session_id, tasks=tasks))

    def delete(self, session_id: str) -> None:
        self.service.delete(session_id)

    def retry(self, session_id: str, task_ids: list[str] | None) -> dict[str, Any]:
        return {"session_id": session_id, "retried": self.service.retry(session_id, task_ids)}

    def purge(self, older_than_seconds: float) -> dict[str, Any]:
        return {"purged": self.service.purge(older_than_seconds)}

    def sessions(self, limit: int, offset: int) -> dict[str, Any]:
        return {"sessions": [s.as_dict() for s in self.service.sessions(None, limit, offset)]}

    def task(self, tid: str) -> dict[str, Any]:
        from htcgrid.wire import task_dict

        return task_dict(self.service.task(tid))

    def task_json(self, url: str) -> bytes:
        tid, what = url.rstrip("/").split("/")[-2:]
        if what == "payload":
            return self.service.task_payload(tid)
        return self.service.task_output(tid)

    def stage_payload(self, session_id: str, index: int, payload: bytes) -> dict[str, Any]:
        return self.service.uploads.stage_payload(session_id, index, payload, "")

    def stage_part(self, session_id: str, part: int, tasks: list[PartTask]) -> dict[str, Any]:
        count = self.service.uploads.stage_part(session_id, part, part_entries(tasks), "")
        return {"part": part, "tasks": count}

    def commit(self, session_id: str, body: dict[str, Any]) -> dict[str, Any]:
        from htcgrid.submission import commit_from_json

        request, count, parts = commit_from_json(body, session_id)
        return self.service.uploads.commit(request, count, parts, "").as_dict()

    def close(self) -> None:
        self.service.releaser.stop()
        self.service.store.close()
        self.service.data.close()


def default_data_url() -> str | None:
    """The data plane the environment names, if any; else the grid's own is used (the one
    its store records, see ``htcgrid.backends``)."""
    return os.environ.get("HTCGRID_DATA_URL") or None
