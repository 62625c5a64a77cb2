"""The client side: ``Client`` and ``Session`` (session.py), its transports over HTTP (http.py,
upload.py) and in this process (direct.py, the one module that reaches the service), logins
(logins.py, auth.py) and the progress bar. Nothing here imports the server side."""

from htcgrid.client.session import Client, Session, TaskResult, connect
from htcgrid.errors import TaskFailed

__all__ = ["Client", "Session", "TaskFailed", "TaskResult", "connect"]
