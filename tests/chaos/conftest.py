"""The chaos suite's rows: each scenario reports one, appended as a JSON line to the file named
by ``HTCGRID_CHAOS_REPORT`` (``make chaos`` sets it, then ``table.py`` prints the table)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

import pytest
from backends import backend_url
from harness import Row


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "chaos: fault-injection scenarios; short in make test, long in make chaos"
    )


@pytest.fixture
def report() -> Callable[[Row], None]:
    def write(row: Row) -> None:
        target = os.environ.get("HTCGRID_CHAOS_REPORT")
        if target:
            with open(target, "a") as out:
                out.write(json.dumps(asdict(row)) + "\n")

    return write


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh grid on each backend that agents in other processes can share."""
    with backend_url(request.param, tmp_path) as found:
        yield found
