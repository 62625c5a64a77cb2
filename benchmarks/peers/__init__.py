"""htcgrid side by side with the systems its users would otherwise pick (issue 16).

    make bench-peers                                  # everything installed, W1-W8, median of 3
    PYTHONPATH=benchmarks python -m peers --quick     # a CI-sized run
    PYTHONPATH=benchmarks python -m peers --systems htcgrid-sqlite,ray --workloads W1,W5

One module per system (``sys_*.py``), the workloads in ``workloads.py``, the CPU accounting of
the whole process tree in ``cputree.py``, the JSON lines and the markdown table in ``report.py``.
A peer that is not installed (``pip install -e '.[bench]'``) is skipped with a line saying so.
"""
