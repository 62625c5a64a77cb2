"""``AWSConnector.in_out_manager``: HTC-Grid's data-plane accessor, reading through the API.

HTC-Grid's clients read a task's input and output straight from Redis or S3, under the keys
``<task_id>-input`` and ``<task_id>-output``, stored base64-encoded. Here the grid's data
plane stays behind its API: this reader asks ``Client.task(task_id)`` and hands back the
same stored forms, so code written for HTC-Grid's manager reads the same bytes.

It is read-only: inputs travel with ``send()`` and outputs are written by the agents.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from htcgrid.errors import NotFound, ValidationError


class DataPlaneReader:
    """``get_input_to_utf8``/``…_bytes`` and ``get_output_to_utf8``/``…_bytes`` of one task.

    Each returns HTC-Grid's stored form: standard base64 of the task's JSON text. Raises
    ``NotFound`` for an unknown task, and for the output of a task that has none (not
    finished yet, failed or cancelled)."""

    def __init__(self, task: Callable[[str], dict[str, Any]]) -> None:
        self._task = task

    def get_input_to_bytes(self, task_id: str) -> bytes:
        return _stored(self._task(task_id)["payload"])

    def get_input_to_utf8(self, task_id: str) -> str:
        return self.get_input_to_bytes(task_id).decode()

    def get_output_to_bytes(self, task_id: str) -> bytes:
        task = self._task(task_id)
        if task["state"] != "finished":
            raise NotFound(f"task {task_id} has no output: it is {task['state']}")
        return _stored(task["output"])

    def get_output_to_utf8(self, task_id: str) -> str:
        return self.get_output_to_bytes(task_id).decode()

    def get_error_to_utf8(self, task_id: str) -> str:
        """The task's error as JSON text (``{"type", "message"}``); NotFound if it has none."""
        error = self._task(task_id).get("error")
        if not error:
            raise NotFound(f"task {task_id} has no error")
        return json.dumps(error, ensure_ascii=False)

    def _read_only(self, *args: Any) -> None:
        raise ValidationError(
            "the connector's in_out_manager is read-only: inputs travel with send() and "
            "outputs are written by the agents"
        )

    put_input_from_bytes = put_input_from_utf8 = _read_only
    put_output_from_bytes = put_output_from_utf8 = put_error_from_utf8 = _read_only


def _stored(value: Any) -> bytes:
    """HTC-Grid's stored form of a JSON value: base64 of its UTF-8 JSON text."""
    return base64.b64encode(json.dumps(value, ensure_ascii=False).encode())
