"""CPU of one file data plane write and read of a W4-sized value: ``put`` (a temp file renamed
into a task's own folder) against ``put_ref`` (appended to the session's pack).

    python benchmarks/dataplane_put_bench.py [--values 500] [--kib 137]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from htcgrid.dataplane import keys
from htcgrid.dataplane.file import FileDataPlane


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=500)
    parser.add_argument("--kib", type=int, default=137)
    args = parser.parse_args()
    value = os.urandom(args.kib * 1024)
    with tempfile.TemporaryDirectory() as root:
        data = FileDataPlane(f"file://{root}")
        n = args.values
        start = time.process_time()
        for i in range(n):
            data.put(keys.task_input("s1", i), value)
        put = (time.process_time() - start) / n * 1e6
        start = time.process_time()
        refs = [data.put_ref(keys.task_input("s2", i), value) for i in range(n)]
        put_ref = (time.process_time() - start) / n * 1e6
        start = time.process_time()
        for i in range(n):
            data.get(keys.task_input("s1", i))
        get = (time.process_time() - start) / n * 1e6
        start = time.process_time()
        for ref in refs:
            data.get(ref)
        get_ref = (time.process_time() - start) / n * 1e6
        data.close()
    print(
        f"file data plane, {n} values of {args.kib} KiB, CPU per value: put {put:.0f} us, "
        f"put_ref {put_ref:.0f} us; get {get:.0f} us, get of a ref {get_ref:.0f} us; "
        f"load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
