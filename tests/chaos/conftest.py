"""The chaos suite's rows: each scenario reports one, appended as a JSON line to the file named
by ``HTCGRID_CHAOS_REPORT`` (``make chaos`` sets it, then ``table.py`` prints the table); and
the grids the scenarios run on."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from backends import AWS_REGION, aws_grid, backend_url, moto_endpoint
from harness import Row

from htcgrid.backends import open_grid


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault-injection scenarios; short in make test, long in make chaos"
    )


@pytest.fixture
def report() -> Callable[[Row], None]:
    def write(row: Row) -> None:
        target = os.environ.get("HTCGRID_CHAOS_REPORT")
        if target:
            with open(target, "a") as out:
                out.write(json.dumps(asdict(row)) + "\n")

    return write


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh grid on each backend that agents in other processes can share."""
    with backend_url(request.param, tmp_path) as found:
        yield found


@pytest.fixture(params=["sqlite", "postgresql", "redis", "aws"])
def url_with_aws(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """As ``url``, and AWS too: DynamoDB and SQS on moto's server, with an S3 bucket as the
    grid's data plane, recorded in the grid as its servers and agents would."""
    if request.param != "aws":
        with backend_url(request.param, tmp_path) as found:
            yield found
        return
    tag = f"c{uuid.uuid4().hex[:8]}"
    bucket = f"htcgrid-chaos-{tag}"
    with aws_grid(tag, queues=1, bucket=bucket) as found:
        data_url = f"s3://{bucket}/grid?region={AWS_REGION}&endpoint_url={moto_endpoint()}"
        store, data = open_grid(found, data_url, record=True)
        store.close()
        data.close()
        yield found
