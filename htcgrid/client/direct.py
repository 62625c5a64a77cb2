"""The in-process transport: the client's one door to the server side (``htcgrid.service``),
opened lazily so that importing the client never imports the control plane."""

from __future__ import annotations

import os
from typing import Any

from htcgrid.client.upload import PartTask, part_entries


class DirectTransport:
    """Calls the control-plane logic in this process, straight on the backends."""

    def __init__(self, url: str, data_url: str | None = None, create: bool = True) -> None:
        from htcgrid.backends import open_grid
        from htcgrid.service import GridService

        store, data = open_grid(url, data_url or default_data_url(), create=create)
        self.service = GridService(store, data)

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        from htcgrid.service import SubmitRequest

        result = self.service.submit(SubmitRequest(**body))
        answer: dict[str, Any] = {
            "session_id": result.session_id,
            "task_count": result.task_count,
            "created": result.created,
        }
        if result.warning:
            answer["warning"] = result.warning
        return answer

    def status(self, session_id: str, wait: float) -> dict[str, Any]:
        return self.service.status(session_id, wait_seconds=wait).as_dict()

    def results(self, session_id: str, after: int, limit: int, wait: float) -> dict[str, Any]:
        from htcgrid.service import result_dict

        page = self.service.results(session_id, after, limit, wait)
        return {
            "results": [result_dict(r) for r in page.results],
            "next": page.next_seq,
            "complete": page.complete,
        }

    def cancel(self, session_id: str) -> dict[str, Any]:
        from htcgrid.service import cancel_dict

        return cancel_dict(session_id, self.service.cancel(session_id))

    def delete(self, session_id: str) -> None:
        self.service.delete(session_id)

    def sessions(self, limit: int, offset: int) -> dict[str, Any]:
        return {"sessions": [s.as_dict() for s in self.service.sessions(None, limit, offset)]}

    def task(self, tid: str) -> dict[str, Any]:
        from htcgrid.service import task_dict

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
        from htcgrid.service import SubmitRequest

        options = dict(body)
        count, parts = options.pop("task_count"), options.pop("parts")
        request = SubmitRequest(tasks=(), session_id=session_id, **options)
        result = self.service.uploads.commit(request, count, parts, "")
        answer: dict[str, Any] = {
            "session_id": result.session_id,
            "task_count": result.task_count,
            "created": result.created,
        }
        if result.warning:
            answer["warning"] = result.warning
        return answer

    def close(self) -> None:
        self.service.store.close()
        self.service.data.close()


def default_data_url() -> str | None:
    """The data plane the environment names, if any; else the grid's own is used (the one
    its store records, see ``htcgrid.backends``)."""
    return os.environ.get("HTCGRID_DATA_URL") or None
