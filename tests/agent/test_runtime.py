"""Loading handlers the two ways HTC-Grid users name them, and refusing the rest clearly; the
Lambda context and environment a worker builds for a function."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest
from sample_handlers_path import HERE

from htcgrid.agent import lambda_env
from htcgrid.agent.runtime import LambdaContext, load_handler
from htcgrid.agent.worker import WorkerConfig
from htcgrid.errors import ConfigurationError


@pytest.mark.parametrize("spec", ["sample_handlers.echo", "sample_handlers:echo"])
def test_module_dot_or_colon_function(spec: str) -> None:
    handler = load_handler(spec, [HERE])
    assert handler.__name__ == "echo" and handler.__module__ == "sample_handlers"


@pytest.mark.parametrize(
    "spec,message",
    [
        ("echo", "module.function"),
        ("sample_handlers.", "module.function"),
        ("sample_handlers.nothing_here", "has no function 'nothing_here'"),
        ("sample_handlers.__doc__", "is not callable"),
    ],
)
def test_bad_handlers_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        load_handler(spec, [HERE])


def test_a_missing_module_raises_import_error() -> None:
    with pytest.raises(ModuleNotFoundError):
        load_handler("no_such_module_anywhere.handler", [HERE])


def test_the_lambda_context_describes_the_function_as_lambda_does() -> None:
    config = WorkerConfig(
        handler="m.f", paths=("/pkg",), function_name="pricer", region="ap-south-1"
    )
    context = LambdaContext(
        **lambda_env.context_fields(config), session_id="s", task_id="s_0", attempt=1, deadline=0
    )
    assert context.identity is None and context.client_context is None
    assert context.memory_limit_in_mb == 128  # Lambda's default, never 0
    assert context.invoked_function_arn == "arn:aws:lambda:ap-south-1:000000000000:function:pricer"
    assert context.log_group_name == "/aws/lambda/pricer"
    variables = lambda_env.variables(replace(config, memory_mb=1024))
    assert variables["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "1024"
    assert variables["LAMBDA_TASK_ROOT"] == "/pkg" and variables["_HANDLER"] == "m.f"
    assert variables["AWS_REGION"] == variables["AWS_DEFAULT_REGION"] == "ap-south-1"
    assert variables["AWS_LAMBDA_LOG_STREAM_NAME"] == context.log_stream_name


def test_worker_folders_belong_to_live_processes_only() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert lambda_env._owner_alive(f"w{os.getpid()}-abc")
    assert not lambda_env._owner_alive(f"w{dead.pid}-abc")
    assert lambda_env._owner_alive("someone-elses-folder")  # never removed
