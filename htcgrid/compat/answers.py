"""HTC-Grid's answers: dicts that also behave as the OpenAPI-generated models it returns.

HTC-Grid's ``send()`` answer and ``get_results()``'s ``metadata`` are generated model objects
(attribute access, ``to_dict()``); programs and tests written for it use both forms, e.g.
``results["metadata"].to_dict()`` or ``submission.session_id``. ``Answer`` is a ``dict``
(so ``==``, ``json.dumps`` and pickling work as before) with those methods added.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from htcgrid.client import TaskResult
from htcgrid.models import TaskState

CANCELLED_OUTPUT = "cancelled"
PLACEHOLDER_OUTPUT = "read_from_dataplane"  # HTC-Grid's /result answer before outputs are read


class Answer(dict[str, Any]):
    """A dict whose keys are also attributes, with the generated models' ``to_dict``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict[str, Any]:
        """A plain copy (nested answers included), as the generated models' ``to_dict``."""
        return {k: v.to_dict() if isinstance(v, Answer) else v for k, v in self.items()}

    def to_str(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str)


def submit_answer(session_id: str, task_ids: Sequence[str]) -> Answer:
    return Answer(session_id=session_id, task_ids=list(task_ids))


def _output_text(result: TaskResult) -> str:
    return json.dumps(result.output, ensure_ascii=False)


def _error_text(result: TaskResult) -> str:
    error = result.error or {}
    kind, message = error.get("type", "Error"), error.get("message", "")
    return f"{kind}: {message}" if message else kind


def results_answer(results: Sequence[TaskResult], with_outputs: bool = True) -> Answer:
    """HTC-Grid's get_results answer for these terminal tasks, in submission order.

    Without outputs it is the raw ``/result`` answer (``invoke_get_results_lambda``): the ids,
    and ``read_from_dataplane`` where the outputs would be."""
    ordered = sorted(results, key=lambda r: r.index)
    answer = Answer()
    for state, text in _TEXTS.items():
        chosen = [r for r in ordered if r.state is state]
        answer[state.value] = [r.task_id for r in chosen]
        answer[f"{state.value}_OUTPUT"] = [
            text(r) if with_outputs else PLACEHOLDER_OUTPUT for r in chosen
        ]
    answer["metadata"] = Answer(tasks_in_response=len(ordered))
    return answer


_TEXTS: dict[TaskState, Callable[[TaskResult], str]] = {
    TaskState.FINISHED: _output_text,
    TaskState.FAILED: _error_text,
    TaskState.CANCELLED: lambda _: CANCELLED_OUTPUT,
}


def cancel_answer(counts: dict[str, Any] | None) -> Answer:
    """One session's cancel counts; None (a session the grid does not know) counts zero."""
    keys = ("cancelled_pending", "cancelled_processing", "total_cancelled_tasks")
    return Answer({k: int((counts or {}).get(k, 0)) for k in keys})
