"""Start ``htcgrid up`` as a real process for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MOCK = ROOT / "examples" / "workloads" / "mock_computation"


@dataclass
class GridProcess:
    proc: subprocess.Popen[str]
    url: str
    data_dir: Path

    @property
    def credentials(self) -> dict[str, str]:
        """The admin's user, password and api_key, as `htcgrid up` wrote them (auth=True)."""
        return json.loads((self.data_dir / "admin-credentials.json").read_text())  # type: ignore[no-any-return]

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


@contextmanager
def htcgrid_up(
    data_dir: Path, *extra: str, env: dict[str, str] | None = None, auth: bool = False
) -> Iterator[GridProcess]:
    """``htcgrid up`` on a free port; without ``auth`` it runs ``--no-auth`` (loopback only)."""
    command = [
        sys.executable, "-m", "htcgrid", "up", "--port", "0", "--data-dir", str(data_dir),
        "--slots", "2", "--path", str(MOCK), "--handler", "mock_compute_engine.lambda_handler",
        "--heartbeat-seconds", "0.5", "--lease-seconds", "3", *extra,
        *([] if auth else ["--no-auth"]),
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, cwd=ROOT
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    assert url.startswith("http://"), f"htcgrid up printed {url!r}"
    grid = GridProcess(proc, url, data_dir)
    try:
        yield grid
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
