"""The readable forms of htcgrid.cli.output: aligned tables, ISO 8601 times, text as text."""

from __future__ import annotations

from htcgrid.cli.output import compact, iso, table, task_text, to_json


def test_tables_align_and_right_align_numbers() -> None:
    text = table(["name", "count"], [["a", 5], ["längere", 12345]])
    assert text.splitlines() == [
        "NAME     COUNT",
        "a            5",
        "längere  12345",
    ]
    assert table(["x"], [], header=False) == ""


def test_times_are_iso_8601_in_utc() -> None:
    assert iso(0.0) == "-" and iso(None) == "-"
    assert iso(1_800_000_000.25) == "2027-01-15T08:00:00Z"


def test_text_stays_text() -> None:
    assert compact("Zürich ✓") == "Zürich ✓"
    assert compact({"a": "é"}) == '{"a":"é"}'
    assert compact("one\ntwo") == "one two"
    assert compact("x" * 100, limit=10) == "x" * 9 + "…"
    assert to_json({"a": "é"}) == '{\n  "a": "é"\n}'


def test_a_failed_task_shows_its_traceback_and_log_as_lines() -> None:
    shown = task_text(
        {
            "task_id": "s_0",
            "session_id": "s",
            "state": "failed",
            "attempts": 1,
            "submitted_at": 1_800_000_000.0,
            "started_at": None,
            "finished_at": None,
            "payload": {"name": "Zürich"},
            "output": None,
            "error": {
                "type": "ValueError",
                "message": "no price",
                "traceback": 'Traceback (most recent call last):\n  File "h.py"\nValueError: no price\n',
            },
            "log": "line one\nline two\n",
        }
    )
    assert "error:     ValueError: no price" in shown
    assert "submitted: 2027-01-15T08:00:00Z" in shown and "started:   -" in shown
    assert 'payload:   {"name":"Zürich"}' in shown and "output:" not in shown
    assert shown.endswith(
        '\n\ntraceback:\nTraceback (most recent call last):\n  File "h.py"\nValueError: no price'
        "\n\nlog:\nline one\nline two"
    )
