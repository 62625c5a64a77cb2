"""deploy/kubernetes and the Dockerfile, checked offline: every overlay renders with
``kubectl kustomize``; every object validates against the Kubernetes schemas of the version the
README names (``kubernetes-validate``, strict); the KEDA objects against the fields of KEDA's
CRDs written down below; container args and variables against the CLI's own options.

kubectl (or hadolint, for the Dockerfile) missing skips a test locally and fails it in CI.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner
from fastapi.testclient import TestClient

from htcgrid.api import create_app
from htcgrid.cli import main
from htcgrid.dataplane import open_data_plane
from htcgrid.service import GridService
from htcgrid.settings import Settings
from htcgrid.store import open_store

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
OVERLAYS = sorted(p.name for p in (DEPLOY / "overlays").iterdir() if p.is_dir())
IMAGE_ROOT = "/opt/htcgrid/"  # where the Dockerfile copies the repository's examples/
KEDA = "keda.sh/v1alpha1"


def _need(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path=str(Path(sys.executable).parent))
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is needed in CI")
    pytest.skip(f"{tool} is not installed")


@functools.cache
def _render(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = _need("kubectl")
    done = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return tuple(o for o in yaml.safe_load_all(done.stdout) if o)


def _one(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].startswith(name)]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _containers(
    objects: tuple[dict[str, Any], ...],
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            for c in o["spec"]["template"]["spec"]["containers"]:
                yield o, c


def kubernetes_version() -> str:
    """The version the README's Kubernetes section names ("... Kubernetes 1.32 ...")."""
    text = (ROOT / "README.md").read_text()
    found = re.search(r"validated\s+against\s+Kubernetes\s+(\d+\.\d+)", text)
    assert found, (
        "the README should name the Kubernetes version the manifests are validated against"
    )
    return f"{found.group(1)}.0"


@pytest.fixture(params=OVERLAYS)
def objects(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ...]:
    return _render(request.param)


def test_there_are_overlays_for_postgresql_and_redis() -> None:
    assert {"postgresql", "redis"} <= set(OVERLAYS)


def test_every_object_validates_against_kubernetes(objects: tuple[dict[str, Any], ...]) -> None:
    version = kubernetes_version()
    kinds = set()
    for o in objects:
        kinds.add(o["kind"])
        if o["apiVersion"] != KEDA:
            kubernetes_validate.validate(o, version, strict=True)
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget", "Job"} <= kinds
    assert {"ScaledObject", "TriggerAuthentication"} <= kinds


# ---- KEDA ---------------------------------------------------------------------------------
# The fields checked, as KEDA's CRDs define them (config/crd/bases/keda.sh_scaledobjects.yaml
# and keda.sh_triggerauthentications.yaml, version v1alpha1): ScaledObject.spec has
# scaleTargetRef {name (required), apiVersion, kind, envSourceContainerName}, pollingInterval,
# cooldownPeriod, idleReplicaCount, minReplicaCount, maxReplicaCount (int32), fallback
# {failureThreshold, replicas}, advanced {restoreToOriginalReplicaCount,
# horizontalPodAutoscalerConfig {behavior {scaleUp, scaleDown: {stabilizationWindowSeconds,
# selectPolicy, policies [{type, value, periodSeconds}, all required]}}}}, and triggers
# (required) [{type (required), name, metricType, metadata (required; every value a string),
# authenticationRef {name (required), kind}}]. The metrics-api scaler reads the metadata keys
# url, format, valueLocation, targetValue, activationTargetValue, authMode, unsafeSsl.

