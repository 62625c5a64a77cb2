"""The edges of htcgrid.submission that the table of tests/validation_cases.py leaves out: how a
JSON body becomes a request (integers, unknown and misplaced fields) and the bounds of each
rule, exactly at the limit and one past it."""

from __future__ import annotations

import math
from typing import Any

import pytest

from htcgrid.errors import ValidationError
from htcgrid.models import MAX_PRIORITY, MAX_TIMEOUT_SECONDS
from htcgrid.submission import (
    SubmitRequest,
    check_names,
    commit_from_json,
    int_in,
    json_integers,
    task_priorities,
    timeout_seconds,
)


@pytest.mark.parametrize(
    ("given", "becomes"),
    [(3.0, 3), (3, 3), (-0.0, 0), (3.5, 3.5), (True, True), ("3", "3"), (None, None)],
)
def test_only_a_whole_float_becomes_an_int(given: Any, becomes: Any) -> None:
    out = json_integers({"priority": given, "task_priorities": [given]})
    assert out["priority"] == becomes and type(out["priority"]) is type(becomes)
    assert out["task_priorities"] == [becomes]


def test_json_integers_leaves_what_is_not_an_integer_field_and_copies() -> None:
    body = {"timeout_seconds": 30.0, "tasks": [1.0], "parts": 2.0}
    out = json_integers(body)
    assert out == {"timeout_seconds": 30.0, "tasks": [1.0], "parts": 2}
    assert type(out["timeout_seconds"]) is float and body["parts"] == 2.0  # not changed


def test_non_finite_and_huge_floats_are_refused_by_the_rule_not_the_conversion() -> None:
    for value in (math.inf, math.nan):
        assert json_integers({"priority": value})["priority"] is value
    huge = json_integers({"priority": 1e300})["priority"]
    assert isinstance(huge, int)
    with pytest.raises(ValidationError, match="priority must be between 0 and 9"):
        int_in("priority", huge, 0, MAX_PRIORITY)


def test_from_json_names_the_unknown_fields_and_the_known_ones() -> None:
    with pytest.raises(ValidationError) as refused:
        SubmitRequest.from_json({"tasks": [1], "owner": "bob", "colour": "red"})
    message = str(refused.value)
    assert message.startswith("unknown field colour, owner (known: tasks, session_id")
    with pytest.raises(ValidationError, match=r"^the body must be a JSON object"):
        SubmitRequest.from_json([1, 2])
    with pytest.raises(ValidationError, match=r"^tasks: at least one task is needed$"):
        SubmitRequest.from_json({"priority": 1})


def test_from_json_keeps_the_values_for_the_rules() -> None:
    request = SubmitRequest.from_json(
        {"tasks": [1], "priority": "9", "max_attempts": 2.0, "poison_after": 3.0}
    )
    assert (request.priority, request.max_attempts, request.tasks) == ("9", 2, [1])
    assert type(request.poison_after) is int and request.poison_after == 3


def test_a_commit_takes_its_session_from_the_path_and_its_tasks_from_its_parts() -> None:
    request, count, parts = commit_from_json({"task_count": 3.0, "parts": 1, "priority": 4}, "s")
    assert (request.session_id, request.tasks, request.priority, count, parts) == ("s", (), 4, 3, 1)
    assert commit_from_json({}, "s")[1:] == (None, None)  # the commit's own rule refuses them
    for field in ("tasks", "task_priorities", "session_id"):
        with pytest.raises(ValidationError, match=f"unknown field {field}: a commit's tasks"):
            commit_from_json({"task_count": 1, "parts": 1, field: [1]}, "s")
    with pytest.raises(ValidationError, match="body must be a JSON object"):
        commit_from_json("task_count=1", "s")


@pytest.mark.parametrize(
    ("session_id", "function", "ok"),
    [
        ("a" * 64, "f" * 64, True),
        ("a-B-9", "pkg.mod_x-1", True),
        ("a" * 65, "f", False),
        ("a", "f" * 65, False),
        ("", "f", False),
        ("a", "", False),
        ("a.b", "f", False),  # a dot is a function's, not a session's
        ("a", "f/g", False),
        (5, "f", False),
    ],
)
def test_names_at_their_limits(session_id: Any, function: Any, ok: bool) -> None:
    if ok:
        check_names(session_id, function)
    else:
        with pytest.raises(ValidationError, match="must be 1-64"):
            check_names(session_id, function)


def test_timeouts_at_their_limits() -> None:
    assert timeout_seconds(MAX_TIMEOUT_SECONDS) == MAX_TIMEOUT_SECONDS
    assert timeout_seconds(1) == 1.0 and type(timeout_seconds(1)) is float
    assert timeout_seconds(0.001) == 0.001
    for bad in (0, MAX_TIMEOUT_SECONDS + 0.5, True, "10", math.inf, math.nan, None):
        with pytest.raises(ValidationError, match="timeout_seconds must be a number"):
            timeout_seconds(bad)


def test_task_priorities_default_or_one_each() -> None:
    assert task_priorities(None, 3, 7) == [7, 7, 7]
    assert task_priorities((0, MAX_PRIORITY), 2, 5) == [0, MAX_PRIORITY]
    with pytest.raises(ValidationError, match="needs one entry per task"):
        task_priorities([1, 2, 3], 2, 0)
    with pytest.raises(ValidationError, match="needs one entry per task"):
        task_priorities("12", 2, 0)
    with pytest.raises(
        ValidationError, match=r"task_priorities\[\] must be between 0 and 9, not 10"
    ):
        task_priorities([1, 10], 2, 0)
    with pytest.raises(ValidationError, match=r"task_priorities\[\] must be an integer"):
        task_priorities([1, 2.0], 2, 0)  # in process a float is no integer; JSON's 2.0 is
