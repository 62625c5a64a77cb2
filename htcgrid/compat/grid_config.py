"""HTC-Grid's configuration files (the grid config and the agent config) read by htcgrid.

Every HTC-Grid key is accepted. A key with a meaning here takes effect where a user would
expect it (``USED``: what it becomes, and which command reads it); every other key is
ignored, for a reason ``explain`` gives. ``htcgrid config check FILE`` prints both lists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from htcgrid.errors import ConfigurationError
from htcgrid.settings import Settings

STORAGE_SERVICES = ("REDIS", "S3", "S3+REDIS")
RESULTS_POLL_KEY = "dynamodb_results_pull_interval_sec"

# HTC-Grid key → (htcgrid setting, where it takes effect)
SETTINGS_KEYS = {
    "task_ttl_refresh_interval_sec": ("heartbeat_seconds", "htcgrid up/server/agent --config"),
    "task_ttl_expiration_offset_sec": ("lease_seconds", "htcgrid up/server/agent --config"),
    "agent_task_visibility_timeout_sec": (
        "task_timeout_seconds",
        "htcgrid up/server --config: the default time limit of a task",
    ),
}
USED = {
    **{key: f"{setting} ({where})" for key, (setting, where) in SETTINGS_KEYS.items()},
    "region": "the workers' AWS_REGION and function ARN (htcgrid up/agent --config)",
    RESULTS_POLL_KEY: "the connector's result poll interval (AWSConnector)",
    "grid_storage_service": "checked by the connector (REDIS, S3 or S3+REDIS); its "
    "in_out_manager reads the grid's data plane through the API, whatever the backend",
    "public_api_gateway_url": "the connector's API URL",
    "private_api_gateway_url": "the connector's API URL when $INTRA_VPC is set",
    "api_gateway_key": "the connector's API key (sent as x-api-key)",
    "htcgrid_url": "the connector's API URL (htcgrid's own key, first choice)",
    "htcgrid_function": "the function the connector's sessions run (htcgrid's own key)",
    "htcgrid_ca_bundle": "the CA bundle the connector trusts (htcgrid's own key)",
    "agent_configuration": "the handler of htcgrid deploy --config "
    "(lambda.lambda_handler_file_name + lambda_handler_function_name)",
}

_IGNORED_EXACT = {
    "empty_task_queue_backoff_timeout_sec": "idle agents are woken by the task store when work "
    "arrives, instead of polling with a back-off",
    "work_proc_status_pull_interval_sec": "workers report each result as it finishes; nothing "
    "polls their status",
    "task_input_passed_via_external_storage": "payloads travel inline, or through the data plane "
    "when big, without a setting",
    "agent_use_congestion_control": "unused by HTC-Grid too",
    "enable_xray": "no AWS X-Ray here; see the API's /metrics",
    "user_pool_id": "users live in the grid (htcgrid user add); no Cognito",
    "cognito_userpool_client_id": "users live in the grid (htcgrid user add); no Cognito",
    "redis_url": "the connector reads data through the API, never the data plane itself",
    "redis_password": "the connector reads data through the API, never the data plane itself",
    "min_htc_agents": "htcgrid up --agents MIN:MAX; on Kubernetes, the ScaledObject's "
    "minReplicaCount (docs/kubernetes.md)",
    "max_htc_agents": "htcgrid up --agents MIN:MAX; on Kubernetes, the ScaledObject's "
    "maxReplicaCount (docs/kubernetes.md)",
    "htc_agent_target_value": "htcgrid up --target-backlog; on Kubernetes, target_backlog in "
    "the ScaledObject's /v1/scaling URL (docs/kubernetes.md)",
    "graceful_termination_delay": "htcgrid agent --grace-seconds",
}
_IGNORED_PREFIXES = (
    ("metrics_", "metrics are the API's Prometheus /metrics"),
    ("lambda_name_", "htcgrid has no control-plane Lambdas: the API does their work"),
    ("task_queue_", "htcgrid's task store (--url) is also its queue"),
    ("tasks_queue_", "htcgrid's task store (--url) is also its queue"),
    ("state_table_", "htcgrid's task store is chosen by --url"),
    ("sqs_", "htcgrid's task store (--url) is also its queue"),
    ("ddb_", "htcgrid's task store is chosen by --url"),
    ("dynamodb_", "htcgrid's task store is chosen by --url"),
    ("s3_", "htcgrid's data plane is chosen by --data-url (no S3 data plane yet)"),
    ("error_log", "errors are kept with each task (htcgrid task ID) and in the agents' logs"),
    ("htc_path_logs", "errors are kept with each task (htcgrid task ID)"),
)


def load(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ConfigurationError in one line naming file, line and
    column when it is not valid JSON."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigurationError(f"{path}: {exc.strerror or exc}") from None
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(
            f"{path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(config, dict):
        raise ConfigurationError(f"{path}: expected a JSON object, not {type(config).__name__}")
    return config


def explain(key: str) -> tuple[bool, str]:
    """(used, what it means here) for one top-level key of an HTC-Grid config."""
    if key in USED:
        return True, USED[key]
    if key in _IGNORED_EXACT:
        return False, _IGNORED_EXACT[key]
    for prefix, reason in _IGNORED_PREFIXES:
        if key.startswith(prefix):
            return False, reason
    return False, "an AWS deployment setting (Terraform, EKS, VPC, images): not needed here"


def seconds(config: Mapping[str, Any], key: str) -> float | None:
    """A positive number of seconds from ``key`` (None when absent)."""
    if config.get(key) in (None, ""):
        return None
    try:
        value = float(config[key])
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{key} must be a number of seconds, not {config[key]!r}"
        ) from None
    if value <= 0:
        raise ConfigurationError(f"{key} must be positive, not {config[key]!r}")
    return value


def settings_overrides(config: Mapping[str, Any]) -> dict[str, float]:
    """The htcgrid ``Settings`` fields the config sets (see ``SETTINGS_KEYS``)."""
    found = {setting: seconds(config, key) for key, (setting, _) in SETTINGS_KEYS.items()}
    return {name: value for name, value in found.items() if value is not None}


def region(config: Mapping[str, Any]) -> str | None:
    value = config.get("region")
    return str(value) if value else None


def storage_service(config: Mapping[str, Any]) -> str | None:
    """``grid_storage_service`` when valid; ConfigurationError otherwise (as HTC-Grid)."""
    value = config.get("grid_storage_service")
    if value is None:
        return None
    if value not in STORAGE_SERVICES:
        raise ConfigurationError(
            f"grid_storage_service must be one of {', '.join(STORAGE_SERVICES)}, not {value!r}"
        )
    return str(value)


def check(config: Mapping[str, Any]) -> list[str]:
    """What is wrong with the values of the used keys (empty when nothing is)."""
    problems = []
    for probe in (_settings, storage_service, lambda c: seconds(c, RESULTS_POLL_KEY)):
        try:
            probe(config)
        except ConfigurationError as exc:
            problems.append(str(exc))
    return problems


def _settings(config: Mapping[str, Any]) -> Settings:
    return Settings().with_(**settings_overrides(config))
