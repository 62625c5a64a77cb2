"""The scaling decision (``htcgrid.scaling``) and its replay over the workshop curve."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from htcgrid.errors import ConfigurationError
from htcgrid.scaling import ScalingPolicy, desired_capacity, parse_range

POLICY = ScalingPolicy(min_capacity=1, max_capacity=100, target_backlog=2, cooldown_seconds=30)


def _load_simulation() -> ModuleType:
    path = Path(__file__).parents[1] / "scripts" / "autoscale_simulation.py"
    spec = importlib.util.spec_from_file_location("autoscale_simulation", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


sim = _load_simulation()


@pytest.mark.parametrize(
    ("backlog", "expected"),
    [(0, 1), (1, 1), (2, 1), (3, 2), (8, 4), (199, 100), (200, 100), (10_000, 100)],
)
def test_htc_grids_rule_ceil_of_backlog_over_target_clamped(backlog: int, expected: int) -> None:
    assert desired_capacity(POLICY, backlog, 0, 1, seconds_since_change=1e9) == expected


def test_slots_per_unit_divide_the_backlog() -> None:
    policy = ScalingPolicy(0, 10, target_backlog=2, slots_per_unit=4, cooldown_seconds=0)
    assert desired_capacity(policy, 17, 0, 0, 0) == 3  # ceil(17 / 8)
    assert desired_capacity(policy, 0, 0, 3, 0) == 0  # MIN 0: nothing runs, nothing left


def test_scale_out_is_immediate_even_within_the_cool_down() -> None:
    assert desired_capacity(POLICY, 40, 0, 4, seconds_since_change=0) == 20


def test_scale_in_waits_for_the_cool_down() -> None:
    assert desired_capacity(POLICY, 0, 0, 20, seconds_since_change=29.9) == 20
    assert desired_capacity(POLICY, 0, 0, 20, seconds_since_change=30) == 1


def test_scale_in_never_goes_below_the_units_running_tasks() -> None:
    assert desired_capacity(POLICY, 0, 7, 20, seconds_since_change=1e9) == 7
    policy = ScalingPolicy(1, 10, 2, slots_per_unit=4, cooldown_seconds=0)
    assert desired_capacity(policy, 0, 9, 10, 0) == 3  # nine tasks fill at least three agents


def test_bounds_win_over_the_cool_down() -> None:
    assert desired_capacity(POLICY, 0, 0, 150, seconds_since_change=0) == 100  # MAX lowered
    assert desired_capacity(POLICY, 0, 0, 0, seconds_since_change=0) == 1  # below MIN
    assert desired_capacity(POLICY, 0, 500, 100, 1e9) == 100  # running above MAX


def test_negative_counts_read_as_zero() -> None:
    assert desired_capacity(POLICY, -5, -1, 1, 1e9) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_capacity": 5, "max_capacity": 4},
        {"min_capacity": -1},
        {"min_capacity": 0, "max_capacity": 0},
        {"target_backlog": 0},
        {"slots_per_unit": 0},
        {"cooldown_seconds": -1},
    ],
)
def test_a_bad_policy_is_one_configuration_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        ScalingPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"), [("1:8", (1, 8)), ("0:3", (0, 3)), ("4", (4, 4)), ("0", (0, 0))]
)
def test_parse_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_range(text) == expected


@pytest.mark.parametrize("text", ["", "a:b", "3:1", "1:", ":4", "-1:2", "1:2:3", "1.5:2"])
def test_parse_range_refuses_in_one_line(text: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_range(text)
    assert "\n" not in str(info.value)


# ---- the simulation -------------------------------------------------------------------


def _check_invariants(policy: ScalingPolicy, workload: object, out: object) -> None:
    total = workload.sessions * workload.tasks_per_session  # type: ignore[attr-defined]
    assert out.finished == total  # type: ignore[attr-defined]
    capacities = [p[4] for p in out.polls]  # type: ignore[attr-defined]
    assert all(policy.min_capacity <= c <= policy.max_capacity for c in capacities)
    assert capacities[-1] == policy.min_capacity


def test_the_simulation_scales_out_and_back_in_without_interrupting_a_task() -> None:
    policy = ScalingPolicy(1, 10, target_backlog=2, cooldown_seconds=20)
    workload = sim.Workload(sessions=3, tasks_per_session=20, task_seconds=2)
    cluster = sim.Cluster(poll_seconds=5, startup_seconds=4, growth_factor=4, grace_seconds=30)
    out = sim.simulate(policy, workload, cluster)
    _check_invariants(policy, workload, out)
    assert out.interrupted == 0
    assert out.peak_capacity == policy.max_capacity
    growth = [p[4] for p in out.polls]
    assert growth[:3] == [4, 10, 10]  # 4x per poll, up to MAX
    changes = [p[0] for i, p in enumerate(out.polls) if i and p[4] != out.polls[i - 1][4]]
    for t in out.scale_ins:
        before = [c for c in changes if c < t]
        assert not before or t - before[-1] >= policy.cooldown_seconds
    text = sim.report(policy, workload, cluster, out)
    assert "interrupted by scale-in: 0" in text and "all 60 tasks finished" in text


def test_draining_protects_long_tasks_only_within_the_grace_period() -> None:
    """Scale-in picks busy pods too (the cluster cannot choose); the drain saves their tasks
    when the grace period outlasts them, and the simulation notices when it does not."""
    policy = ScalingPolicy(1, 10, target_backlog=1, cooldown_seconds=0)
    workload = sim.Workload(
        sessions=2, tasks_per_session=5, task_seconds=60, submit_interval_seconds=0
    )
    short = sim.Cluster(poll_seconds=5, startup_seconds=1, grace_seconds=10)
    long = sim.Cluster(poll_seconds=5, startup_seconds=1, grace_seconds=90)
    cut = sim.simulate(policy, workload, short)
    kept = sim.simulate(policy, workload, long)
    assert cut.interrupted > 0
    assert kept.interrupted == 0
    _check_invariants(policy, workload, kept)


def test_the_workshop_run_prints_its_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim.main([]) == 0
    printed = capsys.readouterr().out
    assert "all 1000 tasks finished" in printed and "interrupted by scale-in: 0" in printed
    agents = [int(line.split()[4]) for line in printed.splitlines() if line.strip()[:1].isdigit()]
    assert agents[:4] == [4, 16, 64, 100]
