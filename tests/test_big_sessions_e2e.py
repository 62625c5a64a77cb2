"""Big payloads and big sessions through a real ``htcgrid up`` and the HTTP client.

Outputs equal inputs byte for byte across the sizes around the inline limit, and a session
far bigger than one request submits with the memory of client and server bounded by its
largest payload, not by its total (RSS measured from /proc).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from grid_process import GridProcess, htcgrid_up

import htcgrid

TESTS = Path(__file__).resolve().parent
KIB = 1024
MIB = 1024 * KIB
SIZES = [2, KIB, 63 * KIB, 64 * KIB + 1, MIB, 32 * MIB]  # bytes of each payload's JSON
ALLOWANCE_BYTES = 24 * MIB  # an interpreter's own churn: threads, caches, allocator slack


def grid_with(tmp_path: Path, handler: str, *options: str) -> Iterator[GridProcess]:
    extra = ["--path", str(TESTS), "--handler", f"payload_handlers.{handler}", *options]
    with htcgrid_up(tmp_path / "grid", *extra) as grid:
        yield grid
        grid.stop()


@pytest.fixture
def echo_grid(tmp_path: Path) -> Iterator[GridProcess]:
    yield from grid_with(tmp_path, "same")


@pytest.fixture
def length_grid(tmp_path: Path) -> Iterator[GridProcess]:
    yield from grid_with(tmp_path, "length")


def test_payloads_and_results_of_every_size_round_trip(echo_grid: GridProcess) -> None:
    events = ["x" * (size - 2) for size in SIZES]  # a JSON string of ``size`` bytes
    with htcgrid.connect(echo_grid.url) as grid:
        session = grid.submit(iter(events))
        outputs = session.outputs(timeout=120)
        assert [len(json.dumps(o)) for o in outputs] == SIZES
        assert outputs == events
        biggest = grid.task(f"{session.id}_{len(SIZES) - 1}")
        assert biggest["payload"] == biggest["output"] == events[-1]


CLIENT = """
import base64, json, os, sys
import htcgrid

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

url, count, size, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def events():
    for i in range(count):
        if kind == "random":
            yield base64.b64encode(os.urandom(size)).decode()
        else:
            yield chr(97 + i % 26) * size

grid = htcgrid.connect(url)
grid.submit(["warm up"]).outputs(timeout=60)
before = hwm()
session = grid.submit(events())
print(json.dumps({"session": session.id, "before": before, "after": hwm()}), flush=True)
sys.stdin.readline()
outputs = session.outputs(timeout=300)
print(json.dumps({"outputs": outputs, "peak": hwm()}), flush=True)
"""


def server_hwm(grid: GridProcess) -> int:
    for line in Path(f"/proc/{grid.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def submit_and_measure(grid: GridProcess, count: int, size: int, kind: str) -> None:
    """Submit ``count`` payloads of ``size`` from a client process; assert both its peak and
    the server's stay within 3x the largest payload (plus ALLOWANCE_BYTES) of where they
    started, while the session is many times bigger than that."""
    with htcgrid.connect(grid.url) as warm:  # the server's own warm-up: routes, threads, pools
        warm.submit(["warm"] * 50).outputs(timeout=60)
    server_before = server_hwm(grid)
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, grid.url, str(count), str(size), kind],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=TESTS,
    )  # fmt: skip
    try:
        assert client.stdout is not None and client.stdin is not None
        submitted = json.loads(client.stdout.readline())
        server_peak = server_hwm(grid)
        client.stdin.write("\n")
        client.stdin.flush()
        done = json.loads(client.stdout.readline())
    finally:
        client.kill()
        client.wait(timeout=30)
    largest = 2 + (4 * ((size + 2) // 3) if kind == "random" else size)
    bound = 3 * largest + ALLOWANCE_BYTES
    assert count * largest > 2 * bound, "the session must be far bigger than the bound"
    assert done["outputs"] == [largest - 2] * count
    grew = {
        "client": submitted["after"] - submitted["before"],
        "server": server_peak - server_before,
    }
    print(f"\n{count} x {largest} bytes: grew by {grew} bytes; bound {bound}")
    assert grew["client"] < bound and grew["server"] < bound, (grew, bound)


def test_500_payloads_of_137_kb_submit_in_bounded_memory(length_grid: GridProcess) -> None:
    submit_and_measure(length_grid, 500, 100 * KIB, "random")


@pytest.mark.slow
def test_a_session_of_1_gib_submits_in_bounded_memory(length_grid: GridProcess) -> None:
    submit_and_measure(length_grid, 64, 16 * MIB, "letters")


@pytest.mark.slow
def test_a_payload_and_result_of_the_maximum_size_round_trip(echo_grid: GridProcess) -> None:
    biggest = "m" * (256 * MIB - 2)  # its JSON is exactly the 256 MiB limit
    with htcgrid.connect(echo_grid.url, timeout_seconds=120) as grid:
        session = grid.submit([biggest, "small"])
        outputs = session.outputs(timeout=300)
        assert outputs[1] == "small" and len(outputs[0]) == len(biggest)
        assert outputs[0] == biggest
        with pytest.raises(htcgrid.PayloadTooLarge):
            grid.submit(iter([biggest + "m"]))


def test_the_max_payload_is_set_on_the_command_line(tmp_path: Path) -> None:
    for grid in grid_with(tmp_path, "same", "--max-payload-mb", "1"):
        with htcgrid.connect(grid.url) as client:
            for too_big in (["x" * MIB], iter(["x" * (3 * MIB)])):  # in one request, on its own
                with pytest.raises(htcgrid.PayloadTooLarge, match="1048576"):
                    client.submit(too_big)
            assert client.submit(["x" * (MIB - 2)]).outputs(timeout=60) == ["x" * (MIB - 2)]
