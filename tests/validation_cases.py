"""One table of submit rules, run through the service (tests/test_service_unit.py) and the HTTP
API (tests/test_api_unit.py): each rule must give the same error on every path.

``message`` is the service's wording (htcgrid/submission.py), the one copy of each rule, and
both paths answer with it; ``names`` is the part of it an upload's commit names too (the field,
or the limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from htcgrid.errors import GridError, PayloadTooLarge, UnknownFunction, ValidationError
from htcgrid.settings import Settings

LIMITS = Settings(max_tasks_per_submit=3, max_payload_bytes=100)
"""The limits the table is written for: three tasks per submit, 100 bytes per task."""


@dataclass(frozen=True)
class Case:
    name: str
    body: dict[str, Any]  # SubmitRequest's keyword arguments, and the JSON body over HTTP
    error: type[GridError]
    message: str
    names: str


def _c(name: str, error: type[GridError], message: str, names: str, **body: Any) -> Case:
    return Case(name, {"tasks": [1], **body}, error, message, names)


RANGE = "must be between"
CASES: list[Case] = [
    Case("tasks: a string", {"tasks": "abc"}, ValidationError, "tasks must be a list", "tasks"),
    Case("tasks: an object", {"tasks": {"a": 1}}, ValidationError, "tasks must be a list", "tasks"),
    Case("tasks: empty", {"tasks": []}, ValidationError, "tasks: at least one task is needed", "tasks"),
    Case("tasks: over the count limit", {"tasks": [1, 2, 3, 4]}, PayloadTooLarge,
         "at most 3 tasks per submit, not 4", "at most 3 tasks per submit"),
    Case("tasks: one payload over the limit", {"tasks": [1, "x" * 200]}, PayloadTooLarge,
         "task 1 is 202 bytes; the limit is 100", "the limit is 100"),
    Case("tasks: a lone surrogate", {"tasks": ["a\ud800"]}, ValidationError,
         "task 0 holds text that is not valid Unicode (a lone surrogate \\ud800)", "not valid Unicode"),
    _c("priority: above 9", ValidationError, f"priority {RANGE} 0 and 9, not 10", "priority",
              priority=10),
    _c("priority: below 0", ValidationError, f"priority {RANGE} 0 and 9, not -1", "priority",
              priority=-1),
    _c("priority: a string", ValidationError, "priority must be an integer", "priority",
              priority="5"),
    _c("priority: a fraction", ValidationError, "priority must be an integer", "priority",
              priority=1.5),
    _c("priority: a bool", ValidationError, "priority must be an integer", "priority",
              priority=True),
    _c("task_priorities: too many", ValidationError, "task_priorities needs one entry per task",
       "task_priorities", task_priorities=[1, 2]),
    _c("task_priorities: a string", ValidationError, "task_priorities needs one entry per task",
              "task_priorities", task_priorities="9"),
    _c("task_priorities: out of range", ValidationError,
              f"task_priorities[] {RANGE} 0 and 9, not 10", "task_priorities", task_priorities=[10]),
    _c("function: a path", ValidationError,
              "function must be 1-64 letters, digits, '.', '_' or '-'", "function", function="../x"),
    _c("function: too long", ValidationError,
              "function must be 1-64 letters, digits, '.', '_' or '-'", "function", function="f" * 65),
    _c("function: a number", ValidationError,
              "function must be 1-64 letters, digits, '.', '_' or '-'", "function", function=5),
    _c("function: not deployed", UnknownFunction,
       "no function named 'nosuch' is deployed (deployed: none yet)", "'nosuch'", function="nosuch"),
    _c("session_id: an underscore", ValidationError,
              "session_id must be 1-64 letters, digits or '-'", "session_id", session_id="a_b"),
    _c("session_id: too long", ValidationError,
              "session_id must be 1-64 letters, digits or '-'", "session_id", session_id="s" * 65),
    _c("max_attempts: 0", ValidationError, f"max_attempts {RANGE} 1 and 100, not 0",
              "max_attempts", max_attempts=0),
    _c("max_attempts: 101", ValidationError, f"max_attempts {RANGE} 1 and 100, not 101",
              "max_attempts", max_attempts=101),
    _c("max_attempts: a string", ValidationError, "max_attempts must be an integer",
              "max_attempts", max_attempts="3"),
    _c("max_attempts: a bool", ValidationError, "max_attempts must be an integer",
              "max_attempts", max_attempts=True),
    _c("timeout_seconds: 0", ValidationError,
              "timeout_seconds must be a number of seconds between 0 and 604800", "timeout_seconds",
              timeout_seconds=0),
    _c("timeout_seconds: negative", ValidationError,
              "timeout_seconds must be a number of seconds between 0 and 604800", "timeout_seconds",
              timeout_seconds=-1),
    _c("timeout_seconds: over a week", ValidationError,
              "timeout_seconds must be a number of seconds between 0 and 604800", "timeout_seconds",
              timeout_seconds=7 * 86400 + 1),
    _c("timeout_seconds: a string", ValidationError,
              "timeout_seconds must be a number of seconds between 0 and 604800", "timeout_seconds",
              timeout_seconds="10"),
    _c("retry_on_error: a string", ValidationError, "retry_on_error must be true or false",
              "retry_on_error", retry_on_error="yes"),
]  # fmt: skip

SERVICE_ONLY: list[Case] = [
    Case("tasks: a Python object", {"tasks": [object()]}, ValidationError,
         "task 0 is not JSON-serialisable", "JSON-serialisable"),
    Case("tasks: a set", {"tasks": [1, {1, 2}]}, ValidationError,
         "task 1 is not JSON-serialisable", "JSON-serialisable"),
    Case("tasks: nested too deeply", {"tasks": [0, "deep"]}, ValidationError,
         "task 1 is nested too deeply; flatten it", "nested too deeply"),
    Case("timeout_seconds: infinite", {"tasks": [1], "timeout_seconds": float("inf")},
         ValidationError, "timeout_seconds must be a number of seconds between 0 and 604800",
         "timeout_seconds"),
    Case("timeout_seconds: NaN", {"tasks": [1], "timeout_seconds": float("nan")},
         ValidationError, "timeout_seconds must be a number of seconds between 0 and 604800",
         "timeout_seconds"),
    Case("max_attempts: a float", {"tasks": [1], "max_attempts": 2.0}, ValidationError,
         "max_attempts must be an integer", "max_attempts"),
]  # fmt: skip


def deep_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


def request_body(case: Case) -> dict[str, Any]:
    """The case's body, with its placeholders filled (a list too deep for any encoder)."""
    tasks = case.body.get("tasks")
    if isinstance(tasks, list) and "deep" in tasks:
        tasks = [deep_list(5000) if t == "deep" else t for t in tasks]
        return {**case.body, "tasks": tasks}
    return case.body


def params(cases: list[Case]) -> list[Any]:
    """``cases`` as pytest parameters, each named by its case."""
    return [pytest.param(case, id=case.name) for case in cases]
