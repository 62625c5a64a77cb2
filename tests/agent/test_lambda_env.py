"""What a handler written for AWS Lambda sees, through a real agent: the context, Lambda's
environment variables, its package as the working directory and a private TMPDIR that goes
away with its worker; for Python workers and for ``provided`` bootstraps alike."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from agent_thread import running
from package_helpers import FAST, finished, outputs, package_agent, submit
from procs import until

from htcgrid.agent.agent import Agent
from htcgrid.agent.worker import WorkerConfig
from htcgrid.dataplane import open_data_plane
from htcgrid.functions import FunctionRegistry, zip_directory
from htcgrid.models import TaskState
from htcgrid.service import GridService
from htcgrid.store import open_store

LAMBDA_VARIABLES = (
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "_HANDLER",
    "TZ",
    "TMPDIR",
)

REPORTER = """
import json, os, tempfile, time

NAMES = json.load(open(os.path.join(os.path.dirname(__file__), "names.json")))

def report(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    with tempfile.NamedTemporaryFile("w", delete=False) as scratch:
        scratch.write("scratch")
    with open("data/prices.csv") as prices:
        first_line = prices.readline().strip()
    return {
        "env": {name: os.environ.get(name) for name in NAMES},
        "cwd": os.getcwd(),
        "first_line": first_line,
        "scratch": scratch.name,
        "tempdir": tempfile.gettempdir(),
        "tz": time.strftime("%Z"),
        "context": {
            "identity": context.identity,
            "client_context": context.client_context,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
        },
    }
"""

BOOTSTRAP = '#!/bin/sh\nexec "$PYTHON" "$LAMBDA_TASK_ROOT/runtime_loop.py"\n'

RUNTIME_LOOP = """
import json, os, tempfile, urllib.request

NAMES = json.load(open(os.path.join(os.path.dirname(__file__), "names.json")))

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime/invocation/"
while True:
    with urllib.request.urlopen(api + "next") as answer:
        request_id = answer.headers["Lambda-Runtime-Aws-Request-Id"]
        arn = answer.headers["Lambda-Runtime-Invoked-Function-Arn"]
    with open("data/prices.csv") as prices:
        first_line = prices.readline().strip()
    report = {
        "env": {name: os.environ.get(name) for name in NAMES},
        "cwd": os.getcwd(),
        "first_line": first_line,
        "tempdir": tempfile.gettempdir(),
        "arn": arn,
    }
    body = json.dumps(report).encode()
    urllib.request.urlopen(urllib.request.Request(api + request_id + "/response", body)).read()
"""


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[GridService]:
    store = open_store(f"sqlite://{tmp_path / 'grid.db'}")
    yield GridService(store, open_data_plane(f"file://{tmp_path / 'blobs'}"), FAST)
    store.close()


def package(tmp_path: Path, *, provided: bool = False) -> Path:
    app = tmp_path / "app"
    (app / "data").mkdir(parents=True)
    (app / "data" / "prices.csv").write_text("trade,price\n")
    (app / "reporter.py").write_text(REPORTER)
    (app / "names.json").write_text(json.dumps(LAMBDA_VARIABLES))
    if provided:
        (app / "runtime_loop.py").write_text(RUNTIME_LOOP)
        (app / "bootstrap").write_text(BOOTSTRAP.replace("$PYTHON", sys.executable))
        (app / "bootstrap").chmod(0o755)
    return app


@contextmanager
def own_handler_agent(grid: GridService, app: Path, region: str) -> Iterator[Agent]:
    """An agent running ``--handler reporter.report --path APP`` in one region."""
    worker = WorkerConfig(handler="reporter.report", paths=(str(app),), region=region)
    with running(Agent(grid.store, grid.data, FAST, worker, 1)) as runner:
        yield runner


def assert_lambda_environment(seen: dict[str, Any], root: str, name: str, version: str) -> None:
    env = seen["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == version
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{name}"
    assert f"[{version}]" in env["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert env["LAMBDA_TASK_ROOT"] == root and os.path.isdir(env["LAMBDA_RUNTIME_DIR"])
    assert env["TZ"] == ":UTC"
    assert seen["cwd"] == root and seen["first_line"] == "trade,price"
    assert env["TMPDIR"] == seen["tempdir"]
    assert os.path.basename(os.path.dirname(seen["tempdir"])).startswith("htcgrid-workers-")


def test_a_python_package_sees_lambdas_environment(grid: GridService, tmp_path: Path) -> None:
    registry, app = FunctionRegistry(grid.data), zip_directory(package(tmp_path))
    registry.deploy("pricer", app, "reporter.report")
    registry.deploy("big", app, "reporter.report", memory_mb=2048)
    sid = submit(grid, [{}], function="pricer")
    big = submit(grid, [{}], function="big")
    with package_agent(grid, tmp_path / "cache") as runner:
        (seen,) = outputs(grid, sid)
        (seen_big,) = outputs(grid, big)
        agent_id = runner.agent_id
    root = seen["cwd"]
    assert root.startswith(str(tmp_path / "cache" / "pricer"))
    assert_lambda_environment(seen, root, "pricer", "1")
    assert seen["env"]["_HANDLER"] == "reporter.report"
    assert seen["env"]["AWS_REGION"] == seen["env"]["AWS_DEFAULT_REGION"] == "us-east-1"
    assert seen["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "128"
    assert seen["tz"] == "UTC"
    assert os.path.dirname(seen["scratch"]) == seen["tempdir"]  # tempfile writes there
    assert seen["context"] == {
        "identity": None,
        "client_context": None,
        "memory_limit_in_mb": 128,
        "invoked_function_arn": "arn:aws:lambda:us-east-1:000000000000:function:pricer",
        "log_group_name": "/aws/lambda/pricer",
        "log_stream_name": seen["env"]["AWS_LAMBDA_LOG_STREAM_NAME"],
    }
    assert seen["context"]["log_stream_name"].endswith(f"[1]{agent_id}")
    assert seen_big["context"]["memory_limit_in_mb"] == 2048
    assert seen_big["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "2048"
    assert seen_big["tempdir"] != seen["tempdir"]  # one private folder per worker
    until(lambda: not os.path.exists(seen["tempdir"]), 10, "the stopped workers' TMPDIR to go")


def test_own_handler_runs_in_its_first_path_and_region(grid: GridService, tmp_path: Path) -> None:
    app = package(tmp_path)
    first = submit(grid, [{}])
    hung = submit(grid, [{"sleep": 60}], timeout_seconds=0.5, max_attempts=1)
    after = submit(grid, [{}])
    with own_handler_agent(grid, app, "eu-west-3"):
        (seen,) = outputs(grid, first)
        (timed_out,) = finished(grid, hung)
        (replaced,) = outputs(grid, after)
    assert_lambda_environment(seen, str(app), "default", "$LATEST")
    assert seen["env"]["AWS_REGION"] == seen["env"]["AWS_DEFAULT_REGION"] == "eu-west-3"
    arn = seen["context"]["invoked_function_arn"]
    assert arn == "arn:aws:lambda:eu-west-3:000000000000:function:default"
    assert timed_out.state is TaskState.FAILED and timed_out.error.type == "TaskTimeout"
    assert replaced["tempdir"] != seen["tempdir"]
    assert not os.path.exists(seen["tempdir"])  # the killed worker's folder, swept
    until(lambda: not os.path.exists(replaced["tempdir"]), 10, "the last worker's TMPDIR to go")


def test_a_provided_bootstrap_gets_the_same_environment(grid: GridService, tmp_path: Path) -> None:
    app = package(tmp_path, provided=True)
    FunctionRegistry(grid.data).deploy(
        "native", zip_directory(app), "engine.price", runtime="provided", memory_mb=512
    )
    sid = submit(grid, [{}], function="native")
    with package_agent(grid, tmp_path / "cache"):
        (seen,) = outputs(grid, sid)
    assert_lambda_environment(seen, seen["cwd"], "native", "1")
    assert seen["cwd"].startswith(str(tmp_path / "cache" / "native"))
    assert seen["env"]["_HANDLER"] == "engine.price"
    assert seen["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
    assert seen["arn"] == "arn:aws:lambda:us-east-1:000000000000:function:native"
    until(lambda: not os.path.exists(seen["tempdir"]), 10, "the stopped worker's TMPDIR to go")