_INT = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
_POLICY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "value", "periodSeconds"],
    "properties": {
        "type": {"enum": ["Pods", "Percent"]},
        "value": {**_INT, "minimum": 1},
        "periodSeconds": {**_INT, "minimum": 1, "maximum": 1800},
    },
}
_RULES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {**_INT, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {"type": "array", "minItems": 1, "items": _POLICY},
    },
}
SCALED_OBJECT_SPEC = {
    "type": "object",
    "additionalProperties": False,
    "required": ["scaleTargetRef", "triggers"],
    "properties": {
        "scaleTargetRef": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                k: {"type": "string"}
                for k in ("name", "apiVersion", "kind", "envSourceContainerName")
            },
        },
        **{
            k: _INT
            for k in (
                "pollingInterval",
                "cooldownPeriod",
                "idleReplicaCount",
                "minReplicaCount",
                "maxReplicaCount",
            )
        },
        "fallback": {
            "type": "object",
            "additionalProperties": False,
            "required": ["failureThreshold", "replicas"],
            "properties": {"failureThreshold": _INT, "replicas": _INT},
        },
        "advanced": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "restoreToOriginalReplicaCount": {"type": "boolean"},
                "horizontalPodAutoscalerConfig": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "behavior": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"scaleUp": _RULES, "scaleDown": _RULES},
                        }
                    },
                },
            },
        },
        "triggers": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "metadata"],
                "properties": {
                    "type": {"type": "string"},
                    "name": {"type": "string"},
                    "metricType": {"enum": ["Value", "AverageValue", "Utilization"]},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                    "authenticationRef": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string"},
                            "kind": {
                                "enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]
                            },
                        },
                    },
                },
            },
        },
    },
}
TRIGGER_AUTHENTICATION_SPEC = {
    "type": "object",
    "required": ["secretTargetRef"],
    "properties": {
        "secretTargetRef": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["parameter", "name", "key"],
                "properties": {k: {"type": "string"} for k in ("parameter", "name", "key")},
            },
        }
    },
}
METRICS_API_KEYS = {
    "url",
    "format",
    "valueLocation",
    "targetValue",
    "activationTargetValue",
    "authMode",
    "unsafeSsl",
}


def test_the_keda_objects_match_kedas_crds(objects: tuple[dict[str, Any], ...]) -> None:
    scaled = _one(objects, "ScaledObject", "htcgrid-agent")
    jsonschema.validate(scaled["spec"], SCALED_OBJECT_SPEC)
    auth = _one(objects, "TriggerAuthentication", "htcgrid-api-key")
    jsonschema.validate(auth["spec"], TRIGGER_AUTHENTICATION_SPEC)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "metrics-api"
    assert set(trigger["metadata"]) <= METRICS_API_KEYS
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert trigger["metadata"]["authMode"] == "bearer"
    assert [r["parameter"] for r in auth["spec"]["secretTargetRef"]] == ["token"]
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in _one(objects, "Secret", ref["name"])["data"]
    _one(objects, "Deployment", scaled["spec"]["scaleTargetRef"]["name"])


def test_the_scaler_reads_a_field_the_scaling_endpoint_answers(
    objects: tuple[dict[str, Any], ...],
) -> None:
    scaled = _one(objects, "ScaledObject", "htcgrid-agent")["spec"]
    metadata = scaled["triggers"][0]["metadata"]
    url = urlsplit(metadata["url"])
    service = _one(objects, "Service", "htcgrid-server")
    assert url.hostname is not None and url.hostname.split(".")[:2] == [
        service["metadata"]["name"],
        service["metadata"]["namespace"],
    ]
    assert url.port == service["spec"]["ports"][0]["port"]
    query = dict(parse_qsl(url.query))
    assert int(query["min_agents"]) == scaled["minReplicaCount"]
    assert int(query["max_agents"]) == scaled["maxReplicaCount"]
    app = create_app(GridService(open_store("memory://"), open_data_plane("memory://")))
    answer = TestClient(app).get(f"{url.path}?{url.query}")
    assert answer.status_code == 200, answer.text
    assert metadata["valueLocation"] in answer.json()
    assert float(metadata["targetValue"]) == 1  # desired_agents is a pod count, not a backlog


# ---- containers and the CLI ---------------------------------------------------------------


@functools.cache
def _cli(command: str) -> tuple[set[str], set[str]]:
    """The options and HTCGRID_* variables ``htcgrid COMMAND --help`` lists."""
    text = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", text))
    variables = set(re.findall(r"HTCGRID_[A-Z_]+", text))
    settings = {f"HTCGRID_{name.upper()}" for name in Settings.__dataclass_fields__}
    return options, variables | settings


def _variables(objects: tuple[dict[str, Any], ...], container: dict[str, Any]) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        kind, ref = (
            ("ConfigMap", "configMapRef") if "configMapRef" in source else ("Secret", "secretRef")
        )
        names |= set(_one(objects, kind, source[ref]["name"]).get("data", {}))
    return names


def test_container_args_and_variables_are_the_clis(objects: tuple[dict[str, Any], ...]) -> None:
    seen = set()
    for _, container in _containers(objects):
        args = container.get("args", [])
        if "command" in container:
            continue
        command = args[0]
        seen.add(command)
        options, variables = _cli(command)
        given = {a.split("=")[0] for a in args if a.startswith("--")}
        assert given <= options, f"htcgrid {command} has no {given - options}"
        named = {v for v in _variables(objects, container) if v.startswith("HTCGRID_")}
        assert named <= variables, f"htcgrid {command} reads no {named - variables}"
    assert seen == {"server", "agent"}


