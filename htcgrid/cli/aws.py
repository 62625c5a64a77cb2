"""``htcgrid aws create|destroy``: the DynamoDB tables, SQS queues and S3 bucket of a grid on
AWS, named as HTC-Grid names them (``htc_tasks_state_table-<tag>``, ``htc_task_queue-<tag>__<p>``).

Both are idempotent. Servers and agents never create anything: they are pointed at
``aws://?region=…&tag=…`` and ``s3://<bucket>/<prefix>`` once these exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from htcgrid.cli.options import env

F = TypeVar("F", bound=Callable[..., Any])


def grid_options(fn: F) -> F:
    """--tag, --region, --endpoint-url, --priorities, --bucket."""
    for option in reversed(
        [
            click.option(
                "--tag",
                envvar=env("AWS_TAG"),
                show_envvar=True,
                required=True,
                help="The grid's name in every resource name (HTC-Grid's tag).",
            ),
            click.option(
                "--region",
                envvar=env("AWS_REGION"),
                show_envvar=True,
                default=None,
                help="AWS region (default: the AWS configuration's).",
            ),
            click.option(
                "--endpoint-url",
                envvar=env("AWS_ENDPOINT_URL"),
                show_envvar=True,
                default=None,
                help="Another endpoint (an AWS-compatible service, or a local test server).",
            ),
            click.option(
                "--priorities",
                type=click.IntRange(1, 10),
                default=10,
                show_default=True,
                envvar=env("AWS_PRIORITIES"),
                show_envvar=True,
                help="Number of SQS queues; priorities 0-9 are spread over them.",
            ),
            click.option(
                "--bucket",
                envvar=env("AWS_BUCKET"),
                show_envvar=True,
                default=None,
                help="Also an S3 bucket for the data plane and function packages.",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _config(tag: str, region: str | None, endpoint_url: str | None) -> Any:
    from htcgrid.errors import ConfigurationError

    try:
        from htcgrid.store.aws_calls import AwsConfig
    except ImportError as exc:
        raise ConfigurationError(
            f"htcgrid aws needs boto3: pip install 'htcgrid[aws]' (missing: {exc.name})"
        ) from exc
    return AwsConfig(region, endpoint_url, tag)


def _urls(tag: str, region: str | None, endpoint_url: str | None, bucket: str | None) -> str:
    params = [f"tag={tag}"]
    if region:
        params.insert(0, f"region={region}")
    if endpoint_url:
        params.append(f"endpoint_url={endpoint_url}")
    text = f"task store:  aws://?{'&'.join(params)}"
    if bucket:
        tail = "&".join(p for p in params if not p.startswith("tag="))
        text += f"\ndata plane:  s3://{bucket}/htcgrid" + (f"?{tail}" if tail else "")
    return text


@click.group()
def aws() -> None:
    """Create or remove a grid's resources on AWS (DynamoDB, SQS, S3)."""


@aws.command()
@grid_options
def create(
    tag: str, region: str | None, endpoint_url: str | None, priorities: int, bucket: str | None
) -> None:
    """Create the state table, its indexes, the priority queues (with dead-letter queues)
    and, with --bucket, the bucket. What exists already is kept."""
    from htcgrid.store import aws_admin

    aws_admin.create(_config(tag, region, endpoint_url), priorities, bucket, report=click.echo)
    click.echo(_urls(tag, region, endpoint_url, bucket))


@aws.command()
@grid_options
@click.option(
    "--yes",
    is_flag=True,
    envvar=env("AWS_DESTROY_YES"),
    show_envvar=True,
    help="Do not ask for confirmation.",
)
def destroy(
    tag: str,
    region: str | None,
    endpoint_url: str | None,
    priorities: int,
    bucket: str | None,
    yes: bool,
) -> None:
    """Delete the grid's tables, queues and (with --bucket) the bucket with all its objects."""
    from htcgrid.store import aws_admin

    if not yes:
        click.confirm(f"Delete every task, session and queue of grid {tag!r}?", abort=True)
    aws_admin.destroy(_config(tag, region, endpoint_url), priorities, bucket, report=click.echo)


def package_from_s3(source: str, admin: Any, data_url: str | None) -> bytes:
    """The bytes of a function package already in S3 (``htcgrid deploy NAME s3://b/k.zip``,
    HTC-Grid's ``S3_LAMBDA_HTCGRID_BUCKET_NAME`` way), read with the grid's S3 data plane
    (its region, endpoint and credentials); deploying then records its version and sha256.
    Any other data plane is a one-line error: htcgrid reads S3 only through an S3 data plane."""
    from htcgrid.errors import ConfigurationError

    data = getattr(getattr(admin, "registry", None), "data", None)
    if data is None and data_url and data_url.startswith("s3://"):
        from htcgrid.dataplane import open_data_plane

        data = open_data_plane(data_url)
    reader = getattr(data, "read_url", None)
    if reader is None:
        raise ConfigurationError(
            f"{source}: packages in S3 need the grid's S3 data plane: give --data-url s3://… "
            "(or use a grid whose data plane is S3), or download the zip and deploy the file"
        )
    package: bytes = reader(source)
    return package


COMMANDS = [aws]
