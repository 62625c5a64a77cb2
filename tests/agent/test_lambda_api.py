"""Runtime ``provided``: a bootstrap behind the Lambda Runtime API, as HTC-Grid's C++ example
(bash + curl + a compiled engine) and AWS's own Python runtime client run it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from package_helpers import FAST, finished, outputs, package_agent, submit

from htcgrid.dataplane import open_data_plane
from htcgrid.functions import FunctionRegistry, zip_directory
from htcgrid.models import TaskState
from htcgrid.service import GridService
from htcgrid.store import open_store

ENGINE_C = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static int field(const char *json, const char *name) {
    char key[64]; snprintf(key, sizeof key, "\"%s\":", name);
    const char *at = strstr(json, key);
    return at ? atoi(at + strlen(key)) : -1;
}
int main(int argc, char **argv) {
    const char *event = argc > 1 ? argv[1] : "{}";
    if (field(event, "fail") > 0) { fprintf(stderr, "engine: bad input\n"); return 2; }
    if (field(event, "kill_bootstrap") > 0) kill(getppid(), SIGKILL);
    if (field(event, "sleep") > 0) sleep(field(event, "sleep"));
    int n = field(event, "n");
    fprintf(stderr, "engine: pricing %d\n", n);
    printf("{\"square\":%d,\"engine\":\"c\"}", n * n);
    return 0;
}
"""

BOOTSTRAP_SH = r"""#!/bin/bash
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS=$(mktemp)
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  if RESPONSE=$("$LAMBDA_TASK_ROOT/$_HANDLER" "$EVENT"); then
    curl -sS -X POST "$API/invocation/$REQUEST_ID/response" -d "$RESPONSE" > /dev/null
  else
    curl -sS -X POST "$API/invocation/$REQUEST_ID/error" \
      -d '{"errorMessage":"engine failed","errorType":"EngineError"}' > /dev/null
  fi
done
"""


@pytest.fixture
def grid(tmp_path: Path) -> Iterator[GridService]:
    store = open_store(f"sqlite://{tmp_path / 'grid.db'}")
    yield GridService(store, open_data_plane(f"file://{tmp_path / 'blobs'}"), FAST)
    store.close()


def deploy_c_engine(grid: GridService, tmp_path: Path) -> None:
    if not (shutil.which("cc") and shutil.which("curl")):
        pytest.skip("needs cc and curl")
    app = tmp_path / "app"
    app.mkdir()
    (tmp_path / "engine.c").write_text(ENGINE_C)
    subprocess.run(
        ["cc", "-O2", "-o", str(app / "mock_engine"), str(tmp_path / "engine.c")], check=True
    )
    (app / "bootstrap").write_text(BOOTSTRAP_SH)
    (app / "bootstrap").chmod(0o755)
    FunctionRegistry(grid.data).deploy("cpp", zip_directory(app), "mock_engine", runtime="provided")


def test_a_curl_bootstrap_runs_a_compiled_engine(grid: GridService, tmp_path: Path) -> None:
    deploy_c_engine(grid, tmp_path)
    sid = submit(grid, [{"n": i} for i in range(10)], function="cpp")
    failing = submit(grid, [{"fail": 1}], function="cpp")
    with package_agent(grid, tmp_path / "cache"):
        squares = outputs(grid, sid)
        (failed,) = finished(grid, failing)
    assert squares == [{"square": i * i, "engine": "c"} for i in range(10)]
    assert "engine: pricing 3" in grid.task(f"{sid}_3").log
    assert failed.state is TaskState.FAILED and failed.error.type == "EngineError"
    assert "engine: bad input" in failed.log


def test_timeouts_and_crashed_bootstraps_behave_as_for_python(
    grid: GridService, tmp_path: Path
) -> None:
    deploy_c_engine(grid, tmp_path)
    slow = submit(grid, [{"sleep": 30}], function="cpp", timeout_seconds=1.0, max_attempts=1)
    crash = submit(grid, [{"kill_bootstrap": 1}], function="cpp", max_attempts=2)
    after = submit(grid, [{"n": 7}], function="cpp")
    with package_agent(grid, tmp_path / "cache", slots=1):
        (timed_out,) = finished(grid, slow)
        (crashed,) = finished(grid, crash)
        assert outputs(grid, after) == [{"square": 49, "engine": "c"}]
    assert timed_out.state is TaskState.FAILED and timed_out.error.type == "TaskTimeout"
    assert crashed.state is TaskState.FAILED and crashed.error.type == "WorkerCrashed"
    assert crashed.attempt == 2


def test_awslambdaric_runs_a_python_handler(grid: GridService, tmp_path: Path) -> None:
    if importlib.util.find_spec("awslambdaric") is None:
        pytest.skip("needs awslambdaric")
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.py").write_text(
        "def handler(event, context):\n"
        "    print('pricing', event)\n"
        "    if event.get('fail'):\n"
        "        raise ValueError('bad trade')\n"
        "    return {'double': event['x'] * 2, 'request': context.aws_request_id,\n"
        "            'remaining_ms': context.get_remaining_time_in_millis()}\n"
    )
    (app / "bootstrap").write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m awslambdaric "$_HANDLER"\n'
    )
    (app / "bootstrap").chmod(0o755)
    FunctionRegistry(grid.data).deploy("ric", zip_directory(app), "app.handler", runtime="provided")
    sid = submit(grid, [{"x": i} for i in range(5)], function="ric")
    bad = submit(grid, [{"fail": True}], function="ric")
    with package_agent(grid, tmp_path / "cache"):
        doubled = outputs(grid, sid)
        (failed,) = finished(grid, bad)
    assert [d["double"] for d in doubled] == [0, 2, 4, 6, 8]
    assert all(0 < d["remaining_ms"] <= 3_600_000 for d in doubled)
    assert failed.state is TaskState.FAILED and failed.error.type == "ValueError"
    assert "bad trade" in failed.error.message
