"""Sending a session's common data, over HTTP or in process, before the session itself."""

from __future__ import annotations

from typing import Any

from htcgrid import common_data
from htcgrid.client.http import Chunks, HTTPTransport


def put_common(transport: Any, session_id: str, value: Any) -> None:
    """Store ``value`` (a JSON value or bytes) as ``session_id``'s common data."""
    blob = common_data.encode(value)
    if isinstance(transport, HTTPTransport):
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(blob))}
        path = f"/v1/sessions/{session_id}/common"
        transport.call("PUT", path, content=Chunks(blob), headers=headers)
    else:  # the in-process transport
        transport.service.uploads.put_common(session_id, blob, "")
