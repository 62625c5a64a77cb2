"""``from api.connector import AWSConnector``, as HTC-Grid's programs write it."""

from htcgrid.connector import (
    RETRY_COUNT,
    TASK_TIMEOUT_SEC,
    TOKEK_REFRESH_INTERVAL_SEC,
    AWSConnector,
    GridConnector,
    get_safe_session_id,
)

__all__ = [
    "RETRY_COUNT",
    "TASK_TIMEOUT_SEC",
    "TOKEK_REFRESH_INTERVAL_SEC",
    "AWSConnector",
    "GridConnector",
    "get_safe_session_id",
]
