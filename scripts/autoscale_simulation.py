"""Replay htcgrid's scaling decision over a backlog curve modelled on HTC-Grid's workshop run.

The workshop submits 10 sessions of 100 tasks that each take about 2 s; its trace shows the
agent pods going 1 -> 4 -> 16 -> 64 -> 100 (the maximum) and the job ending after 4 min 16 s.
Here a simulated cluster applies ``htcgrid.scaling.desired_capacity`` every poll, the way
KEDA does with ``GET /v1/scaling``:

- new pods become ready ``startup_seconds`` after they are asked for, and the cluster grows at
  most ``growth_factor`` times per poll (the workshop trace grew 4x per step);
- scale-in removes pods it picks at random, busy or not, as KEDA does; a removed pod drains:
  it claims nothing more, finishes its task, and is killed only when ``grace_seconds`` run out.

It prints capacity over time and the total time, and counts the tasks interrupted by
scale-in (a drained pod killed mid-task); with a grace period above the task length there
are none. Run: ``python scripts/autoscale_simulation.py [--json]``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import asdict, dataclass, field

from htcgrid.scaling import ScalingPolicy, desired_capacity

WORKSHOP_TRACE = "pods 1 -> 4 -> 16 -> 64 -> 100, the job done after 4 min 16 s"


@dataclass(frozen=True)
class Cluster:
    poll_seconds: float = 15.0
    startup_seconds: float = 20.0
    growth_factor: int = 4
    grace_seconds: float = 30.0
    step_seconds: float = 0.5
    seed: int = 14


@dataclass(frozen=True)
class Workload:
    sessions: int = 10
    tasks_per_session: int = 100
    task_seconds: float = 2.0
    submit_interval_seconds: float = 1.0  # the client submits one session after another


@dataclass
class Pod:
    ready_at: float
    busy_until: float | None = None
    draining_since: float | None = None


@dataclass
class Timeline:
    polls: list[tuple[float, int, int, int, int]] = field(default_factory=list)
    # each poll: time, backlog, running tasks, ready pods, pods asked for (draining excluded)
    finished: int = 0
    interrupted: int = 0
    total_seconds: float = 0.0
    peak_capacity: int = 0
    scale_ins: list[float] = field(default_factory=list)


def simulate(
    policy: ScalingPolicy,
    workload: Workload = Workload(),
    cluster: Cluster = Cluster(),
    settle_seconds: float = 600.0,
) -> Timeline:
    """Run until every task is finished and capacity is back at the minimum (or
    ``settle_seconds`` after the last task)."""
    rng = random.Random(cluster.seed)
    arrivals = [i * workload.submit_interval_seconds for i in range(workload.sessions)]
    total = workload.sessions * workload.tasks_per_session
    pods = [Pod(ready_at=0.0) for _ in range(policy.min_capacity)]
    backlog, now, last_change, next_poll = 0, 0.0, -1e9, 0.0
    out = Timeline()
    while True:
        while arrivals and arrivals[0] <= now:
            arrivals.pop(0)
            backlog += workload.tasks_per_session
        backlog += _finish_and_retire(pods, now, cluster, out)
        backlog = _claim(pods, backlog, now, workload.task_seconds)
        running = sum(p.busy_until is not None for p in pods)
        serving = [p for p in pods if p.draining_since is None]
        if now >= next_poll:
            next_poll = now + cluster.poll_seconds
            want = desired_capacity(policy, backlog, running, len(serving), now - last_change)
            if want != len(serving):
                _resize(pods, serving, want, now, cluster, rng, out)
                last_change = now
            serving = [p for p in pods if p.draining_since is None]
            ready = sum(p.ready_at <= now for p in serving)
            out.polls.append((now, backlog, running, ready, len(serving)))
            out.peak_capacity = max(out.peak_capacity, len(serving))
        if out.finished == total and not out.total_seconds:
            out.total_seconds = now
        settled = len(pods) == policy.min_capacity or now - out.total_seconds > settle_seconds
        if out.total_seconds and settled:
            return out
        now += cluster.step_seconds


def _finish_and_retire(pods: list[Pod], now: float, cluster: Cluster, out: Timeline) -> int:
    """Record finished tasks, remove drained pods; returns tasks put back by a kill."""
    requeued = 0
    for pod in list(pods):
        if pod.busy_until is not None and pod.busy_until <= now:
            pod.busy_until = None
            out.finished += 1
        if pod.draining_since is None:
            continue
        if pod.busy_until is not None and now - pod.draining_since >= cluster.grace_seconds:
            out.interrupted += 1  # SIGKILL at the end of the grace period
            requeued += 1
            pod.busy_until = None
        if pod.busy_until is None:
            pods.remove(pod)
    return requeued


def _claim(pods: list[Pod], backlog: int, now: float, task_seconds: float) -> int:
    for pod in pods:
        if backlog and pod.draining_since is None and pod.ready_at <= now and not pod.busy_until:
            pod.busy_until = now + task_seconds
            backlog -= 1
    return backlog


def _resize(
    pods: list[Pod],
    serving: list[Pod],
    want: int,
    now: float,
    cluster: Cluster,
    rng: random.Random,
    out: Timeline,
) -> None:
    if want > len(serving):
        grown = min(want, max(1, len(serving)) * cluster.growth_factor)
        pods.extend(
            Pod(ready_at=now + cluster.startup_seconds) for _ in range(grown - len(serving))
        )
        return
    out.scale_ins.append(now)
    for pod in rng.sample(serving, len(serving) - want):  # the cluster cannot choose
        pod.draining_since = now


def report(policy: ScalingPolicy, workload: Workload, cluster: Cluster, out: Timeline) -> str:
    lines = [
        f"workload: {workload.sessions} sessions x {workload.tasks_per_session} tasks of "
        f"{workload.task_seconds:g} s; agents {policy.min_capacity}..{policy.max_capacity}, "
        f"target backlog {policy.target_backlog:g}, cool-down {policy.cooldown_seconds:g} s",
        f"{'time':>7}  {'backlog':>7}  {'running':>7}  {'ready':>5}  agents",
    ]
    for t, backlog, running, ready, capacity in out.polls:
        bar = "#" * (capacity // 4)
        lines.append(f"{t:>6.0f}s  {backlog:>7}  {running:>7}  {ready:>5}  {capacity:>6} {bar}")
    minutes, seconds = divmod(out.total_seconds, 60)
    lines.append(
        f"all {out.finished} tasks finished after {int(minutes)} min {seconds:.1f} s; "
        f"peak {out.peak_capacity} agents; interrupted by scale-in: {out.interrupted}"
    )
    lines.append(f"(HTC-Grid's workshop trace: {WORKSHOP_TRACE})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-agents", type=int, default=100)
    parser.add_argument("--target-backlog", type=float, default=2.0)
    parser.add_argument("--cooldown-seconds", type=float, default=60.0)
    parser.add_argument("--grace-seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON")
    args = parser.parse_args(argv)
    policy = ScalingPolicy(1, args.max_agents, args.target_backlog, 1, args.cooldown_seconds)
    workload, cluster = Workload(), Cluster(grace_seconds=args.grace_seconds)
    out = simulate(policy, workload, cluster)
    print(json.dumps(asdict(out)) if args.json else report(policy, workload, cluster, out))
    return 0 if out.interrupted == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
