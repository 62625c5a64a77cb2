"""Quiet handlers for the payload-size tests (``echo`` in sample_handlers logs its event)."""

from __future__ import annotations

from typing import Any


def same(event: Any, context: Any) -> Any:
    """The event, unchanged: a round trip of payload and result."""
    return event


def length(event: Any, context: Any) -> int:
    """The length of a string event (or of ``event["data"]``): small results for big inputs."""
    return len(event["data"] if isinstance(event, dict) else event)


def text_of(event: dict[str, Any], context: Any) -> str:
    """A result of ``event["bytes"]`` characters, for outputs bigger than their input."""
    return "r" * int(event["bytes"])
