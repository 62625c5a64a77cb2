"""What the AWS task store adds to the contract: HTC-Grid's layout, `htcgrid aws create|destroy`,
no implicit resources, no half-made sessions, lost messages found again, and retries.

Everything runs against moto's server on loopback (real HTTP, real boto3 clients), except the
throttling tests: AWS cannot be made to throttle on request, so there botocore's Stubber plays
DynamoDB's part (the throttling answers are simulated; the retry loop under test is ours).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from backends import (
    AWS_REGION,
    aws_env,
    aws_grid,
    moto_endpoint,
    require_module,
)
from click.testing import CliRunner

from htcgrid.cli import main
from htcgrid.errors import BackendUnavailable, ConfigurationError
from htcgrid.models import NewTask, SessionSpec, TaskState

require_module("boto3")

NOW = 1_000_000.0
LEASE = 10.0


@pytest.fixture
def grid_url() -> Iterator[str]:
    with aws_grid(f"t{uuid.uuid4().hex[:10]}") as url:
        yield url


def _store(url: str):  # type: ignore[no-untyped-def]
    from htcgrid.store.aws import AwsTaskStore

    return AwsTaskStore(url)


def _spec(sid: str = "s1", n: int = 3) -> SessionSpec:
    return SessionSpec(id=sid, task_count=n, content_hash="h", owner="alice")


def _tasks(n: int = 3, priority: int = 0) -> list[NewTask]:
    return [NewTask(i, priority, payload=b'{"i":%d}' % i) for i in range(n)]


def test_the_state_table_is_laid_out_as_htc_grids(grid_url: str) -> None:
    store = _store(grid_url)
    store.create_session(_spec("sess"), _tasks(1, priority=9), NOW)
    tag = store.grid.config.tag
    item = store.grid.db.get_item(
        TableName=f"htc_tasks_state_table-{tag}", Key={"task_id": {"S": "sess_0"}}
    )["Item"]
    from htcgrid.store.aws_layout import partition

    assert item["task_status"]["S"] == f"pending{partition('sess')}"
    assert item["task_owner"]["S"] == "None" and item["sqs_handler_id"]["S"] == "None"
    assert item["session_id"]["S"] == item["parent_session_id"]["S"] == "sess"
    assert item["task_definition"]["S"] == "none" and item["retries"]["N"] == "0"
    assert item["submission_timestamp"]["N"] == str(int(NOW * 1000))
    assert item["task_priority"]["N"] == "9"
    indexes = store.grid.db.describe_table(TableName=f"htc_tasks_state_table-{tag}")["Table"]
    names = {i["IndexName"] for i in indexes["GlobalSecondaryIndexes"]}
    assert {"gsi_ttl_index", "gsi_session_index"} <= names
    sqs = store.grid.queues.sqs
    queue = sqs.get_queue_url(QueueName=f"htc_task_queue-{tag}__9")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 4
    assert redrive["deadLetterTargetArn"].endswith(f":htc_task_queue_dlq-{tag}__9")
    (lease,) = store.claim("agent", 1, LEASE, NOW)
    claimed = store.grid.db.get_item(
        TableName=f"htc_tasks_state_table-{tag}", Key={"task_id": {"S": "sess_0"}}
    )["Item"]
    assert claimed["task_status"]["S"] == f"processing{partition('sess')}"
    assert claimed["task_owner"]["S"] == "agent" and claimed["sqs_handler_id"]["S"] != "None"
    assert float(claimed["heartbeat_expiration_timestamp"]["N"]) == NOW + LEASE
    assert lease.attempt == 1


def test_a_half_made_session_is_invisible_and_a_resubmit_finishes_it(grid_url: str) -> None:
    """The state a submitter that crashed after its session item leaves behind."""
    from htcgrid.store.aws_items import session_item

    store = _store(grid_url)
    store.grid.db.put_item(TableName=store.grid.sessions, Item=session_item(_spec(), NOW))
    assert store.get_session("s1") is None and store.list_sessions() == []
    assert sum(store.count_states("s1").values()) == 0
    assert store.claim("agent", 10, LEASE, NOW) == []
    assert store.create_session(_spec(), _tasks(), NOW) is True
    assert store.create_session(_spec(), _tasks(), NOW) is False
    assert len(store.claim("agent", 10, LEASE, NOW)) == 3


def test_the_ttl_checker_resends_a_lost_message(grid_url: str) -> None:
    """SQS loses the messages (a purge here); the pending rows are found and sent again."""
    store = _store(grid_url)
    store.create_session(_spec(), _tasks(), NOW)
    for url in store.grid.queues.urls:
        store.grid.queues.sqs.purge_queue(QueueUrl=url)
    assert store.claim("agent", 10, LEASE, NOW) == []
    assert store.resend_lost(NOW + 1) == 0  # not overdue yet: the message may be on its way
    assert store.expire_leases(NOW + 61).requeued == []
    leases = store.claim("agent", 10, LEASE, NOW + 62)
    assert sorted(le.task_id for le in leases) == ["s1_0", "s1_1", "s1_2"]
    assert store.count_states("s1")[TaskState.PROCESSING] == 3
    # a duplicate (resent while the first was only slow) is deleted by the claim that finds
    # its task taken
    assert store.claim("other", 10, LEASE, NOW + 63) == []


def test_servers_and_agents_never_create_resources() -> None:
    endpoint = moto_endpoint()
    with aws_env(), pytest.raises(ConfigurationError, match="htcgrid aws create --tag nothing"):
        _store(f"aws://?region={AWS_REGION}&tag=nothing&endpoint_url={endpoint}")


def test_aws_create_and_destroy_are_idempotent() -> None:
    endpoint = moto_endpoint()
    tag = f"c{uuid.uuid4().hex[:8]}"
    bucket = f"htcgrid-cli-{tag}"
    args = ["--tag", tag, "--region", AWS_REGION, "--endpoint-url", endpoint]
    with aws_env():
        first = CliRunner().invoke(
            main, ["aws", "create", *args, "--priorities", "3", "--bucket", bucket]
        )
        assert first.exit_code == 0, first.output
        assert f"table htc_tasks_state_table-{tag}: created" in first.output
        assert f"queue htc_task_queue-{tag}__2" in first.output
        again = CliRunner().invoke(
            main, ["aws", "create", *args, "--priorities", "3", "--bucket", bucket]
        )
        assert again.exit_code == 0 and f"htc_tasks_state_table-{tag}: exists" in again.output
        other = CliRunner().invoke(main, ["aws", "create", *args, "--priorities", "5"])
        assert other.exit_code == 1 and other.output.count("\n") == 1
        assert "exists with 3 priority queues" in other.output
        store = _store(f"aws://?region={AWS_REGION}&tag={tag}&endpoint_url={endpoint}")
        assert store.grid.queues.count == 3
        store.create_session(_spec(n=2), [NewTask(0, 9), NewTask(1, 0)], NOW)
        assert [le.task_id for le in store.claim("a", 2, LEASE, NOW)] == ["s1_0", "s1_1"]
        destroy = ["aws", "destroy", *args, "--priorities", "3", "--bucket", bucket, "--yes"]
        gone = CliRunner().invoke(main, destroy)
        assert gone.exit_code == 0 and f"htc_tasks_state_table-{tag}: deleted" in gone.output
        twice = CliRunner().invoke(main, destroy)
        assert twice.exit_code == 0 and f"htc_tasks_state_table-{tag}: absent" in twice.output
        assert f"bucket {bucket}: absent" in twice.output


# ---- throttling: botocore's Stubber plays a throttled DynamoDB ------------------------------


def _stubbed() -> tuple[object, object]:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "dynamodb", region_name=AWS_REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    return client, Stubber(client)


@pytest.mark.parametrize(
    "code",
    ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"],
)
def test_throttling_is_retried_with_jittered_backoff(code: str) -> None:
    """Simulated: two throttling answers, then success. Real: our retry loop and its pauses."""
    from htcgrid.store.aws_calls import Calls

    client, stub = _stubbed()
    stub.add_client_error("get_item", service_error_code=code, http_status_code=400)  # type: ignore[attr-defined]
    stub.add_client_error("get_item", service_error_code=code, http_status_code=400)  # type: ignore[attr-defined]
    stub.add_response("get_item", {"Item": {"k": {"S": "v"}}})  # type: ignore[attr-defined]
    pauses: list[float] = []
    calls = Calls(first_delay_seconds=0.1, max_delay_seconds=1.0, sleep=pauses.append)
    with stub:  # type: ignore[attr-defined]
        answer = calls(client.get_item, TableName="t", Key={"k": {"S": "v"}})  # type: ignore[attr-defined]
    assert answer["Item"] == {"k": {"S": "v"}}
    assert len(pauses) == 2 and 0 <= pauses[0] <= 0.1 and 0 <= pauses[1] <= 0.2


def test_5xx_outlasting_the_retries_is_backend_unavailable_and_conditions_are_races() -> None:
    """Simulated: a 500 on every attempt, then a failed condition."""
    from htcgrid.store.aws_calls import Calls, ConditionFailed

    client, stub = _stubbed()
    for _ in range(3):
        stub.add_client_error(
            "get_item", service_error_code="InternalServerError", http_status_code=500
        )  # type: ignore[attr-defined]
    stub.add_client_error(
        "put_item", service_error_code="ConditionalCheckFailedException", http_status_code=400
    )  # type: ignore[attr-defined]
    pauses: list[float] = []
    calls = Calls(attempts=3, sleep=pauses.append)
    with stub:  # type: ignore[attr-defined]
        with pytest.raises(BackendUnavailable, match="AWS did not answer"):
            calls(client.get_item, TableName="t", Key={"k": {"S": "v"}})  # type: ignore[attr-defined]
        with pytest.raises(ConditionFailed):
            calls(client.put_item, TableName="t", Item={"k": {"S": "v"}})  # type: ignore[attr-defined]
    assert len(pauses) == 2


def test_without_boto3_the_core_works_and_aws_urls_say_what_to_install() -> None:
    """boto3 hidden from a fresh interpreter: importing htcgrid and its CLI needs none of it,
    and an aws:// or s3:// URL is a one-line install hint."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['boto3'] = None\n"
        "import htcgrid, htcgrid.cli, htcgrid.store, htcgrid.dataplane\n"
        "from htcgrid.errors import ConfigurationError\n"
        "for open_, url in ((htcgrid.store.open_store, 'aws://?tag=x'),"
        " (htcgrid.dataplane.open_data_plane, 's3://bucket/x')):\n"
        "    try:\n"
        "        open_(url)\n"
        "    except ConfigurationError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all("pip install 'htcgrid[aws]'" in line for line in lines)