def test_the_client_job_runs_an_example_client_with_its_config_mounted(
    objects: tuple[dict[str, Any], ...],
) -> None:
    job = _one(objects, "Job", "htcgrid-client")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    python, script = container["command"]
    assert python == "python" and script.startswith(IMAGE_ROOT + "examples/client/")
    path = ROOT / script.removeprefix(IMAGE_ROOT)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, runpy; m = runpy.run_path(sys.argv[1]); m['parse_args'](sys.argv[2:])",
            str(path),
            *container["args"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    env = {e["name"]: e for e in container["env"]}
    config_file = Path(env["AGENT_CONFIG_FILE"]["value"])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(config_file.parent)]
    volume = next(
        v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]
    )
    config = _one(objects, "ConfigMap", volume["configMap"]["name"])
    assert config["metadata"]["name"] == "agent-config"
    assert config_file.name in config["data"]
    assert "HTCGRID_TOKEN" in env  # the connector's fallback credentials: an API key


# ---- agents: drain and a read-only root ---------------------------------------------------


def test_agents_drain_within_their_pods_grace_period(objects: tuple[dict[str, Any], ...]) -> None:
    agent = _one(objects, "Deployment", "htcgrid-agent")["spec"]["template"]["spec"]
    (container,) = agent["containers"]
    settings = _one(objects, "ConfigMap", "htcgrid-settings")["data"]
    grace = float(settings["HTCGRID_GRACE_SECONDS"])
    assert agent["terminationGracePeriodSeconds"] > grace + 10
    pre_stop = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert "kill -TERM 1" in pre_stop  # htcgrid agent drains on SIGTERM
    args = container["args"]
    cache_dir = args[args.index("--cache-dir") + 1]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    empty = {v["name"] for v in agent["volumes"] if "emptyDir" in v}
    assert {mounts["/tmp"], mounts[cache_dir]} <= empty
    handler_path = {e["name"]: e.get("value") for e in container["env"]}["HTCGRID_PATH"]
    assert (ROOT / handler_path.removeprefix(IMAGE_ROOT)).is_dir()


def test_every_pod_runs_as_a_user_on_a_read_only_root(objects: tuple[dict[str, Any], ...]) -> None:
    for owner, container in _containers(objects):
        pod = owner["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert "memory" in container["resources"]["limits"]


def test_the_server_is_probed_on_healthz(objects: tuple[dict[str, Any], ...]) -> None:
    (container,) = _one(objects, "Deployment", "htcgrid-server")["spec"]["template"]["spec"][
        "containers"
    ]
    app = create_app(GridService(open_store("memory://"), open_data_plane("memory://")))
    for probe in ("readinessProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert path == "/healthz"
        assert TestClient(app).get(path).status_code == 200
    _one(objects, "PodDisruptionBudget", "htcgrid-server")


def test_agents_are_probed_and_scraped_on_their_metrics_port(
    objects: tuple[dict[str, Any], ...],
) -> None:
    template = _one(objects, "Deployment", "htcgrid-agent")["spec"]["template"]
    (container,) = template["spec"]["containers"]
    args = container["args"]
    port = int(args[args.index("--metrics-port") + 1])
    assert args[args.index("--metrics-host") + 1] == "0.0.0.0"  # the kubelet probes the pod IP
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert ports[get["port"]] == port
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations["prometheus.io/path"] == "/metrics"


# ---- the Dockerfile -----------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]  # type: ignore[misc]


def test_the_image_runs_htcgrid_as_a_user() -> None:
    steps = _instructions()
    froms = [rest for op, rest in steps if op == "FROM"]
    assert len(froms) >= 2 and all("-slim" in f for f in froms)  # multi-stage, slim
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    assert ("ENTRYPOINT", '["htcgrid"]') in final
    user = next(rest for op, rest in final if op == "USER")
    assert not user.startswith(("root", "0"))
    assert any(op == "ARG" and rest.startswith("EXTRAS") for op, rest in steps)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^htcgrid = "htcgrid\.cli:main"$', pyproject, re.M)
    for extra in (
        re.search(r"ARG EXTRAS=(\S+)", (ROOT / "Dockerfile").read_text()).group(1).split(",")
    ):  # type: ignore[union-attr]
        assert re.search(rf"^{extra} = \[", pyproject, re.M), (
            f"no extra {extra!r} in pyproject.toml"
        )


def test_the_dockerfile_lints_clean() -> None:
    hadolint = _need("hadolint")
    done = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
