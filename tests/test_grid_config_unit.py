"""HTC-Grid's config files as htcgrid reads them, in process: which keys take effect and as
what, why every other key is ignored, the one-line errors of a bad file or value, and
``htcgrid config check`` (tests/test_compat.py runs whole programs against a real grid)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from htcgrid.cli import main
from htcgrid.cli.config import export_region, with_config
from htcgrid.compat import grid_config
from htcgrid.errors import ConfigurationError
from htcgrid.settings import Settings

PUBLISHED = {  # keys of HTC-Grid's own example grid config, with its kind of values
    "region": "eu-west-1",
    "grid_storage_service": "REDIS",
    "task_ttl_refresh_interval_sec": 5,
    "task_ttl_expiration_offset_sec": "30",
    "dynamodb_results_pull_interval_sec": 0.5,
    "empty_task_queue_backoff_timeout_sec": 0.5,
    "metrics_are_enabled": "1",
    "lambda_name_ttl_checker": "ttl_checker",
    "sqs_queue": "htc_task_queue",
    "user_pool_id": "eu-west-1_abc",
    "eks_worker_groups": [{"name": "worker-small"}],
}


def write(tmp_path: Path, content: str) -> Path:
    path = tmp_path / "grid.json"
    path.write_text(content)
    return path


def test_every_settings_key_becomes_a_real_setting() -> None:
    for key, (setting, where) in grid_config.SETTINGS_KEYS.items():
        assert setting in Settings.__dataclass_fields__, key
        assert where and grid_config.explain(key) == (True, grid_config.USED[key])


def test_the_used_keys_become_settings_and_flags_win() -> None:
    overrides = grid_config.settings_overrides(PUBLISHED)
    assert overrides == {"heartbeat_seconds": 5.0, "lease_seconds": 30.0}
    assert with_config(PUBLISHED, {"lease_seconds": 90.0, "heartbeat_seconds": None}) == {
        "heartbeat_seconds": 5.0,
        "lease_seconds": 90.0,
    }
    assert grid_config.region(PUBLISHED) == "eu-west-1" and grid_config.region({}) is None
    assert grid_config.storage_service(PUBLISHED) == "REDIS"
    assert grid_config.check(PUBLISHED) == []


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("empty_task_queue_backoff_timeout_sec", "woken by the task store"),
        ("metrics_are_enabled", "Prometheus /metrics"),
        ("lambda_name_ttl_checker", "no control-plane Lambdas"),
        ("sqs_queue", "also its queue"),
        ("user_pool_id", "no Cognito"),
        ("eks_worker_groups", "an AWS deployment setting"),
    ],
)
def test_an_ignored_key_says_why(key: str, says: str) -> None:
    used, reason = grid_config.explain(key)
    assert not used and says in reason


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"task_ttl_refresh_interval_sec": "soon"}, "must be a number of seconds, not 'soon'"),
        ({"task_ttl_expiration_offset_sec": 0}, "must be positive, not 0"),
        ({"dynamodb_results_pull_interval_sec": -1}, "must be positive"),
        ({"grid_storage_service": "FLOPPY"}, "must be one of REDIS, S3, S3+REDIS, not 'FLOPPY'"),
    ],
)
def test_a_bad_value_is_one_problem_naming_its_key(config: dict[str, object], says: str) -> None:
    (problem,) = grid_config.check(config)
    assert says in problem


def test_absent_and_empty_values_are_no_value() -> None:
    assert grid_config.seconds({}, "x") is None and grid_config.seconds({"x": ""}, "x") is None
    assert grid_config.settings_overrides({}) == {} and grid_config.check({}) == []


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ('{"region": "eu-west-1",\n  "x": }', "invalid JSON at line 2, column 8"),
        ("[1, 2]", "expected a JSON object, not list"),
    ],
)
def test_a_file_that_is_not_a_config_is_one_line_naming_it(
    tmp_path: Path, content: str, says: str
) -> None:
    path = write(tmp_path, content)
    with pytest.raises(ConfigurationError, match=f"^{path}: ") as refused:
        grid_config.load(path)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(ConfigurationError, match="No such file"):
        grid_config.load(tmp_path / "missing.json")


def test_the_region_goes_to_the_agents_unless_set_already(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTCGRID_REGION", "")  # so that teardown restores what was there
    monkeypatch.delenv("HTCGRID_REGION")  # (a bare delenv of a missing name records nothing)
    export_region(PUBLISHED)
    assert os.environ["HTCGRID_REGION"] == "eu-west-1"
    export_region({"region": "us-east-2"})
    assert os.environ["HTCGRID_REGION"] == "eu-west-1"


def test_config_check_lists_used_and_ignored_keys(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(PUBLISHED))
    done = CliRunner().invoke(main, ["config", "check", str(path)])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    used = lines.index("used (5):")
    ignored = lines.index("ignored (6):")
    assert used < ignored
    assert {line.split()[0] for line in lines[used + 1 : ignored]} == {
        "region",
        "grid_storage_service",
        "task_ttl_refresh_interval_sec",
        "task_ttl_expiration_offset_sec",
        "dynamodb_results_pull_interval_sec",
    }
    assert any("task_ttl_refresh_interval_sec" in line and "5" in line for line in lines)


def test_config_check_fails_with_the_problems_of_the_values(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({**PUBLISHED, "grid_storage_service": "FLOPPY"}))
    done = CliRunner().invoke(main, ["config", "check", str(path)])
    assert done.exit_code == 1
    assert "grid_storage_service must be one of" in done.stderr
    assert "used (5):" in done.stdout  # the lists come first, then the problem