def test_unprocessed_batch_items_are_sent_again() -> None:
    """Simulated: DynamoDB leaves one item unprocessed (what it does when throttled), then takes
    it. Real: our batch loop sends exactly the leftover again, after a jittered pause."""
    from htcgrid.store.aws_calls import AwsConfig, Calls
    from htcgrid.store.aws_grid import Grid

    client, stub = _stubbed()
    first = {"PutRequest": {"Item": {"task_id": {"S": "a"}}}}
    second = {"PutRequest": {"Item": {"task_id": {"S": "b"}}}}
    stub.add_response(
        "batch_write_item",
        {"UnprocessedItems": {"t": [second]}},
        {"RequestItems": {"t": [first, second]}},
    )  # type: ignore[attr-defined]
    stub.add_response(
        "batch_write_item", {"UnprocessedItems": {}}, {"RequestItems": {"t": [second]}}
    )  # type: ignore[attr-defined]
    pauses: list[float] = []
    grid = Grid(AwsConfig(), client, Calls(sleep=pauses.append), None, None)  # type: ignore[arg-type]
    with stub:  # type: ignore[attr-defined]
        grid.batch_write("t", [first, second])
        stub.assert_no_pending_responses()  # type: ignore[attr-defined]
    assert len(pauses) == 1


def test_a_conflicting_transaction_is_tried_again_and_a_lost_condition_is_a_race() -> None:
    """Simulated: DynamoDB cancels a completion transaction, first for a conflicting write on
    the session's counter, then because one task's condition failed. Real: our Finisher re-reads
    the counter, drops the task that lost its race and commits the other."""
    from htcgrid.store.aws_calls import Calls
    from htcgrid.store.aws_finish import Finisher, Terminal

    client, stub = _stubbed()
    counter = {"Item": {"done_count": {"N": "4"}}}

    def cancelled(*reasons: str) -> None:
        stub.add_client_error(  # type: ignore[attr-defined]
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            http_status_code=400,
            modeled_fields={"CancellationReasons": [{"Code": r} for r in reasons]},
        )

    stub.add_response("get_item", counter)  # type: ignore[attr-defined]
    cancelled("None", "None", "TransactionConflict")
    stub.add_response("get_item", counter)  # type: ignore[attr-defined]
    cancelled("ConditionalCheckFailed", "None", "None")
    stub.add_response("get_item", counter)  # type: ignore[attr-defined]
    stub.add_response("transact_write_items", {})  # type: ignore[attr-defined]
    changes = [
        Terminal(
            f"s1_{i}", "s1", TaskState.FINISHED, "attempt = :c_attempt", {":c_attempt": {"N": "1"}}
        )
        for i in range(2)
    ]
    pauses: list[float] = []
    finisher = Finisher(
        client, Calls(sleep=pauses.append), "tasks", "sessions", sleep=pauses.append
    )
    with stub:  # type: ignore[attr-defined]
        assert finisher.finish("s1", changes, NOW) == {"s1_1"}
        stub.assert_no_pending_responses()  # type: ignore[attr-defined]
    assert len(pauses) == 1  # only the conflict waited; a lost condition is retried at once
