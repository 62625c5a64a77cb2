"""Sending a session's common data, over HTTP or in process, before the session itself."""

from __future__ import annotations

from typing import Any

from htcgrid import common_data
from htcgrid.client.http import Chunks, HTTPTransport


def put_common(transport: Any, session_id: str, value: Any) -> None:
    """Store ``value`` (a JSON value or bytes) as ``session_id``'s common data."""
    blob = common_data.encode(value)
    if isinstance(transport, HTTPTransport):  # the body is the value; its type says which kind
        kind = "json" if blob[:1] == common_data.JSON else "octet-stream"
        body = blob[1:]
        headers = {"Content-Type": f"application/{kind}", "Content-Length": str(len(body))}
        path = f"/v1/sessions/{session_id}/common"
        transport.call("PUT", path, content=Chunks(body), headers=headers)
    else:  # the in-process transport
        transport.service.uploads.put_common(session_id, blob, "")
