"""``python -m htcgrid.compat run PROGRAM [ARGS…]`` and ``python -m htcgrid.compat path``.

``run`` executes PROGRAM as ``__main__`` with ARGS as its ``sys.argv[1:]``, with
``SHIM_PATH`` on the import path (and on ``PYTHONPATH``, for the processes it starts), so an
HTC-Grid program's ``from api.connector import AWSConnector`` imports htcgrid's connector.
``path`` prints ``SHIM_PATH``.
"""

from __future__ import annotations

import os
import runpy
import sys

from htcgrid.compat import SHIM_PATH

USAGE = "usage: python -m htcgrid.compat run PROGRAM.py [ARGS...] | python -m htcgrid.compat path"


def run(program: str, args: list[str]) -> None:
    if not os.path.isfile(program):
        raise SystemExit(f"htcgrid.compat: no such program: {program}")
    here = os.path.dirname(os.path.abspath(program))
    sys.path[:0] = [here, SHIM_PATH]
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [SHIM_PATH, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    sys.argv = [program, *args]
    runpy.run_path(program, run_name="__main__")


def main(argv: list[str]) -> None:
    if argv[:1] == ["path"] and len(argv) == 1:
        print(SHIM_PATH)
    elif argv[:1] == ["run"] and len(argv) >= 2:
        run(argv[1], argv[2:])
    else:
        raise SystemExit(USAGE)


if __name__ == "__main__":
    main(sys.argv[1:])
