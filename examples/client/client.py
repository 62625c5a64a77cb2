"""HTC-Grid's load generator and verifier for the mock compute engine, on htcgrid.

Same options as HTC-Grid's ``client.py``. Each of ``--nthreads`` processes runs ``--njobs``
iterations; an iteration sends ``--job_batch_size`` sessions of ``--job_size`` identical tasks
``{"worker_arguments": [...]}``, waits for all of them and checks every output equals the
first worker argument (and that every task finished). At the end it prints the observed
throughput in tasks per second.

    AGENT_CONFIG_FILE=grid.json python examples/client/client.py -n 2 --job_size 100 \
        --job_batch_size 10 --worker_arguments "10 1 1"

``grid.json`` holds ``{"htcgrid_url": "http://127.0.0.1:8080"}`` (HTC-Grid's agent config keys
``public_api_gateway_url`` / ``private_api_gateway_url`` work too).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import sys
import time
from typing import Any

from htcgrid.connector import AWSConnector

RESULTS_TIMEOUT_SEC = 3600


def load_config() -> dict[str, Any]:
    path = os.environ.get("AGENT_CONFIG_FILE", "/etc/agent/Agent_config.tfvars.json")
    with open(path) as f:
        return json.load(f)  # type: ignore[no-any-return]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Submit mock-engine sessions and verify every result."
    )
    parser.add_argument("-n", "--njobs", type=int, default=1, help="iterations per process")
    parser.add_argument("--job_size", type=int, default=1, help="tasks per session")
    parser.add_argument(
        "--job_batch_size", type=int, default=1, help="sessions sent before waiting"
    )
    parser.add_argument("--nthreads", type=int, default=1, help="client processes")
    parser.add_argument("--do_print", action="store_true", help="print every output")
    parser.add_argument(
        "--generate_payload_options", default=None, help="accepted for compatibility"
    )
    parser.add_argument(
        "--worker_type", choices=["mock_compute_engine"], default="mock_compute_engine"
    )
    parser.add_argument(
        "--worker_arguments", default="1000 1 100", help="'delay_ms ram_gb iterations'"
    )
    parser.add_argument("-l", "--log", default="warning", help="log level")
    return parser.parse_args(argv)


def verify(results: dict[str, Any], expected: str, job_size: int, do_print: bool) -> list[str]:
    """Every problem with one session's results (empty when all is well)."""
    problems = []
    finished = results.get("finished", [])
    if len(finished) != job_size:
        problems.append(
            f"{len(finished)} of {job_size} tasks finished "
            f"(failed: {len(results.get('failed', []))}, cancelled: {len(results.get('cancelled', []))})"
        )
    for tid, output in zip(finished, results.get("finished_OUTPUT", []), strict=False):
        if do_print:
            print(f"{tid}: {output}")
        if output.rstrip() != expected:
            problems.append(f"task {tid} returned {output!r}, expected {expected!r}")
    return problems


def run_process(args: argparse.Namespace, thread_id: int, config: dict[str, Any]) -> int:
    time.sleep(random.uniform(0, 0.1 * thread_id))  # stagger processes, as HTC-Grid does
    connector = AWSConnector()
    connector.init(
        config, username=os.environ.get("USERNAME", ""), password=os.environ.get("PASSWORD", "")
    )
    connector.authenticate()
    arguments = args.worker_arguments.split(" ")
    task = {"worker_arguments": arguments}
    failures = 0
    for iteration in range(args.njobs):
        submissions = []
        for _ in range(args.job_batch_size):
            submissions.append(connector.send([task] * args.job_size))
            logging.info("Submitted session %s", submissions[-1]["session_id"])
        for submission in submissions:
            logging.info("Waiting for session %s", submission["session_id"])
            results = connector.get_results(submission, timeout_sec=RESULTS_TIMEOUT_SEC)
            for problem in verify(results, arguments[0], args.job_size, args.do_print):
                failures += 1
                print(
                    f"[{thread_id}] session {submission['session_id']}: {problem}", file=sys.stderr
                )
        logging.info("[%d] iteration %d done", thread_id, iteration)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log.upper())
    config = load_config()
    total_tasks = args.nthreads * args.njobs * args.job_batch_size * args.job_size
    start = time.perf_counter()
    if args.nthreads == 1:
        code = run_process(args, 0, config)
    else:
        with multiprocessing.get_context("spawn").Pool(args.nthreads) as pool:
            codes = pool.starmap(run_process, [(args, i, config) for i in range(args.nthreads)])
        code = max(codes)
    elapsed = time.perf_counter() - start
    print(f"Time from start: {elapsed:.2f} s for {total_tasks} tasks")
    print(f"Observed Throughput (tasks/second): {total_tasks / elapsed:.1f}")
    if code == 0:
        print("All results are verified!")
    return code


if __name__ == "__main__":
    sys.exit(main())
