"""python -m peers (with benchmarks/ on PYTHONPATH): see peers/__init__.py."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeVar

import psutil

import peers
from peers import report
from peers.base import Missing, System
from peers.cputree import Tree, mark_this_run
from peers.sys_celery import Celery
from peers.sys_dask import Dask
from peers.sys_htcgrid import HtcgridPostgres, HtcgridRedis, HtcgridSqlite
from peers.sys_ppe import ProcessPool
from peers.sys_ray import Ray
from peers.sys_rq import RQ
from peers.workloads import WORKLOADS, Workload

T = TypeVar("T")
SYSTEMS: list[type[System]] = [
    HtcgridSqlite, HtcgridPostgres, HtcgridRedis, Ray, Dask, Celery, ProcessPool, RQ,
]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m peers", description=peers.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    names = ",".join(s.name for s in SYSTEMS)
    parser.add_argument("--systems", default=names, help=f"comma-separated (default: {names})")
    parser.add_argument("--workloads", default=",".join(w.key for w in WORKLOADS))
    parser.add_argument("--repeat", type=int, default=3, help="repetitions; the median is shown")
    parser.add_argument("--quick", action="store_true", help="CI-sized workloads")
    parser.add_argument("--sizes", help="W6 session sizes, e.g. 1000,10000,100000,1000000")
    parser.add_argument(
        "--budget-seconds", type=float, default=120.0,
        help="a workload whose repetitions would take longer runs once; W6 skips a size"
        " whose run would, projected from the previous size",
    )  # fmt: skip
    parser.add_argument(
        "--timeout-seconds", type=float, default=900.0,
        help="a workload still running after this long stops its system and is an error",
    )  # fmt: skip
    parser.add_argument("--json", default="-", help="JSON lines to this file (default: stdout)")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument(
        "--table-from", help="print the table of an earlier run's JSON lines, run nothing"
    )
    args = parser.parse_args(argv)
    known = {s.name: s for s in SYSTEMS}
    args.systems = [known[n] if n in known else parser.error(f"unknown system {n!r}")
                    for n in args.systems.split(",")]  # fmt: skip
    keys = set(args.workloads.split(","))
    args.workloads = [w for w in WORKLOADS if w.key in keys]
    if args.sizes:
        args.sizes = [int(s) for s in args.sizes.split(",")]
    return args


def say(text: str) -> None:
    print(f"[peers {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def context() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }


def within(tree: Tree, seconds: float, block: Callable[[], T]) -> T:
    """``block()``, or TimeoutError after ``seconds``: the system's processes are then killed
    and the thread left behind (the system is not used again)."""
    done: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            done.append(block())
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        for proc in tree.marked():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        raise TimeoutError(f"still running after {seconds:.0f} s (--timeout-seconds)")
    if failed:
        raise failed[0]
    return done[0]


def run_group(
    cls: type[System], workers: int, group: list[Workload], args: argparse.Namespace, out: TextIO
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    system = cls(workers)
    tree = Tree(cls.services)
    start = time.perf_counter()
    try:
        system.start()  # in the main thread: Ray's start-up installs signal handlers
    except Exception:
        with contextlib.suppress(Exception):
            system.stop()  # what did start (a schema, a key prefix, a process) is removed
        raise
    try:
        within(tree, args.timeout_seconds, lambda: system.call("noop", None))
        startup = time.perf_counter() - start
        # every worker up before anything is timed
        within(tree, args.timeout_seconds, lambda: system.map("nap", [50] * workers * 2))
        say(f"{cls.name}: {workers} workers up in {startup:.1f} s")
        for workload in group:
            for row in run_workload(system, tree, workload, args):
                row.update(system=cls.name, workers=workers, startup_seconds=startup, **context())
                report.write_row(out, row)
                rows.append(row)
                if row["status"] == "error":
                    return rows
    finally:
        within(tree, args.timeout_seconds, system.stop)
    return rows


def run_workload(
    system: System, tree: Tree, workload: Workload, args: argparse.Namespace
) -> list[dict[str, Any]]:
    params = dict(workload.quick if args.quick else workload.full)
    if not workload.per_size:
        return [repeat(system, tree, workload, params, args)]
    rows, last = [], None
    for size in args.sizes or params.pop("sizes"):
        params.pop("sizes", None)
        if last and last["status"] == "ok":
            projected = last["figures"]["wall_seconds"]["median"] * size / last["size"]
            if projected > args.budget_seconds:
                note = f"skipped: projected {projected:.0f} s > --budget-seconds {args.budget_seconds:.0f}"
                rows.append(
                    {"workload": workload.key, "size": size, "status": "skipped", "note": note}
                )
                say(f"{system.name} {workload.key} {size:,}: {note}")
                continue
        last = repeat(system, tree, workload, {**params, "size": size}, args)
        last["size"] = size
        rows.append(last)
        if last["status"] == "error":
            break
    return rows


def repeat(
    system: System, tree: Tree, workload: Workload, params: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    row: dict[str, Any] = {"workload": workload.key, "title": workload.title, "params": params}
    reps = []
    try:
        for _ in range(args.repeat):
            reps.append(
                within(tree, args.timeout_seconds, lambda: workload.run(system, tree, params))
            )
            wall = reps[0].get("wall_seconds", 0.0)
            if wall * args.repeat > args.budget_seconds:
                row["note"] = f"not repeated: one run took {wall:.0f} s (--budget-seconds)"
                break
    except Exception as exc:
        row.update(status="error", note=f"{type(exc).__name__}: {exc}"[:500])
        say(f"{system.name} {workload.key}: {row['note']}")
        if os.environ.get("PEERS_DEBUG"):
            traceback.print_exc()
        return row
    row.update(status="ok", repeat=len(reps), figures=report.summarise(reps))
    shown = ", ".join(f"{k} {v['median']:.3g}" for k, v in row["figures"].items())
    say(f"{system.name} {workload.key} {params}: {shown}")
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table_from:
        lines = Path(args.table_from).read_text().splitlines()
        print(report.table([json.loads(line) for line in lines if line.strip()]))
        return 0
    mark_this_run()
    benchmarks = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [benchmarks, os.environ.get("PYTHONPATH")])
    )
    out = sys.stdout if args.json == "-" else open(args.json, "a")  # noqa: SIM115
    rows: list[dict[str, Any]] = []
    say(f"load average at the start: {os.getloadavg()}")
    for cls in args.systems:
        try:
            cls.check()
        except Missing as exc:
            say(f"{cls.name}: skipped ({exc})")
            skipped = {"system": cls.name, "status": "skipped", "note": str(exc), **context()}
            report.write_row(out, skipped)
            continue
        groups: dict[int, list[Workload]] = {}
        for workload in args.workloads:
            groups.setdefault(workload.workers, []).append(workload)
        for workers, group in groups.items():
            try:
                rows += run_group(cls, workers, group, args, out)
            except Exception as exc:
                say(f"{cls.name} with {workers} workers failed: {type(exc).__name__}: {exc}")
                failed = {
                    "system": cls.name,
                    "workers": workers,
                    "status": "error",
                    "note": str(exc)[:500],
                }
                report.write_row(out, {**failed, **context()})
    say(f"load average at the end: {os.getloadavg()}")
    markdown = report.table(rows)
    print(markdown, file=sys.stderr if args.json == "-" else sys.stdout)
    if args.markdown:
        Path(args.markdown).write_text(markdown + "\n")
    if out is not sys.stdout:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
