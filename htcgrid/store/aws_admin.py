"""Create and remove the AWS resources of one grid (``htcgrid aws create|destroy``).

Both are idempotent: what exists is kept (create) or skipped (destroy). Servers and agents
never call this: a grid that was not created is a one-line error telling the user to run
``htcgrid aws create``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from htcgrid.errors import ConfigurationError
from htcgrid.store.aws_calls import AwsConfig, error_code, translate
from htcgrid.store.aws_grid import CONFIG_SCOPE
from htcgrid.store.aws_items import N, S, integer
from htcgrid.store.aws_layout import (
    MAX_RECEIVE_COUNT,
    RETENTION_SECONDS,
    VISIBILITY_SECONDS,
    dlq_name,
    meta_table,
    queue_name,
    table_definitions,
)

Report = Callable[[str], None]
MISSING = {"ResourceNotFoundException", "AWS.SimpleQueueService.NonExistentQueue", "NoSuchBucket"}


def _ignore(codes: set[str], fn: Callable[..., Any], **kwargs: Any) -> Any:
    """``fn(**kwargs)``, or None when it fails with one of ``codes`` (already done)."""
    try:
        return fn(**kwargs)
    except Exception as exc:
        if error_code(exc) in codes:
            return None
        raise translate(exc) from exc


def create(
    config: AwsConfig, queues: int, bucket: str | None = None, report: Report = print
) -> None:
    """Tables, indexes, ``queues`` priority queues with dead-letter queues, the bucket."""
    if not 1 <= queues <= 10:
        raise ConfigurationError("--priorities must be between 1 and 10")
    db = config.client("dynamodb")
    _check_queue_count(db, config, queues)
    for table in table_definitions(config.tag):
        made = _ignore({"ResourceInUseException"}, db.create_table, **table)
        report(f"table {table['TableName']}: {'created' if made else 'exists'}")
    for table in table_definitions(config.tag):
        db.get_waiter("table_exists").wait(TableName=table["TableName"])
    _record_queue_count(db, config, queues)
    sqs = config.client("sqs")
    for q in range(queues):
        dlq = sqs.create_queue(
            QueueName=dlq_name(config.tag, q),
            Attributes={"MessageRetentionPeriod": str(RETENTION_SECONDS)},
        )
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"])
        redrive = {
            "deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"],
            "maxReceiveCount": str(MAX_RECEIVE_COUNT),
        }
        sqs.create_queue(
            QueueName=queue_name(config.tag, q),
            Attributes={
                "MessageRetentionPeriod": str(RETENTION_SECONDS),
                "VisibilityTimeout": str(VISIBILITY_SECONDS),
                "RedrivePolicy": json.dumps(redrive),
            },
        )
        report(f"queue {queue_name(config.tag, q)} (dead letters: {dlq_name(config.tag, q)})")
    if bucket:
        create_bucket(config, bucket, report)


def _check_queue_count(db: Any, config: AwsConfig, queues: int) -> None:
    """Refuse, before changing anything, to re-create a grid with another queue count."""
    key = {"scope": S(CONFIG_SCOPE), "meta_key": S("queues")}
    found = _ignore(MISSING, db.get_item, TableName=meta_table(config.tag), Key=key)
    existing = integer(found["Item"], "value") if found and "Item" in found else queues
    if existing != queues:
        raise ConfigurationError(
            f"grid {config.tag!r} exists with {existing} priority queues; "
            f"destroy it first to change that (asked for {queues})"
        )


def _record_queue_count(db: Any, config: AwsConfig, queues: int) -> None:
    """The queue count is fixed when the grid is made: servers and agents read it here."""
    key = {"scope": S(CONFIG_SCOPE), "meta_key": S("queues")}
    item = {**key, "value": N(queues)}
    put = _ignore(
        {"ConditionalCheckFailedException"},
        db.put_item,
        TableName=meta_table(config.tag),
        Item=item,
        ConditionExpression="attribute_not_exists(meta_key)",
    )
    if put is None:
        _check_queue_count(db, config, queues)


def create_bucket(config: AwsConfig, bucket: str, report: Report = print) -> None:
    """The bucket, encrypted at rest by default (SSE-S3); kept if it exists."""
    s3 = config.client("s3")
    args: dict[str, Any] = {"Bucket": bucket}
    region = s3.meta.region_name
    if region and region != "us-east-1":
        args["CreateBucketConfiguration"] = {"LocationConstraint": region}
    made = _ignore({"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}, s3.create_bucket, **args)
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    report(f"bucket {bucket}: {'created' if made else 'exists'}")


def destroy(
    config: AwsConfig, queues: int, bucket: str | None = None, report: Report = print
) -> None:
    """Remove what ``create`` made (the bucket with every object in it)."""
    db = config.client("dynamodb")
    for table in table_definitions(config.tag):
        gone = _ignore(MISSING, db.delete_table, TableName=table["TableName"])
        report(f"table {table['TableName']}: {'deleted' if gone else 'absent'}")
    sqs = config.client("sqs")
    for q in range(queues):
        for name in (queue_name(config.tag, q), dlq_name(config.tag, q)):
            found = _ignore(MISSING, sqs.get_queue_url, QueueName=name)
            if found:
                sqs.delete_queue(QueueUrl=found["QueueUrl"])
            report(f"queue {name}: {'deleted' if found else 'absent'}")
    if bucket:
        destroy_bucket(config, bucket, report)


def destroy_bucket(config: AwsConfig, bucket: str, report: Report = print) -> None:
    """Empty the bucket and delete it; a missing bucket is not an error."""
    s3 = config.client("s3")
    pages = _ignore(MISSING, lambda: list(_object_pages(s3, bucket)))
    for keys in pages or []:
        s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    gone = _ignore(MISSING, s3.delete_bucket, Bucket=bucket)
    report(f"bucket {bucket}: {'deleted' if gone is not None else 'absent'}")


def _object_pages(s3: Any, bucket: str) -> Any:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            yield keys
