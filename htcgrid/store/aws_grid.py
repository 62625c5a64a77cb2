"""The opened resources of one AWS grid, and the read and batch helpers every part uses."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from htcgrid.errors import BackendUnavailable, ResourceMissing
from htcgrid.store.aws_calls import AwsConfig, Calls
from htcgrid.store.aws_finish import Finisher
from htcgrid.store.aws_items import Item, S, integer
from htcgrid.store.aws_layout import meta_table, sessions_table, tasks_table
from htcgrid.store.aws_queue import PriorityQueues

BATCH_GET = 100
BATCH_WRITE = 25
CONFIG_SCOPE = "config"


@dataclass
class Grid:
    config: AwsConfig
    db: Any
    calls: Calls
    queues: PriorityQueues
    finisher: Finisher

    @property
    def tasks(self) -> str:
        return tasks_table(self.config.tag)

    @property
    def sessions(self) -> str:
        return sessions_table(self.config.tag)

    @property
    def meta(self) -> str:
        return meta_table(self.config.tag)

    @classmethod
    def open(cls, config: AwsConfig, calls: Calls) -> Grid:
        """Open the grid made by ``htcgrid aws create``; ``ResourceMissing`` if it was not."""
        db = config.client("dynamodb")
        try:
            answer = calls(
                db.get_item,
                TableName=meta_table(config.tag),
                Key={"scope": S(CONFIG_SCOPE), "meta_key": S("queues")},
                ConsistentRead=True,
            )
            if "Item" not in answer:
                raise ResourceMissing("no queue count recorded")
            queues = PriorityQueues(
                config.client("sqs"), calls, config.tag, integer(answer["Item"], "value")
            )
        except ResourceMissing:
            raise ResourceMissing(
                f"no htcgrid grid with tag {config.tag!r} in this AWS account and region: "
                f"create it first with `htcgrid aws create --tag {config.tag}`"
            ) from None
        finisher = Finisher(db, calls, tasks_table(config.tag), sessions_table(config.tag))
        return cls(config, db, calls, queues, finisher)

    def get(self, table: str, key: Item, projection: str | None = None) -> Item | None:
        args: dict[str, Any] = {"TableName": table, "Key": key, "ConsistentRead": True}
        if projection:
            args["ProjectionExpression"] = projection
        found: Item | None = self.calls(self.db.get_item, **args).get("Item")
        return found

    def batch_get(
        self, table: str, keys: Sequence[Item], names: Sequence[str] | None = None
    ) -> list[Item]:
        """Consistent reads of ``keys`` (any number); only ``names`` when given."""
        found: list[Item] = []
        for start in range(0, len(keys), BATCH_GET):
            request: dict[str, Any] = {"Keys": list(keys[start : start + BATCH_GET])}
            request["ConsistentRead"] = True
            if names:
                request["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(names)))
                request["ExpressionAttributeNames"] = {f"#p{i}": n for i, n in enumerate(names)}
            todo = {table: request}
            for attempt in range(self.calls.attempts * 4):
                answer = self.calls(self.db.batch_get_item, RequestItems=todo)
                found.extend(answer.get("Responses", {}).get(table, []))
                todo = answer.get("UnprocessedKeys") or {}
                if not todo:
                    break
                self.calls.sleep(self.calls.delay(attempt))
            else:
                raise BackendUnavailable("DynamoDB kept refusing a batch read (throttled)")
        return found

    def batch_write(self, table: str, requests: Sequence[Item]) -> None:
        """``PutRequest``/``DeleteRequest`` entries, 25 per call, unprocessed ones retried."""
        for start in range(0, len(requests), BATCH_WRITE):
            todo = {table: list(requests[start : start + BATCH_WRITE])}
            for attempt in range(self.calls.attempts * 4):
                answer = self.calls(self.db.batch_write_item, RequestItems=todo)
                todo = answer.get("UnprocessedItems") or {}
                if not todo:
                    break
                self.calls.sleep(self.calls.delay(attempt))
            else:
                raise BackendUnavailable("DynamoDB kept refusing a batch write (throttled)")

    def query(self, **args: Any) -> Iterator[Item]:
        """Every item of a ``Query``, following pages."""
        while True:
            answer = self.calls(self.db.query, **args)
            yield from answer.get("Items", [])
            if "LastEvaluatedKey" not in answer:
                return
            args["ExclusiveStartKey"] = answer["LastEvaluatedKey"]

    def count(self, **args: Any) -> int:
        total = 0
        while True:
            answer = self.calls(self.db.query, Select="COUNT", **args)
            total += int(answer.get("Count", 0))
            if "LastEvaluatedKey" not in answer:
                return total
            args["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def poll(
    ready: Callable[[], Any],
    timeout_seconds: float,
    first_seconds: float = 0.02,
    max_seconds: float = 0.5,
) -> Any:
    """``ready()`` until it is truthy or the timeout passes (its last value either way); the
    pause between reads grows from ``first_seconds`` to ``max_seconds``."""
    deadline = time.monotonic() + timeout_seconds
    pause = first_seconds
    while True:
        value = ready()
        remaining = deadline - time.monotonic()
        if value or remaining <= 0:
            return value
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, max_seconds)
