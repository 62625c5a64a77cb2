"""The task queue on SQS: one standard queue per priority band, highest index first.

A message says only which task may be claimed (``{"task_id", "function"}``); the state table
decides. Claimers delete a message once they have tried its task (claimed or found taken),
so a message never outlives one claim attempt, and a task whose message is lost is found
again by the TTL checker (``AwsTaskStore.expire_leases``), which sends a fresh one.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from htcgrid.store.aws_calls import Calls
from htcgrid.store.aws_layout import MAX_RECEIVE_COUNT, VISIBILITY_SECONDS, queue_name

log = logging.getLogger("htcgrid.store.aws")

SQS_BATCH = 10
SEND_ATTEMPTS = 3


@dataclass(frozen=True)
class Message:
    queue: int
    message_id: str
    receipt: str
    task_id: str
    function: str
    received: int = 1  # how many times SQS has handed it out (ApproximateReceiveCount)


class PriorityQueues:
    """Queues ``htc_task_queue-<tag>__0 … __<N-1>``; thread-safe (boto3 clients are)."""

    def __init__(self, sqs: Any, calls: Calls, tag: str, queues: int) -> None:
        self.sqs = sqs
        self.calls = calls
        self.count = queues
        self.urls = [
            calls(sqs.get_queue_url, QueueName=queue_name(tag, q))["QueueUrl"]
            for q in range(queues)
        ]

    def send(self, entries: Iterable[tuple[int, str, str]]) -> int:
        """Send ``(queue, task_id, function)`` messages in batches; returns how many were
        refused even after retries (logged: the TTL checker re-sends them later)."""
        by_queue: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for queue, tid, function in entries:
            by_queue[queue].append((tid, function))
        lost = 0
        for queue, items in by_queue.items():
            for start in range(0, len(items), SQS_BATCH):
                lost += self._send_batch(queue, items[start : start + SQS_BATCH])
        return lost

    def _send_batch(self, queue: int, items: Sequence[tuple[str, str]]) -> int:
        pending = {
            str(i): json.dumps({"task_id": tid, "function": fn})
            for i, (tid, fn) in enumerate(items)
        }
        for _ in range(SEND_ATTEMPTS):
            entries = [{"Id": i, "MessageBody": body} for i, body in pending.items()]
            answer = self.calls(
                self.sqs.send_message_batch, QueueUrl=self.urls[queue], Entries=entries
            )
            pending = {f["Id"]: pending[f["Id"]] for f in answer.get("Failed", [])}
            if not pending:
                return 0
        log.warning("SQS refused %d messages; the TTL checker will re-send them", len(pending))
        return len(pending)

    def receive(self, queue: int, max_messages: int) -> list[Message]:
        """Up to ``max_messages`` (≤ 10) messages of ``queue``, hidden for a while from others."""
        answer = self.calls(
            self.sqs.receive_message,
            QueueUrl=self.urls[queue],
            MaxNumberOfMessages=max(1, min(SQS_BATCH, max_messages)),
            VisibilityTimeout=VISIBILITY_SECONDS,
            WaitTimeSeconds=0,
            AttributeNames=["ApproximateReceiveCount"],
        )
        found = []
        for m in answer.get("Messages", []):
            body = json.loads(m["Body"])
            received = int(m.get("Attributes", {}).get("ApproximateReceiveCount", 1))
            found.append(
                Message(
                    queue,
                    m["MessageId"],
                    m["ReceiptHandle"],
                    body["task_id"],
                    body["function"],
                    received,
                )
            )
        return found

    def delete(self, messages: Sequence[Message]) -> None:
        self._each_batch(messages, "delete_message_batch", {})

    def release(self, messages: Sequence[Message]) -> None:
        """Make ``messages`` visible again at once (not ours to claim)."""
        self._each_batch(messages, "change_message_visibility_batch", {"VisibilityTimeout": 0})

    def hand_back(self, messages: Sequence[Message]) -> None:
        """Make ``messages`` visible again at once, as ``release``; one received so often that
        the next receive would send it to the dead-letter queue is sent afresh instead (at the
        back of its queue) and the old one deleted: a task another owner's claims keep passing
        over (fair share) is not dead-lettered for it."""
        worn = [m for m in messages if m.received >= MAX_RECEIVE_COUNT - 1]
        self.release([m for m in messages if m.received < MAX_RECEIVE_COUNT - 1])
        self.send((m.queue, m.task_id, m.function) for m in worn)
        self.delete(worn)

    def _each_batch(self, messages: Sequence[Message], call: str, extra: dict[str, Any]) -> None:
        by_queue: dict[int, list[Message]] = defaultdict(list)
        for m in messages:
            by_queue[m.queue].append(m)
        for queue, items in by_queue.items():
            for start in range(0, len(items), SQS_BATCH):
                entries = [
                    {"Id": str(i), "ReceiptHandle": m.receipt, **extra}
                    for i, m in enumerate(items[start : start + SQS_BATCH])
                ]
                self.calls(getattr(self.sqs, call), QueueUrl=self.urls[queue], Entries=entries)

    def visible(self) -> int:
        """Messages ready to receive, summed over the queues (SQS's approximate count)."""
        total = 0
        for url in self.urls:
            answer = self.calls(
                self.sqs.get_queue_attributes,
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages"],
            )
            total += int(answer["Attributes"]["ApproximateNumberOfMessages"])
        return total
