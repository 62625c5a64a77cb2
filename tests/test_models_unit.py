"""The pure lifecycle rules and records of htcgrid.models (design §2), and its JSON helpers,
which must give the standard library's values whichever encoder they use."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import uuid
from typing import Any

import pytest

from htcgrid.errors import ValidationError
from htcgrid.models import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    NAME_PATTERN,
    SESSION_ID_PATTERN,
    TERMINAL_STATES,
    CancelCounts,
    ErrorInfo,
    Lease,
    SessionInfo,
    SessionSpec,
    TaskState,
    after_handler_error,
    after_infrastructure_failure,
    expired_error,
    expired_reason,
    json_dumps,
    json_loads,
    released,
    split_task_id,
    task_id,
    task_json,
)


def lease(attempt: int, max_attempts: int = 3, retry_on_error: bool = False) -> Lease:
    return Lease(
        task_id="s_4",
        session_id="s",
        index=4,
        attempt=attempt,
        max_attempts=max_attempts,
        timeout_seconds=60.0,
        function="default",
        retry_on_error=retry_on_error,
        expires_at=100.0,
    )


# ---- states and vocabulary ---------------------------------------------------------------------


def test_the_five_states_and_which_are_terminal() -> None:
    assert [s.value for s in TaskState] == [
        "pending",
        "processing",
        "finished",
        "failed",
        "cancelled",
    ]
    assert {s for s in TaskState if s.terminal} == TERMINAL_STATES
    assert {TaskState.FINISHED, TaskState.FAILED, TaskState.CANCELLED} == TERMINAL_STATES
    assert TaskState("failed") is TaskState.FAILED and TaskState.FAILED == "failed"


def test_priorities_run_from_0_to_9() -> None:
    assert (MIN_PRIORITY, MAX_PRIORITY) == (0, 9)


@pytest.mark.parametrize(
    ("text", "session_id", "name"),
    [("a", True, True), ("A-9", True, True), ("9" * 64, True, True), ("9" * 65, False, False),
     ("-a", False, False), ("a.b", False, True), ("a_b", False, True), ("", False, False),
     ("a/b", False, False), ("..", False, False), (".a", False, False), ("a b", False, False),
     ("é", False, False), ("a\n", False, False)],
)  # fmt: skip
def test_session_ids_and_names(text: str, session_id: bool, name: bool) -> None:
    assert bool(SESSION_ID_PATTERN.fullmatch(text)) is session_id
    assert bool(NAME_PATTERN.fullmatch(text)) is name


# ---- task ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("session_id", ["s", "a-b-c", str(uuid.UUID(int=0x1234)), "9" * 64])
@pytest.mark.parametrize("index", [0, 7, 10**6])
def test_task_ids_split_back_into_their_session_and_index(session_id: str, index: int) -> None:
    tid = task_id(session_id, index)
    assert tid == f"{session_id}_{index}"
    assert split_task_id(tid) == (session_id, index)


@pytest.mark.parametrize(
    "tid",
    ["", "s", "s_", "_1", "s_-1", "s_1.5", "s_x", "a_b_1", "../s_1", "s/1_2", "s_1 ", "s_²"],
)
def test_anything_else_is_not_a_task_id(tid: str) -> None:
    with pytest.raises(ValueError):
        split_task_id(tid)


@pytest.mark.parametrize("tid", ["s_\u0661", "s_\u0967\u0968"])
def test_a_task_index_is_written_in_ascii_digits(tid: str) -> None:
    with pytest.raises(ValueError, match="not a task id"):
        split_task_id(tid)


# ---- records -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [ErrorInfo("ValueError", "bad", "Traceback (most recent call last): …"),
     ErrorInfo("E", ""), ErrorInfo("Ünïcode", "line\nbreak \"quoted\" 😀", "tb"), ErrorInfo("E", "lone \udc80")],
)  # fmt: skip
def test_error_info_round_trips_through_json(error: ErrorInfo) -> None:
    assert ErrorInfo.from_json(error.to_json()) == error
    assert json.loads(error.to_json()) == error.as_dict()
    assert error.as_dict() == {
        "type": error.type,
        "message": error.message,
        "traceback": error.traceback,
    }


def test_error_info_reads_nothing_as_none_and_an_old_record_without_traceback() -> None:
    assert ErrorInfo.from_json(None) is None and ErrorInfo.from_json("") is None
    assert ErrorInfo.from_json('{"type": "E", "message": 3}') == ErrorInfo("E", "3", "")


def test_a_session_is_complete_when_every_task_is_done() -> None:
    spec = SessionSpec("s", 3)
    assert not SessionInfo(spec, done_count=2).complete
    assert SessionInfo(spec, done_count=3).complete
    assert SessionInfo(spec).id == "s"


def test_a_session_specs_defaults_are_design_s() -> None:
    spec = SessionSpec("s", 1)
    assert (spec.function, spec.priority, spec.max_attempts) == ("default", 0, 6)
    assert (spec.timeout_seconds, spec.retry_on_error) == (3600.0, False)


def test_cancel_counts_add_up() -> None:
    assert CancelCounts(2, 3).total == 5 and CancelCounts().total == 0


def test_records_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        lease(1).attempt = 2  # type: ignore[misc]


# ---- lifecycle rules ---------------------------------------------------------------------------


def test_an_infrastructure_failure_is_retried_while_attempts_remain() -> None:
    for attempt in (1, 2):
        outcome = after_infrastructure_failure(lease(attempt), "WorkerCrashed", "it died", "log")
        assert (outcome.state, outcome.attempt, outcome.error) == (TaskState.PENDING, attempt, None)
        assert (outcome.task_id, outcome.log, outcome.released) == ("s_4", "log", False)


def test_an_infrastructure_failure_on_the_last_attempt_fails_with_the_reason() -> None:
    outcome = after_infrastructure_failure(lease(3), "TaskTimeout", "ran over 60 s", "tail")
    assert outcome.state is TaskState.FAILED and outcome.log == "tail"
    assert outcome.error == ErrorInfo("TaskTimeout", "ran over 60 s (attempt 3 of 3)")
    assert after_infrastructure_failure(lease(1, max_attempts=1), "K", "r").state is (
        TaskState.FAILED
    )


def test_a_handler_error_fails_at_once_unless_the_session_retries_errors() -> None:
    error = ErrorInfo("ValueError", "bad input", "tb")
    once = after_handler_error(lease(1), error, "log")
    assert (once.state, once.error, once.log) == (TaskState.FAILED, error, "log")
    retried = after_handler_error(lease(1, retry_on_error=True), error)
    assert (retried.state, retried.error) == (TaskState.PENDING, None)
    last = after_handler_error(lease(3, retry_on_error=True), error)
    assert (last.state, last.error) == (TaskState.FAILED, error)


def test_a_released_task_goes_back_without_using_an_attempt() -> None:
    outcome = released(lease(2))
    assert (outcome.task_id, outcome.attempt, outcome.state) == ("s_4", 2, TaskState.PENDING)
    assert outcome.released and outcome.error is None and outcome.output is None


def test_an_expired_lease_says_how_many_attempts_it_took() -> None:
    assert expired_reason(6) == "lease expired after 6 attempts"
    assert expired_error(2) == ErrorInfo("LeaseExpired", "lease expired after 2 attempts")


# ---- JSON --------------------------------------------------------------------------------------


def standard(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, NaN equal to NaN, and int never equal to float."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


EDGE_VALUES = [
    None, True, 0, -1, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**40, -(10**40),
    0.1, -0.0, 1e-7, -1e-5, 1e16, 1e300, 5e-324, float("nan"), float("inf"), float("-inf"),
    "", "null", "NaN", "é ü ß", "\u2028\u2029", "😀", "\x00\x1f", '"\\/', "\U0010ffff",
    [], {}, [1, [2, [3, {"a": None}]]], {"nested": [float("nan"), 2**70, "x"]},
    {1: "int key", 2.5: "float key", None: "null key"}, {False: "bool key"},
    (1, "tuple"), {"a": (2, 3)},
]  # fmt: skip


@pytest.mark.parametrize("value", EDGE_VALUES, ids=repr)
def test_json_dumps_gives_the_standard_librarys_value(value: Any) -> None:
    written = json_dumps(value)
    assert isinstance(written, bytes)
    assert same(json.loads(written), json.loads(standard(value)))


@pytest.mark.parametrize("value", EDGE_VALUES, ids=repr)
def test_json_loads_reads_what_the_standard_library_reads(value: Any) -> None:
    text = standard(value)
    assert same(json_loads(text), json.loads(text))


@pytest.mark.parametrize(
    "text",
    [b"12345678901234567890", b"-9223372036854775809", b"[18446744073709551616]",
     b"123456789012345678901234567890.5", b"1e400", b"-1e400", b"NaN", b"[Infinity]",
     b'"\\ud800"', b'"\\udfff\\ud800"', b'"\\ud83d\\ude00"', b'{"a":1,"a":2}', b" [1] ",
     b"1.0", b"-0", b"0.1e1", "\"é\"".encode("utf-16"), b"\xef\xbb\xbf[1]"],
)  # fmt: skip
def test_json_loads_reads_edge_texts_as_the_standard_library(text: bytes) -> None:
    try:
        expected = json.loads(text)
    except ValueError as exc:
        with pytest.raises(ValueError):
            json_loads(text)
        assert exc
        return
    assert same(json_loads(text), expected)


def test_json_keeps_big_integers_exact_both_ways() -> None:
    big = [2**64 + 1, -(2**80), 10**19]
    assert json_dumps(big) == standard(big)
    assert json_loads(json_dumps(big)) == big and all(
        type(v) is int for v in json_loads(b"[10000000000000000000]")
    )


def test_a_lone_surrogate_is_refused_as_a_payload_but_read_back_as_json_reads_it() -> None:
    with pytest.raises(ValidationError, match=r"task 3 holds text that is not valid Unicode"):
        task_json(3, {"k": "a\udc80b"})
    with pytest.raises(UnicodeEncodeError):
        json_dumps("\ud800")
    assert json_loads(b'"\\ud800"') == "\ud800" == json.loads(b'"\\ud800"')


def test_nesting_too_deep_for_the_encoder_is_refused_in_words() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValidationError, match="task 0 is nested too deeply"):
        task_json(0, deep)
    shallow: Any = []
    for _ in range(500):  # beyond orjson's own limit, within the standard library's
        shallow = [shallow]
    assert json_dumps(shallow) == standard(shallow)


@pytest.mark.parametrize(
    "value",
    [{1, 2}, b"bytes", object(), {"a": frozenset()}],
    ids=["set", "bytes", "object", "frozenset"],
)
def test_what_the_standard_library_refuses_is_not_a_payload(value: Any) -> None:
    with pytest.raises(TypeError):
        standard(value)
    with pytest.raises(ValidationError, match="task 0 is not JSON-serialisable"):
        task_json(0, value)


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize(
    "value", [datetime.datetime(2026, 1, 1), uuid.UUID(int=1), Point(1)], ids=repr
)
def test_what_the_standard_library_refuses_is_refused_by_json_dumps_too(value: Any) -> None:
    with pytest.raises(TypeError):
        standard(value)
    with pytest.raises(ValidationError, match="not JSON-serialisable"):
        task_json(0, value)


def test_task_json_is_compact_utf8() -> None:
    assert task_json(0, {"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'.encode()
