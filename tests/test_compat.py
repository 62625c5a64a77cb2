"""HTC-Grid's programs and config files as published, on htcgrid: a client written exactly
as HTC-Grid's sample (its import line included) run through ``python -m htcgrid.compat``
against a real ``htcgrid up --config``, ``htcgrid config check``, and one-line errors for
invalid JSON and for packages in S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from grid_process import ROOT, htcgrid_up

import htcgrid
from htcgrid.cli import main
from htcgrid.cli.config import with_config
from htcgrid.compat import SHIM_PATH, grid_config

PROGRAMS = ROOT / "tests" / "htc_grid_programs"
PASSWORD = "a password for HTC-Grid's sample"

# HTC-Grid's grid config as rendered upstream: a comma is missing after s3_source_kms_key_arn
INVALID_GRID_CONFIG = """{
  "region": "eu-west-1",
  "s3_source_kms_key_arn": "arn:aws:kms:eu-west-1:111111111111:key/abc"
  "grid_storage_service": "REDIS"
}
"""
GRID_CONFIG = {
    "region": "eu-west-3",
    "task_ttl_expiration_offset_sec": 3,
    "task_ttl_refresh_interval_sec": 0.5,
    "agent_task_visibility_timeout_sec": 600,
    "empty_task_queue_backoff_timeout_sec": 0.5,
    "dynamodb_results_pull_interval_sec": 0.2,
    "grid_storage_service": "REDIS",
    "max_htc_agents": 100,
    "metrics_are_enabled": "1",
    "eks_worker_groups": [{"name": "worker-small-spot"}],
    "agent_configuration": {
        "lambda": {
            "lambda_handler_file_name": "report_env",
            "lambda_handler_function_name": "lambda_handler",
        }
    },
}


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("HTCGRID_", "PYTHONPATH"))}
    return {**kept, "HTCGRID_CONFIG_DIR": str(tmp_path / "config"), **extra}


@pytest.mark.slow
def test_htc_grid_sample_client_runs_unchanged(tmp_path: Path) -> None:
    grid_file = tmp_path / "grid_config.json"
    grid_file.write_text(json.dumps(GRID_CONFIG))
    up = ("--config", str(grid_file), "--path", str(PROGRAMS))
    with htcgrid_up(tmp_path / "grid", *up, auth=True, env=clean_env(tmp_path)) as grid:
        with htcgrid.connect(grid.url, api_key=grid.credentials["api_key"]) as admin:
            admin._t.call("POST", "/v1/users", json={"name": "dana", "password": PASSWORD})  # type: ignore[attr-defined]
            assert admin.map([{"worker_arguments": ["1", "1", "1"]}], timeout=60) == [1]
        agent_config = tmp_path / "Agent_config.tfvars.json"
        agent_config.write_text(json.dumps({**GRID_CONFIG, "public_api_gateway_url": grid.url}))
        env = clean_env(
            tmp_path, AGENT_CONFIG_FILE=str(agent_config), USERNAME="dana", PASSWORD=PASSWORD
        )
        flags = ["-n", "2", "--job_size", "3", "--job_batch_size", "2", "--nthreads", "2"]
        flags += ["--worker_arguments", "20 1 1", "--do_print", "yes", "--log", "info"]
        command = [sys.executable, "-m", "htcgrid.compat", "run", "sample_client.py", *flags]
        done = subprocess.run(
            command, cwd=PROGRAMS, env=env, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr
    assert "All results are verified!" in done.stderr  # through logging.info, at INFO
    assert done.stderr.count("Submitted session") == 8  # 2 processes x 2 iterations x 2
    assert "HTTP Request" not in done.stderr


@pytest.mark.slow
def test_up_config_region_reaches_the_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTCGRID_REGION", "")  # deploy, run in this process, exports the region:
    monkeypatch.delenv("HTCGRID_REGION")  # start without one and leave none behind
    grid_file = tmp_path / "grid_config.json"
    grid_file.write_text(json.dumps(GRID_CONFIG))
    up = ("--config", str(grid_file), "--path", str(PROGRAMS))
    with htcgrid_up(tmp_path / "grid", *up, env=clean_env(tmp_path)) as grid:
        report = ROOT / "tests" / "htc_grid_programs"
        deploy = ["deploy", "reporter", str(report), "--config", str(grid_file)]
        deploy += ["--memory-mb", "256", "--url", grid.url]
        deployed = CliRunner().invoke(main, deploy, env={"HTCGRID_CONFIG_DIR": str(tmp_path)})
        assert deployed.exit_code == 0, deployed.output
        with htcgrid.connect(grid.url) as client:
            seen = client.map([{}], function="reporter", timeout=60)
    arn = "arn:aws:lambda:eu-west-3:000000000000:function:reporter"
    assert seen == [{"region": "eu-west-3", "arn": arn, "memory": 256}]


def test_config_check_lists_what_is_used_and_what_is_ignored(tmp_path: Path) -> None:
    config = tmp_path / "grid_config.json"
    config.write_text(json.dumps(GRID_CONFIG))
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output
    used, ignored = result.output.split("ignored (")
    assert used.startswith("used (7):")
    for key in ("task_ttl_expiration_offset_sec", "region", "grid_storage_service"):
        assert key in used
    assert "lease_seconds" in used and "heartbeat_seconds" in used
    assert "task_timeout_seconds" in used and "poll interval" in used
    assert ignored.startswith("4):")
    assert "max_htc_agents" in ignored and "htcgrid up --agents" in ignored
    assert "eks_worker_groups" in ignored and "metrics are the API's" in ignored


def test_invalid_json_is_one_line_naming_file_line_and_column(tmp_path: Path) -> None:
    config = tmp_path / "python_runtime_grid_config.json"
    config.write_text(INVALID_GRID_CONFIG)
    package = tmp_path / "app"
    package.mkdir()
    expected = f"htcgrid: {config}: invalid JSON at line 4, column 3: Expecting ',' delimiter\n"
    for command in (
        ["config", "check", str(config)],
        ["deploy", "f", str(package), "--config", str(config), "--url", "sqlite://x.db"],
        ["up", "--config", str(config)],
    ):
        result = CliRunner().invoke(main, command)
        assert (result.exit_code, result.output) == (1, expected), command


def test_packages_in_s3_need_the_s3_data_plane(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["deploy", "f", "s3://bucket/lambda.zip", "--handler", "a.b", "--url", "memory://"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("htcgrid: s3://bucket/lambda.zip: packages in S3 need")
    assert result.output.count("\n") == 1


def test_config_values_and_the_flags_that_win() -> None:
    assert with_config(GRID_CONFIG, {"lease_seconds": None, "heartbeat_seconds": 0.2}) == {
        "lease_seconds": 3.0,
        "heartbeat_seconds": 0.2,
        "task_timeout_seconds": 600.0,
    }
    bad = {"task_ttl_refresh_interval_sec": 40, "grid_storage_service": "S3 htc-data-bucket-1"}
    problems = grid_config.check(bad)
    assert "heartbeat_seconds (40.0) must be below lease_seconds" in problems[0]
    assert problems[1].startswith("grid_storage_service must be one of REDIS, S3, S3+REDIS")


def test_the_shim_folder_holds_only_api() -> None:
    assert sorted(p.name for p in Path(SHIM_PATH).iterdir() if not p.name.startswith("__")) == [
        "api"
    ]
    probe = "import api.connector, htcgrid.connector as c; print(api.connector.AWSConnector is c.AWSConnector)"
    shown = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": SHIM_PATH},
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == "True"
