"""The Celery app its workers load (``celery -A peers.celery_app worker``): the four task bodies."""

from __future__ import annotations

import os

from celery import Celery

from peers import work


def make_app() -> Celery:
    """An app on the broker and queue the harness chose (read at each call: one per start)."""
    url = os.environ.get("PEERS_CELERY_URL", "redis://127.0.0.1:6379/12")
    app = Celery("peers", broker=url, backend=url)
    app.conf.update(
        task_default_queue=os.environ.get("PEERS_CELERY_QUEUE", "peers"),
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=3600,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app()
for _name, _fn in work.FUNCTIONS.items():
    app.task(name=f"peers.{_name}")(_fn)
