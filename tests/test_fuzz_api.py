"""Fuzz the whole HTTP API from its own OpenAPI document with schemathesis, against a running
`htcgrid up`: no 5xx, and every answer matches the document (status, content type, schema).

Each operation gets ``EXAMPLES`` valid and ``EXAMPLES`` invalid requests (derandomized, so a
run is repeatable), which keeps the whole test well under a minute; the count of cases tried is
printed and kept in docs/security.md."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")

from grid_process import GridProcess, htcgrid_up  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

pytestmark = pytest.mark.slow
EXAMPLES = 25
MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GridProcess]:
    # the fuzzer is one very fast client: lift the rate limit, which has tests of its own
    env = {"HTCGRID_RATE_LIMIT_PER_SECOND": "100000", "HTCGRID_RATE_LIMIT_BURST": "100000"}
    with htcgrid_up(tmp_path_factory.mktemp("fuzz"), env=env, auth=True) as running:
        yield running


def one_priority_per_task(case: Any) -> Any:
    """The rules the schema cannot state: task_priorities, if given, matches tasks; the
    function named is deployed (this grid has only ``default``); a task graph's deps name
    tasks that exist, without a cycle (so a valid case has none)."""
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("function"), str):
        body["function"] = "default"
    if isinstance(body, dict) and "deps" in body:
        body["deps"] = None
    if isinstance(body, dict) and isinstance(body.get("task_priorities"), list):
        tasks = body.get("tasks")
        if isinstance(tasks, list) and tasks:
            body["task_priorities"] = (body["task_priorities"] + [0] * len(tasks))[: len(tasks)]
    return case


def fuzz(operation: Any, mode: Any, headers: dict[str, str], failures: list[str]) -> int:
    tried = 0
    cases = operation.as_strategy(generation_mode=mode)
    if mode is schemathesis.GenerationMode.POSITIVE:
        cases = cases.map(one_priority_per_task)

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def one(case: Any) -> None:
        nonlocal tried
        tried += 1
        try:
            case.call_and_validate(headers=headers, timeout=90)
        except Exception as exc:  # schemathesis reports failed checks as assertion groups
            failures.append(f"{operation.label} ({mode.value}): {str(exc)[:600]}")
            raise

    with contextlib.suppress(Exception):  # recorded above, already shrunk by hypothesis
        one()
    return tried


def test_api_from_its_openapi_document(grid: GridProcess) -> None:
    api = schemathesis.openapi.from_url(f"{grid.url}/openapi.json")
    key = grid.credentials["api_key"]
    headers = {"x-api-key": key, "Authorization": f"Bearer {key}"}
    failures: list[str] = []
    tried = {}
    for result in api.get_all_operations():
        operation = result.ok()
        for mode in MODES:
            tried[f"{operation.label} {mode.value}"] = fuzz(operation, mode, headers, failures)
    total = sum(tried.values())
    print(f"\nschemathesis tried {total} cases on {len(tried) // 2} operations")
    assert len(tried) >= 2 * 18, sorted(tried)
    assert not failures, "\n\n".join(failures[:10])
